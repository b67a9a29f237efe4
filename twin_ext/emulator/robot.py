"""`EmulatedRobot`: the physical robot's stand-in -- plant, controller, sensors, network, MQTT.

One engine, two ways to run it:

* offline, `EmulatedRobot.simulate` -- faster than real time and deterministic for a seed: returns the
  impaired delivery schedule (``[Delivery(arrival_ns, topic, payload, ...)]``, host ns) plus ground
  truth arrays at every plant step, so estimator tests can feed ``TelemetryIngest.on_payload`` directly;
* live, `EmulatedRobot.run` / `start` -- the same engine paced by the host's monotonic clock, publishing
  to an MQTT broker with paho-mqtt 2.x: retained birth (new boot id at every start), retained
  ``online`` status with an ``offline`` last will, joint states at their scheduled arrival times
  (holding messages back is what makes latency, jitter and reordering real over one TCP connection),
  and, only when ``accept_commands`` is set, the command topic.

Time. Host time is ``time.monotonic_ns()`` live and ``start_ns + n * timestep`` offline. Plant step
``n`` covers ``[t_n, t_n + timestep)``; the sample taken at step ``n`` carries the state at ``t_n``
and the stamp ``RobotClock.to_robot_ns(t_n)``. Ground truth has both clocks.
"""

from __future__ import annotations

import collections
import heapq
import itertools
import logging
import math
import queue
import random
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from ..trajectory import JointTrajectory
from .controller import CommandRejected, MotionController
from .impairments import ImpairedChannel, ImpairmentProfile, RobotClock, SensorNoise
from .settings import EmulatorSettings

__all__ = [
    "TRUTH_JSON_SCHEMA",
    "TRUTH_SCHEMA",
    "TRUTH_TOPIC",
    "CommandRecord",
    "Delivery",
    "EmulatedRobot",
    "EmulatorError",
    "RunSummary",
    "SampleLog",
    "Simulation",
    "Truth",
    "truth_record",
    "truth_records",
]

_log = logging.getLogger("twin_ext.emulator")

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
_SEQ_MODULUS = 2**32
_CONTROL_QOS = 1  # birth and status: retained, at-least-once


class EmulatorError(RuntimeError):
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


def make_plant(settings: EmulatorSettings):
    """The `MujocoPlant` the settings describe; a model that cannot load is an `EmulatorError`."""
    from .plant import MujocoPlant, PlantError

    try:
        return MujocoPlant(
            settings.mjcf_path,
            timestep=settings.timestep,
            gravity_compensation=settings.gravity_compensation,
            velocity_feedforward=settings.velocity_feedforward,
        )
    except PlantError as exc:
        raise EmulatorError(str(exc)) from None


# ---- codec access (the telemetry core owns the wire format) ---------------------------------------
def _wire() -> Any:
    from ..telemetry import codecs, messages, topics

    return codecs, messages, topics


class _Engine:
    """Plant + controller + sensors + channel, advanced step by step; emits `Delivery` items."""

    def __init__(
        self,
        settings: EmulatorSettings,
        profile: ImpairmentProfile,
        program: JointTrajectory,
        *,
        seed: int,
        epoch_ns: int,
        new_boot_id: Callable[[], str],
        plant: Any = None,
    ) -> None:
        from .plant import PANDA_VELOCITY_LIMITS

        self.codecs, self.messages, topics = _wire()
        self.settings = settings
        self.profile = profile
        self.plant = plant = plant if plant is not None else make_plant(settings)
        step_rate = 1.0 / settings.timestep
        if profile.rate_hz > step_rate + 1e-9:
            raise EmulatorError(
                f"telemetry rate {profile.rate_hz:g} Hz is above the plant's step rate {step_rate:g} Hz; "
                "lower the rate (--rate) or the emulator timestep"
            )
        from .controller import ControllerError

        try:
            self.controller = MotionController(
                program,
                joint_names=plant.joint_names,
                lower=plant.lower,
                upper=plant.upper,
                velocity_limits={n: v for n, v in PANDA_VELOCITY_LIMITS.items() if n in plant.joint_names},
                loop=settings.loop,
                ramp_s=settings.ramp_time,
                max_speed_override=settings.max_speed_override,
            )
        except ControllerError as exc:
            raise EmulatorError(f"program {settings.program_path}: {exc}") from None
        plant.reset(self.controller.initial_position())
        self.ndof = plant.ndof
        self.names = plant.joint_names
        self.topics = topics.Topics(settings.robot_id, prefix=settings.topic_prefix)
        self.encode = self.codecs.encode_json if settings.codec == "json" else self.codecs.encode_binary
        self.epoch_ns = int(epoch_ns)
        self.dt = settings.timestep
        self.dt_ns = round(settings.timestep * 1e9)
        self.clock = RobotClock.from_profile(profile, epoch_ns=self.epoch_ns)
        self.channel = ImpairedChannel(profile, seed=seed, epoch_ns=self.epoch_ns)
        self.noise = SensorNoise(profile, ndof=self.ndof, seed=seed)
        self.new_boot_id = new_boot_id
        self.n = 0  # plant steps done
        self.k = 0  # samples taken (time slots)
        self.sample_step = 0
        self.seq = profile.seq_start
        self.boot_index = 0
        self.boot_id = new_boot_id()
        self.online = True
        self.births: list[Any] = []
        self.heap: list[tuple[int, int, Delivery]] = []
        self._order = itertools.count()
        self.events: list[tuple[int, int, str, int]] = []  # (host_ns, order, kind, value)
        for r in profile.restarts:
            self.schedule_restart(self.epoch_ns + round(r.at_s * 1e9), round(r.down_s * 1e9))
        self.commands: collections.deque[tuple[int, Any]] = collections.deque()
        self.command_log: list[CommandRecord] = []
        self.dropped_in_restart = 0
        self.on_truth: Callable[..., None] | None = None
        self.on_sample: Callable[..., None] | None = None
        self._announce(self.epoch_ns)

    # ---- scheduling -----------------------------------------------------------------------------
    def step_ns(self, n: int | None = None) -> int:
        return self.epoch_ns + (self.n if n is None else n) * self.dt_ns

    def next_sample_ns(self) -> int:
        return self.step_ns(self.sample_step)

    def next_due_ns(self) -> int | None:
        return self.heap[0][0] if self.heap else None

    def schedule_restart(self, at_ns: int, down_ns: int) -> None:
        heapq.heappush(self.events, (int(at_ns), next(self._order), "down", int(down_ns)))

    def submit_command(self, at_ns: int, command: Any) -> None:
        self.commands.append((int(at_ns), command))

    def pop_due(self, until_ns: int | None = None) -> list[Delivery]:
        out = []
        while self.heap and (until_ns is None or self.heap[0][0] <= until_ns):
            out.append(heapq.heappop(self.heap)[2])
        return out

    def _push(self, delivery: Delivery) -> None:
        heapq.heappush(self.heap, (delivery.arrival_ns, next(self._order), delivery))

    # ---- boots ----------------------------------------------------------------------------------
    def _announce(self, at_ns: int) -> None:
        m, c = self.messages, self.codecs
        birth = m.Birth(
            robot_id=self.settings.robot_id,
            model_id=self.settings.model_id,
            joint_names=self.names,
            rate_hz=float(self.profile.rate_hz),
            boot_id=self.boot_id,
            codec=self.settings.codec,
        )
        self.births.append(birth)
        online = m.Status(robot_id=self.settings.robot_id, state="online", boot_id=self.boot_id)
        self._push(Delivery(at_ns, self.topics.birth, c.encode_birth(birth), True, "birth", self.boot_id))
        self._push(Delivery(at_ns, self.topics.status, c.encode_status(online), True, "online", self.boot_id))
        _log.debug("robot %s boot %s online", self.settings.robot_id, self.boot_id)

    def offline_delivery(self, at_ns: int) -> Delivery:
        status = self.messages.Status(robot_id=self.settings.robot_id, state="offline", boot_id=self.boot_id)
        return Delivery(at_ns, self.topics.status, self.codecs.encode_status(status), True, "offline", self.boot_id)

    def _handle_event(self, at_ns: int, kind: str, value: int) -> None:
        if kind == "down":
            if not self.online:
                return

            # The emulated network lives in the robot: samples it still holds die with the process.
            def held(e: tuple[int, int, Delivery]) -> bool:
                return e[0] > at_ns and e[2].kind == "joint_states" and e[2].boot_id == self.boot_id

            kept = [e for e in self.heap if not held(e)]
            if len(kept) != len(self.heap):
                self.dropped_in_restart += len(self.heap) - len(kept)
                self.heap = kept
                heapq.heapify(self.heap)
            self._push(self.offline_delivery(at_ns))
            self.online = False
            _log.debug("robot %s restarting: offline for %.3g s", self.settings.robot_id, value / 1e9)
            heapq.heappush(self.events, (at_ns + value, next(self._order), "up", 0))
        elif kind == "up":
            self.boot_index += 1
            self.boot_id = self.new_boot_id()
            self.seq = 0
            self.online = True
            self._announce(at_ns)

    # ---- commands -------------------------------------------------------------------------------
    def _handle_command(self, at_ns: int, command: Any) -> None:
        from ..telemetry.commands import CommandError, MoveTo, Resume, SpeedOverride, Stop, decode_command

        def reject(reason: str, detail: str) -> None:
            self.command_log.append(CommandRecord(at_ns, False, reason, detail))
            _log.warning("command rejected (%s): %s", reason, detail)

        if not self.settings.accept_commands:
            reject("commands_disabled", "this robot ignores commands; start the emulator with --accept-commands")
            return
        if isinstance(command, (bytes, bytearray, memoryview)) and len(command) == 0:
            reject("empty", "empty command payload (a cleared retained message?)")
            return
        if isinstance(command, (bytes, bytearray, memoryview)):
            try:
                command = decode_command(command)
            except CommandError as exc:
                reject(exc.reason, exc.message)
                return
        ctrl = self.controller
        try:
            if isinstance(command, SpeedOverride):
                ctrl.set_speed_override(command.scale)
            elif isinstance(command, Stop):
                ctrl.stop()
            elif isinstance(command, Resume):
                ctrl.resume()
            elif isinstance(command, MoveTo):
                ctrl.move_to(command.names, command.position, command.duration_s)
            else:
                reject("unknown_type", f"not a command: {command!r}")
                return
        except CommandRejected as exc:
            reject(exc.reason, exc.message)
            return
        self.command_log.append(CommandRecord(at_ns, True, "", repr(command)))
        _log.info("command accepted: %r", command)

    # ---- the step -------------------------------------------------------------------------------
    def advance_to(self, host_ns: int) -> None:
        """Step the plant until its next step would start after ``host_ns``."""
        while self.step_ns() <= host_ns:
            self.step()

    def step(self) -> None:
        t = self.step_ns()
        while self.events and self.events[0][0] <= t:
            _, _, kind, value = heapq.heappop(self.events)
            self._handle_event(t, kind, value)
        while self.commands and self.commands[0][0] <= t:
            _, command = self.commands.popleft()
            self._handle_command(t, command)
        plant = self.plant
        q, qd = plant.q, plant.qd
        q_d, qd_d = self.controller.step(self.dt)
        tau = plant.step(q_d, qd_d)
        robot_t = self.clock.to_robot_ns(t)
        if self.on_truth is not None:
            self.on_truth(self.n, t, robot_t, q, qd, tau, q_d, qd_d)
        if self.n == self.sample_step:
            if self.online:
                self._sample(t, robot_t, q, qd, tau)
            self.k += 1
            self.sample_step = max(self.n + 1, round(self.k / (self.profile.rate_hz * self.dt)))
        self.n += 1

    def _sample(self, t: int, robot_t: int, q: np.ndarray, qd: np.ndarray, tau: np.ndarray) -> None:
        s = self.settings
        qm, qdm, taum = self.noise.apply(q, qd, tau)
        msg = self.messages.JointState(
            robot_id=s.robot_id,
            seq=self.seq,
            stamp_ns=robot_t,
            names=self.names,
            position=qm,
            velocity=qdm if s.publish_velocity else None,
            effort=taum if s.publish_effort else None,
        )
        payload = self.encode(msg)
        fates = self.channel.submit(t)
        for arrival, _copy in fates:
            self._push(Delivery(arrival, self.topics.joint_states, payload, False, "joint_states", self.boot_id))
        if self.on_sample is not None:
            self.on_sample(t, robot_t, self.seq, self.boot_index, self.n, fates, qm)
        self.seq = (self.seq + 1) % _SEQ_MODULUS


# ---- the public class ---------------------------------------------------------------------------------
class EmulatedRobot:
    """A MuJoCo Panda running a pick-and-place program, publishing impaired telemetry.

    Args:
        settings: `EmulatorSettings` (robot id, codec, QoS, commands, plant options, ...).
        profile: `ImpairmentProfile` (rate, latency, loss, clock, noise, events); default: none.
        program: the motion program; default: ``settings.program_path`` (the pick-and-place cycle).

    Offline: `simulate`. Live: `run` (blocking) or `start` / `stop` (background thread); while live,
    `request_restart` and `request_clock_jump` inject a robot restart or a clock jump.
    """

    def __init__(
        self,
        settings: EmulatorSettings | None = None,
        *,
        profile: ImpairmentProfile | None = None,
        program: JointTrajectory | None = None,
    ) -> None:
        self.settings = settings or EmulatorSettings()
        self.profile = profile or ImpairmentProfile()
        step_rate = 1.0 / self.settings.timestep
        if self.profile.rate_hz > step_rate + 1e-9:
            raise EmulatorError(
                f"telemetry rate {self.profile.rate_hz:g} Hz is above the plant's step rate {step_rate:g} Hz; "
                "lower the rate (--rate) or the emulator timestep"
            )
        if program is None:
            from ..trajectory import TrajectoryError

            try:
                program = JointTrajectory.from_toml(self.settings.program_path)
            except TrajectoryError as exc:
                raise EmulatorError(str(exc)) from None
        self.program = program
        self._stop = threading.Event()
        self._triggers: queue.SimpleQueue[tuple[str, float]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._looping = threading.Event()  # set from a live run's first loop turn until its clean-up is done
        self._result: RunSummary | BaseException | None = None
        self._engine: _Engine | None = None  # of the live run in progress (for `commands`)

    @property
    def running(self) -> bool:
        """Live: True from a run's first publish-loop turn until its clean-up ('offline', truth file) is done.

        While it is True, `request_stop` ends the run cleanly.
        """
        return self._looping.is_set()

    @property
    def stop_requested(self) -> bool:
        """Live: True once `request_stop` was called for the run in progress."""
        return self._stop.is_set()

    @property
    def commands(self) -> tuple[CommandRecord, ...]:
        """Live: what happened to each command received so far in the current (or last) run."""
        engine = self._engine
        return tuple(engine.command_log) if engine is not None else ()

    # ---- offline ----------------------------------------------------------------------------------
    def simulate(
        self,
        duration_s: float,
        *,
        seed: int | None = None,
        start_ns: int = 0,
        commands: Iterable[tuple[float, Any]] = (),
    ) -> Simulation:
        """Run ``duration_s`` s of robot time as fast as possible; deterministic for ``seed``.

        Args:
            duration_s: s of simulated time (rounded to whole plant steps).
            seed: random seed (default: the profile's ``seed``); also derives the boot ids.
            start_ns: host ns of the first step (the offline host clock starts here).
            commands: ``[(at_s, command)]`` with ``at_s`` s from the start and ``command`` a payload
                (bytes, as received on the command topic) or a `twin_ext.telemetry.commands` object;
                obeyed only when ``settings.accept_commands``.

        Returns:
            `Simulation`: the delivery schedule, ground truth and sample log.
        """
        if not (isinstance(duration_s, (int, float)) and math.isfinite(duration_s) and duration_s > 0):
            raise EmulatorError(f"duration_s must be a positive number of seconds, got {duration_s!r}")
        seed = self.profile.seed if seed is None else int(seed)
        boot_rng = random.Random(seed)
        engine = _Engine(
            self.settings,
            self.profile,
            self.program,
            seed=seed,
            epoch_ns=start_ns,
            new_boot_id=lambda: uuid.UUID(int=boot_rng.getrandbits(128), version=4).hex,
        )
        steps = max(1, round(duration_s / self.settings.timestep))
        ndof = engine.ndof
        t_ns = np.empty(steps, np.int64)
        robot_ns = np.empty(steps, np.int64)
        arrays = {k: np.empty((steps, ndof)) for k in ("q", "qd", "tau", "q_target", "qd_target")}

        def on_truth(n, t, rt, q, qd, tau, q_d, qd_d):
            t_ns[n], robot_ns[n] = t, rt
            arrays["q"][n], arrays["qd"][n], arrays["tau"][n] = q, qd, tau
            arrays["q_target"][n], arrays["qd_target"][n] = q_d, qd_d

        rows: list[tuple[int, int, int, int, int, int, int]] = []
        positions: list[np.ndarray] = []

        def on_sample(t, rt, seq, boot, n, fates, qm):
            rows.append((t, rt, seq, boot, n, len(fates), fates[0][0] if fates else -1))
            positions.append(qm)

        engine.on_truth, engine.on_sample = on_truth, on_sample
        for at_s, command in sorted(commands, key=lambda c: c[0]):
            engine.submit_command(start_ns + round(float(at_s) * 1e9), command)
        for _ in range(steps):
            engine.step()
        end_ns = engine.step_ns()
        deliveries = engine.pop_due(None)
        deliveries.append(engine.offline_delivery(end_ns))  # a clean shutdown at the end of the run
        deliveries.sort(key=lambda d: d.arrival_ns)  # stable: ties keep send order
        cols = np.array(rows, dtype=np.int64).reshape(-1, 7)
        samples = SampleLog(
            host_ns=cols[:, 0],
            stamp_ns=cols[:, 1],
            seq=cols[:, 2],
            boot=cols[:, 3],
            step=cols[:, 4],
            copies=cols[:, 5],
            first_arrival_ns=cols[:, 6],
            position=np.array(positions).reshape(-1, ndof),
        )
        truth = Truth(engine.names, t_ns, robot_ns, **arrays)
        return Simulation(
            deliveries=tuple(deliveries),
            truth=truth,
            samples=samples,
            births=tuple(engine.births),
            commands=tuple(engine.command_log),
            channel={**engine.channel.stats.as_dict(), "dropped_in_restart": engine.dropped_in_restart},
            profile=self.profile,
            settings=self.settings,
            seed=seed,
            start_ns=start_ns,
            end_ns=end_ns,
        )

    # ---- live ---------------------------------------------------------------------------------------
    def request_restart(self, down_s: float = 1.0) -> None:
        """Live: restart the robot's telemetry now (offline ``down_s`` s, then a new birth, seq from 0)."""
        self._triggers.put(("restart", float(down_s)))

    def request_clock_jump(self, step_ms: float) -> None:
        """Live: make the robot clock jump by ``step_ms`` ms now."""
        self._triggers.put(("clock_jump", float(step_ms)))

    def request_stop(self) -> None:
        """Live: end the run (publishes ``offline`` and disconnects)."""
        self._stop.set()

    def start(
        self,
        broker_url: str,
        *,
        duration_s: float | None = None,
        seed: int | None = None,
        truth: str | Path | Any | None = None,
        progress_every_s: float = 5.0,
        timeout_s: float = 10.0,
    ) -> None:
        """Run live in a background thread (arguments as `run`); returns once connected and publishing.

        Raises:
            EmulatorError: the broker is unreachable or refused us, or nothing happened within ``timeout_s`` s.
        """
        run_kwargs = dict(duration_s=duration_s, seed=seed, truth=truth, progress_every_s=progress_every_s)
        if self._thread is not None and self._thread.is_alive():
            raise EmulatorError("this emulated robot is already running; call stop() first")
        self._stop.clear()
        self._ready.clear()
        self._result = None

        def main() -> None:
            try:
                self._result = self._run_live(broker_url, **run_kwargs)
            except BaseException as exc:  # reported by start()/stop()
                self._result = exc
                self._ready.set()

        self._thread = threading.Thread(target=main, name=f"twin_ext-emulator-{self.settings.robot_id}", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout_s):
            self.request_stop()
            raise EmulatorError(f"the emulator did not connect to {broker_url} within {timeout_s:g} s")
        if isinstance(self._result, BaseException):
            error, self._result = self._result, None
            self._thread.join(timeout_s)
            self._thread = None
            raise error

    def stop(self, timeout_s: float = 10.0) -> RunSummary | None:
        """End a `start`-ed run and return its summary (None if it was not running)."""
        thread = self._thread
        if thread is None:
            return None
        self._stop.set()
        thread.join(timeout_s)
        if thread.is_alive():
            raise EmulatorError(f"the emulator thread did not stop within {timeout_s:g} s")
        self._thread = None
        result, self._result = self._result, None
        if isinstance(result, BaseException):
            raise result
        return result

    def run(
        self,
        broker_url: str,
        *,
        duration_s: float | None = None,
        seed: int | None = None,
        truth: str | Path | Any | None = None,
        progress_every_s: float = 5.0,
    ) -> RunSummary:
        """Run live, publishing to ``broker_url`` until ``duration_s`` elapses or `request_stop`.

        Args:
            broker_url: ``mqtt://[user[:password]@]host[:port]`` (port 1883 by default).
            duration_s: s to run; None runs until `request_stop` (or Ctrl-C in the CLI).
            seed: impairment seed (default: the profile's).
            truth: where to record ground truth (channel `TRUTH_TOPIC`, ``settings.truth_rate_hz``):
                an MCAP path, or an object with ``record_json(topic, obj, log_time_ns, schema_name, *,
                schema)`` (e.g. a shared, thread-safe ``McapRecorder``; it is not closed here).
            progress_every_s: s between progress log lines (0 = none).

        Raises:
            EmulatorError: bad URL, unreachable broker, refused connection.
        """
        self._stop.clear()  # a stop requested for an earlier run does not end this one
        return self._run_live(
            broker_url, duration_s=duration_s, seed=seed, truth=truth, progress_every_s=progress_every_s
        )

    def _run_live(self, broker_url: str, **kwargs: Any) -> RunSummary:
        from ._live import LiveRun

        return LiveRun(self, broker_url, **kwargs).execute()
