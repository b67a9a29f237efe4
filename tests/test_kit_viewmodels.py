# SPDX-License-Identifier: Apache-2.0
"""The panels' view-models and the Kit controller, in plain Python (no Kit): what the windows show and do.

The twin is real (session, ingest, estimator, what-if engine); telemetry comes from the emulator's offline
schedule pushed into the ingest on a virtual clock, so the views can be checked deterministically.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from twin_ext.emulator import EmulatedRobot, ImpairmentProfile
from twin_ext.kit.controller import KitTwinController
from twin_ext.kit.dof_mapping import DofMap
from twin_ext.kit.stage_drivers import PxrMirrorDriver
from twin_ext.kit.viewmodels import TelemetryPanelViewModel, WhatIfPanelViewModel
from twin_ext.runs import VirtualClock
from twin_ext.stage import GhostRobot

REPO = Path(__file__).resolve().parents[1]


def _settings(**overrides):
    tree = {
        "broker": {"url": "mqtt://127.0.0.1:9", "connect_timeout_s": 0.5},  # nothing listens on port 9
        "whatif": {"workers": 1},
        "kit": {"drive": "pxr"},
    }
    for key, value in overrides.items():
        section, name = key.split("__")
        tree.setdefault(section, {})[name] = value
    return tree


def _controller(clock, **overrides):
    return KitTwinController(
        lambda: _settings(**overrides),
        base_dir=REPO,
        make_driver=lambda model, kit: PxrMirrorDriver(model),
        make_ghost=lambda model, kit, driver: GhostRobot(model, driver.stage),
        now_ns=clock,
        log=lambda level, msg: None,
    )


@pytest.fixture
def running(tmp_path):
    """A started controller whose ingest has received 4 s of the emulator's telemetry under the reordering
    profile with 2 % duplicates (late samples fused, duplicates rejected)."""
    profile = ImpairmentProfile.from_toml(REPO / "config/impairments/reordering.toml").replace(duplicate=0.02)
    sim = EmulatedRobot(profile=profile).simulate(4.0, seed=2)
    clock = VirtualClock(sim.start_ns)
    controller = _controller(clock)
    assert controller.start(), controller.error
    ingest = controller.session.ingest
    for d in sim.deliveries:
        if d.kind == "offline":
            continue  # keep the robot online for the views
        clock.set(d.arrival_ns)
        ingest.on_payload(d.topic, d.payload, d.arrival_ns)
        controller.on_update()
    # The link to port 9 never connects; the views should still read the fed data as a connected feed.
    controller.session.twin._link_connected = True
    controller.session.twin.estimator.set_link(connected=True)
    controller.on_update(clock.t_ns + 20_000_000)
    yield controller, sim
    controller.stop()


def test_telemetry_view_before_start_and_with_a_broken_config():
    """Not started: 'not running'; a bad key: 'error' with the key named."""
    clock = VirtualClock(0)
    idle = _controller(clock)
    assert TelemetryPanelViewModel(idle).view().connection == "not running"
    broken = _controller(clock, estimator__jerk_psdd=1.0)
    assert not broken.start()
    view = TelemetryPanelViewModel(broken).view()
    assert view.connection == "error" and "jerk_psdd" in view.errors[0]


def test_telemetry_view_shows_link_clock_health_rejects_and_a_joint_table(running):
    """The panel's rows: rates, clock offset near the profile's -250 ms plus its latency floor (one-way traffic
    measures offset + minimum latency), health ok, 9 joints in ° and mm, fingers flagged near their limits, rejected
    payloads by reason."""
    controller, sim = running
    view = TelemetryPanelViewModel(controller).view()
    assert view.running and view.health_level == 0 and view.health.startswith("ok")
    expected_ms = -sim.profile.offset_ms + sim.profile.latency_floor_ms
    assert view.clock_offset.endswith(" ms") and abs(float(view.clock_offset.split()[0]) - expected_ms) < 2
    assert len(view.joints) == 9 and view.joints[0].estimated.endswith("°") and view.joints[8].estimated.endswith(" mm")
    assert dict(view.rejects).get("duplicate", 0) > 0 and "out_of_order" not in dict(view.rejects)
    assert "fused late" in view.estimator
    assert all(0.0 <= j.bar <= 1.0 for j in view.joints)
    assert "private stage" in view.drive


def test_whatif_form_builds_the_scenario_it_describes(running):
    """Preset command aligned to the robot's state, a baseline and an 'as edited' variant with the payload on
    the last link, the speed scale and the push; bad fields are errors that name them."""
    controller, _ = running
    vm = WhatIfPanelViewModel(controller)
    assert "pick_place_payload" in vm.presets
    vm.form.speed_scale, vm.form.payload_mass, vm.form.push_force_n = 1.5, 3.0, (0.0, 40.0, 0.0)
    scenario = vm.build_scenario(controller.latest_snapshot())
    assert [v.name for v in scenario.variants] == ["as programmed", "as edited"]
    edited = scenario.variants[1]
    assert edited.speed_scale == 1.5 and edited.payloads[0].mass == 3.0 and edited.payloads[0].link == "right_finger"
    assert edited.perturbation.force == (0.0, 40.0, 0.0)
    assert scenario.command.start is not None and scenario.command.start > 0  # aligned, not from the beginning
    vm.form.command_source = "hold"
    assert vm.build_scenario(controller.latest_snapshot()).command.targets.shape == (1, 9)
    vm.form.command_source, vm.form.samples = "preset", 0
    vm.run()
    assert vm.state == "error" and "samples" in vm.message
    vm.form.samples, vm.form.command_source, vm.form.command_file = 4, "file", "/nope.toml"
    vm.run()
    assert vm.state == "error" and "/nope.toml" in vm.message


def test_whatif_runs_on_the_twin_snapshot_and_drives_a_scrubbable_ghost(running):
    """Run -> running -> done with one verdict row per variant; the ghost shows the edited variant's
    prediction on the stage, follows the scrub slider and hides on clear."""
    controller, _ = running
    vm = WhatIfPanelViewModel(controller)
    vm.form.samples, vm.form.horizon_s, vm.form.payload_mass = 4, 0.5, 2.0
    vm.run()
    assert vm.state == "running"
    deadline = time.monotonic() + 180
    while vm.state == "running" and time.monotonic() < deadline:
        time.sleep(0.05)
        vm.poll()
    assert vm.state == "done", vm.message
    assert [r.variant for r in vm.rows] == ["as programmed", "as edited"]
    assert all(r.status in ("pass", "fail", "unknown") for r in vm.rows)
    assert vm.ghost_variant == "as edited" and vm.ghost_frames.shape[1] == 9
    vm.set_scrub(1.0)
    ghost = controller.ghost
    assert ghost is not None and ghost.visible
    np.testing.assert_allclose(vm.ghost_q(), vm.ghost_frames[-1])
    assert vm.ghost_time == pytest.approx(float(vm.ghost_times[-1]))
    vm.clear_ghost()
    assert not ghost.visible and vm.ghost_frames is None


def test_controller_ticks_at_the_display_rate_and_restarts_after_settings_settle():
    """on_update ticks only when a display period passed; a settings change restarts once, after the debounce."""
    clock = VirtualClock(1_000_000_000)
    controller = _controller(clock)
    assert controller.start()
    ticks = []
    controller.session.twin.sinks.append(
        type(
            "Count",
            (),
            {"name": "count", "on_snapshot": lambda self, s: ticks.append(s.t_ns), "close": lambda self: None},
        )()
    )
    for _ in range(240):  # 1 s of 240 Hz Kit updates at a 60 Hz display rate
        clock.set(clock.t_ns + 4_166_667)
        controller.on_update()
    assert 55 <= len(ticks) <= 61
    first = controller.session
    controller.kit = type(controller.kit)(settings_debounce_s=0.0)
    controller.settings_changed()
    controller.on_update()
    assert controller.session is not first and controller.running
    controller.stop()
    assert not controller.running


def test_dof_map_points_twin_joints_at_the_articulation_order_and_names_missing_ones():
    """An articulation listing the joints in another order gets the right dof_indices; a missing joint is an
    error naming it."""
    m = DofMap(["a", "b", "c"], ["c", "a", "b", "extra"])
    assert m.target_indices.tolist() == [1, 2, 0]
    with pytest.raises(ValueError, match=r"\['c'\]"):
        DofMap(["a", "c"], ["a", "b"])
