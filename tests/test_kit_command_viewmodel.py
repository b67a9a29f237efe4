# SPDX-License-Identifier: Apache-2.0
"""The command controls' view-model (what-if panel "send to robot", dashboard gate and last commands), without Kit."""

from __future__ import annotations

import time
from types import SimpleNamespace

import numpy as np

from twin_ext.control import CommandAck, CommandGate, CommandLog, ControlSettings, Preflight, encode_ack
from twin_ext.estimation import Health, TwinSnapshot
from twin_ext.kit.command_viewmodel import CommandPanelViewModel
from twin_ext.telemetry import MoveTo


def _pass(snapshot, scenario):
    variant = SimpleNamespace(p_violation=0.0, samples=32, violations=0, worst=(), reason="")
    return SimpleNamespace(status="pass", variants=[variant], summary=lambda: "pass")


class _Twin:
    """What the view-model needs of a LiveTwin: gate_state, commands, send_command."""

    def __init__(self, panda, gate="open"):
        n = panda.ndof
        self.snapshot = TwinSnapshot(0, np.zeros(n), np.zeros(n), np.zeros(n), np.eye(2 * n) * 1e-8, Health.OK, panda)
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
    assert "pre-flight pass" in view.verdict and view.pending_state == "sent" and len(twin.sent) == 1
    twin.commands.on_ack_payload(encode_ack(CommandAck(vm.tracked.id, "received")))
    twin.commands.poll()
    view = vm.view()
    assert view.pending_state == "received"
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
    assert vm.stop() == "stop sent" and len(twin.sent) == 1
    vm.close()


def test_without_a_twin_everything_is_closed():
    """No twin running: gate closed, neither send nor stop enabled, stop explains."""
    vm = CommandPanelViewModel(lambda: None)
    view = vm.view()
    assert (view.gate, view.send_enabled, view.stop_enabled) == ("closed", False, False)
    assert vm.stop() == "no twin running"
