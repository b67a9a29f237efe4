# SPDX-License-Identifier: Apache-2.0
"""What the emulator produces: deliveries (message + arrival time), ground truth, run summaries, truth records."""

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
