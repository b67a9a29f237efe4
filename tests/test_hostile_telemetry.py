# SPDX-License-Identifier: Apache-2.0
"""Hostile and faulty telemetry (issue 16): spoofed messages on the robot's topics must not blind, reset or
derail the twin. One real Mosquitto, one emulated robot (standard impairments: 20 ± 10 ms, 5 % bursty loss,
reordering, 250 ms clock offset) and one `python -m twin_ext run` with the shipped config, shared by the module;
each test publishes its spoof with paho-mqtt (as anyone on the network can without broker ACLs), then reads the
twin's status file: the refusal or flag, its counter in ``rejected_by_reason``, that the twin kept ticking at
its display rate, stayed ``ok`` and followed the real robot, and stayed within its memory bound.

Memory bound: the twin's peak RSS stays under ``MEMORY_BOUND_MB`` = 400 MiB. It runs at ~140 MiB here (Python,
NumPy, pxr, paho, the what-if engine's parent side); every buffer a spoof can fill is bounded (1024 samples,
256 events, a few held samples, 16 contradicted boot ids), so the probes below may add a few MiB at most. 400 MiB
leaves room for the platform's variation while still catching an unbounded buffer: keeping the status flood or a
few thousand decoded samples per second for the module's duration would exceed it.
"""

from __future__ import annotations

import dataclasses
import json
import time

import numpy as np
import pytest
from mosquitto import Mosquitto, require_mosquitto
from twin_process import Emulator, Observer, Spoofer, TwinProcess, wait_for

from twin_ext.telemetry import Birth, JointState, Status, decode_birth, encode_birth, encode_json, encode_status

pytestmark = [pytest.mark.broker, pytest.mark.slow]

MEMORY_BOUND_MB = 400.0
BASE = "twin/v1/panda"
# Of the shipped 60 Hz: "no stall" (the stalls were 2-7 Hz); how close to 60 it stays is bench telemetry's goal.
DISPLAY_MIN_HZ = 40.0


@dataclasses.dataclass
class Live:
    broker: Mosquitto
    robot: Emulator
    twin: TwinProcess
    watch: Observer
    spoof: Spoofer

    @property
    def boot(self) -> str:
        return decode_birth(self.watch.birth_payload).boot_id

    def real(self) -> JointState:
        latest = self.watch.latest
        assert latest is not None, "no joint state from the robot"
        return latest

    def forged(self, *, ahead: int = 10, **changes) -> bytes:
        """A copy of the robot's newest sample, ``ahead`` sequence numbers on (in the future of the stream, so no
        real sample is already there), stamped 5 ms after it, with ``changes`` applied."""
        real = self.real()
        fields = {"seq": (real.seq + ahead) % 2**32, "stamp_ns": real.stamp_ns + 5_000_000}
        fields.update(changes)
        return encode_json(dataclasses.replace(real, **fields))

    def counts(self, doc: dict | None = None) -> dict:
        return dict((doc or self.twin.status())["rejected_by_reason"])

    def steady(self, seconds: float) -> dict:
        """Watch the status file for ``seconds``: the twin ticks at its rate, is ok, connected, the robot online,
        the shown state fresh, memory bounded. Returns the last document."""
        end = time.monotonic() + seconds
        doc = self.twin.status()
        written, checked = doc.get("written_at_unix_s"), 0
        while time.monotonic() < end or checked == 0:  # at least one document written during the watch
            assert time.monotonic() < end + 5.0, "the status file was not rewritten for 5 s"
            fresh = self.twin.status()
            if fresh and fresh.get("written_at_unix_s") != written:
                doc, written, checked = fresh, fresh.get("written_at_unix_s"), checked + 1
                check_healthy(doc)
            time.sleep(0.1)
        return doc

    def restore(self) -> None:
        """Put the robot's own retained birth and status back (a spoof may have replaced them)."""
        birth, status = self.watch.birth_payload, self.watch.status_payload
        self.spoof.client.publish(f"{BASE}/birth", birth, qos=1, retain=True).wait_for_publish(10)
        self.spoof.client.publish(f"{BASE}/status", status, qos=1, retain=True).wait_for_publish(10)


def check_healthy(doc: dict) -> None:
    assert doc["health"] == "ok", (doc["health"], doc.get("health_reason"), doc["errors"][-3:])
    assert doc["display_rate_hz"] >= DISPLAY_MIN_HZ, doc["display_rate_hz"]
    assert doc["link_connected"] is True and doc["robot_online"] is True, doc["events"][-5:]
    assert doc["age_s"] is not None and doc["age_s"] < 0.25, doc["age_s"]
    assert doc["process"]["peak_rss_mb"] < MEMORY_BOUND_MB, doc["process"]


def delta(before: dict, after: dict, reason: str) -> int:
    return after.get(reason, 0) - before.get(reason, 0)


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    require_mosquitto()
    work = tmp_path_factory.mktemp("hostile_telemetry")
    broker = Mosquitto(work / "mosquitto", persistence=False, extra_conf="set_tcp_nodelay true").start()
    parts = []
    try:
        twin = TwinProcess(work, broker.url).start()
        parts.append(twin)
        robot = Emulator(broker.url, "--impairments", "config/impairments/standard.toml", log=work / "robot.log")
        parts.append(robot.start())
        watch = Observer(broker.url)
        parts.append(watch)
        spoof = Spoofer(broker.url, observer=watch)  # the observer keeps taking only the robot's messages
        parts.append(spoof)
        twin.wait(lambda d: d["health"] == "ok" and d["accepted"] > 300 and d["clock_ready"], 60)
        assert wait_for(lambda: watch.latest and watch.birth_payload and watch.status_payload, 10)
        yield Live(broker, robot, twin, watch, spoof)
        process = twin.status().get("process", {})
        print(f"\ntwin peak RSS after the hostile probes: {process.get('peak_rss_mb')} MiB (bound {MEMORY_BOUND_MB:g})")
    finally:
        for part in reversed(parts):
            part.stop() if hasattr(part, "stop") else part.close()
        broker.stop()


def test_one_spoofed_seq_jump_does_not_blind_the_twin(live):
    """A joint state with seq = last + 1000 is held, then refused as seq_jump; the real samples keep being fused."""
    start = live.twin.status()
    before = live.steady(2.0)
    live.spoof.publish(f"{BASE}/joint_states", live.forged(ahead=1000))
    after = live.steady(3.0)

    def accepted_rate(a: dict, b: dict) -> float:  # samples accepted per second of twin time between two documents
        return (b["accepted"] - a["accepted"]) / max((b["t_ns"] - a["t_ns"]) * 1e-9, 1e-9)

    # Averages over the 2 s and 3 s watches, not the status's instantaneous rate (noisy on a loaded machine).
    base_rate, rate = accepted_rate(start, before), accepted_rate(before, after)
    assert rate > 0.8 * base_rate, (base_rate, rate)
    # Before the fix the next 988 real samples were refused as out_of_order (~5 s of the robot's stream).
    assert delta(live.counts(before), live.counts(after), "out_of_order") < 3.0 * base_rate
    assert wait_for(lambda: delta(live.counts(before), live.counts(), "seq_jump") == 1, 3)
    assert any("seq_jump" in e for e in live.twin.status()["errors"])


def test_a_spoofed_offline_status_of_the_running_boot_is_flagged_not_obeyed(live):
    """A retained 'offline' with the current boot id while joint states flow: contradicted_status, robot stays online."""
    before = live.steady(1.0)
    live.spoof.publish(f"{BASE}/status", encode_status(Status("panda", "offline", live.boot)), retain=True)
    try:
        after = live.steady(2.5)  # robot_online and health ok all along (before: 'lost' while data flowed)
        assert delta(live.counts(before), live.counts(after), "contradicted_status") == 1
        assert any("contradicted_status" in e and "ACL" in e for e in after["errors"])
    finally:
        live.restore()


def test_a_spoofed_birth_with_a_new_boot_id_resets_nothing(live):
    """A birth announcing a new boot while the data continue the old one: contradicted_birth, no restart, no reset."""
    before = live.steady(1.0)
    real = decode_birth(live.watch.birth_payload)
    forged = Birth("panda", real.model_id, real.joint_names, real.rate_hz, "f00dbabe" * 4, real.codec)
    live.spoof.publish(f"{BASE}/birth", encode_birth(forged), retain=True)
    try:
        after = live.steady(2.5)
        assert delta(live.counts(before), live.counts(after), "contradicted_birth") == 1
        assert after["restarts"] == before["restarts"] and after["estimator_resets"] == before["estimator_resets"]
        assert after["clock_jumps"] == before["clock_jumps"]
        assert abs(after["clock_offset_ms"] - before["clock_offset_ms"]) < 5.0
    finally:
        live.restore()


def test_stamps_of_zero_and_far_in_the_future_are_refused_not_a_clock_jump(live):
    """stamp_ns = 0 and a stamp one hour ahead are refused as implausible_stamp; the clock estimate is untouched."""
    before = live.steady(1.0)
    live.spoof.publish(f"{BASE}/joint_states", live.forged(stamp_ns=0))
    live.spoof.publish(f"{BASE}/joint_states", live.forged(ahead=12, stamp_ns=live.real().stamp_ns + 3600 * 10**9))
    after = live.steady(2.0)
    assert delta(live.counts(before), live.counts(after), "implausible_stamp") == 2
    assert after["clock_jumps"] == before["clock_jumps"]
    # Before the fix the offset read -1.7e12 ms after stamp 0.
    assert abs(after["clock_offset_ms"] - before["clock_offset_ms"]) < 5.0, (
        before["clock_offset_ms"],
        after["clock_offset_ms"],
    )


def test_impossible_values_are_refused_and_never_reach_the_estimator(live, panda):
    """Positions of 1e300 rad and velocities of 1e12 rad/s are out_of_limits, a 1 rad jump in 5 ms (90x the
    velocity limit) is implausible_jump; the estimate stays within the limits with a small uncertainty."""
    before = live.steady(1.0)
    n = panda.ndof
    live.spoof.publish(f"{BASE}/joint_states", live.forged(position=np.full(n, 1e300)))
    live.spoof.publish(f"{BASE}/joint_states", live.forged(ahead=11, velocity=np.full(n, 1e12)))
    jumped = live.real().position.copy()
    jumped[0] -= np.copysign(1.0, jumped[0])  # joint1 moves 1 rad (towards 0, inside its limits) in 5 ms
    live.spoof.publish(f"{BASE}/joint_states", live.forged(ahead=12, position=jumped))
    after = live.steady(2.0)
    counts = live.counts(after)
    assert delta(live.counts(before), counts, "out_of_limits") == 2, after["errors"]
    assert delta(live.counts(before), counts, "implausible_jump") == 1
    assert after["estimator_resets"] == before["estimator_resets"]
    q = np.array([j["estimated_q"] for j in after["joints"]])
    std = np.array([j["std_q"] for j in after["joints"]])
    # Before the fix the 1e300 sample re-initialised the filter: std 3.1e5 rad. 0.05 rad is far below that and above
    # what display-time prediction adds when a loaded machine delays ticks (up to ~0.023 rad seen in a full suite run).
    assert np.all((q >= panda.lower) & (q <= panda.upper)) and np.all(std < 0.05), (q, std)


def test_a_birth_for_another_robot_id_is_refused(live):
    """A birth naming another robot on this robot's topic is wrong_robot; one on another robot's topic is never seen."""
    before = live.steady(1.0)
    real = decode_birth(live.watch.birth_payload)
    intruder = Birth("intruder", real.model_id, real.joint_names, real.rate_hz, "1" * 32, real.codec)
    live.spoof.publish(f"{BASE}/birth", encode_birth(intruder))
    live.spoof.publish("twin/v1/intruder/birth", encode_birth(intruder), retain=False)
    after = live.steady(2.0)
    assert delta(live.counts(before), live.counts(after), "wrong_robot") == 1
    assert after["robot_id"] == "panda" and after["restarts"] == before["restarts"]


def test_a_status_flood_changes_nothing(live):
    """2000 statuses alternating offline/online for the running boot, as fast as paho sends them: the twin keeps
    its display rate, stays ok and the robot online; contradictions are flagged."""
    before = live.steady(1.0)
    offline = encode_status(Status("panda", "offline", live.boot))
    online = encode_status(Status("panda", "online", live.boot))
    started = time.monotonic()
    for k in range(2000):
        live.spoof.publish(f"{BASE}/status", offline if k % 2 == 0 else online, qos=0, wait=False)
        if k % 50 == 49:
            time.sleep(0.005)  # let paho's thread write; the broker still sees ~5k statuses/s
    live.spoof.publish(f"{BASE}/status", offline, qos=1)  # the last word: an 'offline' (then data keep flowing)
    flood_s = time.monotonic() - started
    try:
        after = live.steady(2.5)
        assert delta(live.counts(before), live.counts(after), "contradicted_status") >= 1
        assert after["display_rate_hz"] >= DISPLAY_MIN_HZ and flood_s < 5.0
    finally:
        live.restore()


def test_a_spoofed_twin_status_claiming_its_client_id_does_not_stop_the_twin(live):
    """A twin/status 'online' of an invented newer instance with this twin's client id, while it is connected:
    reported as a conflict (it may be spoofed), the twin keeps its session (it yields only after a takeover)."""
    before = live.steady(1.0)
    own = wait_for(lambda: [s for _, s, _ in live.watch.twin_status if s.get("state") == "online"], 5)
    assert own, "the twin publishes its status"
    forged = dict(own[-1], instance="feedfacecafebeef", pid=1, started_unix=time.time() + 60.0)
    live.spoof.publish(f"{BASE}/twin/status", json.dumps(forged).encode())
    after = live.steady(2.0)
    assert after["link"]["state"] == "connected" and after["link"]["connects"] == before["link"]["connects"]
    assert any("claims this twin's client id" in e and "ACL" in e for e in after["errors"]), after["errors"][-3:]
