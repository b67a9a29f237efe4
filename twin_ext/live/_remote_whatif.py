# SPDX-License-Identifier: Apache-2.0
"""What-if over MQTT and the veto channel: ``<prefix>/<robot_id>/whatif/request`` -> ``.../whatif/result``.

A request (JSON, at most ``[remote_whatif] max_bytes``; the whole schema and every answer in docs/whatif.md)::

    {"id": "job-42",                        # echoed in the answer (a string of <= 128 characters or a number)
     "client": "cell3-planner",             # who asks (rate limit and fairness); absent = "anonymous"
     "sent_at": 1718000000.25,              # Unix time it was sent, s (optional): older ones are refused
     "timeout_s": 5.0,                      # answer "timeout" after this (optional; at most [twin] whatif_timeout_s)
     "name": "pick_place_payload",          # a scenario from the scenario folder, or
     "scenario": { ...scenario schema... }, # a whole scenario; its trajectory names a file of the trajectory folder
     "align_to_state": true,                # start the trajectory command where the robot is now (default true)
     "veto_if_fail": false}                 # if the verdict is "fail", tell the robot to stop (needs commands)

is answered with ``{"id", "ok": true, "status": "served", "report": {...}, "veto": "..."}`` or
``{"id", "ok": false, "status": "refused" | "unknown" | "timeout" | "error", "reason": "<code>", "error": "<what
is wrong, the limit and the fix>"}``.

Three threads, none of them the display thread:

* **paho's network thread** (`_on_request`) admits or refuses in microseconds, from a cheap scan of the capped
  payload (id, client, sent_at): too large, too old, the twin not ``ok``, the client's token bucket empty, too
  many waiting (globally or for this client). Nothing else is parsed there.
* **the dispatcher** takes waiting requests round-robin between clients, refuses those that waited longer than
  ``max_age_s``, parses and validates the rest, loads named files only from the configured folders
  (`twin_ext.whatif.ConfinedFiles`), computes the request's cost from its scalars before any array exists
  (`twin_ext.whatif.plan_request`), aligns the command to the snapshot, and runs it on the twin's what-if
  worker with a cancel flag it sets when the request's time is up (answered ``timeout``; the engine stops
  after its current chunk of steps).
* **the twin's what-if worker** (`LiveTwin.ask_whatif`) runs the engine; ingest and display never wait.

MQTT 3.1.1 carries no publisher identity: ``client`` is what the requester says it is. Rate limits per client
therefore order well-behaved clients and stop accidents; against a hostile publisher that invents names, only
the global bound holds, and real identity needs broker ACLs on the request topic.

The veto is a `Stop` command on the robot's command topic, sent only when ``[twin] commands_enabled`` is true;
otherwise the result says why it was not sent.
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, replace
from typing import Any

from .._paths import resolve_shipped, scenarios_dir, shipped_root
from ..config import check_keys, section_from_mapping
from ..control import CommandRefused, RequestAuthenticator, Unauthorised, load_key
from ..telemetry import Stop
from ..whatif import (
    ConfinedFiles,
    FileNotAllowed,
    RequestLimits,
    WhatIfBudgetError,
    WhatIfError,
    align_to_snapshot,
    plan_request,
)

__all__ = ["REFUSAL_REASONS", "RemoteWhatIf", "RemoteWhatIfSettings"]

_KEYS = ("id", "client", "sent_at", "timeout_s", "name", "scenario", "align_to_state", "veto_if_fail", "nonce", "sig")

REFUSAL_REASONS: dict[str, str] = {
    "too_large": "refused",
    "bad_request": "refused",
    "expired": "refused",
    "not_ready": "unknown",
    "rate_limited": "refused",
    "queue_full": "refused",
    "not_allowed": "refused",
    "over_budget": "refused",
    "unauthorised": "refused",
    "timeout": "timeout",
    "failed": "error",
}
"""``{reason: answer status}`` of every way a request can end without a report (docs/whatif.md)."""

_CLIENT = re.compile(r"[A-Za-z0-9_.:@\-]{1,64}")
_ID_SCAN = re.compile(rb'"id"\s*:\s*("(?:[^"\\\x00-\x1f]|\\.){0,128}"|-?\d{1,19}(?:\.\d{1,17})?(?:[eE][+-]?\d{1,3})?)')
_CLIENT_SCAN = re.compile(rb'"client"\s*:\s*"([A-Za-z0-9_.:@\-]{1,64})"')
_SENT_SCAN = re.compile(rb'"sent_at"\s*:\s*(-?\d{1,12}(?:\.\d{0,9})?(?:[eE][+-]?\d{1,3})?)')
_MAX_BUCKETS = 1024
_CANCEL_GRACE_S = 10.0


@dataclass(frozen=True)
class RemoteWhatIfSettings:
    """``[remote_whatif]``: what-if requests over MQTT — admission, allowed files, per-request budgets."""

    max_bytes: int = 65536
    """Largest request payload, bytes; bigger ones are refused (too_large) before they are parsed."""
    max_waiting: int = 8
    """Requests waiting to run, all clients together; more are refused (queue_full)."""
    max_waiting_per_client: int = 2
    """Requests one client may have waiting; more are refused (queue_full), so one client cannot fill the queue."""
    client_rate_hz: float = 1.0
    """Requests per second a client may make on average (token bucket refill); beyond it: rate_limited."""
    client_burst: int = 4
    """Requests a client may make at once (token bucket size)."""
    max_age_s: float = 10.0
    """Refuse (expired) a request sent (its sent_at) or waiting in the twin's queue longer ago than this, s."""
    ready_after_s: float = 1.0
    """Run requests only once the twin's health has been ok for this long, s; before: not_ready (the burst a
    persistent session delivers right after a (re)connect arrives within milliseconds)."""
    scenario_dir: str = ""
    """Folder of the scenarios a request may name; "" = the shipped config/scenarios (relative: to the extension)."""
    trajectory_dir: str = ""
    """Folder of the trajectories a request's scenario may name; "" = the shipped data/scenarios."""
    max_file_bytes: int = 262144
    """Largest scenario or trajectory file a request may have read, bytes."""
    file_timeout_s: float = 1.0
    """Longest reading one such file may take, s."""
    max_steps: int = 100000
    """Integration steps per request (simulated time / dt; also the 10 ms alignment grid of the trajectory)."""
    max_worlds: int = 4096
    """Worlds (variants x samples) per request."""
    max_variants: int = 64
    """Variants per request."""
    max_world_steps: int = 10000000
    """Worlds x steps per request: its compute (~1 µs per world-step and core for the Panda)."""
    memory_budget_mb: float = 256.0
    """Memory one request may use, MiB (the smaller of this and [whatif] memory_budget_mb applies)."""
    key_file: str = ""
    """Shared-key file for signed requests (HMAC-SHA256, timestamp + nonce; docs/control.md); when set, unsigned or
    badly signed requests are refused (unauthorised) and counted. "" = requests are not signed (use broker ACLs)."""

    def __post_init__(self) -> None:
        for name in ("max_bytes", "max_waiting", "max_waiting_per_client", "client_burst", "max_file_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("max_steps", "max_worlds", "max_variants", "max_world_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not (math.isfinite(self.ready_after_s) and self.ready_after_s >= 0):
            raise ValueError(f"ready_after_s must be a finite number >= 0, got {self.ready_after_s!r}")
        for name in ("client_rate_hz", "max_age_s", "file_timeout_s", "memory_budget_mb"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any] | None) -> RemoteWhatIfSettings:
        """Build from the ``[remote_whatif]`` table; unknown keys are errors naming the valid ones."""
        return section_from_mapping(cls, mapping, section="remote_whatif")

    def limits(self) -> RequestLimits:
        """The per-request compute and memory limits."""
        return RequestLimits(
            max_steps=self.max_steps,
            max_worlds=self.max_worlds,
            max_variants=self.max_variants,
            max_world_steps=self.max_world_steps,
            memory_budget_mb=self.memory_budget_mb,
            section="[remote_whatif]",
        )

    def files(self) -> ConfinedFiles:
        """The folders requests may read."""
        scenarios = resolve_shipped(self.scenario_dir) if self.scenario_dir else scenarios_dir()
        trajectories = (
            resolve_shipped(self.trajectory_dir) if self.trajectory_dir else shipped_root() / "data" / "scenarios"
        )
        return ConfinedFiles(scenarios, trajectories, max_bytes=self.max_file_bytes, timeout_s=self.file_timeout_s)


class _Refusal(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass
class _Waiting:
    payload: bytes
    request_id: Any
    client: str
    arrived: float


class _Bucket:
    __slots__ = ("tokens", "t")

    def __init__(self, burst: float, now: float) -> None:
        self.tokens = burst
        self.t = now

    def take(self, now: float, rate: float, burst: float) -> bool:
        self.tokens = min(burst, self.tokens + (now - self.t) * rate)
        self.t = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class RemoteWhatIf:
    """Serves what-if requests for a `LiveTwin` over its `MqttLink`.

    Args:
        twin: the live twin (its ``whatif`` service runs the requests).
        link: the `MqttLink` (must not be started yet: the request topic is subscribed on connect).
        settings: `RemoteWhatIfSettings` (``[remote_whatif]``).
        timeout_s: longest a request may run (default ``[twin] whatif_timeout_s``).
        max_queue, max_bytes: override ``settings.max_waiting`` / ``settings.max_bytes``.
        clock, wall_clock: monotonic time and Unix time, s (tests inject them).

    Attributes:
        served: requests answered with a report. refused: all others (the sum of `refused_by_reason`).
    """

    def __init__(
        self,
        twin: Any,
        link: Any,
        *,
        settings: RemoteWhatIfSettings | None = None,
        timeout_s: float | None = None,
        max_queue: int | None = None,
        max_bytes: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        s = settings or RemoteWhatIfSettings()
        overrides = {}
        if max_queue is not None:
            overrides["max_waiting"] = max_queue
        if max_bytes is not None:
            overrides["max_bytes"] = max_bytes
        if overrides:
            s = replace(s, **overrides)
        self.settings = s
        self.twin = twin
        self.link = link
        topics = twin.ingest.topics
        self.request_topic = topics.whatif_request
        self.result_topic = topics.whatif_result
        self.max_queue = s.max_waiting
        self.max_bytes = s.max_bytes
        twin_settings = getattr(twin, "settings", None)
        self.timeout_s = float(timeout_s or getattr(twin_settings, "whatif_timeout_s", 60.0))
        self.files = s.files()
        self.limits = s.limits()
        self.authenticator = (
            RequestAuthenticator(load_key(s.key_file), max_age_s=s.max_age_s, clock=wall_clock) if s.key_file else None
        )
        """Checks request signatures when ``[remote_whatif] key_file`` is set (None: requests are not signed)."""
        self._clock = clock
        self._wall = wall_clock
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._waiting: dict[str, deque[_Waiting]] = {}
        self._turns: deque[str] = deque()  # clients with waiting requests, in round-robin order
        self._nwaiting = 0
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._closing = False
        self._thread: threading.Thread | None = None
        self._cancel: threading.Event | None = None
        self._running_id: Any = None
        self._ok_since: float | None = None  # since when the twin's health is ok (updated on every tick)
        self.served = 0
        self.refused_by_reason: dict[str, int] = dict.fromkeys(REFUSAL_REASONS, 0)
        link.add_handler(self.request_topic, self._on_request)

    # ---- counters -------------------------------------------------------------------------------------------
    @property
    def refused(self) -> int:
        """Requests answered without a report (every reason)."""
        return sum(self.refused_by_reason.values())

    @property
    def waiting(self) -> int:
        """Requests admitted and not started yet."""
        return self._nwaiting

    def counters(self) -> dict[str, Any]:
        """``{"served", "refused", "refused_by_reason": {reason: n}, "waiting", "running"}`` (JSON-able)."""
        with self._lock:
            by_reason = dict(self.refused_by_reason)
            waiting = self._nwaiting
        return {
            "served": self.served,
            "refused": sum(by_reason.values()),
            "refused_by_reason": by_reason,
            "waiting": waiting,
            "running": self._running_id is not None,
        }

    # ---- network thread: admit or refuse, never parse ----------------------------------------------------------
    def _on_request(self, payload: bytes) -> None:
        s = self.settings
        now = self._clock()
        head = payload[: s.max_bytes]  # every scan below sees at most max_bytes
        request_id = _scan_id(head)
        found = _CLIENT_SCAN.search(head)
        client = found.group(1).decode("ascii") if found else "anonymous"
        try:
            if len(payload) > s.max_bytes:
                raise _Refusal(
                    "too_large",
                    f"request is {len(payload)} bytes, more than [remote_whatif] max_bytes = {s.max_bytes}; fix: a "
                    'smaller request (name a scenario with "name" instead of sending it inline)',
                )
            sent = _SENT_SCAN.search(head)
            if sent is not None:
                age = self._wall() - float(sent.group(1))
                if age > s.max_age_s:
                    raise _Refusal("expired", self._expired(f"was sent {age:.3g} s ago"))
            self._check_ready()
            with self._lock:
                if self._closing:
                    raise _Refusal("not_ready", "the twin is stopping; fix: retry when it runs again")
                queue = self._waiting.get(client)
                if self._nwaiting >= s.max_waiting:
                    raise _Refusal(
                        "queue_full",
                        f"too many what-if requests waiting ({self._nwaiting}, [remote_whatif] max_waiting = "
                        f"{s.max_waiting}); fix: retry when earlier results arrived",
                    )
                if queue is not None and len(queue) >= s.max_waiting_per_client:
                    raise _Refusal(
                        "queue_full",
                        f"client {client!r} already has {len(queue)} requests waiting ([remote_whatif] "
                        f"max_waiting_per_client = {s.max_waiting_per_client}); fix: wait for their results",
                    )
                if not self._bucket(client, now).take(now, s.client_rate_hz, s.client_burst):
                    raise _Refusal(
                        "rate_limited",
                        f"client {client!r} asks faster than [remote_whatif] client_rate_hz = {s.client_rate_hz:g} "
                        f"requests/s (bursts of client_burst = {s.client_burst}); fix: ask less often",
                    )
                if queue is None:
                    queue = self._waiting[client] = deque()
                if not queue:
                    self._turns.append(client)
                queue.append(_Waiting(payload, request_id, client, now))
                self._nwaiting += 1
                self._ensure_dispatcher()
                self._wake.notify()
        except _Refusal as refusal:
            self._refuse(request_id, client, refusal)

    def _bucket(self, client: str, now: float) -> _Bucket:
        bucket = self._buckets.get(client)
        if bucket is None:
            bucket = self._buckets[client] = _Bucket(float(self.settings.client_burst), now)
            while len(self._buckets) > _MAX_BUCKETS:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(client)
        return bucket

    def _check_ready(self) -> Any:
        snapshot = self.twin.latest_snapshot
        health = _health(snapshot)
        if health != "ok":
            raise _Refusal(
                "not_ready",
                f"the twin's state is {health or 'not available yet'}: a what-if from it could not pass, so it is not "
                "run; fix: retry when the twin is ok (it follows the robot again)",
            )
        since = self._ok_since
        followed = 0.0 if since is None else self._clock() - since
        if followed < self.settings.ready_after_s:
            raise _Refusal(
                "not_ready",
                f"the twin has followed the robot for only {followed:.2f} s (less than [remote_whatif] ready_after_s "
                f"= {self.settings.ready_after_s:g} s; requests queued while it was away arrive now); fix: retry "
                "when the twin is ok",
            )
        return snapshot

    def _expired(self, what: str) -> str:
        return (
            f"the request {what}, longer than [remote_whatif] max_age_s = {self.settings.max_age_s:g} s: the robot "
            "has moved on since; fix: ask again"
        )

    # ---- the display thread ---------------------------------------------------------------------------------------
    def poll(self) -> None:
        """Called on every twin tick: notes since when the twin's health is ok (``ready_after_s``). Nothing else
        runs here: requests are admitted on the network thread and parsed, loaded and run by the dispatcher."""
        if _health(self.twin.latest_snapshot) == "ok":
            if self._ok_since is None:
                self._ok_since = self._clock()
        else:
            self._ok_since = None

    # ---- the dispatcher thread ------------------------------------------------------------------------------------
    def _ensure_dispatcher(self) -> None:  # with self._lock held
        if (self._thread is None or not self._thread.is_alive()) and not self._closing:
            self._thread = threading.Thread(target=self._dispatch, name="twin_ext-whatif-remote", daemon=True)
            self._thread.start()

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop the dispatcher: a running request is cancelled, waiting ones are dropped, new ones are answered
        not_ready until `open` (idempotent)."""
        with self._lock:
            self._closing = True
            self._waiting.clear()
            self._turns.clear()
            self._nwaiting = 0
            if self._cancel is not None:
                self._cancel.set()
            self._wake.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout_s)
        with self._lock:
            self._thread = None

    def open(self) -> None:
        """Serve again after `close` (a session started again); a new dispatcher starts with the next request."""
        with self._lock:
            self._closing = False

    def _next(self) -> _Waiting | None:
        with self._lock:
            while not self._closing and not self._turns:
                self._wake.wait()
            if self._closing:
                return None
            client = self._turns.popleft()
            queue = self._waiting[client]
            item = queue.popleft()
            self._nwaiting -= 1
            if queue:
                self._turns.append(client)  # its next request waits for the other clients' turns
            else:
                del self._waiting[client]
            return item

    def _dispatch(self) -> None:
        while True:
            item = self._next()
            if item is None:
                return
            try:
                self._handle(item)
            except Exception as exc:  # noqa: BLE001 - the dispatcher must survive anything
                self._refuse(item.request_id, item.client, _Refusal("failed", f"what-if failed: {exc!r}"))

    def _handle(self, item: _Waiting) -> None:
        request_id, client = item.request_id, item.client
        try:
            waited = self._clock() - item.arrived
            if waited > self.settings.max_age_s:
                raise _Refusal("expired", self._expired(f"waited {waited:.3g} s in the twin's queue"))
            doc = _parse(item.payload)
            request_id = doc.get("id")
            client = doc.get("client", "anonymous")
            if self.authenticator is not None:
                try:  # before anything else is looked at: an unsigned veto must not reach the command gate
                    client = self.authenticator.verify(doc)
                except Unauthorised as exc:
                    raise _Refusal("unauthorised", f"{exc}; the request was ignored") from None
            if "sent_at" in doc and self._wall() - doc["sent_at"] > self.settings.max_age_s:
                raise _Refusal("expired", self._expired(f"was sent {self._wall() - doc['sent_at']:.3g} s ago"))
            timeout_s = self.timeout_s
            if "timeout_s" in doc:
                timeout_s = min(timeout_s, float(doc["timeout_s"]))
            snapshot = self._check_ready()
            scenario = self._scenario(doc, snapshot)
            self._run(request_id, client, scenario, snapshot, timeout_s, bool(doc.get("veto_if_fail", False)))
        except _Refusal as refusal:
            self._refuse(request_id, client, refusal)

    def _scenario(self, doc: dict, snapshot: Any):
        align = bool(doc.get("align_to_state", True))
        try:
            if "name" in doc:
                scenario = self.files.load_scenario(doc["name"])
            else:
                if not isinstance(doc["scenario"], dict):
                    raise _Refusal(
                        "bad_request", "scenario must be a JSON object with the scenario schema (docs/whatif.md)"
                    )
                scenario = self.files.scenario_from_mapping(doc["scenario"])
            ndof = len(snapshot.q)
            uncertain = getattr(snapshot, "covariance", None) is not None
            engine = getattr(self.twin.whatif, "engine", None)
            settings = getattr(engine, "settings", None)
            if settings is not None:
                plan_request(
                    scenario, ndof=ndof, settings=settings, limits=self.limits, uncertain=uncertain, aligned=align
                )
            if align:
                scenario, _ = align_to_snapshot(scenario, snapshot)
        except FileNotAllowed as exc:
            raise _Refusal("not_allowed", str(exc)) from None
        except WhatIfBudgetError as exc:
            raise _Refusal("over_budget", f"refused before anything was allocated: {exc}") from None
        except (WhatIfError, ValueError) as exc:
            raise _Refusal("bad_request", str(exc)) from None
        return scenario

    def _run(self, request_id: Any, client: str, scenario: Any, snapshot: Any, timeout_s: float, veto: bool) -> None:
        engine = getattr(self.twin.whatif, "engine", None)
        if engine is not None and hasattr(engine, "wait_ready"):
            engine.wait_ready()  # a cold start compiles kernels: not the request's time
        cancel = threading.Event()
        with self._lock:
            if self._closing:
                return
            self._cancel, self._running_id = cancel, request_id
        try:
            future = self.twin.ask_whatif(scenario, snapshot=snapshot, cancel=cancel)
            try:
                report = future.result(timeout=timeout_s)
            except FutureTimeout:
                cancel.set()  # the engine stops after its current chunk of steps
                self._refuse(
                    request_id,
                    client,
                    _Refusal(
                        "timeout",
                        f"the what-if took longer than {timeout_s:g} s (the request's timeout_s, at most [twin] "
                        "whatif_timeout_s) and was cancelled; fix: fewer samples, variants or steps",
                    ),
                )
                try:
                    future.result(timeout=_CANCEL_GRACE_S)
                except Exception:  # noqa: BLE001 - its answer was given; only wait for the engine to be free
                    pass
                return
            except WhatIfBudgetError as exc:
                raise _Refusal("over_budget", str(exc)) from None
            except WhatIfError as exc:
                raise _Refusal("bad_request", str(exc)) from None
            except Exception as exc:  # noqa: BLE001
                raise _Refusal("failed", f"what-if failed: {exc}") from None
        finally:
            with self._lock:
                self._cancel, self._running_id = None, None
        result: dict[str, Any] = {"id": request_id, "ok": True, "status": "served", "report": report.to_dict()}
        if client != "anonymous":
            result["client"] = client
        if veto:
            result["veto"] = self._veto(report, client)
        self.served += 1
        self._publish(result)

    def _veto(self, report: Any, client: str) -> str:
        if report.status != "fail":
            return f"not needed: verdict {report.status}"
        try:
            self.twin.send_command(Stop(), requester=f"{client}@whatif-veto")
        except CommandRefused as exc:  # CommandGateClosed among them
            return f"not sent: {exc}"
        return "stop sent to the robot"

    # ---- answers ------------------------------------------------------------------------------------------------
    def _refuse(self, request_id: Any, client: str, refusal: _Refusal) -> None:
        with self._lock:
            self.refused_by_reason[refusal.reason] += 1
        answer: dict[str, Any] = {
            "id": request_id,
            "ok": False,
            "status": REFUSAL_REASONS[refusal.reason],
            "reason": refusal.reason,
            "error": str(refusal),
        }
        if client != "anonymous":
            answer["client"] = client
        self._publish(answer)

    def _publish(self, obj: dict) -> None:
        self.link.publish(self.result_topic, json.dumps(obj, separators=(",", ":")).encode("utf-8"), qos=1)


def _health(snapshot: Any) -> str | None:
    health = getattr(snapshot, "health", None)
    return getattr(health, "value", health)


def _scan_id(head: bytes) -> Any:
    """The request's id from a cheap scan of the (capped) payload, or None (the full parse decides later)."""
    found = _ID_SCAN.search(head)
    if found is None:
        return None
    try:
        value = json.loads(found.group(1))
    except ValueError:
        return None
    return value if isinstance(value, str) or (isinstance(value, (int, float)) and math.isfinite(value)) else None


def _parse(payload: bytes) -> dict:
    """The request document, checked against the request schema (not yet the scenario's)."""
    try:
        doc = json.loads(payload.decode("utf-8"), parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        raise _Refusal("bad_request", f"request is not valid JSON: {exc}"[:300]) from None
    if not isinstance(doc, dict):
        raise _Refusal("bad_request", "request must be a JSON object (docs/whatif.md)")
    request_id = doc.get("id")
    if not (
        request_id is None
        or (isinstance(request_id, str) and len(request_id) <= 128)
        or (isinstance(request_id, (int, float)) and not isinstance(request_id, bool) and math.isfinite(request_id))
    ):
        doc.pop("id")
        raise _Refusal("bad_request", "id must be a string of at most 128 characters or a number")
    try:
        check_keys(doc, _KEYS, where="what-if request:", error=ValueError)
    except ValueError as exc:
        raise _Refusal("bad_request", str(exc)) from None
    client = doc.get("client", "anonymous")
    if not isinstance(client, str) or not _CLIENT.fullmatch(client):
        raise _Refusal("bad_request", "client must be 1-64 characters of A-Z a-z 0-9 _ . : @ -")
    for key in ("sent_at", "timeout_s"):
        value = doc.get(key, 1.0)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise _Refusal("bad_request", f"{key} must be a number of seconds")
    if "timeout_s" in doc and doc["timeout_s"] <= 0:
        raise _Refusal("bad_request", "timeout_s must be > 0")
    for key in ("align_to_state", "veto_if_fail"):
        if key in doc and not isinstance(doc[key], bool):
            raise _Refusal("bad_request", f"{key} must be true or false")
    if ("name" in doc) == ("scenario" in doc):
        raise _Refusal(
            "bad_request", 'give exactly one of "name" (a scenario of the twin) or "scenario" (a scenario object)'
        )
    return doc


def _no_constant(token: str):
    raise ValueError(f"{token} is not valid JSON")
