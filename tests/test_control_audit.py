# SPDX-License-Identifier: Apache-2.0
"""The command channel's audit trail: every command, verdict, requester and ack on ``twin/command_log``, read back
by `python -m twin_ext replay` into its report."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from twin_ext.control import (
    COMMAND_LOG_TOPIC,
    CommandAck,
    CommandGate,
    CommandLog,
    CommandRefused,
    ControlSettings,
    Preflight,
    command_log_rows,
    encode_ack,
    read_command_log,
)
from twin_ext.estimation import Health, TwinSnapshot
from twin_ext.telemetry import McapRecorder, McapReplay, MoveTo, Stop

REPO = Path(__file__).resolve().parents[1]
RECORDING = REPO / "data" / "recordings" / "panda_pick_place_standard.mcap"


def _pass_report(snapshot, scenario):
    variant = SimpleNamespace(p_violation=0.0, samples=32, violations=0, worst=(), reason="")
    return SimpleNamespace(status="pass", variants=[variant], summary=lambda: "what-if pass")


def _write_session(path: Path, panda, *, seconds: float = 3.0) -> None:
    """A recording as a live twin writes it: joint states (the first seconds of the shipped one) and its audit."""
    replay = McapReplay(RECORDING)
    recorder = McapRecorder(path)
    first = None
    for topic, payload, t in replay.iter_payloads():
        first = t if first is None else first
        if t - first > seconds * 1e9:
            break
        recorder.record_accepted(topic, payload, t)
    now = [first + int(1e9)]
    gate = CommandGate(
        Preflight(panda, ControlSettings(), evaluate=_pass_report),
        audit=CommandLog(recorder),
        now_ns=lambda: now[0],
    )
    n = panda.ndof
    snap = TwinSnapshot(0, np.zeros(n), np.zeros(n), np.zeros(n), np.eye(2 * n) * 1e-8, Health.OK, panda, age_s=0.01)
    clock = SimpleNamespace(ready=True, to_robot_ns=lambda t: t)
    move = gate.send(MoveTo(("joint1",), (0.1,), 1.0), snapshot=snap, publish=lambda p: True, clock=clock,
                     requester="operator-a")  # fmt: skip
    try:
        gate.send(MoveTo(("joint1",), (9.0,), 1.0), snapshot=snap, publish=lambda p: True, clock=clock,
                  requester="operator-b")  # fmt: skip
    except CommandRefused:
        pass
    gate.send(Stop(), snapshot=None, publish=lambda p: True, requester="remote@whatif-veto")
    for state in ("received", "started", "done"):
        now[0] += int(1e8)
        gate.on_ack_payload(encode_ack(CommandAck(move.id, state)))
        gate.poll()
    recorder.close()


def test_every_command_verdict_requester_and_ack_is_recorded_on_the_command_log_channel(tmp_path, panda):
    """sent (with verdict and requester), refused (with its check) and each ack become entries of twin/command_log."""
    path = tmp_path / "session.mcap"
    _write_session(path, panda)
    assert McapReplay(path).topics()[COMMAND_LOG_TOPIC] == 6
    entries = read_command_log(path)
    assert [e["event"] for e in entries] == ["sent", "refused", "sent", "ack", "ack", "ack"]
    assert entries[0]["requester"] == "operator-a" and entries[0]["verdict"]["whatif_status"] == "pass"
    assert entries[1]["check"] == "limits" and entries[1]["requester"] == "operator-b"
    rows = dict(command_log_rows(entries))
    assert rows["commands"].startswith("2 sent, 1 refused (limits 1); 3 acks")
    move_row = next(v for k, v in rows.items() if k == f"command {entries[0]['id']}")
    assert "operator-a" in move_row and move_row.endswith("sent -> received -> started -> done")


def test_replay_shows_the_command_log_in_its_output_and_report(tmp_path, panda):
    """`python -m twin_ext replay` of such a recording prints the command rows and puts them in report.html."""
    path = tmp_path / "session.mcap"
    _write_session(path, panda)
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "twin_ext", "replay", str(path), "--out", str(out), "--whatif", "none"],
        capture_output=True, text=True, timeout=300, cwd=REPO,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "2 sent, 1 refused (limits 1)" in proc.stdout and "operator-a" in proc.stdout
    html = (out / "report.html").read_text()
    assert "remote@whatif-veto" in html and "refused: limits" in html


def test_the_dashboard_lines_show_the_gate_and_the_last_commands():
    """command_lines: the gate with why, then one line per recent command (id, type, requester, state, reason)."""
    from twin_ext.control import command_lines

    recent = [{"id": "a-1", "type": "MoveTo", "requester": "op", "state": "failed", "reason": "lease_expired"}]
    lines = command_lines(("blocked", "the twin is stale: only stop is sent"), recent)
    assert lines == (
        "commands: blocked (the twin is stale: only stop is sent)",
        "  a-1 MoveTo by op: failed (lease_expired)",
    )
