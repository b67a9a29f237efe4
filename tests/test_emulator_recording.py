# SPDX-License-Identifier: Apache-2.0
"""The shipped sample recording: small, complete, replayable, consistent with its ground truth, reproducible."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from twin_ext.telemetry import McapReplay, TelemetryIngest, TelemetrySettings

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "recordings" / "panda_pick_place_standard.mcap"
PREFIX = "twin/v1/panda"


def test_sample_recording_is_small_and_has_every_channel():
    """< 3 MiB, ~10 s, with joint states, birth, status, ground truth and the config."""
    assert SAMPLE.stat().st_size < 3 * 2**20
    topics = McapReplay(SAMPLE).topics()
    for topic in (f"{PREFIX}/joint_states", f"{PREFIX}/birth", f"{PREFIX}/status",
                  "truth/joint_states", "emulator/config"):  # fmt: skip
        assert topics.get(topic, 0) > 0, topics
    # 2060 samples (200 Hz, 10.3 s), ~5 % lost; every delivered one is recorded, as accepted or with its reason.
    # The standard profile is one TCP connection (in order, no duplicates), so nothing is rejected: a rejected
    # payload's channel appears only when there is one (tests/test_telemetry_ingest.py covers the verdicts).
    delivered = topics[f"{PREFIX}/joint_states"] + topics.get("/twin_ext/rejected", 0)
    assert 1900 <= delivered <= 2060 and topics[f"{PREFIX}/joint_states"] >= 1000
    assert topics["truth/joint_states"] == 2060  # 200 Hz truth over 10.3 s
    ((_, config),) = McapReplay(SAMPLE).read_json("emulator/config")
    assert config["profile"]["latency_ms"] == 20.0 and config["profile"]["loss"] == 0.05


def test_replay_reproduces_the_recorded_verdicts_and_matches_truth():
    """Replaying into a fresh ingest accepts exactly the recorded joint states; each accepted sample has a
    truth record at its stamp, and differs from it by encoder noise only (std 1e-4 rad within 15 %)."""
    replay = McapReplay(SAMPLE)
    ingest = TelemetryIngest(settings=TelemetrySettings(robot_id="panda", state_buffer=100_000))
    replay.replay(ingest)
    topics = replay.topics()
    assert ingest.stats.accepted == topics[f"{PREFIX}/joint_states"]
    assert ingest.stats.rejected == topics.get("/twin_ext/rejected", 0)
    truth = {rec["robot_ns"]: rec for _, rec in replay.read_json("truth/joint_states")}
    errors = []
    for received in ingest.poll_states():
        rec = truth[received.message.stamp_ns]
        assert received.arrival_ns >= rec["host_ns"]
        errors.append(received.message.position - np.array(rec["position"]))
    errors = np.array(errors)
    assert abs(errors.std() - 1e-4) < 1.5e-5 and abs(errors.mean()) < 1e-5


@pytest.mark.slow
def test_the_tool_regenerates_the_same_recording(tmp_path):
    """tools/make_sample_recording.py is deterministic: a fresh run writes the same messages."""
    out = tmp_path / "again.mcap"
    result = subprocess.run([sys.executable, "tools/make_sample_recording.py", "--out", str(out)], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr

    def messages(path):
        from mcap.reader import make_reader

        with open(path, "rb") as f:
            return [
                (c.topic, m.log_time, m.publish_time, m.data)
                for _, c, m in make_reader(f).iter_messages(log_time_order=True)
            ]

    assert messages(out) == messages(SAMPLE)
