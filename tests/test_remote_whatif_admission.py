# SPDX-License-Identifier: Apache-2.0
"""`RemoteWhatIf` admission and scheduling without a broker: token buckets, per-client and global bounds, round-robin
fairness, expiry, readiness, timeouts with cancellation, ids on every refusal, and the counters."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import Future
from types import SimpleNamespace

import numpy as np
import pytest

from twin_ext.estimation import Health
from twin_ext.live import REFUSAL_REASONS, RemoteWhatIf, RemoteWhatIfSettings
from twin_ext.whatif import WhatIfSettings

TINY = {"command": {"trajectory": "pick_place"}, "samples": 2, "duration": 0.3, "record_every": 0}


class FakeLink:
    def __init__(self) -> None:
        self.handler = None
        self.answers: list[dict] = []
        self._cond = threading.Condition()

    def add_handler(self, topic, callback) -> None:
        self.handler = callback

    def publish(self, topic, payload, *, qos=1, retain=False) -> bool:
        with self._cond:
            self.answers.append(json.loads(payload))
            self._cond.notify_all()
        return True

    def answer(self, request_id, timeout: float = 5.0) -> dict:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for a in self.answers:
                    if a["id"] == request_id:
                        return a
                remaining = deadline - time.monotonic()
                assert remaining > 0, f"no answer for {request_id!r}; got {self.answers}"
                self._cond.wait(remaining)


class FakeTwin:
    """The parts of a LiveTwin RemoteWhatIf uses; runs are held until `release` (or cancelled)."""

    def __init__(self, model) -> None:
        self.ingest = SimpleNamespace(topics=SimpleNamespace(whatif_request="req", whatif_result="res"))
        self.settings = SimpleNamespace(whatif_timeout_s=60.0)
        self.whatif = SimpleNamespace(engine=SimpleNamespace(settings=WhatIfSettings()))
        n = model.ndof
        self.snapshot = SimpleNamespace(health=Health.OK, q=np.array(model.drive_target, dtype=float), qd=np.zeros(n),
                                        covariance=np.eye(2 * n) * 1e-6, model=model)  # fmt: skip
        self.started: list[str] = []
        self.gates: dict[str, threading.Event] = {}
        self.cancelled: list[str] = []
        self.hold = True

    @property
    def latest_snapshot(self):
        return self.snapshot

    def ask_whatif(self, scenario, *, snapshot, cancel):
        future: Future = Future()
        name = scenario.name
        self.started.append(name)
        gate = self.gates.setdefault(name, threading.Event())
        if not self.hold:
            gate.set()

        def run():
            while not (gate.is_set() or cancel.is_set()):
                time.sleep(0.005)
            if cancel.is_set():
                self.cancelled.append(name)
            future.set_result(SimpleNamespace(status="pass", to_dict=lambda: {"scenario": name}))

        threading.Thread(target=run, daemon=True).start()
        return future

    def release(self, name: str) -> None:
        self.gates.setdefault(name, threading.Event()).set()

    def wait_started(self, n: int, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.started) < n:
            assert time.monotonic() < deadline, self.started
            time.sleep(0.005)


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def rig(panda):
    def make(**settings):
        twin, link, clock = FakeTwin(panda), FakeLink(), Clock()
        remote = RemoteWhatIf(twin, link, settings=RemoteWhatIfSettings(**settings), clock=clock, wall_clock=time.time)
        remote.poll()  # the twin is ok from now on ...
        clock.t += 2.0  # ... and has been for longer than ready_after_s
        made.append(remote)
        return remote, twin, link, clock

    made: list[RemoteWhatIf] = []
    yield make
    for remote in made:
        remote.close()


def _send(remote: RemoteWhatIf, request_id, client=None, **extra) -> None:
    doc = {"id": request_id, "scenario": {**TINY, "name": str(request_id)}, **extra}
    if client is not None:
        doc["client"] = client
    remote.link.handler(json.dumps(doc).encode())


def test_a_client_gets_its_burst_then_its_rate(rig):
    """Token bucket per client: client_burst requests at once, then client_rate_hz; other clients are unaffected."""
    remote, twin, link, clock = rig(client_burst=3, client_rate_hz=2.0, max_waiting=100, max_waiting_per_client=100)
    for i in range(5):
        _send(remote, f"a{i}", "a")
    assert [link.answer(f"a{i}")["reason"] for i in (3, 4)] == ["rate_limited", "rate_limited"]
    assert "client_rate_hz = 2" in link.answer("a3")["error"] and link.answer("a3")["client"] == "a"
    _send(remote, "b0", "b")
    clock.t += 0.5  # one token back
    _send(remote, "a5", "a")
    _send(remote, "a6", "a")
    assert link.answer("a6")["reason"] == "rate_limited"
    twin.hold = False
    for name in ("a0", "a1", "a2", "b0", "a5"):
        twin.release(name)
        assert link.answer(name)["ok"] is True
    assert remote.counters()["refused_by_reason"]["rate_limited"] == 3


def test_waiting_requests_are_bounded_per_client_and_globally_and_run_round_robin(rig):
    """Waiting is bounded per client and globally, and runs round-robin: a flood never starves another client."""
    remote, twin, link, clock = rig(client_burst=100, max_waiting=4, max_waiting_per_client=2)
    _send(remote, "a0", "a")
    twin.wait_started(1)  # a0 runs (held)
    for i in (1, 2, 3):
        _send(remote, f"a{i}", "a")
    assert link.answer("a3")["reason"] == "queue_full" and "max_waiting_per_client = 2" in link.answer("a3")["error"]
    _send(remote, "b0", "b")
    _send(remote, "c0", "c")
    _send(remote, "d0", "d")
    assert link.answer("d0")["reason"] == "queue_full" and "max_waiting = 4" in link.answer("d0")["error"]
    assert remote.waiting == 4
    twin.hold = False
    for name in ("a0", "a1", "b0", "c0", "a2"):
        twin.release(name)
        assert link.answer(name)["ok"] is True, link.answers
    assert twin.started == ["a0", "a1", "b0", "c0", "a2"]  # a's second waiting request after b's and c's
    counters = remote.counters()
    assert counters["served"] == 5 and counters["refused_by_reason"]["queue_full"] == 2 and counters["waiting"] == 0


def test_old_requests_and_requests_to_an_unready_twin_are_refused_with_their_ids(rig):
    """Old (sent_at, queue wait) requests and requests to an unready twin are refused with their ids."""
    remote, twin, link, clock = rig(max_age_s=10.0, ready_after_s=1.0, client_burst=100)
    _send(remote, "old", sent_at=time.time() - 30)
    assert link.answer("old")["reason"] == "expired" and "max_age_s = 10 s" in link.answer("old")["error"]
    _send(remote, "first", "x")
    twin.wait_started(1)
    _send(remote, "queued", "y")
    clock.t += 11.0  # "queued" waits 11 s behind "first"
    twin.release("first")
    assert link.answer("queued")["reason"] == "expired" and "waited 11 s" in link.answer("queued")["error"]
    twin.snapshot.health = Health.STALE
    remote.poll()
    _send(remote, "stale")
    answer = link.answer("stale")
    assert (answer["reason"], answer["status"]) == ("not_ready", "unknown") and "stale" in answer["error"]
    twin.snapshot.health = Health.OK
    remote.poll()
    clock.t += 0.5
    _send(remote, "too-soon")
    assert "ready_after_s = 1 s" in link.answer("too-soon")["error"]
    clock.t += 0.6
    twin.hold = False
    _send(remote, "ready")
    assert link.answer("ready")["ok"] is True


def test_a_request_over_its_time_is_cancelled_and_answered_timeout(rig):
    """A request over timeout_s is answered timeout, its cancel flag set, and the next request runs right after."""
    remote, twin, link, clock = rig()
    t0 = time.monotonic()
    _send(remote, "slow", "p", timeout_s=0.2)
    answer = link.answer("slow")
    assert (answer["reason"], answer["status"]) == ("timeout", "timeout") and time.monotonic() - t0 < 2.0
    twin.hold = False
    _send(remote, "next", "p")
    assert link.answer("next")["ok"] is True
    assert twin.cancelled == ["slow"]
    assert remote.counters()["refused_by_reason"]["timeout"] == 1


def test_ids_are_echoed_on_every_refusal_when_readable(rig):
    """Every refusal echoes the id when readable (oversized, broken JSON, numeric); an invalid id is refused."""
    remote, twin, link, clock = rig(max_bytes=1000, client_burst=100)
    link_handler = remote.link.handler
    link_handler(b'{"id": "big", "scenario": "' + b"x" * 5000 + b'"}')
    assert link.answer("big")["reason"] == "too_large"
    link_handler(b'{"client": "k", "id": "broken", "scenario": {')
    assert link.answer("broken")["reason"] == "bad_request" and link.answer("broken")["client"] == "k"
    link_handler(b'{"id": 17, "name": 5}')
    assert link.answer(17)["reason"] == "not_allowed"
    link_handler(b'{"id": {"nested": 1}, "name": "x"}')
    answer = link.answer(None)
    assert answer["reason"] == "bad_request" and "id must be" in answer["error"]
    link_handler(b'{"id": "who", "client": "no spaces allowed", "name": "x"}')
    assert "client must be" in link.answer("who")["error"]
    link_handler(b'{"id": "both", "name": "x", "scenario": {}}')
    assert "exactly one of" in link.answer("both")["error"]


def test_counters_cover_every_reason_and_add_up(rig):
    """counters() has every reason of REFUSAL_REASONS (0 when unused); refused is their sum."""
    remote, twin, link, clock = rig()
    remote.link.handler(b"[]")
    link.answer(None)
    counters = remote.counters()
    assert set(counters["refused_by_reason"]) == set(REFUSAL_REASONS)
    assert counters["refused"] == sum(counters["refused_by_reason"].values()) == remote.refused == 1
    assert set(REFUSAL_REASONS.values()) == {"refused", "unknown", "timeout", "error"}


def test_settings_refuse_impossible_values():
    """[remote_whatif] values are checked (the message names the key)."""
    from twin_ext.config import ConfigError

    with pytest.raises(ConfigError, match=r"\[remote_whatif\] max_waiting must be >= 1"):
        RemoteWhatIfSettings.from_mapping({"max_waiting": 0})
    with pytest.raises(ConfigError, match=r"unknown key 'max_wait'"):
        RemoteWhatIfSettings.from_mapping({"max_wait": 3})
