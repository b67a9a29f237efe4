# SPDX-License-Identifier: Apache-2.0
"""python -m twin_ext.emulator: instant --help, and one-line errors (no traceback) for bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _cli(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "twin_ext.emulator", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


def test_help_loads_no_heavy_module():
    """--help prints the usage and exits 0 without importing mujoco, paho, numpy or amqtt (so it is instant)."""
    probe = (
        "import runpy, sys\n"
        "sys.argv = ['twin_ext.emulator', '--help']\n"
        "try:\n"
        "    runpy.run_module('twin_ext.emulator', run_name='__main__', alter_sys=True)\n"
        "except SystemExit as exc:\n"
        "    assert exc.code in (0, None), exc.code\n"
        "heavy = sorted(m for m in ('mujoco', 'paho', 'numpy', 'amqtt', 'mcap', 'warp', 'pxr') if m in sys.modules)\n"
        "print('HEAVY=' + ','.join(heavy))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert (
        "--accept-commands" in result.stdout
        and "--impairments" in result.stdout
        and "--embedded-broker" in result.stdout
    )
    assert "HEAVY=\n" in result.stdout or result.stdout.rstrip().endswith("HEAVY=")


def test_dead_broker_is_one_clear_line_and_exit_1():
    """Nothing listening at the URL: exit 1, a message naming the URL and suggesting mosquitto or the
    embedded broker, and no traceback."""
    from mosquitto import free_port

    url = f"mqtt://127.0.0.1:{free_port()}"
    result = _cli("--broker", url, "--duration", "1")
    assert result.returncode == 1
    assert url in result.stderr and "mosquitto" in result.stderr and "--embedded-broker" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--broker", "http://127.0.0.1:1883"], "must start with mqtt://"),
        (["--broker", "mqtt://127.0.0.1:99999"], "it must be a number in 1..65535"),
        (["--impairments", "no/such/profile.toml"], "cannot read impairment profile"),
        (["--rate", "5000"], "above the plant's step rate"),
        (["--duration", "-2"], "--duration must be > 0"),
        (["--program", "no/such/program.toml"], "cannot read trajectory file"),
        (["--robot-id", "bad/id"], "robot_id 'bad/id' is not 1-64 characters"),
    ],
)
def test_bad_arguments_are_one_clear_line(args, message):
    """Bad URLs, files, rates, durations and ids exit 1 with a message naming the problem, no traceback."""
    result = _cli(*args)
    assert result.returncode == 1, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr


def test_unknown_profile_key_lists_the_valid_keys(tmp_path):
    """A typo in an impairment profile is refused naming the key and listing the valid ones."""
    profile = tmp_path / "typo.toml"
    profile.write_text("latency_ms = 20.0\njiter_ms = 5.0\n")
    result = _cli("--impairments", str(profile))
    assert result.returncode == 1
    assert "unknown key 'jiter_ms'" in result.stderr and "'jitter_ms'" in result.stderr


def test_config_file_section_is_read_and_checked(tmp_path):
    """--config reads [emulator]; an unknown key there is refused with the valid keys."""
    conf = tmp_path / "twin.toml"
    conf.write_text("[emulator]\nrobot_id = 'panda'\nspeed = 2\n")
    result = _cli("--config", str(conf))
    assert (
        result.returncode == 1
        and "[emulator] unknown key 'speed'" in result.stderr
        and "accept_commands" in result.stderr
    )


def test_embedded_broker_run_is_zero_setup():
    """--embedded-broker starts an in-process broker, runs for --duration and exits 0."""
    pytest.importorskip("amqtt")
    pytest.importorskip("mujoco")
    result = _cli("--embedded-broker", "--duration", "0.5")
    assert result.returncode == 0, result.stderr
    assert "embedded MQTT broker at mqtt://127.0.0.1:" in result.stderr and "done:" in result.stderr
