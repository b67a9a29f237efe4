# SPDX-License-Identifier: Apache-2.0
"""The Isaac Sim articulation driver's logic, with stand-ins for the Kit/Isaac modules that cannot run here.

omni.usd's stage is a real pxr stage holding the real robot USD; only the thin Kit/Isaac entry points
(omni.timeline, carb.eventdispatcher, omni.physics.core, isaacsim.core.experimental.prims.Articulation) are
replaced, each by a recorder of the calls the driver makes, with the behaviour Isaac Sim 6's sources give them
(notably: ``set_link_enabled_gravities`` without a valid physics tensor view falls back to authoring USD).
"""

from __future__ import annotations

import sys
import types
from types import SimpleNamespace

import numpy as np
import pytest

from twin_ext.kit.settings import KitSettings
from twin_ext.kit.stage_drivers import IsaacArticulationDriver


class FakeArticulation:
    """Records what the driver asks of ``isaacsim.core.experimental.prims.Articulation``."""

    created: list[FakeArticulation] = []
    dof_names_on_stage: list[str] = []

    def __init__(self, path: str) -> None:
        self.path = path
        self.dof_names = list(self.dof_names_on_stage)
        self.view_valid = False
        self.gravity_calls: list[tuple[bool, str]] = []  # (enabled, "tensor" | "usd fallback")
        self.positions: list[tuple[np.ndarray, np.ndarray]] = []
        self.velocities: list[tuple[np.ndarray, np.ndarray]] = []
        FakeArticulation.created.append(self)

    def is_physics_tensor_entity_valid(self) -> bool:
        return self.view_valid

    def set_link_enabled_gravities(self, enabled: bool) -> None:
        self.gravity_calls.append((bool(enabled), "tensor" if self.view_valid else "usd fallback"))

    def set_dof_positions(self, positions, *, indices=None, dof_indices=None) -> None:
        assert self.view_valid, "Isaac Sim needs the tensor view to set dof positions"
        self.positions.append((np.array(positions), np.array(dof_indices)))

    def set_dof_velocities(self, velocities, *, indices=None, dof_indices=None) -> None:
        assert self.view_valid
        self.velocities.append((np.array(velocities), np.array(dof_indices)))


class FakeKit:
    """Event dispatcher, timeline and physics-step subscriptions, driven by the test."""

    def __init__(self, stage) -> None:
        self.stage = stage
        self.playing = False
        self.observers: dict[str, list] = {}
        self.physics_callbacks: list = []

    def observe_event(self, *, event_name, on_event, observer_name):
        self.observers.setdefault(event_name, []).append(on_event)
        return SimpleNamespace(name=observer_name)

    def fire(self, event_name: str) -> None:
        self.playing = event_name == "play" or (self.playing and event_name != "stop")
        for handler in list(self.observers.get(event_name, [])):
            handler(SimpleNamespace(event_name=event_name))

    def subscribe_physics_on_step_events(self, *, pre_step, order, on_update):
        assert pre_step is True  # the teleport must happen before the step integrates
        sub = SimpleNamespace(on_update=on_update)
        self.physics_callbacks.append(sub)
        return sub

    def step(self, driver) -> None:
        """One physics step: calls the callback of the subscription the driver still holds."""
        if driver._physics_sub is not None:
            driver._physics_sub.on_update(1 / 60, None)


@pytest.fixture
def kit(monkeypatch):
    from pxr import Usd, UsdGeom

    stage = Usd.Stage.CreateInMemory()
    UsdGeom.Xform.Define(stage, "/World")
    fake = FakeKit(stage)

    def module(name: str, **attrs) -> types.ModuleType:
        m = types.ModuleType(name)
        m.__dict__.update(attrs)
        monkeypatch.setitem(sys.modules, name, m)
        return m

    usd = module("omni.usd", get_context=lambda: SimpleNamespace(get_stage=lambda: stage))
    timeline = module(
        "omni.timeline",
        GLOBAL_EVENT_PLAY="play",
        GLOBAL_EVENT_STOP="stop",
        get_timeline_interface=lambda: SimpleNamespace(is_playing=lambda: fake.playing),
    )
    physics_core = module("omni.physics.core", get_physics_simulation_interface=lambda: fake)
    module("omni.physics", core=physics_core)
    module("omni", usd=usd, timeline=timeline, physics=sys.modules["omni.physics"])
    dispatcher = module("carb.eventdispatcher", get_eventdispatcher=lambda: fake)
    module("carb", eventdispatcher=dispatcher)
    prims = module("isaacsim.core.experimental.prims", Articulation=FakeArticulation)
    experimental = module("isaacsim.core.experimental", prims=prims)
    core = module("isaacsim.core", experimental=experimental)
    module("isaacsim", core=core)
    FakeArticulation.created = []
    return fake


def _snapshot(panda, offset: float):
    q = np.clip(np.array(panda.drive_target, dtype=np.float64) + offset, panda.lower, panda.upper)
    return SimpleNamespace(q=q, qd=np.full(panda.ndof, 0.1 + offset))


def test_the_articulation_is_driven_through_the_physics_view_and_the_users_file_stays_clean(kit, panda):
    """Stopped: the kinematic mirror (session layer). Play: joints teleported before each step in the
    articulation's own dof order; gravity off once, through the tensor view only (never the USD fallback that
    would write into the user's layer); pause/resume keeps the view; Stop: back to the mirror; close: gravity
    back on through the view. The root layer is never written."""
    FakeArticulation.dof_names_on_stage = list(reversed(panda.dof_names))  # Isaac's order differs from ours
    root_before = kit.stage.GetRootLayer().ExportToString()
    driver = IsaacArticulationDriver(panda, KitSettings())
    assert "kinematic mirror" in driver.description and not FakeArticulation.created
    driver.on_snapshot(_snapshot(panda, 0.0))  # the mirror writes; no articulation yet

    kit.fire("play")
    (art,) = FakeArticulation.created
    driver.on_snapshot(_snapshot(panda, 0.05))
    kit.step(driver)  # PhysX has not created the tensor view yet
    assert art.gravity_calls == [] and art.positions == []

    art.view_valid = True
    kit.step(driver)
    kit.step(driver)
    assert art.gravity_calls == [(False, "tensor")]  # once, and through the view
    positions, dof_indices = art.positions[-1]
    expected = _snapshot(panda, 0.05)
    assert positions.shape == (1, panda.ndof) and positions.dtype == np.float32
    # dof_indices maps each of our joints to its index in the articulation's order.
    assert [art.dof_names[i] for i in dof_indices] == list(panda.dof_names)
    np.testing.assert_allclose(positions[0], expected.q, atol=1e-6)
    np.testing.assert_allclose(art.velocities[-1][0][0], expected.qd, atol=1e-6)
    assert "articulation" in driver.description

    kit.fire("play")  # resume after a pause: same view, same subscription
    assert len(FakeArticulation.created) == 1 and len(kit.physics_callbacks) == 1

    kit.fire("stop")
    assert driver._physics_sub is None and "kinematic mirror" in driver.description
    driver.on_snapshot(_snapshot(panda, 0.1))  # the mirror again

    kit.fire("play")
    second = FakeArticulation.created[-1]
    second.view_valid = True
    kit.step(driver)
    assert second is not art and second.gravity_calls == [(False, "tensor")]  # a new simulation: off again
    driver.close()
    assert second.gravity_calls[-1] == (True, "tensor") and driver._physics_sub is None
    assert all(mode == "tensor" for a in FakeArticulation.created for _, mode in a.gravity_calls)
    assert kit.stage.GetRootLayer().ExportToString() == root_before  # only the session layer was written
    assert not kit.stage.GetSessionLayer().GetPrimAtPath("/World/panda")  # the referenced robot is removed


def test_gravity_is_left_alone_when_disabled_in_settings_and_on_close_without_a_view(kit, panda):
    """kit.disable_gravity = false: gravity is never touched; and closing while the view is already gone
    never calls the USD fallback."""
    FakeArticulation.dof_names_on_stage = list(panda.dof_names)
    driver = IsaacArticulationDriver(panda, KitSettings(disable_gravity=False))
    kit.fire("play")
    (art,) = FakeArticulation.created
    art.view_valid = True
    driver.on_snapshot(_snapshot(panda, 0.0))
    kit.step(driver)
    assert art.gravity_calls == [] and len(art.positions) == 1

    driver2 = IsaacArticulationDriver(panda, KitSettings())
    art2 = FakeArticulation.created[-1]  # created at once: the timeline is playing
    art2.view_valid = True
    kit.step(driver2)
    art2.view_valid = False  # the simulation went away under us
    driver2.close()
    assert art2.gravity_calls == [(False, "tensor")]
    driver.close()


def test_a_stage_robot_with_other_joints_keeps_the_mirror_and_says_why(kit, panda):
    """An articulation lacking some of the twin's joints: no driving, the kinematic mirror continues, and the
    driver's description names the missing joints and the fix."""
    FakeArticulation.dof_names_on_stage = [n for n in panda.dof_names if n != "joint4"]
    driver = IsaacArticulationDriver(panda, KitSettings())
    kit.fire("play")
    assert driver._physics_sub is None
    assert "joint4" in driver.description and "kit.robot_prim_path" in driver.description
    driver.on_snapshot(_snapshot(panda, 0.02))  # the mirror still takes it
    driver.close()
