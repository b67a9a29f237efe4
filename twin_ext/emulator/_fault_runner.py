# SPDX-License-Identifier: Apache-2.0
"""`FaultRunner`: puts a `FaultProfile` into the running plant and the published samples, and keeps its truth.

Internal; the engine owns one per run when the profile has faults (docs/emulator.md, "Faults").

Time. Plant step ``n`` starts at ``t_n = n * timestep`` s from the run's start. A plant fault with
``at_s = a`` (and ``duration_s = d``) is in effect for the steps with ``a <= t_n < a + d`` (at least one
step); the wear scale of step ``n`` is ``s(t_n)``, held for the step. A sensor fault acts on the samples
taken in the same window (samples are taken at step times); an encoder jump on the first sample taken
at or after ``a``. Deterministic: nothing here draws random numbers.

Cost. Nothing per step outside the faults' windows but two integer comparisons; a wear ramp writes
the joint's two friction parameters per step while it grows; a collision sets the applied loads per
step and reads its joint torques back (``J^T F``: one MuJoCo Jacobian for a link force); a payload
change calls ``mj_setConst`` once. Dry friction anywhere adds one read of the constraint forces per
step offline (the friction torque truth).
"""

from __future__ import annotations

import heapq
import math
from typing import Any

import numpy as np

from ._faults import Collision, EncoderJump, EncoderStuck, FaultProfile, Payload, TorqueBias, Wear
from ._plant import PlantError
from ._records import EmulatorError, FaultEvent, FaultTruth, fault_record

__all__ = ["FaultRunner"]

_STATE_PERIOD_NS = 10_000_000  # live fault-truth state records: 100 Hz
_NEVER = 2**62


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


class FaultRunner:
    """Applies the faults of ``faults`` to ``plant`` (a `MujocoPlant`) step by step.

    Args:
        faults: the profile's ``[faults]``.
        plant: the plant; a payload body is added to it if a payload fault needs one.
        epoch_ns: host ns of the run's start; dt_ns: the plant step, ns.

    Raises:
        EmulatorError: a fault names a joint or body the plant does not have (the message names the key).
    """

    def __init__(self, faults: FaultProfile, plant: Any, *, epoch_ns: int, dt_ns: int) -> None:
        self.profile = faults
        self.plant = plant
        self.epoch_ns = int(epoch_ns)
        self.dt_ns = int(dt_ns)
        self.names = tuple(plant.joint_names)
        self.ndof = len(self.names)
        prismatic = np.asarray(plant.is_prismatic, dtype=bool)
        self._pos_unit = ["m" if p else "rad" for p in prismatic]
        self._eff_unit = ["N" if p else "N·m" for p in prismatic]

        def joint(key: str, name: str) -> int:
            try:
                return plant.joint_index(name)
            except PlantError:
                raise EmulatorError(
                    f"impairment profile: {key} = {name!r} is not a joint of the robot; joints: {list(self.names)}"
                ) from None

        def body(key: str, name: str) -> int:
            try:
                return plant.body_id(name)
            except PlantError as exc:
                raise EmulatorError(f"impairment profile: {key} = {name!r}: {exc}") from None

        self.base_damping = np.asarray(plant.nominal_damping, dtype=np.float64).copy()
        self.base_frictionloss = np.asarray(plant.nominal_frictionloss, dtype=np.float64).copy()
        for key, base in (("damping", self.base_damping), ("frictionloss", self.base_frictionloss)):
            for name, value in getattr(faults, key):
                base[joint(f"faults.{key}.{name}", name)] = value
        self._set_friction = bool(faults.damping or faults.frictionloss or faults.wear)
        self.record_friction = bool(np.any(self.base_frictionloss > 0.0))  # dry friction: read per step
        dry = np.flatnonzero(self.base_frictionloss > 0.0)
        self._dry_joints = dry[np.argsort(np.asarray(plant.dof_address)[dry], kind="stable")] if len(dry) else dry

        self.events: dict[str, FaultEvent] = {}
        self._schedule: list[tuple[int, int, str, str]] = []  # (step, order, "start" | "end", id)
        self._order = 0
        self._wear: list[tuple[int, Wear, str]] = []
        self._collisions: dict[str, tuple[Collision, int, int]] = {}  # id -> (fault, joint index | -1, body id | -1)
        self._payloads: dict[str, Payload] = {}
        self._jumps: list[tuple[int, int, float, str]] = []  # (start_ns, joint, jump, id), sorted
        self._stuck: list[tuple[int, int, int, str]] = []  # (start_ns, end_ns, joint, id)
        self._bias: list[tuple[int, int, int, float, str]] = []  # (start_ns, end_ns, joint, bias, id)
        self.payload_body_name = ""

        kind_index: dict[str, int] = {}
        for ident, f in faults.entries():
            kind = type(f).KIND
            kind_index[kind] = kind_index.get(kind, -1) + 1
            where = f"faults.{kind}[{kind_index[kind]}]"
            start = _ceil_div(round(f.at_s * 1e9), self.dt_ns)
            duration = getattr(f, "duration_s", math.inf)
            end = (
                None
                if math.isinf(duration)
                else max(start + 1, _ceil_div(round((f.at_s + duration) * 1e9), self.dt_ns))
            )
            start_ns = self.epoch_ns + start * self.dt_ns
            end_ns = None if end is None else self.epoch_ns + end * self.dt_ns
            j = joint(f"{where}.joint", f.joint) if getattr(f, "joint", "") else -1
            jname = self.names[j] if j >= 0 else ""
            if isinstance(f, Wear):
                detail = {
                    "rate_per_hour": f.rate_per_hour,
                    "max_scale": None if math.isinf(f.max_scale) else f.max_scale,
                    "saturates_s": f.saturates_at_s,
                    "damping_base": float(self.base_damping[j]),
                    "frictionloss_base": float(self.base_frictionloss[j]),
                }
                self._add(
                    FaultEvent(ident, kind, jname, "", f.rate_per_hour, "1/h", start_ns, None, detail), start, None
                )
                self._wear.append((j, f, ident))
            elif isinstance(f, Collision):
                b = body(f"{where}.body", f.body) if f.body else -1
                if j >= 0:
                    mag, unit = f.torque, self._eff_unit[j]
                    detail = {"shape": f.shape, "torque": f.torque}
                else:
                    mag, unit = math.hypot(*f.force), "N"
                    detail = {"shape": f.shape, "force": list(f.force), "point": list(f.point)}
                self._add(FaultEvent(ident, kind, jname, f.body, mag, unit, start_ns, end_ns, detail), start, end)
                self._collisions[ident] = (f, j, b)
            elif isinstance(f, Payload):
                body(f"{where}.body", f.body)
                try:
                    plant.add_payload_body(f.body)
                except PlantError as exc:
                    raise EmulatorError(f"impairment profile: {where}.body: {exc}") from None
                self.payload_body_name = f.body
                detail = {"com": list(f.com), "inertia": list(f.inertia), "com_frame": f.body}
                self._add(FaultEvent(ident, kind, "", f.body, f.mass, "kg", start_ns, end_ns, detail), start, end)
                self._payloads[ident] = f
            elif isinstance(f, EncoderJump):
                detail = {"seq": None, "boot": None}
                self.events[ident] = FaultEvent(
                    ident, kind, jname, "", f.jump, self._pos_unit[j], start_ns, start_ns, detail
                )
                self._jumps.append((start_ns, j, f.jump, ident))
            elif isinstance(f, EncoderStuck):
                detail = {"value": None}
                self._add(FaultEvent(ident, kind, jname, "", f.duration_s, "s", start_ns, end_ns, detail), start, end)
                self._stuck.append((start_ns, end_ns, j, ident))
            elif isinstance(f, TorqueBias):
                detail = {"bias": f.bias}
                self._add(
                    FaultEvent(ident, kind, jname, "", f.bias, self._eff_unit[j], start_ns, end_ns, detail), start, end
                )
                self._bias.append((start_ns, _NEVER if end_ns is None else end_ns, j, f.bias, ident))
        self._jumps.sort()
        self._sensor = bool(self._jumps or self._stuck or self._bias)
        self._base_d = [float(x) for x in self.base_damping]  # Python floats: the same products as the arrays'
        self._base_f = [float(x) for x in self.base_frictionloss]
        self._wear_from = min((_ceil_div(round(w.at_s * 1e9), self.dt_ns) for _, w, _ in self._wear), default=_NEVER)
        self._wear_until = max(
            (
                _NEVER if w.saturates_at_s is None else _ceil_div(round(w.saturates_at_s * 1e9), self.dt_ns) + 1
                for _, w, _ in self._wear
            ),
            default=0,
        )
        heapq.heapify(self._schedule)
        self._frozen: dict[str, float] = {}
        self.reset()

    def _add(self, event: FaultEvent, start: int, end: int | None) -> None:
        self.events[event.id] = event
        heapq.heappush(self._schedule, (start, self._order, "start", event.id))
        self._order += 1
        if end is not None:
            heapq.heappush(self._schedule, (end, self._order, "end", event.id))
            self._order += 1

    # ---- state ------------------------------------------------------------------------------------
    def reset(self) -> None:
        """Prepare a run (call after ``plant.reset``): base friction in the plant, nothing active."""
        self._pending = list(self._schedule)
        heapq.heapify(self._pending)
        self._next_change = self._pending[0][0] if self._pending else _NEVER
        self.active: dict[str, None] = {}  # ordered set of active ids
        self.transitions: list[tuple[int, str, str]] = []
        self._live_seen = 0
        self._next_state_ns: int | None = None
        self._active_loads: list[str] = []
        self._loaded_bodies: set[int] = set()
        self.external_torque = np.zeros(self.ndof)
        self._ext_set = False
        self.scale = np.ones(self.ndof)
        self.payload_state = (self.payload_body_name, 0.0, np.zeros(3), np.zeros(3))
        self._jump_next = 0
        self._frozen = {}
        if self._set_friction:
            self.plant.set_joint_friction(np.arange(self.ndof), self.base_damping, self.base_frictionloss)
        self._recording = False
        self._dry: np.ndarray | None = None

    def start_recording(self, steps: int) -> None:
        """Offline: keep per-step truth for ``steps`` steps (read back with `truth`)."""
        self._recording = True
        self._ext_rows: list[tuple[int, np.ndarray]] = []
        self._dry = np.zeros((steps, len(self._dry_joints))) if self.record_friction else None
        self._dry_full: set[int] = set()  # rows of _dry that hold the whole friction torque
        self._sample_errors: list[tuple[np.ndarray, np.ndarray]] = []

    # ---- per step ---------------------------------------------------------------------------------
    def before_step(self, n: int) -> None:
        """Apply the faults of plant step ``n`` (before ``plant.step``)."""
        if n >= self._next_change:
            self._transitions(n)
        if self._wear_from <= n < self._wear_until:
            t_s = n * self.dt_ns / 1e9
            for j, w, _ in self._wear:
                s = w.scale(t_s)
                self.scale[j] = s
                self.plant.set_friction_of(j, self._base_d[j] * s, self._base_f[j] * s)
        if self._active_loads:
            self._apply_loads(n)

    def after_step(self, n: int) -> None:
        """Read back the truth of plant step ``n`` (after ``plant.step``)."""
        if self._active_loads or self._loaded_bodies:
            ext = self.plant.joint_loads()
            for b in self._loaded_bodies:
                ext = ext + self.plant.body_load_torque(b)
            self.external_torque = ext
            self._ext_set = True
            if self._recording:
                self._ext_rows.append((n, ext))
            if not self._active_loads:  # the last load ended at this step: clear the bodies' loads from now on
                self._loaded_bodies.clear()
        elif self._ext_set:
            self.external_torque = np.zeros(self.ndof)
            self._ext_set = False
        dry = self._dry
        if dry is not None and n < len(dry):
            forces = self.plant.dry_friction_forces(len(self._dry_joints))
            if forces is None:  # not one row per dry joint (never with a fixed set of them): the full read
                dry[n] = self.plant.friction_torque()[self._dry_joints]
                self._dry_full.add(n)
            else:
                dry[n] = forces

    def _transitions(self, n: int) -> None:
        pending = self._pending
        while pending and pending[0][0] <= n:
            _, _, what, ident = heapq.heappop(pending)
            at = self.epoch_ns + n * self.dt_ns
            if what == "start":
                self.active[ident] = None
            else:
                self.active.pop(ident, None)
            self.transitions.append((at, what, ident))
            if ident in self._collisions:
                if what == "start":
                    self._active_loads.append(ident)
                else:
                    self._active_loads.remove(ident)
                    if not self._active_loads:
                        self._clear_loads()
            elif ident in self._payloads:
                p = self._payloads[ident]
                if what == "start":
                    self.plant.set_payload(p.mass, np.array(p.com), np.array(p.inertia))
                    self.payload_state = (p.body, p.mass, np.array(p.com), np.array(p.inertia))
                else:
                    self.plant.set_payload(0.0, np.zeros(3), np.zeros(3))
                    self.payload_state = (p.body, 0.0, np.zeros(3), np.zeros(3))
        self._next_change = pending[0][0] if pending else _NEVER

    def _apply_loads(self, n: int) -> None:
        t_s = n * self.dt_ns / 1e9
        tau = np.zeros(self.ndof)
        wrenches: dict[int, np.ndarray] = {b: np.zeros(6) for b in self._loaded_bodies}
        for ident in self._active_loads:
            c, j, b = self._collisions[ident]
            k = c.factor(t_s)
            if j >= 0:
                tau[j] += c.torque * k
            else:
                w = self.plant.body_wrench(b, np.array(c.force) * k, np.array(c.point))
                wrenches[b] = wrenches.get(b, 0.0) + w
        self.plant.set_joint_loads(tau)
        for b, w in wrenches.items():
            self.plant.set_body_wrench(b, w)
            self._loaded_bodies.add(b)

    def _clear_loads(self) -> None:
        self.plant.set_joint_loads(np.zeros(self.ndof))
        for b in self._loaded_bodies:
            self.plant.set_body_wrench(b, np.zeros(6))
        # _loaded_bodies is kept until after_step has read this step's (zero) loads

    # ---- samples ----------------------------------------------------------------------------------
    def on_sample(
        self, host_ns: int, seq: int, boot: int, q: np.ndarray, tau: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """The published ``(position, effort)`` of a sample taken at ``host_ns`` after the sensor faults."""
        if not self._sensor:
            return q, tau
        q, tau = q.copy(), tau.copy()
        dq, dtau = np.zeros(self.ndof), np.zeros(self.ndof)
        for start, end, j, ident in self._stuck:
            if start <= host_ns < end:
                if ident not in self._frozen:
                    self._frozen[ident] = float(q[j])
                    event = self.events[ident]
                    self.events[ident] = event._replace(detail={**event.detail, "value": float(q[j])})
                else:
                    dq[j] += self._frozen[ident] - q[j]
                    q[j] = self._frozen[ident]
        while self._jump_next < len(self._jumps) and self._jumps[self._jump_next][0] <= host_ns:
            _, j, jump, ident = self._jumps[self._jump_next]
            self._jump_next += 1
            q[j] += jump
            dq[j] += jump
            event = self.events[ident]
            self.events[ident] = event._replace(
                start_ns=int(host_ns), end_ns=int(host_ns), detail={"seq": int(seq), "boot": int(boot)}
            )
            self.transitions.append((int(host_ns), "start", ident))
            self.transitions.append((int(host_ns), "end", ident))
        for start, end, j, b, _ in self._bias:
            if start <= host_ns < end:
                tau[j] += b
                dtau[j] += b
        if self._recording:
            self._sample_errors.append((dq, dtau))
        return q, tau

    # ---- truth ------------------------------------------------------------------------------------
    def truth(self, t_ns: np.ndarray, qd: np.ndarray, samples: int) -> FaultTruth:
        """Offline: the `FaultTruth` of the recorded run (``t_ns`` ``[N]`` and ``qd`` ``[N, ndof]`` from
        `Truth`; ``samples``: rows of the `SampleLog`)."""
        n = len(t_ns)
        steps = np.arange(n, dtype=np.int64)
        t_s = steps * self.dt_ns / 1e9
        scale = np.ones((n, self.ndof))
        for j, w, _ in self._wear:
            scale[:, j] = w.scale(t_s)
        damping = self.base_damping * scale
        frictionloss = self.base_frictionloss * scale
        friction = -damping * qd  # = MuJoCo's qfrc_damper (the same product)
        if self._dry is not None:
            dry = self._dry[:n]  # recorded per step (offline only)
            friction[:, self._dry_joints] += dry
            for row in self._dry_full:
                if row < n:
                    friction[row, self._dry_joints] = dry[row]
        ext = np.zeros((n, self.ndof))
        for row, value in self._ext_rows:
            if row < n:
                ext[row] = value
        mass, com, inertia = np.zeros(n), np.zeros((n, 3)), np.zeros((n, 3))
        for ident, p in self._payloads.items():
            rows = self._rows(self.events[ident], t_ns)
            mass[rows], com[rows], inertia[rows] = p.mass, p.com, p.inertia
        dq = np.zeros((samples, self.ndof))
        dtau = np.zeros((samples, self.ndof))
        for k, (a, b) in enumerate(self._sample_errors[:samples]):
            dq[k], dtau[k] = a, b
        order = {ident: k for k, ident in enumerate(self.events)}
        return FaultTruth(
            joint_names=self.names,
            faults=tuple(sorted(self.events.values(), key=lambda e: order[e.id])),
            transitions=tuple(sorted(self.transitions, key=lambda e: e[0])),
            start_ns=self.epoch_ns,
            t_ns=np.asarray(t_ns),
            friction_scale=scale,
            damping=damping,
            frictionloss=frictionloss,
            friction_torque=friction,
            external_torque=ext,
            payload_body=self.payload_body_name,
            payload_mass=mass,
            payload_com=com,
            payload_inertia=inertia,
            position_error=dq,
            effort_error=dtau,
        )

    @staticmethod
    def _rows(event: FaultEvent, t_ns: np.ndarray) -> np.ndarray:
        end = np.iinfo(np.int64).max if event.end_ns is None else event.end_ns
        return (t_ns >= event.start_ns) & (t_ns < end)

    def live_records(self, host_ns: int, to_robot_ns: Any) -> list[dict[str, Any]]:
        """Live: the fault-truth records due after the plant step that started at ``host_ns``: a
        ``start`` / ``end`` record for each transition since the last call, and a ``state`` record if
        10 ms have passed since the last one. ``to_robot_ns`` maps host ns to the robot clock."""
        out = []
        new = self.transitions[self._live_seen :]
        self._live_seen = len(self.transitions)
        for at, what, ident in new:
            out.append(self._record(at, to_robot_ns(at), what, self.events[ident]))
        if self._next_state_ns is None or host_ns >= self._next_state_ns:
            out.append(self._record(host_ns, to_robot_ns(host_ns), "state", None))
            self._next_state_ns = host_ns + _STATE_PERIOD_NS
        return out

    def _record(self, host_ns: int, robot_ns: int, event: str, fault: FaultEvent | None) -> dict[str, Any]:
        active = list(self.active)
        if fault is not None and fault.kind == "encoder_jump" and event == "start":
            active.append(fault.id)
        return fault_record(
            host_ns,
            robot_ns,
            self.epoch_ns,
            event=event,
            fault=fault,
            active=active,
            names=list(self.names),
            friction_scale=self.scale,
            damping=self.base_damping * self.scale,
            frictionloss=self.base_frictionloss * self.scale,
            friction_torque=self.plant.friction_torque(),
            external_torque=self.external_torque,
            payload=self.payload_state,
        )


def constant_fault_truth(plant: Any, t_ns: np.ndarray, qd: np.ndarray, samples: int, start_ns: int) -> FaultTruth:
    """The `FaultTruth` of a run without faults: the plant's own friction, no loads, no payload."""
    n, ndof = len(t_ns), plant.ndof
    damping = np.broadcast_to(np.asarray(plant.nominal_damping, dtype=np.float64), (n, ndof)).copy()
    return FaultTruth(
        joint_names=tuple(plant.joint_names),
        faults=(),
        transitions=(),
        start_ns=int(start_ns),
        t_ns=np.asarray(t_ns),
        friction_scale=np.ones((n, ndof)),
        damping=damping,
        frictionloss=np.broadcast_to(np.asarray(plant.nominal_frictionloss, dtype=np.float64), (n, ndof)).copy(),
        friction_torque=-damping * qd,
        external_torque=np.zeros((n, ndof)),
        payload_body="",
        payload_mass=np.zeros(n),
        payload_com=np.zeros((n, 3)),
        payload_inertia=np.zeros((n, 3)),
        position_error=np.zeros((samples, ndof)),
        effort_error=np.zeros((samples, ndof)),
    )
