# SPDX-License-Identifier: Apache-2.0
"""What the emulator produces: deliveries (message + arrival time), ground truth, run summaries, truth records.

Faults (docs/emulator.md, "Faults"): `FaultTruth` is the offline ground truth of every fault
(``Simulation.faults``); `fault_record` / `fault_records` give the JSON records of the truth channel
`FAULTS_TOPIC` (schema `FAULTS_JSON_SCHEMA`), written live beside ``truth/joint_states``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from .. import TwinExtError
from ._impairments import ImpairmentProfile
from ._settings import EmulatorSettings

TRUTH_TOPIC = "truth/joint_states"
"""MCAP channel of the recorded ground truth (JSON, schema `TRUTH_SCHEMA`)."""
TRUTH_SCHEMA = "twin_ext.emulator.TruthJointState"
_NUMBERS = {"type": "array", "items": {"type": "number"}}
TRUTH_JSON_SCHEMA = {
    "title": "twin_ext emulator ground truth (one plant step)",
    "type": "object",
    "properties": {
        "host_ns": {"type": "integer", "description": "host monotonic clock, ns (the twin's clock on this machine)"},
        "robot_ns": {
            "type": "integer",
            "description": "robot clock at the same instant, ns (joint-state stamps use it)",
        },
        "names": {"type": "array", "items": {"type": "string"}},
        "position": {**_NUMBERS, "description": "rad | m"},
        "velocity": {**_NUMBERS, "description": "rad/s | m/s"},
        "effort": {**_NUMBERS, "description": "drive torque (servo + gravity compensation), N·m | N"},
        "target_position": {**_NUMBERS, "description": "controller target, rad | m"},
        "target_velocity": {**_NUMBERS, "description": "controller target velocity, rad/s | m/s"},
    },
    "required": [
        "host_ns",
        "robot_ns",
        "names",
        "position",
        "velocity",
        "effort",
        "target_position",
        "target_velocity",
    ],
    "additionalProperties": False,
}
"""JSON Schema of the truth channel (registered in the MCAP file)."""


FAULTS_TOPIC = "truth/faults"
"""MCAP channel of the faults' ground truth (JSON, schema `FAULTS_SCHEMA`)."""
FAULTS_SCHEMA = "twin_ext.emulator.TruthFaults"
_FAULT_JSON_SCHEMA = {
    "type": "object",
    "properties": {
        "id": {"type": "string", "description": "the fault's name, or '<kind>[i]' (its place in the profile)"},
        "kind": {
            "type": "string",
            "enum": ["wear", "collision", "payload", "encoder_jump", "encoder_stuck", "torque_bias"],
        },
        "joint": {"type": "string", "description": "the joint it acts on ('' for a link collision or a payload)"},
        "body": {"type": "string", "description": "the link it acts on ('' for a joint fault)"},
        "magnitude": {
            "type": "number",
            "description": "wear: rate_per_hour; collision: peak torque or |force|; payload: mass; "
            "encoder_jump: jump; encoder_stuck: duration; torque_bias: bias",
        },
        "unit": {"type": "string", "description": "unit of magnitude: 1/h, N·m, N, kg, rad, m, s"},
        "start_ns": {"type": "integer", "description": "host ns it takes effect (the first plant step or sample)"},
        "end_ns": {"type": ["integer", "null"], "description": "host ns it ends (null: to the end of the run)"},
        "start_s": {"type": "number", "description": "s from the start of the run"},
        "end_s": {"type": ["number", "null"]},
        "detail": {"type": "object", "description": "kind-specific parameters (docs/emulator.md, 'Faults')"},
    },
    "required": [
        "id",
        "kind",
        "joint",
        "body",
        "magnitude",
        "unit",
        "start_ns",
        "end_ns",
        "start_s",
        "end_s",
        "detail",
    ],
}
FAULTS_JSON_SCHEMA = {
    "title": "twin_ext emulator fault ground truth",
    "type": "object",
    "properties": {
        "host_ns": {"type": "integer", "description": "host monotonic clock, ns"},
        "robot_ns": {"type": "integer", "description": "robot clock at the same instant, ns"},
        "t_s": {"type": "number", "description": "s from the start of the run"},
        "event": {
            "type": "string",
            "enum": ["state", "start", "end"],
            "description": "state: periodic (100 Hz); start / end: `fault` began or ended at this instant",
        },
        "fault": {"oneOf": [{"type": "null"}, _FAULT_JSON_SCHEMA]},
        "active": {"type": "array", "items": {"type": "string"}, "description": "ids of the faults active now"},
        "names": {"type": "array", "items": {"type": "string"}},
        "friction_scale": {**_NUMBERS, "description": "s per joint: damping and dry friction are s times their base"},
        "damping": {**_NUMBERS, "description": "viscous damping in the plant now, N·m·s/rad | N·s/m"},
        "frictionloss": {**_NUMBERS, "description": "dry friction in the plant now, N·m | N"},
        "friction_torque": {
            **_NUMBERS,
            "description": "friction torque on each joint in this step (opposes motion), N·m | N",
        },
        "external_torque": {
            **_NUMBERS,
            "description": "joint torques of the collisions in this step (J^T F for link forces), N·m | N",
        },
        "payload": {
            "type": "object",
            "properties": {
                "body": {"type": "string"},
                "mass": {"type": "number", "description": "kg (0: none)"},
                "com": {**_NUMBERS, "description": "m, in the body's frame"},
                "inertia": {**_NUMBERS, "description": "principal moments about the com, kg·m²"},
            },
            "required": ["body", "mass", "com", "inertia"],
        },
    },
    "required": [
        "host_ns",
        "robot_ns",
        "t_s",
        "event",
        "fault",
        "active",
        "names",
        "friction_scale",
        "damping",
        "frictionloss",
        "friction_torque",
        "external_torque",
        "payload",
    ],
    "additionalProperties": False,
}
"""JSON Schema of the fault truth channel (registered in the MCAP file)."""


class EmulatorError(TwinExtError, RuntimeError):
    """The emulator cannot run (bad broker URL, unreachable broker, bad model/program/rate)."""


class Delivery(NamedTuple):
    """One message as it reaches the broker: when (host ns), where, what.

    ``kind`` is ``"joint_states"``, ``"birth"``, ``"online"`` or ``"offline"`` (the last two are status
    messages); ``retain`` is set for birth and status; ``boot_id`` is the sending boot.
    """

    arrival_ns: int
    topic: str
    payload: bytes
    retain: bool = False
    kind: str = "joint_states"
    boot_id: str = ""


class CommandRecord(NamedTuple):
    """What the robot did with one command payload (accepted, or rejected with a reason code)."""

    host_ns: int
    accepted: bool
    reason: str
    detail: str


@dataclass(frozen=True, eq=False)
class Truth:
    """Ground truth at every plant step (``N`` rows; ``ndof`` columns in `joint_names` order).

    Attributes:
        t_ns: ``[N]`` int64 host monotonic ns of each step's start.
        robot_ns: ``[N]`` int64 robot-clock ns at the same instants.
        q: ``[N, ndof]`` rad|m; qd: rad/s|m/s; tau: N·m|N drive torque (servo + gravity compensation).
        q_target, qd_target: ``[N, ndof]`` the controller's targets for the step.
    """

    joint_names: tuple[str, ...]
    t_ns: np.ndarray
    robot_ns: np.ndarray
    q: np.ndarray
    qd: np.ndarray
    tau: np.ndarray
    q_target: np.ndarray
    qd_target: np.ndarray

    def __len__(self) -> int:
        return len(self.t_ns)

    def interpolate(self, host_ns: np.ndarray | int) -> tuple[np.ndarray, np.ndarray]:
        """Linearly interpolated ``(q, qd)`` at host time(s) ``host_ns`` (``[...]`` -> ``[..., ndof]``).

        At the 1 kHz step rate the interpolation error is below ``|qdd| dt^2 / 8`` (< 1e-6 rad here).
        Times outside the run are clamped to its ends.
        """
        t = np.asarray(host_ns, dtype=np.float64)
        base = self.t_ns.astype(np.float64)
        flat = t.reshape(-1)
        q = np.stack([np.interp(flat, base, self.q[:, j]) for j in range(self.q.shape[1])], axis=-1)
        qd = np.stack([np.interp(flat, base, self.qd[:, j]) for j in range(self.qd.shape[1])], axis=-1)
        shape = t.shape + (self.q.shape[1],)
        return q.reshape(shape), qd.reshape(shape)


@dataclass(frozen=True, eq=False)
class SampleLog:
    """One row per telemetry sample the robot produced (``M`` rows), delivered or not.

    Attributes:
        host_ns, stamp_ns: ``[M]`` int64 host time and robot-clock stamp of the sampled state.
        seq: ``[M]`` int64 sequence number; boot: ``[M]`` boot index (0 = first boot).
        step: ``[M]`` int64 row of `Truth` the sample was taken from.
        copies: ``[M]`` int64 deliveries made (0 = lost or paused, 2 = duplicated).
        first_arrival_ns: ``[M]`` int64 arrival of the original copy (-1 if not delivered).
        position: ``[M, ndof]`` the published (noisy) positions.
    """

    host_ns: np.ndarray
    stamp_ns: np.ndarray
    seq: np.ndarray
    boot: np.ndarray
    step: np.ndarray
    copies: np.ndarray
    first_arrival_ns: np.ndarray
    position: np.ndarray

    def __len__(self) -> int:
        return len(self.host_ns)


class FaultEvent(NamedTuple):
    """One fault of the profile as it happened: what, where, how big, from when to when (host ns).

    ``kind`` is ``wear``, ``collision``, ``payload``, ``encoder_jump``, ``encoder_stuck`` or ``torque_bias``;
    ``joint`` / ``body`` say where (the other is ``""``); ``magnitude`` is in ``unit`` (wear: the rate,
    1/h; collision: peak torque N·m or peak |force| N; payload: kg; encoder_jump: rad | m;
    encoder_stuck: its duration, s; torque_bias: N·m | N); ``end_ns`` is None for a fault lasting to the
    end of the run; an encoder jump has ``start_ns == end_ns`` (the sample's host time). ``detail``
    holds the rest (docs/emulator.md, "Faults").
    """

    id: str
    kind: str
    joint: str
    body: str
    magnitude: float
    unit: str
    start_ns: int
    end_ns: int | None
    detail: dict[str, Any]

    def as_json(self, run_start_ns: int) -> dict[str, Any]:
        """The JSON object of the fault (schema `FAULTS_JSON_SCHEMA`, property ``fault``)."""
        return {
            "id": self.id,
            "kind": self.kind,
            "joint": self.joint,
            "body": self.body,
            "magnitude": float(self.magnitude),
            "unit": self.unit,
            "start_ns": int(self.start_ns),
            "end_ns": None if self.end_ns is None else int(self.end_ns),
            "start_s": (self.start_ns - run_start_ns) / 1e9,
            "end_s": None if self.end_ns is None else (self.end_ns - run_start_ns) / 1e9,
            "detail": self.detail,
        }


@dataclass(frozen=True, eq=False)
class FaultTruth:
    """Ground truth of the faults of an offline run (``Simulation.faults``); ``N`` plant steps (the rows
    of `Truth`), ``M`` samples (the rows of `SampleLog`), ``ndof`` columns in `joint_names` order.

    Attributes:
        faults: every fault of the profile (`FaultEvent`), in profile order.
        transitions: ``[(host_ns, "start" | "end", id)]`` in time order.
        t_ns: ``[N]`` host ns of each step (as ``Truth.t_ns``).
        friction_scale: ``[N, ndof]`` s; ``damping`` (N·m·s/rad) and ``frictionloss`` (N·m) are the plant's
            values, s times their base.
        friction_torque: ``[N, ndof]`` N·m, the friction torque on each joint (opposes motion).
        external_torque: ``[N, ndof]`` N·m, the collisions' joint torques (``J^T F`` for link forces).
        payload_mass: ``[N]`` kg; payload_com, payload_inertia: ``[N, 3]`` m (body frame), kg·m².
        payload_body: the body the payload hangs on (``""``: the profile has none).
        position_error, effort_error: ``[M, ndof]`` what the sensor faults added to each published sample
            (rad | m, N·m | N; the noise is not included).
    """

    joint_names: tuple[str, ...]
    faults: tuple[FaultEvent, ...]
    transitions: tuple[tuple[int, str, str], ...]
    start_ns: int
    t_ns: np.ndarray
    friction_scale: np.ndarray
    damping: np.ndarray
    frictionloss: np.ndarray
    friction_torque: np.ndarray
    external_torque: np.ndarray
    payload_body: str
    payload_mass: np.ndarray
    payload_com: np.ndarray
    payload_inertia: np.ndarray
    position_error: np.ndarray
    effort_error: np.ndarray

    def __len__(self) -> int:
        return len(self.faults)

    def fault(self, fault_id: str) -> FaultEvent:
        """The fault with id ``fault_id`` (its name, or ``"<kind>[i]"``)."""
        for f in self.faults:
            if f.id == fault_id:
                return f
        raise KeyError(f"no fault {fault_id!r}; the faults are {[f.id for f in self.faults]}")

    def active(self, fault_id: str) -> np.ndarray:
        """``[N]`` bool: the plant steps during which fault ``fault_id`` is in effect."""
        f = self.fault(fault_id)
        end = np.iinfo(np.int64).max if f.end_ns is None else f.end_ns
        if f.start_ns == end:
            return self.t_ns == f.start_ns
        return (self.t_ns >= f.start_ns) & (self.t_ns < end)


@dataclass(frozen=True, eq=False)
class Simulation:
    """The result of `EmulatedRobot.simulate`.

    Attributes:
        deliveries: every message in arrival order (ties keep send order).
        truth: ground truth at every plant step.
        samples: every produced sample and its fate.
        births: the birth of each boot, in order.
        commands: what happened to each command.
        channel: the impairment channel's counters (offered, lost, paused, backlogged, duplicated,
            delayed, delivered) plus ``dropped_in_restart`` (held samples that died with a restart).
        start_ns, end_ns: host ns of the run's start and end.
        faults: ground truth of the profile's faults (`FaultTruth`; no faults: constant friction, no loads).
    """

    deliveries: tuple[Delivery, ...]
    truth: Truth
    samples: SampleLog
    births: tuple[Any, ...]
    commands: tuple[CommandRecord, ...]
    channel: dict[str, int]
    profile: ImpairmentProfile
    settings: EmulatorSettings
    seed: int
    start_ns: int
    end_ns: int
    faults: FaultTruth | None = None

    @property
    def joint_state_deliveries(self) -> list[Delivery]:
        return [d for d in self.deliveries if d.kind == "joint_states"]

    def feed(self, ingest: Any) -> None:
        """Push every delivery into ``ingest.on_payload(topic, payload, arrival_ns)`` in arrival order."""
        for d in self.deliveries:
            ingest.on_payload(d.topic, d.payload, d.arrival_ns)


@dataclass(frozen=True)
class RunSummary:
    """Counters of a live run."""

    duration_s: float
    samples: int
    published: int
    lost: int
    paused: int
    duplicated: int
    dropped_in_restart: int
    publish_errors: int
    boots: int
    commands_accepted: int
    commands_rejected: int
    truth_records: int


def truth_record(
    host_ns: int,
    robot_ns: int,
    names: list[str],
    q: np.ndarray,
    qd: np.ndarray,
    tau: np.ndarray,
    q_target: np.ndarray,
    qd_target: np.ndarray,
) -> dict[str, Any]:
    """The JSON object of one ground-truth record (MCAP channel `TRUTH_TOPIC`, schema `TRUTH_SCHEMA`).

    Keys: ``host_ns``, ``robot_ns`` (int ns), ``names`` ``[ndof]``, ``position`` rad|m,
    ``velocity`` rad/s|m/s, ``effort`` N·m|N, ``target_position``, ``target_velocity`` (each ``[ndof]``).
    """
    return {
        "host_ns": int(host_ns),
        "robot_ns": int(robot_ns),
        "names": names,
        "position": q.tolist(),
        "velocity": qd.tolist(),
        "effort": tau.tolist(),
        "target_position": q_target.tolist(),
        "target_velocity": qd_target.tolist(),
    }


def truth_records(truth: Truth, *, rate_hz: float) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(log_time_ns, record)`` of every ``round(1 / (rate_hz * dt))``-th `Truth` row (for MCAP recording)."""
    if len(truth) < 2:
        every = 1
    else:
        dt = (truth.t_ns[1] - truth.t_ns[0]) / 1e9
        every = max(1, round(1.0 / (rate_hz * dt)))
    names = list(truth.joint_names)
    for n in range(0, len(truth), every):
        yield (
            int(truth.t_ns[n]),
            truth_record(
                truth.t_ns[n],
                truth.robot_ns[n],
                names,
                truth.q[n],
                truth.qd[n],
                truth.tau[n],
                truth.q_target[n],
                truth.qd_target[n],
            ),
        )


def fault_record(
    host_ns: int,
    robot_ns: int,
    run_start_ns: int,
    *,
    event: str,
    fault: FaultEvent | None,
    active: list[str],
    names: list[str],
    friction_scale: np.ndarray,
    damping: np.ndarray,
    frictionloss: np.ndarray,
    friction_torque: np.ndarray,
    external_torque: np.ndarray,
    payload: tuple[str, float, np.ndarray, np.ndarray],
) -> dict[str, Any]:
    """The JSON object of one fault-truth record (channel `FAULTS_TOPIC`, schema `FAULTS_JSON_SCHEMA`).

    ``event`` is ``"state"`` (periodic) or ``"start"`` / ``"end"`` of ``fault``; ``payload`` is
    ``(body, mass kg, com [3] m, inertia [3] kg·m²)``.
    """
    body, mass, com, inertia = payload
    return {
        "host_ns": int(host_ns),
        "robot_ns": int(robot_ns),
        "t_s": (int(host_ns) - int(run_start_ns)) / 1e9,
        "event": event,
        "fault": None if fault is None else fault.as_json(run_start_ns),
        "active": list(active),
        "names": names,
        "friction_scale": np.asarray(friction_scale, dtype=np.float64).tolist(),
        "damping": np.asarray(damping, dtype=np.float64).tolist(),
        "frictionloss": np.asarray(frictionloss, dtype=np.float64).tolist(),
        "friction_torque": np.asarray(friction_torque, dtype=np.float64).tolist(),
        "external_torque": np.asarray(external_torque, dtype=np.float64).tolist(),
        "payload": {
            "body": body,
            "mass": float(mass),
            "com": np.asarray(com, dtype=np.float64).tolist(),
            "inertia": np.asarray(inertia, dtype=np.float64).tolist(),
        },
    }


def fault_records(faults: FaultTruth, truth: Truth, *, rate_hz: float = 100.0) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(log_time_ns, record)`` of an offline run's fault truth, as a live run records it: a ``state``
    record every ``1 / rate_hz`` s of plant steps plus a ``start`` / ``end`` record at each transition,
    in time order (for writing `FAULTS_TOPIC` to an MCAP file beside `truth_records`)."""
    n = len(truth)
    if n == 0:
        return
    dt_ns = int(truth.t_ns[1] - truth.t_ns[0]) if n > 1 else 1
    every = max(1, round(1e9 / (rate_hz * dt_ns)))
    names = list(faults.joint_names)
    by_id = {f.id: f for f in faults.faults}
    transitions = sorted(faults.transitions, key=lambda e: e[0])
    spans = [(by_id[i], f.start_ns, np.iinfo(np.int64).max if f.end_ns is None else f.end_ns) for i, f in by_id.items()]

    def active_at(t: int) -> list[str]:
        return [f.id for f, a, b in spans if a <= t < b]

    def record(row: int, event: str, fault: FaultEvent | None, t: int | None = None) -> dict[str, Any]:
        robot = int(truth.robot_ns[row]) if t is None else int(truth.robot_ns[row]) + t - int(truth.t_ns[row])
        t = int(truth.t_ns[row]) if t is None else t
        active = active_at(t)
        if event == "start" and fault is not None and fault.id not in active:
            active.append(fault.id)  # an encoder jump: in effect for its one sample
        return fault_record(
            t,
            robot,
            faults.start_ns,
            event=event,
            fault=fault,
            active=active,
            names=names,
            friction_scale=faults.friction_scale[row],
            damping=faults.damping[row],
            frictionloss=faults.frictionloss[row],
            friction_torque=faults.friction_torque[row],
            external_torque=faults.external_torque[row],
            payload=(
                faults.payload_body,
                faults.payload_mass[row],
                faults.payload_com[row],
                faults.payload_inertia[row],
            ),
        )

    k = 0
    for row in range(0, n, every):
        t = int(truth.t_ns[row])
        while k < len(transitions) and transitions[k][0] <= t:
            at, event, fid = transitions[k]
            r = min(n - 1, max(0, (at - int(truth.t_ns[0])) // dt_ns))
            yield at, record(r, event, by_id[fid], at)
            k += 1
        yield t, record(row, "state", None)
    for at, event, fid in transitions[k:]:
        r = min(n - 1, max(0, (at - int(truth.t_ns[0])) // dt_ns))
        yield at, record(r, event, by_id[fid], at)
