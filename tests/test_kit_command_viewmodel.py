# SPDX-License-Identifier: Apache-2.0
"""The command controls' view-model (what-if panel "send to robot", dashboard gate and last commands), without Kit."""

from __future__ import annotations

import time
from concurrent.futures import Future
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest

from twin_ext.control import CommandAck, CommandGate, CommandLog, ControlSettings, Preflight, encode_ack
from twin_ext.estimation import Health, TwinSnapshot
from twin_ext.kit.command_viewmodel import NO_PROPOSAL, CommandPanelViewModel, candidate_move_to
from twin_ext.kit.viewmodels import WhatIfPanelViewModel
from twin_ext.robot import JointTrajectory
from twin_ext.telemetry import MoveTo, decode_command
from twin_ext.whatif import TrajectoryCommand, WhatIfError

HOME = [0.0, -0.7854, 0.0, -2.3562, 0.0, 1.5708, 0.7854, 0.04, 0.04]
PRE_PICK = [-0.6694, 0.3511, 0.1309, -2.0961, -0.0699, 2.4432, 0.2926, 0.04, 0.04]  # pick_place.toml, t = 1.5 s
PICK = [-0.6601, 0.5987, 0.1114, -2.0678, -0.1356, 2.6598, 0.3378, 0.04, 0.04]  # t = 2.1 s; grasp (3.6 s) closes
ARM = ("joint1", "joint2", "joint3", "joint4", "joint5", "joint6", "joint7")


def _snapshot(panda, q, *, qd=None, target=None):
    n = panda.ndof
    q = np.asarray(q, dtype=np.float64)
    qd = np.zeros(n) if qd is None else np.asarray(qd, dtype=np.float64)
    cov = np.eye(2 * n) * 1e-8
    return TwinSnapshot(0, q, qd, np.zeros(n), cov, Health.OK, panda, target=target, age_s=0.01)


def _pass(snapshot, scenario):
    variant = SimpleNamespace(p_violation=0.0, samples=32, violations=0, worst=(), reason="")
    return SimpleNamespace(status="pass", variants=[variant], summary=lambda: "pass")


class _Twin:
    """What the view-model needs of a LiveTwin: gate_state, commands, send_command."""

    def __init__(self, panda, gate="open", snapshot=None):
        n = panda.ndof
        self.snapshot = snapshot or TwinSnapshot(0, np.zeros(n), np.zeros(n), np.zeros(n), np.eye(2 * n) * 1e-8,
                                                 Health.OK, panda, age_s=0.01)  # fmt: skip
        self.commands = CommandGate(Preflight(panda, ControlSettings(), evaluate=_pass), audit=CommandLog(),
                                    now_ns=time.monotonic_ns)  # fmt: skip
        self.gate = gate
        self.sent = []

    def gate_state(self):
        return (self.gate, "" if self.gate == "open" else "the twin is stale: only stop is sent")

    def send_command(self, command, *, requester="local"):
        clock = SimpleNamespace(ready=True, to_robot_ns=lambda t: t)
        return self.commands.send(command, snapshot=self.snapshot, publish=lambda p: self.sent.append(p) or True,
                                  clock=clock, requester=requester)  # fmt: skip


def _wait(vm):
    deadline = time.monotonic() + 5
    while not vm.poll() and time.monotonic() < deadline:
        time.sleep(0.01)


def test_send_to_robot_is_enabled_only_with_an_open_gate_and_shows_verdict_then_ack_states(panda):
    """Blocked gate: send disabled, stop enabled; open: the proposal is pre-flighted off the UI thread, the verdict
    shown, and the ack states follow in the view and its last-commands rows."""
    twin = _Twin(panda, gate="blocked")
    vm = CommandPanelViewModel(lambda: twin, requester="alice")
    vm.propose(MoveTo(("joint1",), (0.2,), 1.0))
    view = vm.view()
    assert not view.send_enabled and view.stop_enabled and "stale" in view.gate_text
    assert view.proposal == "move_to joint1 0.200 in 1 s"
    assert vm.send() is False and twin.sent == []
    twin.gate = "open"
    assert vm.send() is True
    _wait(vm)
    view = vm.view()
    assert view.verdict.startswith("accepted — pre-flight pass") and view.verdict_level == "accepted"
    assert view.pending_state == "sent" and len(twin.sent) == 1 and view.acks == f"{vm.tracked.id} sent"
    twin.commands.on_ack_payload(encode_ack(CommandAck(vm.tracked.id, "received")))
    twin.commands.poll()
    view = vm.view()
    assert view.pending_state == "received" and view.acks == f"{vm.tracked.id} sent -> received"
    assert view.rows[-1].requester == "alice" and view.rows[-1].state == "received" and view.rows[-1].kind == "MoveTo"
    vm.close()


def test_a_refused_proposal_shows_the_check_and_the_fix(panda):
    """An out-of-limit proposal is refused by the pre-flight; the panel shows which check and how to fix it."""
    twin = _Twin(panda)
    vm = CommandPanelViewModel(lambda: twin)
    vm.propose(MoveTo(("joint1",), (9.0,), 1.0))
    vm.send()
    _wait(vm)
    assert vm.view().verdict.startswith("refused (limits)") and "fix:" in vm.view().verdict and twin.sent == []
    assert vm.view().verdict_level == "refused"
    assert vm.stop() == "stop sent" and len(twin.sent) == 1
    assert vm.view().verdict == "stop sent" and vm.view().acks.endswith(" sent")
    vm.close()


def test_without_a_twin_everything_is_closed():
    """No twin running: gate closed, neither send nor stop enabled, stop explains."""
    vm = CommandPanelViewModel(lambda: None)
    view = vm.view()
    assert (view.gate, view.send_enabled, view.stop_enabled) == ("closed", False, False)
    assert vm.stop() == "no twin running"


def _whatif_vm(panda, snapshot, commands=None, report=None):
    """A what-if view-model on the shipped presets, over a controller stand-in whose what-if finishes at once."""

    def ask(scenario):
        future = Future()
        if report is None:
            future.set_exception(RuntimeError("engine down"))
        else:
            future.set_result(report)
        return future

    controller = SimpleNamespace(model=panda, latest_snapshot=lambda: snapshot, ask_whatif=ask)
    vm = WhatIfPanelViewModel(controller, commands=commands)
    vm.form.preset = "pick_place_payload"
    return vm


def test_the_what_if_candidate_becomes_a_move_to_its_next_waypoint_naming_only_the_joints_it_moves(panda):
    """At home the pick-and-place program's next waypoint is pre-pick, 1.5 s away (1.0 s at x1.5 speed), and the
    fingers that stay open are not named; at pick the next move is the grasp (fingers only); at the end of the
    loop the program goes on at its second waypoint; a waypoint sooner than the shortest move accepted is passed by; a
    program that ended, or hold at the target, proposes nothing."""
    home = _snapshot(panda, HOME)
    vm = _whatif_vm(panda, home)
    scenario = vm.build_scenario(home)
    move = candidate_move_to(scenario, home)
    assert move.names == ARM and move.position == pytest.approx(PRE_PICK[:7]) and move.duration_s == pytest.approx(1.5)
    assert candidate_move_to(scenario, home, speed_scale=1.5).duration_s == pytest.approx(1.0)

    at_pick = _snapshot(panda, PICK)
    grasp = candidate_move_to(vm.build_scenario(at_pick), at_pick)
    assert grasp.names == ("finger_joint1", "finger_joint2") and grasp.position == (0.0, 0.0)
    assert grasp.duration_s == pytest.approx(1.5, abs=0.02)

    program = scenario.command.trajectory
    q, qd, _ = program.sample(1.35)  # 150 ms before pre-pick: too soon for a move, on to pick
    almost = _snapshot(panda, q, qd=qd)
    assert candidate_move_to(vm.build_scenario(almost), almost).duration_s == pytest.approx(0.15, abs=0.011)
    on = candidate_move_to(vm.build_scenario(almost), almost, min_duration_s=0.2)
    assert on.position == pytest.approx(PICK[:7]) and on.duration_s == pytest.approx(0.75, abs=0.011)
    looped = replace(scenario, command=TrajectoryCommand(program, start=program.end_time))
    assert candidate_move_to(looped, home).position == pytest.approx(PRE_PICK[:7])

    one_way = JointTrajectory(panda.dof_names, [0.0, 1.0], [np.array(HOME), np.array(PRE_PICK)])
    ended = replace(scenario, command=TrajectoryCommand(one_way, start=1.0))
    with pytest.raises(WhatIfError, match="no waypoint left"):
        candidate_move_to(ended, _snapshot(panda, PRE_PICK))

    vm.form.command_source = "hold"
    target = np.array(HOME)
    target[0] += 0.05
    hold = _snapshot(panda, HOME, target=target)
    assert candidate_move_to(vm.build_scenario(hold), hold) == MoveTo(("joint1",), (0.05,), vm.form.horizon_s)
    with pytest.raises(WhatIfError, match="at the target already"):
        candidate_move_to(vm.build_scenario(home), home)


def test_a_finished_what_if_proposes_its_command_and_send_to_robot_pre_flights_it_and_follows_the_acks(panda):
    """Nothing is proposed before a run; while it runs nothing can be sent; when it finishes its candidate is the
    proposal, "send to robot" publishes it after the pre-flight and the acks show in order to done. A failed run
    withdraws the proposal and says so."""
    home = _snapshot(panda, HOME)
    twin = _Twin(panda, snapshot=home)
    commands = CommandPanelViewModel(lambda: twin, requester="op")
    assert commands.view().proposal == NO_PROPOSAL and not commands.view().send_enabled
    report = SimpleNamespace(variants=[], status="pass", base_health="ok", horizon=3.0, total_seconds=0.05,
                             rollout=None, world_variant=None)  # fmt: skip
    vm = _whatif_vm(panda, home, commands, report)
    vm.run()
    assert "running" in commands.view().proposal and not commands.view().send_enabled
    assert vm.send_to_robot() is False
    assert vm.poll() and vm.state == "done"
    view = commands.view()
    assert (
        view.send_enabled
        and view.proposal.startswith("move_to joint1 -0.669, joint2 0.351")
        and " in 1.5 s" in view.proposal
    )
    assert vm.send_to_robot() is True
    _wait(commands)
    assert commands.view().verdict.startswith("accepted") and len(twin.sent) == 1
    sent = decode_command(twin.sent[0])
    assert sent.names == ARM and sent.position == pytest.approx(PRE_PICK[:7]) and sent.id == commands.tracked.id
    for state in ("received", "started", "done"):
        twin.commands.on_ack_payload(encode_ack(CommandAck(sent.id, state)))
        twin.commands.poll()
    view = commands.view()
    assert view.acks == f"{sent.id} sent -> received -> started -> done" and view.rows[-1].state == "done"

    failing = _whatif_vm(panda, home, commands, report=None)
    failing.run()
    failing.poll()
    assert failing.state == "error" and commands.view().proposal == "the what-if failed: nothing proposed"
    assert not commands.view().send_enabled
    commands.close()
