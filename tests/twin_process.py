# SPDX-License-Identifier: Apache-2.0
"""The product as a user runs it, for the hostile-input tests: a `python -m twin_ext run` subprocess with its
status file, the emulated robot as a subprocess, and paho-mqtt 2.x clients that watch or spoof the robot's topics.

    twin = TwinProcess(tmp_path, broker.url, config="[twin]\\nserve_whatif = false\\n").start()
    doc = twin.wait(lambda d: d["health"] == "ok")           # the status file (rewritten once a second)
    robot = Emulator(broker.url, "--rate", "200").start()
    watch = Observer(broker.url)                              # latest joint state, retained birth/status, ...
    spoof = Spoofer(broker.url); spoof.publish("twin/v1/panda/status", payload, retain=True)

Every wait is bounded; every process is killed at the end (`stop`), also when a test fails.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from twin_ext.telemetry import decode, decode_birth, decode_status

REPO = Path(__file__).resolve().parents[1]
ENV = dict(
    os.environ, PYTHONUNBUFFERED="1", TWIN_EXT_CACHE_DIR=os.environ.get("TWIN_EXT_CACHE_DIR", str(REPO / ".cache"))
)


def wait_for(predicate, timeout_s: float, interval_s: float = 0.05):
    """Poll ``predicate`` until it returns something truthy (returned) or ``timeout_s`` passes (returns None)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            return None
        time.sleep(interval_s)


class TwinProcess:
    """``python -m twin_ext run --broker URL --status-file FILE --quiet [--config FILE]`` in ``workdir``."""

    def __init__(self, workdir: Path, url: str, *, config: str = "", name: str = "twin") -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.url = url
        self.status_path = self.workdir / f"{name}-status.json"
        self.args = [sys.executable, "-m", "twin_ext", "run", "--broker", url, "--status-file", str(self.status_path)]
        self.args.append("--quiet")
        if config:
            path = self.workdir / f"{name}.toml"
            path.write_text(config)
            self.args += ["--config", str(path)]
        self.process: subprocess.Popen | None = None
        self.log = self.workdir / f"{name}.log"

    def start(self) -> TwinProcess:
        self._log = open(self.log, "w")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            self.args, cwd=self.workdir, env=ENV, stdout=self._log, stderr=subprocess.STDOUT
        )
        return self

    def status(self) -> dict:
        try:
            return json.loads(self.status_path.read_text())
        except (OSError, ValueError):
            return {}

    def wait(self, ok, timeout_s: float = 30.0) -> dict:
        """The status document once ``ok(doc)`` holds; fails the test with the last one (and the log) if not."""
        last: dict = {}

        def check():
            nonlocal last
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"the twin exited with {self.process.returncode}:\n{self.log.read_text()[-3000:]}")
            doc = self.status()
            if doc:
                last = doc
                return doc if ok(doc) else None
            return None

        doc = wait_for(check, timeout_s, 0.1)
        assert doc, (
            f"the twin's status never satisfied the condition within {timeout_s} s; last: {json.dumps(last)[:3000]}"
        )
        return doc

    def stop(self, timeout_s: float = 30.0) -> int | None:
        """SIGTERM and wait (the twin writes its last status and closes its recording); SIGKILL if it hangs."""
        process, self.process = self.process, None
        if process is None:
            return None
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout_s)
        self._log.close()
        return process.returncode


class Emulator:
    """``python -m twin_ext.emulator --broker URL ...`` (the robot) as a subprocess."""

    def __init__(self, url: str, *args: str, log: Path | None = None) -> None:
        self.args = [sys.executable, "-m", "twin_ext.emulator", "--broker", url, "--log-level", "warning", *args]
        self.process: subprocess.Popen | None = None
        self.log = log

    def start(self) -> Emulator:
        out = open(self.log, "w") if self.log else subprocess.DEVNULL  # noqa: SIM115 - closed with the process
        self.process = subprocess.Popen(self.args, cwd=REPO, env=ENV, stdout=out, stderr=subprocess.STDOUT)
        return self

    def stop(self, timeout_s: float = 30.0) -> int | None:
        process, self.process = self.process, None
        if process is None:
            return None
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout_s)
        return process.returncode


def _client(url: str, client_id: str) -> tuple[mqtt.Client, str, int]:
    parts = urlsplit(url)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
    client.reconnect_delay_set(0.05, 0.2)  # a test client wants its broker back at once
    return client, parts.hostname or "127.0.0.1", parts.port or 1883


class Observer:
    """A subscriber on ``<prefix>/<robot_id>/#``: the latest joint state, the retained birth and status, and every
    twin status with its arrival time (time.monotonic)."""

    def __init__(self, url: str, robot_id: str = "panda", prefix: str = "twin/v1", client_id: str = "observer") -> None:
        self.base = f"{prefix}/{robot_id}"
        self.latest = None  # decoded JointState
        self.states = 0
        self.birth_payload: bytes | None = None
        self.status_payload: bytes | None = None
        self.twin_status: list[tuple[float, dict, bool]] = []
        self.ignore: set[bytes] = set()
        """Payloads not to take as the robot's (a `Spoofer` adds what it publishes)."""
        self.connected = threading.Event()
        self._lock = threading.Lock()
        self.client, host, port = _client(url, client_id)
        self.client.on_connect = lambda c, u, f, rc, p: (c.subscribe(f"{self.base}/#", 1), self.connected.set())
        self.client.on_disconnect = lambda *a: self.connected.clear()
        self.client.on_message = self._on_message
        self.client.connect(host, port)
        self.client.loop_start()
        assert self.connected.wait(10), "the observer could not connect"

    def _on_message(self, client, userdata, message) -> None:
        topic, payload = message.topic, bytes(message.payload)
        if payload in self.ignore:
            return
        try:
            if topic == f"{self.base}/joint_states":
                msg = decode(payload)
                with self._lock:
                    if self.latest is None or (msg.seq - self.latest.seq) % 2**32 < 2**31:
                        self.latest = msg
                    self.states += 1
            elif topic == f"{self.base}/birth" and payload:
                decode_birth(payload)
                self.birth_payload = self.birth_payload or payload  # the robot's first: kept to restore it
            elif topic == f"{self.base}/status" and payload:
                if decode_status(payload).state == "online" and self.status_payload is None:
                    self.status_payload = payload
            elif topic == f"{self.base}/twin/status" and payload:
                self.twin_status.append((time.monotonic(), json.loads(payload), bool(message.retain)))
        except Exception:  # noqa: BLE001 - spoofed junk is not the observer's business
            pass

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Spoofer:
    """Anyone on the network who can publish on the robot's topics (no broker ACLs): a plain paho client."""

    def __init__(self, url: str, client_id: str = "spoofer", *, observer: Observer | None = None) -> None:
        self.observer = observer
        self.client, host, port = _client(url, client_id)
        self.client.max_inflight_messages_set(1000)
        self.client.max_queued_messages_set(0)
        connected = queue.SimpleQueue()
        self.client.on_connect = lambda *a: connected.put(True)
        self.client.connect(host, port)
        self.client.loop_start()
        connected.get(timeout=10)

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False, wait: bool = True) -> None:
        if self.observer is not None:
            self.observer.ignore.add(payload)
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        if wait:
            info.wait_for_publish(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
