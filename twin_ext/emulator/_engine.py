# SPDX-License-Identifier: Apache-2.0
"""The emulator's engine: plant + controller + sensors + impaired channel, advanced one plant step at a time.

Time. Host time is ``time.monotonic_ns()`` live and ``start_ns + n * timestep`` offline. Plant step ``n``
covers ``[t_n, t_n + timestep)``; the sample taken at step ``n`` carries the state at ``t_n`` and the stamp
``RobotClock.to_robot_ns(t_n)``. Ground truth has both clocks.

Faults. When the profile has a ``[faults]`` table the engine owns a `FaultRunner` (``faults``): plant faults
are applied before each plant step and read back after it; sensor faults change the published position
and effort of each sample after the sensor noise. Without faults ``faults`` is None and costs nothing.
"""

from __future__ import annotations

import collections
import heapq
import itertools
import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from ..control import CommandAck, encode_ack
from ..robot import JointTrajectory
from ..telemetry import (
    Birth,
    CommandError,
    JointState,
    MoveTo,
    Resume,
    SpeedOverride,
    Status,
    Stop,
    Topics,
    decode_command,
    encode_binary,
    encode_birth,
    encode_json,
    encode_status,
)
from ._controller import CommandRejected, ControllerError, MotionController
from ._fault_runner import FaultRunner
from ._impairments import ImpairedChannel, ImpairmentProfile, RobotClock, SensorNoise
from ._plant import PANDA_VELOCITY_LIMITS, MujocoPlant, PlantError
from ._records import CommandRecord, Delivery, EmulatorError
from ._settings import EmulatorSettings

_REMEMBERED_IDS = 4096  # command ids whose state the robot keeps (a re-delivery older than this is a new id)
_log = logging.getLogger("twin_ext.emulator")

_SEQ_MODULUS = 2**32
_CONTROL_QOS = 1  # birth and status: retained, at-least-once


def make_plant(settings: EmulatorSettings):
    """The `MujocoPlant` the settings describe; a model that cannot load is an `EmulatorError`."""
    try:
        return MujocoPlant(
            settings.mjcf_path,
            timestep=settings.timestep,
            gravity_compensation=settings.gravity_compensation,
            velocity_feedforward=settings.velocity_feedforward,
        )
    except PlantError as exc:
        raise EmulatorError(str(exc)) from None


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
        self.settings = settings
        self.profile = profile
        self.plant = plant = plant if plant is not None else make_plant(settings)
        step_rate = 1.0 / settings.timestep
        if profile.rate_hz > step_rate + 1e-9:
            raise EmulatorError(
                f"telemetry rate {profile.rate_hz:g} Hz is above the plant's step rate {step_rate:g} Hz; "
                "lower the rate (--rate) or the emulator timestep"
            )
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
        self.dt_ns = round(settings.timestep * 1e9)
        self.faults: FaultRunner | None = None
        dry = np.any(np.asarray(getattr(plant, "nominal_frictionloss", 0.0)) > 0.0)  # its truth is read per step
        if not profile.faults.is_empty or dry:  # may add a payload body to the plant (which resets it)
            self.faults = FaultRunner(profile.faults, plant, epoch_ns=epoch_ns, dt_ns=self.dt_ns)
        plant.reset(self.controller.initial_position())  # also undoes the faults of an earlier run
        if self.faults is not None:
            self.faults.reset()
        self.ndof = plant.ndof
        self.names = plant.joint_names
        self.topics = Topics(settings.robot_id, prefix=settings.topic_prefix)
        self.encode = encode_json if settings.codec == "json" else encode_binary
        self.epoch_ns = int(epoch_ns)
        self.dt = settings.timestep
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
        # The robot side of docs/control.md: the last state of each command id (an id is executed at most once;
        # a re-delivery is answered with its state), and the move_to in progress with its lease (robot ns).
        self.command_states: collections.OrderedDict[str, str] = collections.OrderedDict()
        self.active_move: tuple[str, int | None] | None = None
        self.acks_sent = 0
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
        birth = Birth(
            robot_id=self.settings.robot_id,
            model_id=self.settings.model_id,
            joint_names=self.names,
            rate_hz=float(self.profile.rate_hz),
            boot_id=self.boot_id,
            codec=self.settings.codec,
        )
        self.births.append(birth)
        online = Status(robot_id=self.settings.robot_id, state="online", boot_id=self.boot_id)
        self._push(Delivery(at_ns, self.topics.birth, encode_birth(birth), True, "birth", self.boot_id))
        self._push(Delivery(at_ns, self.topics.status, encode_status(online), True, "online", self.boot_id))
        _log.debug("robot %s boot %s online", self.settings.robot_id, self.boot_id)

    def offline_delivery(self, at_ns: int) -> Delivery:
        status = Status(robot_id=self.settings.robot_id, state="offline", boot_id=self.boot_id)
        return Delivery(at_ns, self.topics.status, encode_status(status), True, "offline", self.boot_id)

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
    def _ack(self, at_ns: int, command_id: str, state: str, reason: str = "", detail: str = "") -> None:
        """Queue an acknowledgement on ``command/ack`` (commands without an id are not acknowledged)."""
        if not command_id:
            return
        self.command_states[command_id] = state
        self.command_states.move_to_end(command_id)
        while len(self.command_states) > _REMEMBERED_IDS:
            self.command_states.popitem(last=False)
        ack = CommandAck(command_id, state, reason, detail, stamp_ns=self.clock.to_robot_ns(at_ns))
        self._push(Delivery(at_ns, self.topics.command_ack, encode_ack(ack), False, "ack", self.boot_id))
        self.acks_sent += 1

    def _handle_command(self, at_ns: int, command: Any) -> None:
        command_id = ""

        def reject(reason: str, detail: str) -> None:
            self.command_log.append(CommandRecord(at_ns, False, reason, detail))
            _log.warning("command rejected (%s): %s", reason, detail)
            self._ack(at_ns, command_id, "rejected", reason, detail)

        if isinstance(command, (bytes, bytearray, memoryview)) and len(command) == 0:
            reject("empty", "empty command payload (a cleared retained message?)")
            return
        if isinstance(command, (bytes, bytearray, memoryview)):
            try:
                command = decode_command(command)
            except CommandError as exc:
                reject(exc.reason, exc.message)
                return
        command_id = getattr(command, "id", "")
        if command_id and command_id in self.command_states:
            # Re-delivered (a broker restart, a twin re-sending): never executed twice, answered with its state.
            state = self.command_states[command_id]
            self.command_log.append(CommandRecord(at_ns, False, "duplicate", f"id {command_id!r} is {state}"))
            self._ack(at_ns, command_id, state, "duplicate" if state not in ("rejected", "failed") else "")
            return
        if not self.settings.accept_commands:
            reject("commands_disabled", "this robot ignores commands; start the emulator with --accept-commands")
            return
        robot_now = self.clock.to_robot_ns(at_ns)
        lease = getattr(command, "valid_until_ns", None)
        if lease is not None and robot_now > lease and not isinstance(command, Stop):
            reject(
                "lease_expired",
                f"arrived {(robot_now - lease) / 1e9:.3f} s after its lease (valid_until_ns {lease}, robot clock)",
            )
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
        if self.active_move is not None and isinstance(command, (Stop, MoveTo)):
            previous, _ = self.active_move
            self.active_move = None
            why = "stopped" if isinstance(command, Stop) else "preempted"
            self._ack(at_ns, previous, "failed", why, f"a {type(command).__name__} ({command_id or 'no id'}) ended it")
        self._ack(at_ns, command_id, "received")
        self._ack(at_ns, command_id, "started")
        if isinstance(command, MoveTo):
            if command_id or lease is not None:
                self.active_move = (command_id, lease)
        else:
            self._ack(at_ns, command_id, "done")

    def _follow_move(self, at_ns: int) -> None:
        """The move_to in progress: ``done`` at its target; held (controlled stop) if its lease runs out first."""
        command_id, lease = self.active_move
        if self.controller.move_finished:
            self.active_move = None
            self._ack(at_ns, command_id, "done")
            return
        robot_now = self.clock.to_robot_ns(at_ns)
        if lease is not None and robot_now > lease:
            self.active_move = None
            self.controller.stop()
            detail = (
                f"its lease ran out (robot clock {robot_now} ns > valid_until_ns {lease}) before the move finished "
                f"({self.controller.move_progress:.0%} done): holding (send resume to continue)"
            )
            self.command_log.append(CommandRecord(at_ns, False, "lease_expired", detail))
            _log.warning("move_to %s: %s", command_id or "(no id)", detail)
            self._ack(at_ns, command_id, "failed", "lease_expired", detail)

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
        if self.active_move is not None:
            self._follow_move(t)
        plant = self.plant
        q, qd = plant.q, plant.qd
        q_d, qd_d = self.controller.step(self.dt)
        faults = self.faults
        if faults is not None:
            faults.before_step(self.n)
        tau = plant.step(q_d, qd_d)
        if faults is not None:
            faults.after_step(self.n)
        robot_t = self.clock.to_robot_ns(t)
        if self.on_truth is not None:
            self.on_truth(self.n, t, robot_t, q, qd, tau, q_d, qd_d)
        if self.n == self.sample_step:
            if self.online:
                self._sample(t, robot_t, q, qd, tau, q_d, qd_d)
            self.k += 1
            self.sample_step = max(self.n + 1, round(self.k / (self.profile.rate_hz * self.dt)))
        self.n += 1

    def _sample(
        self,
        t: int,
        robot_t: int,
        q: np.ndarray,
        qd: np.ndarray,
        tau: np.ndarray,
        q_d: np.ndarray | None = None,
        qd_d: np.ndarray | None = None,
    ) -> None:
        """Publish the sample of step time ``t``: measured ``q``/``qd``/``tau`` ``[ndof]`` and, with
        ``publish_reference``, the controller's targets ``q_d``/``qd_d`` ``[ndof]`` of the same step (rad|m, rad/s|m/s)."""
        s = self.settings
        reference = s.publish_reference and q_d is not None
        qm, qdm, taum = self.noise.apply(q, qd, tau)
        if self.faults is not None:
            qm, taum = self.faults.on_sample(t, self.seq, self.boot_index, qm, taum)
        msg = JointState(
            robot_id=s.robot_id,
            seq=self.seq,
            stamp_ns=robot_t,
            names=self.names,
            position=qm,
            velocity=qdm if s.publish_velocity else None,
            effort=taum if s.publish_effort else None,
            reference_position=q_d if reference else None,
            reference_velocity=qd_d if reference else None,
        )
        payload = self.encode(msg)
        fates = self.channel.submit(t)
        for arrival, _copy in fates:
            self._push(Delivery(arrival, self.topics.joint_states, payload, False, "joint_states", self.boot_id))
        if self.on_sample is not None:
            self.on_sample(t, robot_t, self.seq, self.boot_index, self.n, fates, qm)
        self.seq = (self.seq + 1) % _SEQ_MODULUS
