# SPDX-License-Identifier: Apache-2.0
"""Live mode of `EmulatedRobot`: the engine paced by the monotonic clock, published with paho-mqtt 2.x.

Internal; use `EmulatedRobot.run` / `EmulatedRobot.start`.
"""

from __future__ import annotations

import logging
import queue
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from ..config import parse_broker_url
from ..telemetry import McapRecorder, Status, Topics, encode_status
from ._engine import _Engine, make_plant
from ._records import TRUTH_JSON_SCHEMA, TRUTH_SCHEMA, TRUTH_TOPIC, Delivery, EmulatorError, RunSummary, truth_record

_log = logging.getLogger("twin_ext.emulator")

_CONNECT_TIMEOUT_S = 5.0
_MAX_SLEEP_NS = 2_000_000  # wake at least every 2 ms: commands and triggers are picked up promptly
_CONTROL_QOS = 1
_NO_CONN = 4  # paho's MQTT_ERR_NO_CONN: not connected (QoS >= 1 messages are queued nonetheless)


class LiveRun:
    """One live run of an `EmulatedRobot` (connect, loop, clean shutdown); the facade owns the run's flags."""

    def __init__(
        self,
        robot: Any,  # the EmulatedRobot facade (this module is its live half; it does not import it)
        broker_url: str,
        *,
        duration_s: float | None,
        seed: int | None,
        truth: str | Path | Any | None,
        progress_every_s: float,
    ) -> None:
        self.robot = robot
        self.settings = robot.settings
        self.url = broker_url
        address = parse_broker_url(broker_url, key="broker URL", allow_credentials=True, allow_tls=False)
        self.host, self.port, self.user, self.password = address.host, address.port, address.username, address.password
        self.redacted_url = address.redacted()
        if duration_s is not None and not (isinstance(duration_s, (int, float)) and duration_s > 0):
            raise EmulatorError(f"duration_s must be a positive number of seconds (or None), got {duration_s!r}")
        self.duration_s = duration_s
        self.seed = robot.profile.seed if seed is None else int(seed)
        self.truth = truth
        self.progress_every_s = float(progress_every_s)
        self.incoming: queue.SimpleQueue[tuple[int, bytes]] = queue.SimpleQueue()
        self.client: Any = None
        self.client_boot = ""
        self.connected = threading.Event()
        self.connect_error: str | None = None
        self.published = 0
        self.publish_errors = 0
        self.buffered = 0
        """QoS >= 1 messages published while disconnected: kept by the client and sent on reconnect."""
        self.truth_records = 0
        self.last_birth: Delivery | None = None
        self.last_online: Delivery | None = None
        self._lock = threading.Lock()

    # ---- MQTT -----------------------------------------------------------------------------------
    def _new_client(self, boot_id: str) -> Any:
        import paho.mqtt.client as mqtt

        s = self.settings
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=s.mqtt_client_id,
            clean_session=True,
            protocol=mqtt.MQTTv311,
        )
        if self.user is not None:
            client.username_pw_set(self.user, self.password)
        will = encode_status(Status(robot_id=s.robot_id, state="offline", boot_id=boot_id))
        client.will_set(self.topics.status, will, qos=_CONTROL_QOS, retain=True)
        client.reconnect_delay_set(min_delay=0.25, max_delay=2)  # a robot wants its broker back quickly
        client.max_inflight_messages_set(1000)
        # QoS >= 1 messages published while the broker is away are kept (paho resends them on reconnect), up to
        # outage_buffer messages: 60000 = 5 min at 200 Hz. Beyond it publish() refuses them (counted as errors).
        client.max_queued_messages_set(s.outage_buffer)
        first = [True]

        def on_connect(c, userdata, flags, reason_code, properties):
            if reason_code.is_failure:
                self.connect_error = f"the broker refused the connection: {reason_code} (check user name and password)"
                self.connected.set()
                return
            c.subscribe(self.topics.command, qos=1)
            if not first[0]:  # a reconnect: the broker may have lost our retained messages
                _log.warning("reconnected to %s; re-announcing", self.redacted_url)
                with self._lock:
                    for d in (self.last_birth, self.last_online):
                        if d is not None and d.boot_id == boot_id:
                            c.publish(d.topic, d.payload, qos=_CONTROL_QOS, retain=True)
            first[0] = False
            self.connected.set()

        def on_disconnect(c, userdata, flags, reason_code, properties):
            if reason_code.is_failure:
                _log.warning("lost the broker at %s (%s); reconnecting", self.redacted_url, reason_code)

        def on_message(c, userdata, message):
            self.incoming.put((time.monotonic_ns(), bytes(message.payload)))

        def on_socket_open(c, userdata, sock):
            # paho leaves Nagle's algorithm on: with the broker's delayed ACKs, small messages would
            # leave in ~40 ms bunches and bury the latency profile we are emulating.
            if hasattr(sock, "setsockopt") and sock.family in (socket.AF_INET, socket.AF_INET6):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        client.on_socket_open = on_socket_open
        client.on_connect = on_connect
        client.on_disconnect = on_disconnect
        client.on_message = on_message
        return client

    def _connect(self, boot_id: str) -> None:
        client = self._new_client(boot_id)
        self.connected.clear()
        self.connect_error = None
        where = f"{self.host}:{self.port}"
        advice = (
            f"start a broker there (e.g. `mosquitto -p {self.port}`), point --broker at a running one, "
            "or add --embedded-broker to run one inside the emulator"
        )
        try:
            client.connect(self.host, self.port, keepalive=self.settings.keepalive)
        except ConnectionRefusedError:
            raise EmulatorError(
                f"no MQTT broker at {self.redacted_url} (connection refused to {where}); {advice}"
            ) from None
        except socket.gaierror as exc:
            raise EmulatorError(
                f"cannot resolve the broker host {self.host!r} ({exc.strerror}); check --broker"
            ) from None
        except TimeoutError:  # socket.timeout is an alias
            raise EmulatorError(
                f"the broker at {self.redacted_url} did not answer within {_CONNECT_TIMEOUT_S:g} s; {advice}"
            ) from None
        except OSError as exc:
            raise EmulatorError(
                f"cannot connect to the broker at {self.redacted_url}: {exc.strerror or exc}; {advice}"
            ) from None
        client.loop_start()
        if not self.connected.wait(_CONNECT_TIMEOUT_S) or self.connect_error:
            client.loop_stop()
            client.disconnect()
            reason = self.connect_error or f"no CONNACK within {_CONNECT_TIMEOUT_S:g} s (is {where} an MQTT broker?)"
            raise EmulatorError(f"cannot connect to {self.redacted_url}: {reason}")
        self.client = client
        self.client_boot = boot_id
        _log.info("connected to %s as %s", self.redacted_url, self.settings.mqtt_client_id)

    def _disconnect(self) -> None:
        client, self.client = self.client, None
        self.client_boot = ""
        if client is not None:
            client.disconnect()
            client.loop_stop()

    def _publish(self, d: Delivery, qos: int) -> None:
        client = self.client
        if client is None:
            self.publish_errors += 1
            return
        info = client.publish(d.topic, d.payload, qos=qos, retain=d.retain)
        if info.rc == 0:
            self.published += 1
        elif info.rc == _NO_CONN and qos > 0:  # queued by paho: delivered when the broker is back
            self.published += 1
            self.buffered += 1
        else:
            self.publish_errors += 1
        if d.kind in ("birth", "offline") and info.rc == 0 and client.is_connected():
            try:
                info.wait_for_publish(timeout=2.0)
            except (RuntimeError, ValueError):
                pass

    def _send(self, d: Delivery) -> None:
        if d.kind == "joint_states":
            if d.boot_id == self.client_boot:  # never publish an old boot's samples on a new connection
                self._publish(d, self.settings.qos)
            return
        if d.kind == "birth":
            if d.boot_id != self.client_boot:  # the robot restarted: a new process, a new will
                self._disconnect()
                self._connect(d.boot_id)
            with self._lock:
                self.last_birth = d
            p = self.robot.profile
            _log.info(
                "robot %s online, boot %s (%g Hz, %s, latency %g +- %g ms, loss %g)",
                self.settings.robot_id,
                d.boot_id,
                p.rate_hz,
                self.settings.codec,
                p.latency_ms,
                p.jitter_ms,
                p.loss,
            )
        elif d.kind == "online":
            with self._lock:
                self.last_online = d
        self._publish(d, _CONTROL_QOS)
        if d.kind == "offline":
            _log.info("robot %s restarting: offline", self.settings.robot_id)
            self._disconnect()

    # ---- truth ----------------------------------------------------------------------------------
    def _open_truth(self) -> tuple[Any, bool]:
        if self.truth is None or self.settings.truth_rate_hz == 0:
            return None, False
        if hasattr(self.truth, "record_json"):
            return self.truth, False
        path = Path(self.truth)
        path.parent.mkdir(parents=True, exist_ok=True)
        return McapRecorder(path), True

    # ---- the run --------------------------------------------------------------------------------
    def execute(self) -> RunSummary:
        robot, s = self.robot, self.settings
        self.topics = Topics(s.robot_id, prefix=s.topic_prefix)
        plant = make_plant(s)
        # Pre-flight: build the engine once offline so a program that does not fit the robot fails
        # here, before anything is announced on the broker.
        _Engine(
            s, robot.profile, robot.program, seed=self.seed, epoch_ns=0, new_boot_id=lambda: "preflight", plant=plant
        )
        first_boot = uuid.uuid4().hex
        boots = iter([first_boot])
        recorder, owned = self._open_truth()
        try:
            self._connect(first_boot)
            try:
                return self._loop(plant, boots, recorder)
            finally:
                self._disconnect()
        finally:
            try:
                if owned:
                    recorder.close()
            finally:
                self.robot._looping.clear()

    def _loop(self, plant: Any, boots: Any, recorder: Any) -> RunSummary:
        robot, s = self.robot, self.settings
        start = time.monotonic_ns()
        engine = _Engine(
            s,
            robot.profile,
            robot.program,
            seed=self.seed,
            epoch_ns=start,
            new_boot_id=lambda: next(boots, None) or uuid.uuid4().hex,
            plant=plant,
        )
        robot._engine = engine
        if recorder is not None and s.truth_rate_hz > 0:
            every = max(1, round(1.0 / (s.truth_rate_hz * s.timestep)))
            names = list(engine.names)

            def on_truth(n, t, rt, q, qd, tau, q_d, qd_d):
                if n % every == 0:
                    record = truth_record(t, rt, names, q, qd, tau, q_d, qd_d)
                    recorder.record_json(TRUTH_TOPIC, record, t, TRUTH_SCHEMA, schema=TRUTH_JSON_SCHEMA)
                    self.truth_records += 1

            engine.on_truth = on_truth
        end = None if self.duration_s is None else start + round(self.duration_s * 1e9)
        next_progress = start + round(self.progress_every_s * 1e9) if self.progress_every_s > 0 else None
        robot._looping.set()  # before _ready: once start() returns, `running` stays True until clean-up is done
        robot._ready.set()
        stop = robot._stop
        try:
            while not stop.is_set():
                now = time.monotonic_ns()
                if end is not None and now >= end:
                    break
                while True:
                    try:
                        at, payload = self.incoming.get_nowait()
                    except queue.Empty:
                        break
                    engine.submit_command(at, payload)
                while True:
                    try:
                        kind, value = robot._triggers.get_nowait()
                    except queue.Empty:
                        break
                    if kind == "restart":
                        engine.schedule_restart(now, round(value * 1e9))
                    else:
                        engine.clock.add_jump(now, round(value * 1e6))
                        _log.info("robot clock jumps by %g ms", value)
                engine.advance_to(now if end is None else min(now, end - 1))
                for d in engine.pop_due(now):
                    self._send(d)
                if next_progress is not None and now >= next_progress:
                    next_progress += round(self.progress_every_s * 1e9)
                    self._progress(engine, now - start)
                wake = engine.next_sample_ns()
                due = engine.next_due_ns()
                if due is not None:
                    wake = min(wake, due)
                wake = min(wake, now + _MAX_SLEEP_NS) if end is None else min(wake, now + _MAX_SLEEP_NS, end)
                delay = wake - time.monotonic_ns()
                if delay > 0:
                    stop.wait(delay / 1e9)
        finally:
            if self.client is not None:
                self._publish(engine.offline_delivery(time.monotonic_ns()), _CONTROL_QOS)
            _log.info("robot %s offline", s.robot_id)
        stats = engine.channel.stats
        accepted = sum(1 for c in engine.command_log if c.accepted)
        return RunSummary(
            duration_s=(time.monotonic_ns() - start) / 1e9,
            samples=stats.offered,
            published=self.published,
            lost=stats.lost,
            paused=stats.paused,
            duplicated=stats.duplicated,
            dropped_in_restart=engine.dropped_in_restart,
            publish_errors=self.publish_errors,
            boots=engine.boot_index + 1,
            commands_accepted=accepted,
            commands_rejected=len(engine.command_log) - accepted,
            truth_records=self.truth_records,
        )

    def _progress(self, engine: _Engine, elapsed_ns: int) -> None:
        st = engine.channel.stats
        c = engine.controller
        _log.info(
            "t=%.1f s  samples %d  published %d (%d buffered in outages)  lost %d  dup %d  in flight %d  speed %.2f%s  commands %d",
            elapsed_ns / 1e9,
            st.offered,
            self.published,
            self.buffered,
            st.lost,
            st.duplicated,
            len(engine.heap),
            c.rate,
            " (stopped)" if c.stopped else "",
            len(engine.command_log),
        )
