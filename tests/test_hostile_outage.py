# SPDX-License-Identifier: Apache-2.0
"""Faulty infrastructure (issue 16): a broker crash, a QoS1 flood, two twins on one robot, a blocked display loop.
Real Mosquitto, real `python -m twin_ext run` subprocesses, the emulated robot; every wait bounded.

Memory bound: as in tests/test_hostile_telemetry.py, the twin's peak RSS stays under 400 MiB (~140 MiB measured):
the broker's backlog after an outage and a 30,000-message flood pass through bounded buffers (1024 samples; the
MCAP recorder's queue), so the twin must not grow with them.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
from mosquitto import Mosquitto, require_mosquitto
from paho.mqtt.enums import CallbackAPIVersion
from twin_process import REPO, Emulator, Observer, TwinProcess, wait_for

from twin_ext.telemetry import BatchedReadClient, JointState, McapReplay, TelemetryError, decode, encode_binary

pytestmark = [pytest.mark.broker, pytest.mark.slow]

MEMORY_BOUND_MB = 400.0
BASE = "twin/v1/panda"
RATE_HZ = 200


def shipped_broker_conf(db: Path) -> str:
    """config/mosquitto.conf as shipped, plus the site-specific persistence folder it asks for."""
    db.mkdir(parents=True, exist_ok=True)
    return (REPO / "config" / "mosquitto.conf").read_text() + f"\npersistence_location {db}/\n"


def test_a_broker_killed_for_20_s_loses_no_qos1_sample(tmp_path):
    """Mosquitto with config/mosquitto.conf is SIGKILLed for 20 s under a 200 Hz QoS1 stream: the robot keeps what
    it publishes meanwhile, the twin reconnects within ~2 s of the broker and every sequence number reaches its
    ingest (its own MCAP recording of every payload says so)."""
    require_mosquitto()
    # max_queued=1000 is Mosquitto's default: only the shipped file's max_queued_messages lets the backlog through.
    broker = Mosquitto(
        tmp_path / "mosquitto", persistence=False, max_queued=1000, extra_conf=shipped_broker_conf(tmp_path / "db")
    )
    broker.start()
    record = tmp_path / "ingest.mcap"
    twin = TwinProcess(tmp_path, broker.url, config=f'[telemetry]\nrecord_path = "{record}"\n').start()
    robot = Emulator(broker.url, "--qos", "1", "--rate", str(RATE_HZ), "--codec", "binary", log=tmp_path / "robot.log")
    watch = None
    try:
        connected = twin.wait(lambda d: d.get("link", {}).get("state") == "connected", 30)
        robot.start()
        watch = Observer(broker.url)
        twin.wait(lambda d: d["health"] == "ok" and d["accepted"] > 200, 30)
        # The twin's session must be in the broker's database before the crash: autosave_interval 5 s.
        time.sleep(max(0.0, 6.0 - (time.monotonic_ns() - connected["link"]["since_ns"]) / 1e9))
        broker.kill()  # SIGKILL: nothing saved since the last autosave
        killed = time.monotonic()
        down = twin.wait(lambda d: d["health"] == "lost" and not d["link_connected"], 10)
        assert down["link"]["state"] in ("reconnecting", "unreachable"), down["link"]
        time.sleep(max(0.0, 20.0 - (time.monotonic() - killed)))
        broker.start()
        back_ns = time.monotonic_ns()
        up = twin.wait(lambda d: d["link"]["state"] == "connected" and d["link"]["since_ns"] > back_ns, 15)
        reconnect_s = (up["link"]["since_ns"] - back_ns) / 1e9
        print(
            f"\ntwin reconnected {reconnect_s:.2f} s after the broker was back (session present: {up['link']['session_present']})"
        )
        assert reconnect_s < 3.0 and up["link"]["session_present"] is True
        # The robot flushes ~4000 kept samples, the broker queues them for the twin: all arrive, the display keeps going.
        flushed = twin.wait(lambda d: d["health"] == "ok" and d["msg_rate_hz"] > 0.8 * RATE_HZ, 20)
        assert flushed["display_rate_hz"] > 40.0 and flushed["process"]["peak_rss_mb"] < MEMORY_BOUND_MB
        print(
            f"after the backlog: display {flushed['display_rate_hz']:.1f} Hz, peak RSS {flushed['process']['peak_rss_mb']:.0f} MiB"
        )
        time.sleep(2.0)
        assert robot.stop() == 0
        assert wait_for(lambda: watch.latest is not None, 5)
        last_seq = watch.latest.seq
        time.sleep(1.0)  # the robot's last samples reach the twin
    finally:
        final = twin.status()
        assert twin.stop() == 0, twin.log.read_text()[-3000:]
        robot.stop()
        if watch is not None:
            watch.close()
        broker.stop()
    seqs: set[int] = set()
    for topic, payload, _ in McapReplay(record).iter_payloads():
        if topic == f"{BASE}/joint_states":
            try:
                seqs.add(decode(payload).seq)
            except TelemetryError:
                pass
    missing = sorted(set(range(last_seq + 1)) - seqs)
    outage = 20 * RATE_HZ
    print(f"seqs 0..{last_seq} published, {len(seqs)} distinct reached the twin's ingest, {len(missing)} missing")
    assert last_seq > outage and not missing, f"{len(missing)} QoS1 samples lost, e.g. {missing[:10]}"
    assert set(final["rejected_by_reason"]) <= {"duplicate", "out_of_order"}, final["rejected_by_reason"]


def _flood(url: str, count: int, names: tuple[str, ...], q: np.ndarray) -> float:
    """Publish ``count`` QoS1 binary joint states as fast as paho goes (in-flight window 1000); returns msg/s."""
    client = BatchedReadClient(CallbackAPIVersion.VERSION2, client_id="flood-robot")
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    port = int(url.rsplit(":", 1)[1])
    client.connect("127.0.0.1", port)
    client.loop_start()
    payload = bytearray(encode_binary(JointState("panda", 0, 0, names, q, np.zeros(len(q)), np.zeros(len(q)))))
    started = time.perf_counter()
    for seq in range(count):
        payload[8:12] = seq.to_bytes(4, "little")
        payload[12:20] = time.monotonic_ns().to_bytes(8, "little", signed=True)
        client.publish(f"{BASE}/joint_states", bytes(payload), qos=1)
        if seq % 500 == 499:
            while len(client._out_messages) > 5000:  # keep paho's own queue bounded
                time.sleep(0.001)
    while client._out_messages and time.perf_counter() - started < 60:
        time.sleep(0.01)
    rate = count / (time.perf_counter() - started)
    client.disconnect()
    client.loop_stop()
    return rate


def test_a_qos1_flood_does_not_stall_the_display(tmp_path, panda):
    """30,000 QoS1 joint states as fast as the broker takes them: the display does not stall (no status window
    below 25 Hz of 60), the excess is thinned and counted, the twin stays ok and within its memory
    bound."""
    require_mosquitto()
    with Mosquitto(
        tmp_path / "mosquitto", persistence=False, max_inflight=100, extra_conf="set_tcp_nodelay true"
    ) as broker:
        # stale_after_s 1 s instead of 0.25: the flooding client is Python, and on a slow runner its stream can
        # pause for longer than 0.25 s (one "stale" status in a full-suite run on a 2.4 GHz 2-core machine, with the
        # display at 49-54 Hz; 0 in 6 runs of this test alone). A twin that fell behind the flood would still go
        # stale: it would lag by seconds.
        config = "[twin]\nserve_whatif = false\n[estimator]\nstale_after_s = 1.0\n"
        twin = TwinProcess(tmp_path, broker.url, config=config).start()
        try:
            twin.wait(lambda d: d.get("link", {}).get("state") == "connected", 30)
            q = 0.5 * (np.asarray(panda.lower) + np.asarray(panda.upper))  # mid-range: a plausible pose
            rates: list[float] = []
            healths: list[str] = []
            stop = threading.Event()

            def sample() -> None:
                written = None
                while not stop.wait(0.2):
                    doc = twin.status()
                    if doc.get("written_at_unix_s") != written and doc.get("msg_rate_hz", 0) > 1000:
                        written = doc["written_at_unix_s"]
                        rates.append(doc["display_rate_hz"])
                        healths.append(doc["health"])

            watcher = threading.Thread(target=sample, daemon=True)
            watcher.start()
            flood_rate = _flood(broker.url, 30_000, panda.dof_names, q)
            stop.set()
            watcher.join(5)
            after = twin.wait(lambda d: d["accepted"] >= 30_000 * 0.99, 20)
            print(
                f"\nflood {flood_rate:,.0f} msg/s; display rate during it (per status write): {[round(r) for r in rates]}"
            )
            assert len(rates) >= 2, "the flood was too short or too slow to measure"
            # Behaviour, not speed: the display must not stall. The stalls this guards against gave 2-3 Hz (health
            # judging every flooded sample on the display thread) and 3-7 Hz (fusing every sample, before thinning).
            # How close to 60 Hz it stays is a speed goal and lives in `bench telemetry` (display under a flood,
            # goal >= 50 Hz): here the broker, the flooding client and the twin share the runner's cores with
            # whatever else runs, and a 2-core runner under load measured 40-56 Hz.
            assert min(rates) >= 25.0, rates
            assert after["thinned"] > 0 and after["rejected_by_reason"] == {}, after["rejected_by_reason"]
            assert set(healths) == {"ok"} and after["process"]["peak_rss_mb"] < MEMORY_BOUND_MB, healths
        finally:
            twin.stop()


def test_two_twins_on_one_robot_never_silently_fight(tmp_path):
    """Same client id: the broker lets one connect, so the earlier twin stops connecting with an error naming
    broker.client_id (instead of both taking the session from each other every 0.5 s); another client id: both run,
    and when one stops its retained 'offline' does not hide the other (it publishes 'online' again)."""
    require_mosquitto()
    with Mosquitto(tmp_path / "mosquitto", persistence=False, extra_conf="set_tcp_nodelay true") as broker:
        robot = Emulator(broker.url).start()
        watch = Observer(broker.url)
        first = TwinProcess(tmp_path, broker.url, name="first").start()
        second = TwinProcess(tmp_path, broker.url, name="second")
        other = TwinProcess(tmp_path, broker.url, name="other", config='[broker]\nclient_id = "twin-other"\n')
        try:
            first.wait(lambda d: d["health"] == "ok", 30)
            second.start()  # the same default client id twin_ext-<host>-panda
            yielded = first.wait(lambda d: d["link"]["state"] == "conflict", 20)
            assert yielded["health"] == "lost" and not yielded["link_connected"]
            assert any(
                "another twin uses this twin's MQTT client id" in e and "broker.client_id" in e
                for e in yielded["errors"]
            )
            kept = second.wait(lambda d: d["health"] == "ok" and d["link"]["state"] == "connected", 20)
            assert any("took over MQTT client id" in e for e in kept["errors"]), kept["errors"]
            time.sleep(2.0)  # no fight: the second twin keeps its connection
            steady = second.status()
            assert steady["link"]["connects"] == kept["link"]["connects"] and steady["health"] == "ok"
            other.start()
            other.wait(lambda d: d["health"] == "ok", 30)
            instance = watch.twin_status[-1][1]["instance"] if watch.twin_status else None
            assert other.stop() == 0  # publishes its retained 'offline' on twin/v1/panda/twin/status ...
            online = wait_for(
                lambda: (
                    watch.twin_status
                    and watch.twin_status[-1][1]["state"] == "online"
                    and watch.twin_status[-1][1]["instance"] != instance
                ),
                5,
            )
            assert online, [s for _, s, _ in watch.twin_status[-4:]]  # ... and the running twin says 'online' again
            assert second.status()["health"] == "ok" and first.status()["link"]["state"] == "conflict"
        finally:
            for twin in (first, second, other):
                twin.stop()
            watch.close()
            robot.stop()


def test_a_blocked_display_loop_turns_health_stale_with_the_reason(tmp_path, panda):
    """A sink that blocks the display loop for 2.5 s: the watchdog turns health stale with the reason (status and the
    retained twin/status), and ok again once the loop ticks."""
    require_mosquitto()
    from twin_ext.emulator import EmulatedRobot
    from twin_ext.live import LiveTwin
    from twin_ext.telemetry import BrokerSettings, MqttLink, TelemetryIngest, TelemetrySettings

    class BlockingSink:
        name = "blocking"

        def __init__(self) -> None:
            self.block = threading.Event()

        def on_snapshot(self, snapshot) -> None:
            if self.block.is_set():
                self.block.clear()
                time.sleep(2.5)

        def close(self) -> None:
            pass

    with Mosquitto(tmp_path / "mosquitto", persistence=False, extra_conf="set_tcp_nodelay true") as broker:
        robot = EmulatedRobot()
        robot.start(broker.url, seed=0, progress_every_s=0)
        watch = Observer(broker.url)
        ingest = TelemetryIngest(settings=TelemetrySettings(robot_id="panda"), model=panda)
        link = MqttLink(ingest, BrokerSettings(url=broker.url, client_id="watchdog-twin"))
        sink = BlockingSink()
        twin = LiveTwin(panda, ingest, link=link, sinks=[sink])
        try:
            twin.run_in_background()
            assert wait_for(lambda: twin.latest_snapshot is not None, 10)  # status() before a tick would tick here
            assert wait_for(lambda: twin.status().health.value == "ok", 20), twin.errors
            time.sleep(0.5)
            sink.block.set()
            stalled = wait_for(lambda: (s := twin.status()).health.value == "stale" and s, 3)
            assert (
                stalled
                and "display loop has not ticked" in stalled.health_reason
                and "twin.watchdog_s" in stalled.health_reason
            )
            published = wait_for(lambda: [s for _, s, _ in watch.twin_status if s.get("health") == "stale"], 3)
            assert published and "display loop" in published[-1]["reason"]
            assert wait_for(lambda: twin.status().health.value == "ok" and not twin.status().health_reason, 5)
            assert wait_for(lambda: watch.twin_status[-1][1].get("health") == "ok", 3)
        finally:
            twin.stop()
            robot.stop()
            watch.close()
