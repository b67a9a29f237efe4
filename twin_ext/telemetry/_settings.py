# SPDX-License-Identifier: Apache-2.0
"""Settings of the telemetry area: ``[broker]``, ``[telemetry]`` and ``[clock]`` (docs/SETTINGS.md).

Each section is a frozen dataclass with defaults and ``from_mapping(mapping)``, which refuses
unknown keys (naming them and the valid ones) and wrong types, so a typo in config/twin.toml is an
error at start-up rather than a silently ignored option.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..config import ConfigError, check_robot_id, check_topic_prefix, parse_broker_url, section_from_mapping

__all__ = ["BrokerSettings", "TelemetrySettings", "ClockSettings"]


def _from_mapping(cls, section: str, mapping: Mapping[str, Any] | None):
    return section_from_mapping(cls, mapping, section=section)


def _require(ok: bool, section: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"[{section}] {message}")


@dataclass(frozen=True)
class BrokerSettings:
    """How the twin reaches the MQTT broker (section ``[broker]``; units in the names)."""

    url: str = "mqtt://127.0.0.1:1883"
    """``mqtt://host:port`` (plain TCP, default port 1883) or ``mqtts://host:port`` (TLS, default 8883)."""
    client_id: str = ""
    """MQTT client id; must be stable for the persistent session to survive restarts of the twin.
    Empty: ``twin_ext-<hostname>-<robot_id>``."""
    username: str = ""
    password: str = ""
    password_env: str = ""
    """Name of an environment variable holding the password (keeps secrets out of config files);
    when set and present it wins over ``password``."""
    tls_ca_file: str = ""
    """PEM CA bundle that signed the broker's certificate; empty: the system's trust store."""
    tls_cert_file: str = ""
    """PEM client certificate, for brokers that require one (``require_certificate true``)."""
    tls_key_file: str = ""
    """PEM private key of ``tls_cert_file``."""
    tls_insecure: bool = False
    """Accept any broker certificate (no chain or hostname check). For testing only."""
    protocol: str = "3.1.1"
    """``"3.1.1"`` or ``"5"``. 3.1.1 is the default: paho builds a Properties object for every v5
    PUBLISH, which cost ~40% of the receive rate in our measurement (docs/telemetry.md)."""
    qos: int = 1
    """QoS of the telemetry subscriptions: 1 (at least once; with the persistent session and a broker that
    keeps the queue, as config/mosquitto.conf does, nothing is lost while the twin is away) or 0 (at most
    once, lowest latency)."""
    keepalive_s: int = 15
    persistent_session: bool = True
    """Ask the broker to keep the subscriptions and queue QoS1 messages while the twin is away."""
    session_expiry_s: int = 3600
    """MQTT 5 only: how long the broker keeps the session after a disconnect. (3.1.1 sessions
    live until the broker's ``persistent_client_expiration``.)"""
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 2.0
    """Reconnect back-off doubles from ``reconnect_min_s`` up to ``reconnect_max_s``. Capped at 2 s by default:
    a twin must be back within ~2 s of its broker (a robot's outage buffer and the broker's queue are finite),
    and one connection attempt every 2 s costs a broker nothing."""
    connect_timeout_s: float = 5.0
    batched_reads: bool = True
    """Read the socket in 64 KiB chunks and parse every packet in them per wake-up (vs. paho's
    3 system calls per packet). ~2x the receive rate; falls back to stock paho if unavailable."""
    publish_twin_status: bool = True
    """Publish the twin's health (retained) on ``<prefix>/<robot_id>/twin/status``, with an
    ``offline`` will."""

    def __post_init__(self) -> None:
        s = "broker"
        object.__setattr__(self, "_address", parse_broker_url(self.url, key="[broker] url"))
        _require(self.protocol in ("3.1.1", "5"), s, f"protocol {self.protocol!r} must be '3.1.1' or '5'")
        _require(self.qos in (0, 1), s, f"qos {self.qos} must be 0 or 1")
        _require(5 <= self.keepalive_s <= 65535, s, f"keepalive_s {self.keepalive_s} must be in [5, 65535]")
        _require(0 <= self.session_expiry_s <= 0xFFFFFFFF, s, "session_expiry_s must be in [0, 2**32)")
        _require(0 < self.reconnect_min_s <= self.reconnect_max_s, s, "need 0 < reconnect_min_s <= reconnect_max_s")
        _require(self.connect_timeout_s > 0, s, "connect_timeout_s must be > 0")
        _require(
            bool(self.tls_cert_file) == bool(self.tls_key_file),
            s,
            "tls_cert_file and tls_key_file go together: set both or neither",
        )
        _require(len(self.client_id) <= 64, s, "client_id must be at most 64 characters")

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any] | None) -> BrokerSettings:
        """Build from a ``[broker]`` table; unknown keys and wrong types raise `ConfigError`."""
        return _from_mapping(cls, "broker", mapping)

    @property
    def host(self) -> str:
        return self._address.host

    @property
    def port(self) -> int:
        return self._address.port

    @property
    def use_tls(self) -> bool:
        return self._address.tls

    def resolved_password(self) -> str | None:
        """The password to send (from ``password_env`` if that variable is set), or None."""
        if self.password_env and self.password_env in os.environ:
            return os.environ[self.password_env]
        return self.password or None

    def resolved_client_id(self, robot_id: str) -> str:
        """The client id to use: ``client_id`` or ``twin_ext-<hostname>-<robot_id|any>`` (stable)."""
        if self.client_id:
            return self.client_id
        host = "".join(c for c in socket.gethostname() if c.isalnum() or c in "-_")[:24] or "host"
        return f"twin_ext-{host}-{robot_id or 'any'}"[:64]

    def redacted_url(self) -> str:
        """The URL with any credentials removed (for messages and logs)."""
        return self._address.redacted()


@dataclass(frozen=True)
class TelemetrySettings:
    """What the twin accepts (section ``[telemetry]``)."""

    robot_id: str = ""
    """Robot to follow. Empty: subscribe to every robot under the prefix and follow the first one
    heard from (others are refused as ``wrong_robot``)."""
    topic_prefix: str = "twin/v1"
    max_payload_bytes: int = 65536
    require_birth: bool = False
    """Refuse joint states until the robot's birth arrived (then names are checked against it)."""
    state_buffer: int = 1024
    """Accepted samples held for the consumer; when full the oldest is dropped (counted). 1 = latest wins."""
    event_buffer: int = 256
    """Link events held for the consumer; when full the oldest is dropped (counted)."""
    reorder_window: int = 1024
    """Sequence numbers remembered to tell duplicates from late samples; jumps further back are
    possible restarts."""
    restart_confirm: int = 3
    """Consecutive self-consistent samples that confirm a discontinuity: a robot restart without a new birth
    (sequence far back), a forward sequence jump beyond ``max_seq_jump``, a position jump faster than the
    velocity limits, and the new boot a birth announced. Until then the old state is kept."""
    max_seq_jump: int = 16
    """Forward sequence gaps (skipped numbers) up to this are accepted at once; a larger jump is held until
    ``restart_confirm`` samples continue it (so one spoofed ``seq`` cannot make the real samples "late");
    0 accepts every forward jump at once."""
    check_plausibility: bool = True
    """Refuse physically impossible joint states when the model has limits (a `RobotModel`): positions beyond
    the joint limits by more than ``limit_margin``, velocities beyond ``speed_margin`` x the velocity limit,
    position jumps faster than that over the elapsed robot time (``out_of_limits``, ``implausible_jump``)."""
    limit_margin: float = 0.1
    """Tolerance beyond each joint's position limits, as a fraction of the joint's range (0.1: 0.58 rad for a
    Panda shoulder, 4 mm for its fingers); also the slack of the jump check (noise, hard stops)."""
    speed_margin: float = 1.5
    """Factor on the model's velocity limits for the velocity and jump checks (a joint pushed by an external
    force can exceed its limit somewhat)."""
    offline_grace_s: float = 0.5
    """An ``offline`` status for the running boot while joint states are arriving is held this long: if
    samples keep coming after half of it, the status is flagged as contradicted (``contradicted_status``)
    and not obeyed; if they stop, the robot is offline."""
    reject_event_interval_s: float = 1.0
    """At most one ``rejected`` event per reason code per interval (counters count every one)."""
    record_path: str = ""
    """MCAP file to record every received payload to (accepted and rejected); empty: no recording."""
    ros2_joint_map: tuple[str, ...] = ()
    """ROS 2 bags: "BAG=MODEL" entries naming the model joint of a bag joint ("panda_joint1=joint1").
    Read by ``replay --config`` and a suite's ``[[replay]] config``; ``--joint-map`` and a suite's ``joint_map``
    win over an entry for the same bag name."""

    def __post_init__(self) -> None:
        s = "telemetry"
        for entry in self.ros2_joint_map:
            bag, sep, model = entry.partition("=") if isinstance(entry, str) else ("", "", "")
            _require(
                bool(sep and bag.strip() and model.strip()),
                s,
                f'ros2_joint_map entry {entry!r} must be a string BAG=MODEL, e.g. "panda_joint1=joint1"',
            )
        check_robot_id(self.robot_id, key="[telemetry] robot_id", allow_empty=True)
        check_topic_prefix(self.topic_prefix, key="[telemetry] topic_prefix")
        _require(64 <= self.max_payload_bytes <= 16 * 2**20, s, "max_payload_bytes must be in [64, 16 MiB]")
        _require(self.state_buffer >= 1, s, "state_buffer must be >= 1 (1 = latest wins)")
        _require(self.event_buffer >= 1, s, "event_buffer must be >= 1")
        _require(self.reorder_window >= 1, s, "reorder_window must be >= 1")
        _require(self.restart_confirm >= 1, s, "restart_confirm must be >= 1")
        _require(self.max_seq_jump >= 0, s, "max_seq_jump must be >= 0 (0 = accept every forward jump)")
        _require(0 <= self.limit_margin <= 10, s, "limit_margin must be in [0, 10] (a fraction of the joint range)")
        _require(self.speed_margin >= 1, s, "speed_margin must be >= 1 (a factor on the velocity limits)")
        _require(self.offline_grace_s >= 0, s, "offline_grace_s must be >= 0")
        _require(self.reject_event_interval_s >= 0, s, "reject_event_interval_s must be >= 0")

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any] | None) -> TelemetrySettings:
        """Build from a ``[telemetry]`` table; unknown keys and wrong types raise `ConfigError`."""
        return _from_mapping(cls, "telemetry", mapping)


@dataclass(frozen=True)
class ClockSettings:
    """Robot-to-twin clock estimation (section ``[clock]``; method in docs/telemetry.md)."""

    window_s: float = 30.0
    """Robot time over which the lower envelope is fitted (longer: steadier drift, slower to follow
    a drifting drift)."""
    block_ms: float = 50.0
    """Minimum-filter block: each block keeps only its lowest-latency sample."""
    min_latency_ms: float = 0.0
    """Assumed minimum one-way latency (not observable from one-way traffic); subtracted so that
    ``to_twin_ns`` gives sampling times. Set to the measured minimum on slow links."""
    drift_min_span_s: float = 5.0
    """Shortest history whose envelope slope is trusted as drift; before it the previous drift
    estimate (0 at first) is held."""
    ready_span_s: float = 1.0
    ready_samples: int = 20
    """The mapping reports ``ready`` after this many samples spanning ``ready_span_s``."""
    jump_threshold_ms: float = 20.0
    """A stamp this far off the envelope is a candidate clock (or path) step."""
    jump_confirm_samples: int = 3
    """Consecutive samples below the envelope (or at least this many above it for
    ``jump_confirm_s``) that confirm a step and re-initialise the estimate."""
    jump_confirm_s: float = 1.0
    max_future_ms: float = 1000.0
    """The ingest refuses (``implausible_stamp``) a stamp that maps to more than this AFTER its arrival (sampled
    in the future) or that steps back by more than ``jump_threshold_ms``, unless ``jump_confirm_samples``
    consecutive samples agree (then it is a real clock step, followed at once). Smaller forward offsets are the
    estimate's own business (queueing during warm-up can make a lower envelope tens of ms too high)."""
    max_drift_ppm: float = 1000.0
    """Envelope slopes beyond this are treated as a bad fit, not as drift."""
    drift_prior_ppm: float = 200.0
    """Standard deviation of the robot clock's drift before any data (quartz oscillators are within tens of
    ppm): a fit from a short or wandering history is weighted against it, a long steady one decides alone.
    0 = no prior (every fit taken as it is)."""

    def __post_init__(self) -> None:
        s = "clock"
        _require(
            self.window_s > 0 and 0 < self.block_ms * 1e-3 < self.window_s,
            s,
            "need window_s > 0 and 0 < block_ms < window_s",
        )
        _require(self.min_latency_ms >= 0, s, "min_latency_ms must be >= 0")
        _require(
            self.drift_min_span_s >= 0 and self.ready_span_s >= 0, s, "drift_min_span_s and ready_span_s must be >= 0"
        )
        _require(self.ready_samples >= 1, s, "ready_samples must be >= 1")
        _require(
            self.jump_threshold_ms > 0 and self.jump_confirm_samples >= 1 and self.jump_confirm_s >= 0,
            s,
            "need jump_threshold_ms > 0, jump_confirm_samples >= 1, jump_confirm_s >= 0",
        )
        _require(self.max_drift_ppm > 0, s, "max_drift_ppm must be > 0")
        _require(self.drift_prior_ppm >= 0, s, "drift_prior_ppm must be >= 0 (0: no prior)")
        _require(self.max_future_ms >= self.jump_threshold_ms, s, "max_future_ms must be >= jump_threshold_ms")

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any] | None) -> ClockSettings:
        """Build from a ``[clock]`` table; unknown keys and wrong types raise `ConfigError`."""
        return _from_mapping(cls, "clock", mapping)
