# SPDX-License-Identifier: Apache-2.0
"""EmulatedRobot live against a real Mosquitto: birth, status, last will, held-back latency, commands,
restarts, clock jumps and recorded ground truth."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest

pytest.importorskip("mujoco")
mqtt = pytest.importorskip("paho.mqtt.client")

from mosquitto import Mosquitto, require_mosquitto  # noqa: E402  (tests/mosquitto.py)

from twin_ext.emulator import EmulatedRobot, EmulatorSettings, ImpairmentProfile  # noqa: E402
from twin_ext.telemetry import Resume, SpeedOverride, Stop, decode, decode_birth, decode_status, encode_command  # noqa: E402  # noqa: E402

pytestmark = pytest.mark.broker

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_S = 15.0
PREFIX = "twin/v1/panda"


@pytest.fixture
def broker(tmp_path):
    """Mosquitto with TCP_NODELAY on its sockets (as a low-latency deployment should be configured);
    without it the broker's Nagle batching would add up to ~40 ms to QoS 1 deliveries."""
    require_mosquitto()
    b = Mosquitto(tmp_path / "mosquitto", persistence=False, extra_conf="set_tcp_nodelay true")
    try:
        yield b.start()
    finally:
        b.stop()


class Observer:
    """A paho subscriber on twin/v1/panda/# collecting (arrival_ns, topic, payload, retain)."""

    def __init__(self, url: str, client_id: str = "observer") -> None:
        parts = urlsplit(url)
        self.inbox: queue.Queue = queue.Queue()
        self.seen: list[tuple[int, str, bytes, bool]] = []
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
        subscribed = threading.Event()
        self.client.on_connect = lambda c, *_: c.subscribe(f"{PREFIX}/#", qos=1)
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.on_message = lambda _c, _u, m: self.inbox.put(
            (time.monotonic_ns(), m.topic, bytes(m.payload), bool(m.retain))
        )
        self.client.connect(parts.hostname, parts.port, keepalive=10)
        self.client.loop_start()
        assert subscribed.wait(TIMEOUT_S), "observer could not subscribe"

    def wait_for(self, predicate, what: str, timeout_s: float = TIMEOUT_S):
        """Collect messages until one satisfies predicate(arrival, topic, payload, retain); return it."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                item = self.inbox.get(timeout=0.05)
            except queue.Empty:
                continue
            self.seen.append(item)
            if predicate(*item):
                return item
        raise AssertionError(f"timed out after {timeout_s} s waiting for {what}; got {len(self.seen)} messages")

    def states(self):
        return [(a, decode(p)) for a, t, p, _ in self.seen if t == f"{PREFIX}/joint_states"]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _is(topic_kind: str):
    return lambda _a, t, _p, _r: t == f"{PREFIX}/{topic_kind}"


def _count_states(observer: Observer, n: int) -> None:
    counter = {"n": 0}

    def enough(_a, t, _p, _r):
        counter["n"] += t.endswith("/joint_states")
        return counter["n"] >= n

    observer.wait_for(enough, f"{n} joint states")


def test_live_run_announces_publishes_and_goes_offline(broker):
    """Retained birth + online status, decodable joint states held back by the profile's 30 ms latency,
    and on stop a retained offline status with the same boot id (seen by a late subscriber too)."""
    observer = Observer(broker.url)
    robot = EmulatedRobot(profile=ImpairmentProfile(latency_ms=30.0, offset_ms=250.0))
    try:
        robot.start(broker.url)
        _, _, birth_payload, _ = observer.wait_for(_is("birth"), "the birth")
        birth = decode_birth(birth_payload)
        assert birth.robot_id == "panda" and birth.rate_hz == 200.0 and len(birth.joint_names) == 9
        observer.wait_for(lambda a, t, p, r: t == f"{PREFIX}/status" and decode_status(p).state == "online", "online")
        _count_states(observer, 200)
    finally:
        summary = robot.stop()
    states = observer.states()
    assert all(m.names == birth.joint_names and m.velocity is not None and m.effort is not None for _, m in states)
    seqs = [m.seq for _, m in states]
    assert seqs[:50] == list(range(50))  # no jitter, no loss: in order, none missing
    # latency: arrival on our clock minus the sample instant (stamp minus the 250 ms offset); the floor
    # proves messages were held back, the generous ceiling only rules out nonsense on a busy machine.
    latency_ms = np.array([(a - (m.stamp_ns - 250_000_000)) / 1e6 for a, m in states])
    assert 29.0 <= np.median(latency_ms) <= 80.0, np.median(latency_ms)
    assert latency_ms.min() >= 29.0
    assert summary.samples >= len(states) and summary.publish_errors == 0 and summary.boots == 1
    observer.wait_for(lambda a, t, p, r: t == f"{PREFIX}/status" and decode_status(p).state == "offline", "offline")
    observer.close()
    late = Observer(broker.url, "late")
    late.wait_for(
        lambda *_: {t for _, t, _, _ in late.seen} >= {f"{PREFIX}/status", f"{PREFIX}/birth"}, "retained messages"
    )
    retained = {t: (p, r) for _, t, p, r in late.seen}
    status, flag = retained[f"{PREFIX}/status"]
    assert flag and (decode_status(status).state, decode_status(status).boot_id) == ("offline", birth.boot_id)
    again, flag = retained[f"{PREFIX}/birth"]
    assert flag and decode_birth(again).boot_id == birth.boot_id
    late.close()


def test_commands_are_ignored_when_disabled(broker):
    """A live robot without --accept-commands logs each command as rejected and keeps its speed."""
    observer = Observer(broker.url)
    robot = EmulatedRobot(profile=ImpairmentProfile())
    try:
        robot.start(broker.url)
        _count_states(observer, 20)
        observer.client.publish(f"{PREFIX}/command", encode_command(Stop()), qos=1)
        deadline = time.monotonic() + TIMEOUT_S
        while not robot.commands and time.monotonic() < deadline:
            time.sleep(0.01)
        assert [(c.accepted, c.reason) for c in robot.commands] == [(False, "commands_disabled")]
        _count_states(observer, 150)  # 0.75 s later the arm still moves: nobody stopped it
        assert np.abs(observer.states()[-1][1].velocity[:7]).max() > 0.05
    finally:
        summary = robot.stop()
        observer.close()
    assert (summary.commands_accepted, summary.commands_rejected) == (0, 1)


def test_commands_are_obeyed_when_enabled(broker):
    """With accept_commands: stop brings the published velocities to ~0; resume makes the arm move again;
    an override above the robot's maximum is rejected with its reason."""
    observer = Observer(broker.url)
    robot = EmulatedRobot(EmulatorSettings(accept_commands=True), profile=ImpairmentProfile())
    try:
        robot.start(broker.url)
        _count_states(observer, 100)  # 0.5 s in: the arm is moving towards pre-pick
        observer.client.publish(f"{PREFIX}/command", encode_command(SpeedOverride(scale=1.7)), qos=1)
        observer.client.publish(f"{PREFIX}/command", encode_command(Stop(id="halt")), qos=1)
        observer.wait_for(
            lambda a, t, p, r: t.endswith("/joint_states") and np.abs(decode(p).velocity[:7]).max() < 1e-3,
            "the arm at rest after stop",
        )
        observer.client.publish(f"{PREFIX}/command", encode_command(Resume()), qos=1)
        observer.wait_for(
            lambda a, t, p, r: t.endswith("/joint_states") and np.abs(decode(p).velocity[:7]).max() > 0.05,
            "the arm moving after resume",
        )
    finally:
        summary = robot.stop()
        observer.close()
    reasons = [(c.accepted, c.reason) for c in robot.commands]
    assert reasons == [(False, "above_max_speed_override"), (True, ""), (True, "")]
    assert (summary.commands_accepted, summary.commands_rejected) == (2, 1)


def test_restart_and_clock_jump_triggers(broker):
    """request_restart: offline, then a new birth (new boot id) and seq from 0; request_clock_jump: stamps step."""
    observer = Observer(broker.url)
    robot = EmulatedRobot(profile=ImpairmentProfile())
    try:
        robot.start(broker.url)
        _, _, first, _ = observer.wait_for(_is("birth"), "first birth")
        _count_states(observer, 40)
        robot.request_clock_jump(1000.0)
        _count_states(observer, 40)
        robot.request_restart(down_s=0.3)
        _, _, second, _ = observer.wait_for(_is("birth"), "second birth")
        _count_states(observer, 20)
    finally:
        summary = robot.stop()
        observer.close()
    b1, b2 = decode_birth(first), decode_birth(second)
    assert b1.boot_id != b2.boot_id and summary.boots == 2
    statuses = [decode_status(p) for _, t, p, _ in observer.seen if t.endswith("/status")]
    assert ("offline", b1.boot_id) in [(s.state, s.boot_id) for s in statuses]
    states = [m for _, m in observer.states()]
    after = next(
        i
        for i, (_, t, _, _) in enumerate(observer.seen)
        if t.endswith("/birth") and decode_birth(observer.seen[i][2]).boot_id == b2.boot_id
    )
    new_boot = [decode(p) for _, t, p, _ in observer.seen[after:] if t.endswith("/joint_states")]
    assert new_boot[0].seq == 0
    steps = np.diff([m.stamp_ns for m in states if m.seq > 0 and states.index(m) < len(states) - len(new_boot)])
    assert (np.abs(steps - 1_005_000_000) < 1_000_000).sum() == 1  # one 5 ms step carries the +1 s jump


def test_broker_restart_is_survived_and_the_robot_reannounces(broker):
    """Mosquitto restarted (without persistence: retained messages lost) mid-run: the robot reconnects on its
    own, republishes its retained birth and online status with the same boot id, and keeps publishing."""
    observer = Observer(broker.url)
    robot = EmulatedRobot(profile=ImpairmentProfile())
    try:
        robot.start(broker.url)
        _, _, first, _ = observer.wait_for(_is("birth"), "birth")
        _count_states(observer, 40)
        broker.restart(down_s=0.5)
        _, _, again, _ = observer.wait_for(_is("birth"), "the birth again after the restart")
        _count_states(observer, 40)
    finally:
        summary = robot.stop()
        observer.close()
    assert decode_birth(again).boot_id == decode_birth(first).boot_id and summary.boots == 1
    assert summary.publish_errors > 0  # samples due while the broker was away could not be sent


def test_live_truth_is_recorded_and_matches_the_telemetry(broker, tmp_path):
    """Ground truth goes to MCAP (channel truth/joint_states, 1 kHz, host ns + robot ns); with no impairments
    each published sample equals the truth record with its stamp, bit for bit."""
    from twin_ext.telemetry import McapReplay

    path = tmp_path / "truth.mcap"
    observer = Observer(broker.url)
    robot = EmulatedRobot(profile=ImpairmentProfile(offset_ms=-40.0))
    try:
        robot.start(broker.url, truth=path)
        _count_states(observer, 100)
    finally:
        summary = robot.stop()
        observer.close()
    records = list(McapReplay(path).read_json("truth/joint_states"))
    assert summary.truth_records == len(records) >= 4 * len(observer.states())  # 1 kHz truth, 200 Hz telemetry
    by_stamp = {rec["robot_ns"]: rec for _, rec in records}
    for log_time, rec in records[:50]:
        assert log_time == rec["host_ns"] and rec["robot_ns"] - rec["host_ns"] == -40_000_000
    host = np.array([rec["host_ns"] for _, rec in records])
    assert set(np.diff(host).tolist()) == {1_000_000}
    matched = 0
    for _, msg in observer.states():
        rec = by_stamp.get(msg.stamp_ns)
        if rec is not None:
            matched += 1
            assert msg.position.tolist() == rec["position"] and msg.effort.tolist() == rec["effort"]
    assert matched >= 90


def test_killed_emulator_leaves_its_last_will(broker):
    """The CLI emulator killed with SIGKILL (no goodbye): the broker publishes its retained 'offline' will
    carrying the boot id of its birth."""
    observer = Observer(broker.url)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "twin_ext.emulator", "--broker", broker.url, "--duration", "60", "--log-level", "warning"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        _, _, birth, _ = observer.wait_for(_is("birth"), "the emulator's birth", timeout_s=30.0)
        _count_states(observer, 20)
        proc.send_signal(signal.SIGKILL)
        proc.wait(TIMEOUT_S)
        _, _, will, _ = observer.wait_for(
            lambda a, t, p, r: t == f"{PREFIX}/status" and decode_status(p).state == "offline", "the last will"
        )
        assert decode_status(will).boot_id == decode_birth(birth).boot_id
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(TIMEOUT_S)
        proc.stderr.close()
        observer.close()


def test_cli_runs_against_mosquitto_and_exits_cleanly(broker, tmp_path):
    """python -m twin_ext.emulator with --impairments, --codec binary and --truth runs for its duration,
    publishes binary joint states, writes the truth file and says goodbye (offline) with exit code 0."""
    observer = Observer(broker.url)
    truth = tmp_path / "out" / "truth.mcap"
    result = subprocess.run(
        [sys.executable, "-m", "twin_ext.emulator", "--broker", broker.url, "--duration", "1.5", "--codec", "binary",
         "--impairments", str(ROOT / "config" / "impairments" / "standard.toml"), "--truth", str(truth), "--seed", "3"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "done:" in result.stderr and "Traceback" not in result.stderr
    observer.wait_for(lambda a, t, p, r: t.endswith("/status") and decode_status(p).state == "offline", "offline")
    payloads = [p for _, t, p, _ in observer.seen if t.endswith("/joint_states")]
    assert len(payloads) > 100 and all(p[:4] == b"TWJS" for p in payloads)
    assert truth.stat().st_size > 10_000
    observer.close()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_cli_stopped_by_a_signal_says_goodbye_and_finishes_its_truth_file(broker, tmp_path, signum):
    """Ctrl-C or SIGTERM while the CLI emulator publishes: it ends its loop cleanly (exit 0, 'done:' line,
    retained 'offline' with its boot id) and the truth MCAP is complete (readable to the end)."""
    from twin_ext.telemetry import McapReplay

    observer = Observer(broker.url)
    truth = tmp_path / "truth.mcap"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "twin_ext.emulator", "--broker", broker.url, "--duration", "60",
         "--impairments", str(ROOT / "config" / "impairments" / "standard.toml"), "--truth", str(truth)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        _, _, birth, _ = observer.wait_for(_is("birth"), "the emulator's birth", timeout_s=30.0)
        _count_states(observer, 50)
        proc.send_signal(signum)
        # Bound: the loop checks its stop flag every 2 ms; publishing 'offline' waits <= 2 s for the broker's
        # ack and the truth writer drains a few seconds of 1 kHz records. 30 s is far above that even on a
        # loaded 2-core machine, and far below a hang.
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert "stopping" in err and "done:" in err and "Traceback" not in err, err
        _, _, status, _ = observer.wait_for(
            lambda a, t, p, r: t == f"{PREFIX}/status" and decode_status(p).state == "offline", "offline"
        )
        assert decode_status(status).boot_id == decode_birth(birth).boot_id
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=TIMEOUT_S)
        observer.close()
    records = list(McapReplay(truth).read_json("truth/joint_states"))
    assert len(records) >= 250  # >= 50 samples at 200 Hz => >= 0.25 s of 1 kHz truth
