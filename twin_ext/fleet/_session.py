# SPDX-License-Identifier: Apache-2.0
"""`FleetSession`: N robots in one process — one MQTT link, one tick loop, per-robot parts, shared history.

Assembly: ``[broker]``, ``[telemetry]`` (prefix, sizes), ``[clock]``, ``[estimator]``, ``[twin]``, ``[health]`` apply
to every robot; ``[fleet]`` says which robots (listed, or discovered from births), which USD per ``model_id``,
and which shard; ``[history]`` where the history goes. Robots discovered at run time are built on a loader
thread (loading a USD takes ~0.5 s), never on paho's network thread or in the tick.
"""

from __future__ import annotations

import dataclasses
import queue
import socket
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..config import ConfigError
from ..estimation import build_kalman_kernel
from ..health import BatchedHealthMonitor
from ..history import HistorySettings, HistoryWriter, open_store
from ..live import SessionError, TwinConfig, load_config
from ..robot import RobotModelError, load_robot
from ..telemetry import EventKind, MqttLink, TelemetryError, Topics, decode_birth
from ._batched_estimation import fuse_deferred, prepare_snapshots
from ._batched_health import judge_fleet_health
from ._batched_kalman_kernel import start_warm_up as start_fleet_kernel_warm_up
from ._robot import FleetRobot
from ._router import FleetRouter
from ._settings import FleetSettings
from ._view import fleet_rows

__all__ = ["FleetSession"]


class FleetSession:
    """A fleet twin.

    Args:
        config: the parsed `TwinConfig`; ``config.other`` carries ``[fleet]`` and ``[history]``.
        fleet, history: override those sections.
        base_dir: folder relative USD paths in ``[fleet] models`` resolve against (default: shipped files).
        models: preloaded ``{USD path or model_id: RobotModel}`` (tests, benchmarks).
        history_store: a store to write history to instead of the one ``[history]`` names.
        now_ns: the twin clock, int ns.

    Raises:
        SessionError: bad ``[fleet]``/``[history]`` settings or a configured robot's USD.
    """

    def __init__(
        self,
        config: TwinConfig,
        *,
        fleet: FleetSettings | None = None,
        history: HistorySettings | None = None,
        base_dir: Path | None = None,
        models: Mapping[str, Any] | None = None,
        history_store: Any = None,
        now_ns: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        try:
            self.fleet = fleet or FleetSettings.from_mapping(config.other.get("fleet"))
            self.history_settings = history or HistorySettings.from_mapping(config.other.get("history"))
        except ConfigError as exc:
            raise SessionError(str(exc)) from None
        self.config = config
        self.base_dir = base_dir
        self.now_ns = now_ns
        if config.estimator.kalman_backend == "warp":
            # Robots join on their first message: build the shared Kalman kernel now, in the background, so no
            # robot's estimator waits for the compile on the network or display thread.
            build_kalman_kernel(timeout_s=0.0)
            if self.fleet.batched_estimation:
                start_fleet_kernel_warm_up()  # the batched fusion step's kernel, likewise (NumPy until built)
        self._models: dict[str, Any] = dict(models or {})
        self._model_lock = threading.Lock()
        broker = config.broker
        if not broker.client_id:  # one stable client id per shard: two shards on one host must not share one
            host = "".join(c for c in socket.gethostname() if c.isalnum() or c in "-_")[:24] or "host"
            broker = dataclasses.replace(
                broker, client_id=f"twin_ext-{host}-fleet-{self.fleet.shard_index}of{self.fleet.shard_count}"
            )
        self.router = FleetRouter(
            prefix=config.telemetry.topic_prefix,
            shard_count=self.fleet.shard_count,
            shard_index=self.fleet.shard_index,
            max_rate_hz=self.fleet.max_rate_hz,
            on_new_robot=self._on_birth if self.fleet.discover else None,
            now_ns=now_ns,
        )
        self.link = MqttLink(self.router, broker, now_ns=now_ns)
        self.router.link = self.link
        self.robots: dict[str, FleetRobot] = {}
        self.refused: dict[str, str] = {}  # robot id -> why it is not mirrored (bad birth, unknown model, too many)
        self.history: HistoryWriter | None = None
        if history_store is not None or self.history_settings.enabled:
            store = history_store or open_store(self.history_settings)
            self.history = HistoryWriter(store, self.history_settings)
        self._births: queue.Queue[tuple[str, bytes] | None] = queue.Queue(maxsize=10_000)
        self._loader: threading.Thread | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        # Held while the robots' estimators change or are read for the display: by the fusion thread's steps and
        # by the display tick's estimation step (`advance`), never while health is judged.
        self._estimation_lock = threading.Lock()
        self._fuser: threading.Thread | None = None
        self._health_runner: threading.Thread | None = None
        self.health_ticks = 0  # health slots judged (each judges its share of the robots: `_judge_health`)
        self.router.notify_arrivals = self.fleet.fusion_rate_hz > 0
        self._fusion_period = 1.0 / self.fleet.fusion_rate_hz if self.fleet.fusion_rate_hz > 0 else 0.0
        self._next_fusion = 0.0  # time.monotonic() at which the next fusion step is due
        self._fusion_cpu_s = 0.0  # smoothed thread CPU time of one fusion step, s (sets the period: fusion_cpu_share)
        self._last_fusion_cpu_s = 0.0
        self.fusion_steps = 0  # fusion steps that fused at least one robot (fusion on arrival)
        self.fusion_seconds: list[float] = []  # wall time of recent fusion steps, s
        self.ticks = 0
        self.tick_failures = 0  # steps of the display or health loop that raised (the loop goes on)
        self.tick_error = ""  # the last of them
        self.batch_error = ""  # the last failure of a batched estimation step (the robots then fused on their own)
        # [fleet] batched_health: judges the robots due in one pass (releasing the GIL every health_yield_ms, if > 0)
        yield_s = self.fleet.health_yield_ms * 1e-3 if self.fleet.health_yield_ms > 0 else None
        self.health_engine = BatchedHealthMonitor(yield_every_s=yield_s)
        self.batched_samples = 0  # samples fused in batched steps across robots (the rest: each robot on its own)
        self.batched_snapshots = 0  # snapshots predicted in batched steps
        self.tick_seconds: list[float] = []  # wall time of recent ticks, s (the views show the loop's load)
        for robot_id in self.fleet.robots:
            if self.router.mine(robot_id):
                try:
                    self._add_robot(robot_id, None)
                except SessionError:
                    raise
                except Exception as exc:  # noqa: BLE001
                    raise SessionError(f"[fleet] robot {robot_id!r}: {exc}") from None

    @classmethod
    def from_file(cls, path: str | Path | None = None, **kwargs: Any) -> FleetSession:
        """A fleet session from a TOML config file (default config/twin.toml)."""
        try:
            config = load_config(path)
        except ConfigError as exc:
            raise SessionError(str(exc)) from None
        return cls(config, **kwargs)

    # ---- robots -------------------------------------------------------------------------------------------------
    def _model_for(self, model_id: str | None) -> tuple[Any, str]:
        mapping = self.fleet.model_map()
        if model_id is not None and model_id in mapping:
            path, note = mapping[model_id], f"model {model_id!r} from [fleet] models"
            if self.base_dir is not None and not Path(path).is_absolute():
                path = str(self.base_dir / path)
        else:
            path = self.config.robot.resolved_usd(self.base_dir)
            note = "[robot] usd" if model_id is None else f"model {model_id!r} is not in [fleet] models: [robot] usd"
        with self._model_lock:
            for key in (model_id, path):
                if key is not None and key in self._models:
                    return self._models[key], note
            try:
                model = load_robot(path, prim_path=self.config.robot.prim_path or None)
            except RobotModelError as exc:
                raise SessionError(f"robot model for {model_id or 'the fleet'}: {exc}") from None
            self._models[path] = model
            return model, note

    def _add_robot(self, robot_id: str, birth: bytes | None) -> FleetRobot | None:
        if len(self.robots) >= self.fleet.max_robots:
            self.refused[robot_id] = f"more than [fleet] max_robots = {self.fleet.max_robots} robots"
            self.router.forget_pending(robot_id)
            return None
        model_id = None
        if birth is not None:
            try:
                model_id = decode_birth(birth).model_id
            except TelemetryError as exc:
                self.refused[robot_id] = f"its birth is not valid: {exc}"
                self.router.forget_pending(robot_id)  # a valid birth later may still add it
                return None
        model, note = self._model_for(model_id)
        robot = FleetRobot(robot_id, model, self.config, fuse_per_tick=self.fleet.fuse_per_tick, link=self.link,
                           now_ns=self.now_ns, model_note=note, batched=self.fleet.batched_estimation)  # fmt: skip
        if birth is not None:
            robot.ingest.on_payload(Topics(robot_id, self.config.telemetry.topic_prefix).birth, birth, self.now_ns())
        if self.router.link_connected:
            robot.ingest.post_event(EventKind.CONNECTED, "connected (the fleet's link)")
        with self._lock:
            self.robots[robot_id] = robot
        self.refused.pop(robot_id, None)
        self.router.add(robot_id, robot.ingest)
        return robot

    def _on_birth(self, robot_id: str, payload: bytes) -> None:
        """Network thread: a birth of a robot not yet mirrored; the loader thread builds it."""
        try:
            self._births.put_nowait((robot_id, payload))
        except queue.Full:
            self.router.forget_pending(robot_id)

    def _load_loop(self) -> None:
        while True:
            item = self._births.get()
            if item is None:
                return
            robot_id, payload = item
            robot = self.robots.get(robot_id)
            if robot is not None:  # built meanwhile from an earlier birth: its ingest judges this one
                robot.ingest.on_payload(
                    Topics(robot_id, self.config.telemetry.topic_prefix).birth, payload, self.now_ns()
                )
                continue
            try:
                self._add_robot(robot_id, payload)
            except Exception as exc:  # noqa: BLE001 - one robot's bad model must not stop discovery
                self.refused[robot_id] = str(exc)
                self.router.forget_pending(robot_id)

    def wait_for_robots(self, robot_ids, timeout_s: float) -> bool:
        """Block until every id in ``robot_ids`` is mirrored (True) or ``timeout_s`` passed (False)."""
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if all(r in self.robots for r in robot_ids):
                return True
            time.sleep(0.02)
        return all(r in self.robots for r in robot_ids)

    # ---- lifecycle ---------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Connect (in the background), start the loader and the history writer."""
        if self._loader is None:
            self._loader = threading.Thread(target=self._load_loop, name="twin_ext-fleet-loader", daemon=True)
            self._loader.start()
        if self.history is not None:
            self.history.start()
        self.link.start()

    def stop(self) -> None:
        """Stop ticking, fusing, the link, the loader and the history writer (writing what it holds)."""
        self._stop.set()
        self.router.wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None
        if self._fuser is not None:
            self._fuser.join(timeout=5.0)
            self._fuser = None
        if self._health_runner is not None:
            self._health_runner.join(timeout=5.0)
            self._health_runner = None
        self.link.stop()
        if self._loader is not None:
            self._births.put(None)
            self._loader.join(timeout=5.0)
            self._loader = None
        for robot in list(self.robots.values()):
            robot.twin.stop()
        if self.history is not None:
            self.history.stop()

    def run_in_background(self) -> None:
        """Tick at ``[fleet] display_rate_hz`` on a daemon thread until `stop`; with ``[fleet] health_thread`` judge
        health on a second one (`health_tick`), and with ``[fleet] fusion_rate_hz`` > 0 fuse samples as they arrive
        on a third (`fuse_arrivals`)."""
        self.start()
        if self._thread is None:
            self._stop.clear()
            if self._health_runner is None and self.fleet.health_thread and self.config.health.enabled:
                self._health_runner = threading.Thread(
                    target=self._health_loop, name="twin_ext-fleet-health", daemon=True
                )
                self._health_runner.start()
            self._thread = threading.Thread(target=self._run, name="twin_ext-fleet", daemon=True)
            self._thread.start()
        if self._fuser is None and self.fleet.fusion_rate_hz > 0:
            self._fuser = threading.Thread(target=self._fuse_loop, name="twin_ext-fleet-fusion", daemon=True)
            self._fuser.start()

    def _run(self) -> None:
        self._every_period(lambda: self.tick(health=self._health_runner is None), "tick")

    def _health_loop(self) -> None:
        self._every_period(self.health_tick, "health tick")

    def _every_period(self, step: Callable[[], None], what: str) -> None:
        """Call ``step`` every ``1/display_rate_hz`` until `stop` (the display and the health loop); a step that
        raises is counted (`tick_failures`, `tick_error`) and the loop goes on."""
        period = 1.0 / self.fleet.display_rate_hz
        next_tick = time.monotonic()
        while not self._stop.is_set():
            try:
                step()
            except Exception as exc:  # noqa: BLE001 - the loop outlives any one step; the next one retries
                self.tick_failures += 1
                self.tick_error = f"{what} failed: {exc!r}"
            next_tick += period
            delay = next_tick - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)
            else:
                next_tick = time.monotonic()  # behind: no burst of catch-up steps

    # ---- fusion on arrival ------------------------------------------------------------------------------------
    def _timed_fusion_step(self, started: float) -> None:
        """One fusion step (the estimation lock held); the next is due after ``1/fusion_rate_hz`` or, when steps
        cost more than ``fusion_cpu_share`` of a core at that rate, after ``step CPU time / fusion_cpu_share``. The
        cost counted is the fusing and committing, not the draining: every sample is drained once either way (here
        or in the tick), and counting it would stretch the period, which brings more samples per step, and so on."""
        try:
            self._fuse_locked(self.now_ns(), timed=True)
        finally:
            self._fusion_cpu_s += 0.1 * (self._last_fusion_cpu_s - self._fusion_cpu_s)
            period = max(self._fusion_period, self._fusion_cpu_s / self.fleet.fusion_cpu_share)
            self._next_fusion = started + period
            self.fusion_seconds.append(time.monotonic() - started)
            del self.fusion_seconds[:-300]

    def _fuse_loop(self) -> None:
        """Fusion thread: a step whenever the network thread has routed samples (it sets ``router.wake``), at most
        ``fusion_rate_hz`` and within ``fusion_cpu_share`` (`_timed_fusion_step`). Not on the network thread itself:
        measured there, its steps held up reading the socket and the tick, and a saturated twin accepted less."""
        wake = self.router.wake
        while not self._stop.is_set():
            if not wake.wait(0.1):
                continue
            delay = self._next_fusion - time.monotonic()
            if delay > 0:  # the next step is not due: more robots' samples come into it
                time.sleep(delay)
            wake.clear()
            if not self.router.arrived:
                continue
            try:
                with self._estimation_lock:
                    self._timed_fusion_step(time.monotonic())
            except Exception as exc:  # noqa: BLE001 - the fusion thread must survive anything; the tick fuses
                self.batch_error = f"fusion step failed: {exc!r}"

    def fuse_arrivals(self, now_ns: int | None = None) -> int:
        """The fusion step of fusion on arrival: the robots whose samples arrived since the last step (or tick)
        drain them and fuse up to ``fuse_per_tick`` each — batched across robots with ``[fleet]
        batched_estimation`` — and commit their estimates (`FleetRobot.fused`), recording each sample's receive ->
        state latency; ``now_ns``: twin clock, int ns. Returns how many robots it fused. The display prediction
        stays in `advance`. Thread-safe; a running session calls it on its fusion thread."""
        now = self.now_ns() if now_ns is None else int(now_ns)
        with self._estimation_lock:
            return self._fuse_locked(now)

    def _take_arrived(self) -> dict[str, None]:
        """The ids routed since the last take, in order and once each. Call with the estimation lock held: the
        fusion step and the tick are the only takers (the network thread only appends, which leaves more for the
        next take)."""
        arrived = self.router.arrived
        return dict.fromkeys(arrived.popleft() for _ in range(len(arrived)))

    def _fuse_locked(self, now: int, *, timed: bool = False) -> int:
        ids = self._take_arrived()
        if not ids:
            self._last_fusion_cpu_s = 0.0
            return 0
        robots = [robot for rid in ids if (robot := self.robots.get(rid)) is not None]
        drained = [robot for robot in robots if robot.drain()]
        cpu0 = time.thread_time() if timed else 0.0
        if self.fleet.batched_estimation:
            estimators = [robot.twin.estimator for robot in drained if robot.batched]
            try:
                self.batched_samples += fuse_deferred(estimators)
            except Exception as exc:  # noqa: BLE001 - each robot fuses its sample on its own, isolated
                self.batch_error = f"batched estimation failed: {exc!r}"
                for robot in drained:
                    try:
                        robot.twin.estimator.flush()
                    except Exception as robot_exc:  # noqa: BLE001
                        robot.failures += 1
                        robot.error = f"fusion failed: {robot_exc!r}"
        for robot in drained:
            robot.publish_fused(now)
        if timed:
            self._last_fusion_cpu_s = time.thread_time() - cpu0
        self.fusion_steps += 1
        return len(drained)

    # ---- the tick ----------------------------------------------------------------------------------------------
    def advance(self, now_ns: int | None = None, *, feed_health: bool = True) -> list[tuple[FleetRobot, Any]]:
        """The estimation step of a tick: every robot's estimate advanced to ``now_ns`` (twin clock, int ns);
        returns ``(robot, TwinSnapshot or None)`` per robot. With ``[fleet] batched_estimation`` the robots'
        newest samples are fused and their snapshots predicted in batched steps across robots (`FleetKalman`);
        otherwise each robot's `LiveTwin` ticks on its own. Same values either way (to rounding). Every robot
        drains here, so the samples that arrived before are no longer waiting for a fusion step. ``feed_health``: the
        robots also hand their drained samples to their health services (False: the health thread does)."""
        now = self.now_ns() if now_ns is None else int(now_ns)
        with self._lock:
            robots = list(self.robots.values())
        with self._estimation_lock:
            self._take_arrived()  # every robot drains below: nothing routed so far still waits for a fusion step
            drained = [robot for robot in robots if robot.drain()]
            if self.fleet.batched_estimation:
                estimators = [robot.twin.estimator for robot in drained if robot.batched]
                try:
                    self.batched_samples += fuse_deferred(estimators)
                    self.batched_snapshots += prepare_snapshots(estimators, now)
                except Exception as exc:  # noqa: BLE001 - each robot then fuses and predicts on its own (in its tick)
                    self.batch_error = f"batched estimation failed: {exc!r}"
            return [(robot, robot.tick(now, feed_health=feed_health)) for robot in robots]

    def tick(self, now_ns: int | None = None, *, health: bool = True) -> None:
        """Advance every robot to ``now_ns``; offer history; with ``health`` (always, unless the session's health
        thread runs) also judge the health of this tick's share of robots (`health_tick`)."""
        t0 = time.perf_counter()
        advanced = self.advance(now_ns, feed_health=health)
        history = self.history
        if history is not None:
            for robot, snapshot in advanced:
                if snapshot is not None and robot.ingest.stats.accepted:
                    state = getattr(snapshot.health, "value", str(snapshot.health))
                    history.record_state(robot.robot_id, snapshot.q, snapshot.qd, snapshot.std_q, state)
        if health:
            self._health_slot([robot for robot, _ in advanced], self.ticks)
        self.ticks += 1
        self.tick_seconds.append(time.perf_counter() - t0)
        del self.tick_seconds[:-300]

    def health_tick(self) -> None:
        """The health thread's step (``[fleet] health_thread``): hand every robot the samples drained since the last
        step, judge this step's share of robots (staggered as in the tick) and offer their events and parameters to
        the history. Runs beside the display tick, which then only estimates."""
        with self._lock:
            robots = list(self.robots.values())
        for robot in robots:
            robot.feed_health()
        self._health_slot(robots, self.health_ticks)
        self.health_ticks += 1

    def _health_slot(self, robots: list[FleetRobot], slot: int) -> None:
        """Judge slot ``slot``'s share of ``robots`` (`_judge_health`) and offer the history their new events and
        identified parameters."""
        judged = self._judge_health(robots, slot)
        history = self.history
        if history is None:
            return
        for robot in robots:
            if robot.robot_id in judged:
                for event in judged[robot.robot_id]:
                    history.record_health_event(robot.robot_id, event)
                if robot.health is not None and robot.health.summary is not None:
                    history.record_params(robot.robot_id, robot.health.summary.to_dict())

    def _judge_health(self, robots: list[FleetRobot], slot: int) -> dict[str, list[dict]]:
        """Judge slot ``slot``'s share of ``robots`` (slots come at ``display_rate_hz``: display ticks, or health
        steps on the health thread); ``{robot_id: new events}`` of those judged. Staggered so that each robot is
        judged every ``health_every_s``: one by one over the slots, or with ``batched_health`` in groups of about
        ``health_batch`` robots judged in one batched pass (`judge_fleet_health`)."""
        period = max(1, round(self.fleet.health_every_s * self.fleet.display_rate_hz))
        groups = period
        if self.fleet.batched_health:
            groups = max(1, min(period, -(-len(robots) // self.fleet.health_batch)))
        phase = slot % period
        due = [robot for i, robot in enumerate(robots) if (i % groups) * period // groups == phase]
        return self.judge_health_now(due) if due else {}

    def judge_health_now(self, robots: list[FleetRobot]) -> dict[str, list[dict]]:
        """Judge the samples buffered by each of ``robots`` now (batched with ``[fleet] batched_health``, else one
        after another); ``{robot_id: new events (dicts)}``."""
        if self.fleet.batched_health:
            return judge_fleet_health(robots, self.health_engine)
        return {robot.robot_id: robot.judge_health() for robot in robots}

    def send_command(self, robot_id: str, command: Any) -> None:
        """Send a command to one robot (the ``[twin] commands_enabled`` gate applies) and log it in the history."""
        self.robots[robot_id].twin.send_command(command)
        if self.history is not None:
            doc = command.to_dict() if hasattr(command, "to_dict") else {"command": repr(command)}
            self.history.record_command(robot_id, doc)

    def problems(self) -> list[str]:
        """What went wrong in the fleet's own loops (not one robot's: those are in its row), newest state, for the
        views: failed display or health steps, the last failed batched estimation or health step."""
        out = []
        if self.tick_failures:
            out.append(f"{self.tick_failures} display/health loop steps failed; the last: {self.tick_error}")
        if self.batch_error:
            out.append(self.batch_error)
        if self.health_engine.last_error:
            out.append(self.health_engine.last_error)
        return out

    def rows(self):
        """`FleetRow` per robot (see `twin_ext.fleet.fleet_rows`)."""
        return fleet_rows(self)
