# SPDX-License-Identifier: Apache-2.0
"""The terminal dashboard rendered from a real twin fed by the emulator (standard impairments, virtual clock)."""

from __future__ import annotations

import dataclasses
import io
import json

import pytest
from test_twin_offline import STANDARD

from twin_ext.control import CommandAck, encode_ack
from twin_ext.emulator import EmulatedRobot, ImpairmentProfile
from twin_ext.live import LiveTwin, TwinSettings
from twin_ext.robot import default_robot_path, load_robot
from twin_ext.runs import OfflineFeed, TerminalDashboard, VirtualClock, render_dashboard, status_line
from twin_ext.telemetry import Stop, TelemetryIngest, TelemetrySettings

REORDERING = STANDARD.parent / "reordering.toml"


class _Link:
    """A transport stand-in that records what the twin publishes."""

    def __init__(self) -> None:
        self.published: list[tuple[str, bytes]] = []

    def publish(self, topic: str, payload: bytes, qos: int = 0) -> bool:
        self.published.append((topic, payload))
        return True


def _twin_after(profile: ImpairmentProfile, seconds: float, **twin_kwargs):
    panda = load_robot(default_robot_path())
    sim = EmulatedRobot(profile=profile).simulate(seconds, seed=2)
    clock = VirtualClock(sim.start_ns)
    ingest = TelemetryIngest(settings=TelemetrySettings(robot_id=sim.settings.robot_id), model=panda, now_ns=clock)
    twin = LiveTwin(panda, ingest, now_ns=clock, **twin_kwargs)
    if twin.link is not None:
        twin._link_connected = True  # the offline feed stands for the link's data
        twin.estimator.set_link(connected=True)
    feed = OfflineFeed(sim.deliveries, ingest, clock)
    for t in range(sim.start_ns + 16_666_667, sim.end_ns, 16_666_667):
        feed.advance(t)
        twin.tick(t)
    return panda, twin


def _status_after(profile: ImpairmentProfile, seconds: float):
    panda, twin = _twin_after(profile, seconds)
    return panda, twin.status()


@pytest.fixture(scope="module")
def status():
    """A twin's status after 3 s of the reordering profile with 2 % duplicates (late samples fused, duplicates
    rejected)."""
    return _status_after(ImpairmentProfile.from_toml(REORDERING).replace(duplicate=0.02), 3.0)


def test_the_dashboard_shows_every_joint_health_clock_and_rejection_reasons(status):
    """Every dof has a row (revolute in degrees, the prismatic fingers in mm) with a limit bar; the header
    names the health, the rejection reasons with counts, the late samples fused, and the clock offset near the
    profile's 250 ms."""
    panda, st = status
    text = render_dashboard(st, model=panda, title="panda twin")
    lines = text.splitlines()
    assert lines[0] == "panda twin" and "health OK" in lines[1]
    assert st.rejected > 0 and f"duplicate {st.rejected_by_reason['duplicate']}" in text
    assert "out_of_order" not in text and st.fused_late > 0 and f"fused late {st.fused_late}," in text
    assert "clock offset" in text and "-2" in lines[3]  # the robot clock runs 250 ms behind the twin's
    assert "drift pending" in lines[3]  # 3 s < drift_min_span_s: the shown drift would only be the 0 ppm prior
    fitted = dataclasses.replace(st, clock_drift_ppm=48.4, clock_drift_sd_ppm=12.2)
    assert "drift +48 ± 12 ppm" in render_dashboard(fitted, model=panda).splitlines()[3]
    rows = {name: next(line for line in lines if line.startswith(name)) for name in panda.dof_names}
    assert all("|" in row and ("●" in row or "!" in row) for row in rows.values())
    assert "°" in rows["joint1"] and "mm" in rows["finger_joint1"]
    assert "\x1b[" not in text and "\x1b[32mOK" in render_dashboard(st, model=panda, color=True)


def test_the_log_line_lists_rejection_reasons_biggest_first(status):
    """Non-TTY status line: health, rate, and the total rejected with its reasons, largest count first."""
    _, st = status
    line = status_line(st)
    counts = sorted(st.rejected_by_reason.items(), key=lambda kv: -kv[1])
    assert line.startswith("[twin] ok |") and f"rejected {st.rejected} ({counts[0][0]} {counts[0][1]}" in line


def test_in_a_log_a_what_if_table_is_printed_once_and_whole_again_when_it_changes(status):
    """Piped output: each update prints a status line and the progress line; a what-if table (a line and the
    indented lines under it) only the first time, and whole again when any of its lines changes."""
    panda, st = status
    out = io.StringIO()
    board = TerminalDashboard(panda, stream=out)
    fail = ("what-if: FAIL", "  as programmed pass", "  x1.5 speed fail")
    board.update(st, extra_lines=("t = 1.0 / 20 s", *fail), force=True)
    board.update(st, extra_lines=("t = 3.0 / 20 s", *fail), force=True)
    board.update(
        st, extra_lines=("t = 5.0 / 20 s", "what-if: PASS", "  as programmed pass", "  x1.5 speed pass"), force=True
    )
    text = out.getvalue()
    assert text.count("[twin] ok") == 3 and "\x1b[" not in text
    assert text.count("what-if: FAIL") == 1 and text.count("x1.5 speed fail") == 1
    assert text.count("as programmed pass") == 2  # the changed table is printed whole, unchanged rows too
    assert all(f"t = {t}.0 / 20 s" in text for t in (1, 3, 5))


def test_on_a_terminal_the_dashboard_redraws_in_place(status):
    """TTY output: each update clears the screen and draws the full, coloured dashboard."""
    panda, st = status

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = Tty()
    board = TerminalDashboard(panda, stream=out, title="t")
    board.update(st, extra_lines=("what-if: FAIL",), force=True)
    assert out.getvalue().startswith("\x1b[H\x1b[J") and "what-if: FAIL" in out.getvalue()
    assert "joint7" in out.getvalue()


def test_sensors_noisier_than_configured_are_named_on_the_dashboard(status):
    """Encoders at 2e-3 rad (10x estimator.sigma_q): the status names the joints with their learned noise
    and the fix, and the dashboard shows it; at the standard profile's 1e-4 rad there is no such note."""
    assert status[1].noise_note == ""
    panda, noisy = _status_after(ImpairmentProfile(position_noise=2e-3, seed=3), 3.0)
    note = noisy.noise_note
    assert "estimator.sigma_q (2.0e-04)" in note and "joint" in note and "raise sigma_q" in note
    assert note in render_dashboard(noisy, model=panda)


def test_the_dashboard_and_status_file_show_the_command_gate_and_the_last_commands_with_their_states():
    """Commands disabled: the gate line says closed and why. Enabled with a link and a healthy twin: open; a stop
    followed to done by the robot's acks is listed with its state on the dashboard, in the log line, in the
    status document, and printed once in a log (again when a state changes)."""
    panda, st = _status_after(ImpairmentProfile.from_toml(STANDARD), 2.0)
    assert (st.command_gate, st.command_gate_reason) == ("closed", "[twin] commands_enabled = false")
    assert "commands: closed ([twin] commands_enabled = false)" in render_dashboard(st, model=panda).splitlines()
    assert status_line(st).endswith("| commands closed") and st.to_dict()["commands"]["gate"] == "closed"

    link = _Link()
    panda, twin = _twin_after(ImpairmentProfile.from_toml(STANDARD), 2.0, link=link,
                              settings=TwinSettings(commands_enabled=True))  # fmt: skip
    assert twin.gate_state() == ("open", "")
    stop = twin.send_command(Stop(), requester="ops")
    assert len(link.published) == 1
    out = io.StringIO()
    board = TerminalDashboard(panda, stream=out)
    board.update(twin.status(), force=True)
    for state in ("received", "started", "done"):
        twin.commands.on_ack_payload(encode_ack(CommandAck(stop.id, state)))
    twin.tick()
    st = twin.status()
    assert st.command_gate == "open" and st.command_gate_reason == ""
    assert [(c["id"], c["type"], c["requester"], c["state"]) for c in st.commands] == [(stop.id, "Stop", "ops", "done")]
    lines = render_dashboard(st, model=panda).splitlines()
    assert lines[lines.index("commands: open") + 1] == f"  {stop.id} Stop by ops: done"
    assert status_line(st).endswith("| commands open, last Stop done")
    doc = json.loads(json.dumps(st.to_dict()))
    assert doc["commands"]["gate"] == "open" and doc["commands"]["recent"][-1]["state"] == "done"
    board.update(st, force=True)
    board.update(st, force=True)
    log = out.getvalue()
    assert log.count(f"{stop.id} Stop by ops: sent") == 1 and log.count(f"{stop.id} Stop by ops: done") == 1

    blocked = dataclasses.replace(
        st, command_gate="blocked", command_gate_reason="the twin is stale: only stop is sent"
    )
    assert "commands: blocked (the twin is stale: only stop is sent)" in render_dashboard(blocked, model=panda)
