# SPDX-License-Identifier: Apache-2.0
"""Who may ask, for brokers without ACLs: what-if requests and vetoes signed with a shared key (HMAC-SHA256),
replay-protected by timestamp + nonce; unsigned, forged, stale and replayed ones are refused and counted."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import Future
from types import SimpleNamespace

import numpy as np
import pytest

from twin_ext import TwinExtError
from twin_ext.control import RequestAuthenticator, Unauthorised, load_key, sign_request
from twin_ext.estimation import Health
from twin_ext.live import RemoteWhatIf, RemoteWhatIfSettings
from twin_ext.whatif import WhatIfSettings

KEY = b"3f9c0d2b7a614e58b1c2d3e4f5a6b7c8"
TINY = {"command": {"trajectory": "pick_place"}, "samples": 2, "duration": 0.3, "record_every": 0}


class _Link:
    def __init__(self):
        self.handler, self.answers, self.cond = None, [], threading.Condition()

    def add_handler(self, topic, callback):
        self.handler = callback

    def publish(self, topic, payload, *, qos=1, retain=False):
        with self.cond:
            self.answers.append(json.loads(payload))
            self.cond.notify_all()
        return True

    def answer(self, request_id, timeout=5.0):
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for a in self.answers:
                    if a["id"] == request_id:
                        return a
                assert time.monotonic() < deadline, self.answers
                self.cond.wait(0.05)


class _Twin:
    """A LiveTwin stand-in whose what-if always fails (so a veto request wants a stop) and records commands."""

    def __init__(self, model):
        n = model.ndof
        self.ingest = SimpleNamespace(topics=SimpleNamespace(whatif_request="req", whatif_result="res"))
        self.settings = SimpleNamespace(whatif_timeout_s=60.0)
        self.whatif = SimpleNamespace(engine=SimpleNamespace(settings=WhatIfSettings()))
        self.latest_snapshot = SimpleNamespace(health=Health.OK, q=np.array(model.drive_target, dtype=float),
                                               qd=np.zeros(n), covariance=np.eye(2 * n) * 1e-6, model=model)  # fmt: skip
        self.commands = []

    def ask_whatif(self, scenario, *, snapshot, cancel):
        future = Future()
        future.set_result(SimpleNamespace(status="fail", to_dict=lambda: {"status": "fail"}))
        return future

    def send_command(self, command, *, requester="local"):
        self.commands.append((command, requester))


@pytest.fixture
def remote(panda, tmp_path):
    key_file = tmp_path / "whatif.key"
    key_file.write_bytes(KEY + b"\n")
    twin, link = _Twin(panda), _Link()
    clock = [1000.0]
    service = RemoteWhatIf(twin, link, settings=RemoteWhatIfSettings(key_file=str(key_file)), clock=lambda: clock[0])
    service.poll()
    clock[0] += 2.0  # ok for longer than ready_after_s
    yield service, twin, link
    service.close()


def _request(request_id, **extra):
    return {"id": request_id, "scenario": {**TINY, "name": request_id}, "veto_if_fail": True, **extra}


def test_an_unsigned_veto_request_is_ignored_counted_and_sends_nothing(remote):
    """No signature (an anonymous client): refused 'unauthorised', counted, no stop reaches the command gate."""
    service, twin, link = remote
    link.handler(json.dumps(_request("anon-1", client="anonymous-guess")).encode())
    answer = link.answer("anon-1")
    assert answer["reason"] == "unauthorised" and "not signed" in answer["error"]
    assert service.counters()["refused_by_reason"]["unauthorised"] == 1 and twin.commands == []


def test_a_signed_veto_request_runs_and_its_stop_names_the_signer(remote):
    """Signed with the shared key: served, and the failing verdict's stop is sent with the signer as requester."""
    service, twin, link = remote
    link.handler(json.dumps(sign_request(_request("op-1"), KEY, client="operator")).encode())
    answer = link.answer("op-1")
    assert answer["ok"] is True and answer["veto"] == "stop sent to the robot"
    assert [(type(c).__name__, who) for c, who in twin.commands] == [("Stop", "operator@whatif-veto")]


@pytest.mark.parametrize("attack", ["wrong_key", "tampered", "replayed", "stale"])
def test_forged_tampered_replayed_and_stale_requests_are_refused(remote, attack):
    """A signature with another key, a field changed after signing, the same nonce twice, a sent_at outside
    max_age_s: each refused 'unauthorised' with the reason, and no stop sent."""
    service, twin, link = remote
    key = b"another-key-of-sufficient-length" if attack == "wrong_key" else KEY
    now = time.time() - (60.0 if attack == "stale" else 0.0)
    signed = sign_request(_request("x-1"), key, client="operator", now=now, nonce="a" * 32)
    if attack == "tampered":
        signed["scenario"]["samples"] = 4096
    if attack == "replayed":
        link.handler(json.dumps(signed).encode())
        assert link.answer("x-1")["ok"] is True
        link.answers.clear()
        twin.commands.clear()
    link.handler(json.dumps(signed).encode())
    answer = link.answer("x-1")
    assert answer["reason"] in ("unauthorised", "expired"), answer  # a stale sent_at may be caught as expired first
    assert twin.commands == []
    expected = {"wrong_key": "bad signature", "tampered": "bad signature", "replayed": "nonce", "stale": ""}[attack]
    assert expected in answer["error"]


def test_the_authenticator_checks_time_both_ways_and_forgets_nonces_after_the_window():
    """sent_at too far in the future is refused too; a nonce may be reused once it is older than 2 x max_age_s."""
    now = [1000.0]
    auth = RequestAuthenticator(KEY, max_age_s=10.0, clock=lambda: now[0])
    with pytest.raises(Unauthorised, match="within 10 s"):
        auth.verify(sign_request({"id": 1}, KEY, client="c", now=1020.0, nonce="n" * 16))
    assert auth.verify(sign_request({"id": 1}, KEY, client="c", now=1000.0, nonce="n" * 16)) == "c"
    now[0] = 1025.0
    assert auth.verify(sign_request({"id": 2}, KEY, client="c", now=1025.0, nonce="n" * 16)) == "c"


def test_a_missing_or_short_key_file_is_an_error_naming_the_fix(tmp_path):
    """load_key: a missing file names how to create one; a short key names the minimum."""
    with pytest.raises(TwinExtError, match="secrets.token_hex"):
        load_key(tmp_path / "none.key")
    (tmp_path / "short.key").write_text("abc")
    with pytest.raises(TwinExtError, match="at least 16"):
        load_key(tmp_path / "short.key")
