# SPDX-License-Identifier: Apache-2.0
"""``twin-ext run``: the headless live twin against a real Mosquitto and the emulated robot, as a user runs it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.broker, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
TIMEOUT_S = 60.0


def _wait_for_status(path: Path, ok, *, timeout_s: float = TIMEOUT_S) -> dict:
    """The status file's document once ``ok(doc)`` holds (the file is rewritten once a second)."""
    deadline = time.monotonic() + timeout_s
    doc: dict = {}
    while time.monotonic() < deadline:
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError):
            doc = {}
        if doc and ok(doc):
            return doc
        time.sleep(0.2)
    raise AssertionError(f"status never satisfied the condition within {timeout_s} s; last: {doc}")


def test_run_mirrors_the_robot_and_stops_cleanly_on_sigterm(mosquitto_broker, tmp_path):
    """Started with only --broker, the twin follows the emulated robot (health ok, samples fused, display at
    its configured 60 Hz within 10 %), reports it in the status file, and exits 0 on SIGTERM."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    emulator = subprocess.Popen(
        [sys.executable, "-m", "twin_ext.emulator", "--broker", mosquitto_broker.url, "--duration", "60"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    status = tmp_path / "status.json"
    twin = subprocess.Popen(
        [sys.executable, "-m", "twin_ext", "run", "--broker", mosquitto_broker.url, "--status-file", str(status)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        doc = _wait_for_status(status, lambda d: d["health"] == "ok" and d["accepted"] > 200)
        assert doc["robot_id"] == "panda" and doc["link_connected"] is True
        assert abs(doc["display_rate_hz"] - 60.0) < 6.0, doc["display_rate_hz"]
        counts = {k: doc["whatif"][k] for k in ("served", "refused")}  # the block also has refused_by_reason
        assert counts == {"served": 0, "refused": 0}  # serve_whatif = true as shipped
        assert doc["process"]["rss_mb"] > 0
        twin.send_signal(signal.SIGTERM)
        out, err = twin.communicate(timeout=TIMEOUT_S)
        assert twin.returncode == 0, err[-2000:]
        assert "mirroring panda from mqtt://127.0.0.1:" in out
    finally:
        for proc in (twin, emulator):
            if proc.poll() is None:
                proc.kill()
                proc.wait(TIMEOUT_S)


def test_run_with_a_bad_config_says_what_is_wrong_and_exits_2(tmp_path):
    """A config with a typo is refused before anything starts, naming the key and the close match."""
    config = tmp_path / "twin.toml"
    config.write_text("[twin]\ndisplay_rate = 30.0\n")
    proc = subprocess.run(
        [sys.executable, "-m", "twin_ext", "run", "--config", str(config), "--duration", "1"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert "[twin] unknown key 'display_rate' (did you mean 'display_rate_hz'?)" in proc.stderr
    assert str(config) in proc.stderr
