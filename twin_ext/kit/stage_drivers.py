# SPDX-License-Identifier: Apache-2.0
"""Kit adapters that put the twin's state on the stage (thin; written against Isaac Sim 6 / Kit 110 sources).

- `KitStageMirrorDriver`: the USD kinematic mirror on the stage of ``omni.usd``'s context, authored in the
  session layer (the user's file is never dirtied). Used when physics is not running.
- `IsaacArticulationDriver`: while the timeline plays, drives the robot through
  ``isaacsim.core.experimental.prims.Articulation``. How physics is kept from fighting the twin: before every
  physics step it teleports the joints with ``set_dof_positions`` (which also sets the drives' position
  targets, so the PD drives hold that pose instead of pulling back) and sets ``set_dof_velocities`` to the
  estimated velocities (which also sets the drives' velocity targets); gravity is switched off on the robot's
  links (``set_link_enabled_gravities``) so nothing sags between two writes. Gravity is switched through the
  physics tensor view only, on the first step where the view is valid: before that, Isaac Sim falls back to
  writing ``physxRigidBody:disableGravity`` into the stage's edit target (the user's file), which would
  outlive the run; tensor-view writes are discarded by PhysX on Stop. When the timeline stops, the tensor view
  is gone and the stage mirror takes over again.
- `make_driver`: picks one from the setting ``kit.drive`` and what is present.

Only `make_driver` runs in the bare Kit kernel used by the tests (it picks the pxr mirror there); the two
drivers need omni.usd / omni.timeline / omni.physics / isaacsim.core, which cannot run on this machine.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..sinks import MirrorSink
from ..stage import UsdKinematicMirror
from .dof_mapping import DofMap
from .settings import KitSettings

__all__ = ["IsaacArticulationDriver", "KitStageMirrorDriver", "PxrMirrorDriver", "extension_enabled", "make_driver"]


def extension_enabled(name: str) -> bool:
    """Whether the Kit extension ``name`` is enabled in this app."""
    import omni.kit.app

    manager = omni.kit.app.get_app().get_extension_manager()
    return bool(manager.is_extension_enabled(name))


def make_driver(model, kit: KitSettings):
    """The driver for ``kit.drive`` ("auto": articulation in Isaac Sim, the stage mirror with omni.usd, else a
    private pxr stage)."""
    mode = kit.drive
    if mode == "auto":
        if extension_enabled("omni.usd") and extension_enabled("isaacsim.core.experimental.prims"):
            mode = "articulation"
        elif extension_enabled("omni.usd"):
            mode = "stage"
        else:
            mode = "pxr"
    if mode == "none":
        return None
    if mode == "pxr":
        return PxrMirrorDriver(model, robot_prim_path=kit.robot_prim_path, save_path=kit.save_mirror_path)
    if mode == "stage":
        return KitStageMirrorDriver(model, kit)
    if mode == "articulation":
        return IsaacArticulationDriver(model, kit)
    raise ValueError(f"kit.drive {mode!r} is not one of auto, articulation, stage, pxr, none")


class KitStageMirrorDriver:
    """The kinematic mirror on Kit's open stage, in its session layer."""

    name = "kit_stage_mirror"

    def __init__(self, model, kit: KitSettings) -> None:
        import omni.usd
        from pxr import Sdf, Usd

        stage = omni.usd.get_context().get_stage()
        if stage is None:
            raise RuntimeError("no stage is open; open or create one (File > New) and the twin restarts on it")
        path = kit.robot_prim_path or f"/World/{model.name}"
        layer = stage.GetSessionLayer()
        self._added = False
        if not stage.GetPrimAtPath(path):
            if not kit.add_robot_to_stage:
                raise RuntimeError(
                    f"the stage has no robot at {path}; fix: set kit.robot_prim_path, or kit.add_robot_to_stage = true"
                )
            with Usd.EditContext(stage, Usd.EditTarget(layer)):
                stage.DefinePrim(path, "Xform").GetReferences().AddReference(Sdf.Reference(model.source))
            self._added = True
        self.stage, self.layer, self.path = stage, layer, path
        self.mirror = UsdKinematicMirror(model, stage, robot_prim_path=path, layer=layer)
        self.description = f"USD kinematic mirror on the open stage at {path} (session layer)"

    def on_snapshot(self, snapshot) -> None:
        self.mirror.write(snapshot.q)

    def close(self) -> None:
        if self._added:
            spec = self.layer.GetPrimAtPath(self.path)
            if spec:
                parent = spec.nameParent if spec.nameParent else self.layer.pseudoRoot
                del parent.nameChildren[spec.name]


class IsaacArticulationDriver:
    """Drives the stage's articulation from the twin while the timeline plays; mirrors kinematically otherwise."""

    name = "isaac_articulation"

    def __init__(self, model, kit: KitSettings) -> None:
        import carb.eventdispatcher
        import omni.timeline

        self.model = model
        self.kit = kit
        self.stage_mirror = KitStageMirrorDriver(model, kit)
        self.path = self.stage_mirror.path
        self._articulation: Any = None
        self._dofs: DofMap | None = None
        self._state: tuple[np.ndarray, np.ndarray] | None = None
        self._physics_sub: Any = None
        self._gravity_off = False  # gravity switched off through the tensor view in this play session
        self.error: str | None = None
        dispatcher = carb.eventdispatcher.get_eventdispatcher()
        self._subs = [
            dispatcher.observe_event(
                event_name=omni.timeline.GLOBAL_EVENT_PLAY,
                on_event=self._on_play,
                observer_name="twin_ext.articulation.play",
            ),
            dispatcher.observe_event(
                event_name=omni.timeline.GLOBAL_EVENT_STOP,
                on_event=self._on_stop,
                observer_name="twin_ext.articulation.stop",
            ),
        ]
        self._timeline = omni.timeline.get_timeline_interface()
        if self._timeline.is_playing():
            self._on_play(None)

    @property
    def description(self) -> str:
        if self._articulation is not None:
            return f"Isaac Sim articulation at {self.path} (teleported every physics step)"
        note = f"; articulation unavailable: {self.error}" if self.error else ""
        return f"{self.stage_mirror.description} until the timeline plays{note}"

    def _on_play(self, _event) -> None:
        import omni.physics.core
        from isaacsim.core.experimental.prims import Articulation

        if self._articulation is not None:  # resumed after a pause: the view and the subscription are still live
            return
        try:
            articulation = Articulation(self.path)
            self._dofs = DofMap(self.model.dof_names, articulation.dof_names)
        except Exception as exc:  # noqa: BLE001 - keep the kinematic mirror, say why
            self.error = str(exc)
            self._articulation = None
            return
        self._articulation = articulation
        self.error = None
        self._physics_sub = omni.physics.core.get_physics_simulation_interface().subscribe_physics_on_step_events(
            pre_step=True, order=0, on_update=self._on_physics_step
        )

    def _on_stop(self, _event) -> None:
        self._physics_sub = None
        self._articulation = None
        self._gravity_off = False  # PhysX discarded the tensor-view write with the simulation

    def _on_physics_step(self, _dt: float, _context: Any) -> None:
        articulation, state, dofs = self._articulation, self._state, self._dofs
        if articulation is None or not articulation.is_physics_tensor_entity_valid():
            return
        if self.kit.disable_gravity and not self._gravity_off:
            # Only now, with a valid tensor view: this write goes to PhysX, not into the user's USD layer.
            articulation.set_link_enabled_gravities(False)
            self._gravity_off = True
        if state is None or dofs is None:
            return
        q, qd = state
        articulation.set_dof_positions(q[None, :], dof_indices=dofs.target_indices)
        articulation.set_dof_velocities(qd[None, :], dof_indices=dofs.target_indices)

    def on_snapshot(self, snapshot) -> None:
        self._state = (np.asarray(snapshot.q, dtype=np.float32), np.asarray(snapshot.qd, dtype=np.float32))
        if self._articulation is None:
            self.stage_mirror.on_snapshot(snapshot)

    def close(self) -> None:
        articulation = self._articulation
        if articulation is not None and self._gravity_off:
            try:
                if articulation.is_physics_tensor_entity_valid():  # never through the USD fallback (see above)
                    articulation.set_link_enabled_gravities(True)
            except Exception:  # noqa: BLE001 - the stage may already be gone
                pass
        self._gravity_off = False
        self._subs = []
        self._physics_sub = None
        self._articulation = None
        self.stage_mirror.close()


class PxrMirrorDriver:
    """The kinematic mirror on a private pxr stage (a bare Kit has no omni.usd); optionally saved on close."""

    name = "pxr_mirror"

    def __init__(self, model, *, robot_prim_path: str = "", save_path: str = "") -> None:
        self.mirror = UsdKinematicMirror.new_stage(model, robot_prim_path=robot_prim_path or f"/World/{model.name}")
        self.sink = MirrorSink(self.mirror, keep_animation=bool(save_path))
        self.save_path = save_path
        self.description = f"USD kinematic mirror on a private stage at {self.mirror.robot_prim_path}"

    @property
    def stage(self):
        return self.mirror.stage

    def on_snapshot(self, snapshot) -> None:
        self.sink.on_snapshot(snapshot)

    def close(self) -> None:
        if self.save_path:
            self.sink.save_animation(self.save_path)
