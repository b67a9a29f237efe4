# SPDX-License-Identifier: Apache-2.0
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

Faults (the profile's ``[faults]``): offline, ``Simulation.faults`` is their ground truth (`FaultTruth`);
live, a truth recording also gets channel ``truth/faults`` (`FAULTS_TOPIC`): the live run's truth
recorder is wrapped here so that each truth record is followed by the fault records due then.
"""

from __future__ import annotations

import logging
import math
import queue
import random
import threading
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from ..robot import JointTrajectory
from ..telemetry import McapRecorder
from ._engine import _Engine
from ._fault_runner import constant_fault_truth
from ._impairments import ImpairmentProfile
from ._live import LiveRun
from ._records import (
    FAULTS_JSON_SCHEMA,
    FAULTS_SCHEMA,
    FAULTS_TOPIC,
    TRUTH_TOPIC,
    CommandRecord,
    EmulatorError,
    RunSummary,
    SampleLog,
    Simulation,
    Truth,
)
from ._settings import EmulatorSettings

__all__ = ["EmulatedRobot"]

_log = logging.getLogger("twin_ext.emulator")


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
            from ..robot import TrajectoryError

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
        if engine.faults is not None:
            engine.faults.start_recording(steps)
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
        if engine.faults is not None:
            faults = engine.faults.truth(t_ns, arrays["qd"], len(samples))
        else:
            faults = constant_fault_truth(engine.plant, t_ns, arrays["qd"], len(samples), start_ns)
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
            faults=faults,
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
        truth = kwargs.get("truth")
        if self.profile.faults.is_empty or truth is None or self.settings.truth_rate_hz == 0:
            return LiveRun(self, broker_url, **kwargs).execute()
        tee = _FaultTruthTee(self, truth)
        run = LiveRun(self, broker_url, **{**kwargs, "truth": tee})  # checks the URL and duration first
        # and the faults fit the robot (as the live run's own pre-flight does) before the file is created
        _Engine(self.settings, self.profile, self.program, seed=0, epoch_ns=0, new_boot_id=lambda: "preflight")
        tee.open()
        try:
            return run.execute()
        finally:
            tee.close()


class _FaultTruthTee:
    """The live truth target with fault truth added: forwards every record to the real target (an MCAP
    path, opened here, or a shared recorder) and after each ``truth/joint_states`` record writes the
    fault records due (`FaultRunner.live_records` of the run's engine) on `FAULTS_TOPIC`."""

    def __init__(self, robot: EmulatedRobot, target: str | Path | Any) -> None:
        self.robot = robot
        self.target = target
        self.recorder: Any = None
        self.owned = False

    def open(self) -> None:
        if hasattr(self.target, "record_json"):
            self.recorder = self.target
        else:
            self.recorder, self.owned = McapRecorder(Path(self.target)), True

    def close(self) -> None:
        if self.owned and self.recorder is not None:
            self.recorder.close()

    def record_json(self, topic: str, obj: dict, log_time_ns: int, schema_name: str, *, schema: dict | None = None):
        self.recorder.record_json(topic, obj, log_time_ns, schema_name, schema=schema)
        engine = self.robot._engine
        if topic != TRUTH_TOPIC or engine is None or engine.faults is None:
            return
        for record in engine.faults.live_records(int(obj["host_ns"]), engine.clock.to_robot_ns):
            self.recorder.record_json(FAULTS_TOPIC, record, record["host_ns"], FAULTS_SCHEMA, schema=FAULTS_JSON_SCHEMA)
