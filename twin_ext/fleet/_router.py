# SPDX-License-Identifier: Apache-2.0
"""`FleetRouter`: one MQTT connection's payloads, sorted to each robot's own ingest (paho's network thread).

It stands where a single robot's `TelemetryIngest` stands for `MqttLink` (``on_payload``, ``post_event``,
``topics``, ``settings``, ``now_ns``): the link does not know it feeds many robots. Per payload it only parses
the topic, checks the robot's shard and flood budget, and hands the bytes to that robot's ingest — O(1), no
decoding of other robots' data, nothing that one robot's traffic can make slow for another beyond its own
budget (``max_rate_hz``). Births of robots not yet mirrored are handed to ``on_new_robot`` (the session builds
the robot off this thread).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..telemetry import EventKind, Topics
from ._sharding import in_shard

__all__ = ["FleetRouter"]


@dataclass(frozen=True)
class _NoRobot:
    """What `MqttLink` reads from ``ingest.settings``: no single robot (so no per-robot twin status)."""

    robot_id: str = ""


class _FleetTopics:
    """The topics a fleet twin subscribes to: every robot's births, plus (unsharded) every robot's telemetry or
    (sharded) the telemetry of the robots of this shard only, added as they are discovered."""

    def __init__(self, prefix: str, wildcard: bool) -> None:
        self.any = Topics("+", prefix)
        self.prefix = prefix
        self.wildcard = wildcard
        self.robot_topics: list[str] = []
        self.twin_status = f"{prefix}/fleet/twin/status"  # unused: twin status is off without a robot id

    def parse(self, topic: str) -> tuple[str, str] | None:
        return self.any.parse(topic)

    def telemetry_subscriptions(self) -> tuple[str, ...]:
        if self.wildcard:
            return self.any.telemetry_subscriptions()
        return (self.any.birth, *self.robot_topics)


class _Budget:
    """Token bucket: ``rate`` messages/s, bursts of ``burst`` (network thread only)."""

    __slots__ = ("rate", "burst", "tokens", "last_ns")

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst, self.tokens, self.last_ns = rate, burst, burst, 0

    def take(self, now_ns: int) -> bool:
        self.tokens = min(self.burst, self.tokens + (now_ns - self.last_ns) * 1e-9 * self.rate)
        self.last_ns = now_ns
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class FleetRouter:
    """Routes payloads by robot id.

    Args:
        prefix: topic prefix (``twin/v1``).
        shard_count, shard_index: this process's share of the fleet (`in_shard`).
        max_rate_hz: flood budget per robot, messages/s (bursts of a quarter second pass).
        on_new_robot: ``(robot_id, birth_payload)`` for a birth of a robot of this shard not yet mirrored.
        now_ns: the twin clock, int ns.
    """

    def __init__(
        self,
        *,
        prefix: str,
        shard_count: int = 1,
        shard_index: int = 0,
        max_rate_hz: float = 2000.0,
        on_new_robot: Callable[[str, bytes], None] | None = None,
        now_ns: Callable[[], int],
    ) -> None:
        self.topics = _FleetTopics(prefix, wildcard=shard_count == 1)
        self.settings = _NoRobot()
        self.now_ns = now_ns
        self.shard_count, self.shard_index = shard_count, shard_index
        self.max_rate_hz = max_rate_hz
        self.on_new_robot = on_new_robot
        self.ingests: dict[str, Any] = {}
        self._parsed: dict[str, tuple[str, str] | None] = {}  # topic -> (robot id, kind) or None (network thread)
        self._budgets: dict[str, _Budget] = {}
        self._pending: set[str] = set()
        self._early: dict[str, tuple[str, bytes]] = {}
        self._lock = threading.Lock()
        self.link: Any = None
        self.foreign = 0  # payloads of robots of other shards (a wildcard subscription's share of them)
        self.unknown = 0  # telemetry of robots not mirrored (no birth yet, discovery off, or over max_robots)
        self.flood_dropped: dict[str, int] = {}
        self.link_events: list[Any] = []
        self.link_connected = False
        self.notify_arrivals = False
        """Fusion on arrival (`FleetSession`): each routed joint state appends its robot id to ``arrived`` and sets
        ``wake``."""
        self.arrived: deque[str] = deque()  # appended here, popped by the fusion step (deque ops are atomic)
        self.wake = threading.Event()

    def mine(self, robot_id: str) -> bool:
        return self.shard_count == 1 or in_shard(robot_id, self.shard_count, self.shard_index)

    def add(self, robot_id: str, ingest: Any) -> None:
        """Route ``robot_id``'s payloads to ``ingest`` from now on (and subscribe to its topics when sharded)."""
        with self._lock:
            self._budgets[robot_id] = _Budget(self.max_rate_hz, self.max_rate_hz * 0.25)
            self.ingests[robot_id] = ingest
            self._pending.discard(robot_id)
            early = self._early.pop(robot_id, None)
        if early is not None:
            ingest.on_payload(early[0], early[1], self.now_ns())
        with self._lock:
            if not self.topics.wildcard:
                robot = Topics(robot_id, self.topics.prefix)
                new = [robot.joint_states, robot.status]
                self.topics.robot_topics.extend(new)
                if self.link is not None:
                    self.link.subscribe_now(new)

    def forget_pending(self, robot_id: str) -> None:
        with self._lock:
            self._pending.discard(robot_id)

    # ---- what MqttLink calls (network thread) ----------------------------------------------------------------
    def on_payload(self, topic: str, payload: bytes, arrival_ns: int | None = None) -> None:
        parsed = self._parsed.get(topic, False)
        if parsed is False:  # a topic not seen lately: a fleet has a handful per robot
            parsed = self.topics.parse(topic)
            if len(self._parsed) >= 4096:
                self._parsed.clear()
            self._parsed[topic] = parsed
        if parsed is None:
            self.unknown += 1
            return
        robot_id, kind = parsed
        ingest = self.ingests.get(robot_id)
        if ingest is None:
            if not self.mine(robot_id):
                self.foreign += 1
            elif kind == "birth" and self.on_new_robot is not None:
                with self._lock:  # every birth goes on (a garbage one may come before the real one)
                    self._pending.add(robot_id)
                self.on_new_robot(robot_id, bytes(payload))
            elif kind == "status" and robot_id in self._pending and len(self._early) < 10_000:
                self._early[robot_id] = (topic, bytes(payload))  # its retained status, given to it once built
            else:
                self.unknown += 1
            return
        now = self.now_ns() if arrival_ns is None else arrival_ns
        if not self._budgets[robot_id].take(now):
            self.flood_dropped[robot_id] = self.flood_dropped.get(robot_id, 0) + 1
            return
        ingest.on_payload(topic, payload, now)
        if self.notify_arrivals and kind == "joint_states":
            self.arrived.append(robot_id)
            wake = self.wake
            if not wake.is_set():  # a cheap read; set() takes a lock and notifies
                wake.set()

    def post_event(self, kind: Any, message: str, **detail: Any) -> None:
        """A link event (connected, lost, ...): every robot's twin hears it."""
        name = getattr(kind, "value", str(kind))
        if name == EventKind.CONNECTED.value:
            self.link_connected = True
        elif name in ("disconnected", "unreachable", "refused", "stopped"):
            self.link_connected = False
        self.link_events.append((name, message))
        del self.link_events[:-50]
        for ingest in list(self.ingests.values()):
            ingest.post_event(kind, message, **detail)
