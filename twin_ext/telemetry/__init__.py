"""Live telemetry: messages and codecs, the MQTT link, clock sync, ordering, MCAP record/replay.

    >>> from twin_ext.telemetry import TelemetryIngest, MqttLink, BrokerSettings, TelemetrySettings
    >>> ingest = TelemetryIngest(settings=TelemetrySettings(robot_id="panda-01"))
    >>> link = MqttLink(ingest, BrokerSettings(url="mqtt://127.0.0.1:1883"))
    >>> link.start()                      # never raises for network trouble: see ingest.poll_events()
    >>> for sample in ingest.poll_states():
    ...     t_twin = ingest.clock.to_twin_ns(sample.message.stamp_ns)   # when it was sampled
    >>> link.stop()

Wire formats, the clock-sync method and the public API are documented in docs/telemetry.md.
The MQTT link (paho-mqtt) and MCAP recording (mcap) are imported on first use.
"""

from __future__ import annotations

from .clock_sync import ClockSnapshot, ClockSync, ClockSyncError
from .codecs import (
    BINARY_MAGIC,
    DEFAULT_MAX_PAYLOAD_BYTES,
    decode,
    decode_birth,
    decode_status,
    encode_binary,
    encode_birth,
    encode_json,
    encode_status,
)
from .errors import RejectReason, TelemetryError
from .ingest import EventKind, IngestStats, LinkEvent, Received, TelemetryIngest
from .messages import MAX_JOINTS, SCHEMA_VERSION, SEQ_MODULUS, Birth, JointState, Status
from .ordering import SequenceTracker, SeqVerdict
from .settings import BrokerSettings, ClockSettings, SettingsError, TelemetrySettings
from .topics import DEFAULT_PREFIX, Topics

__all__ = [
    # messages and codecs
    "SCHEMA_VERSION",
    "MAX_JOINTS",
    "SEQ_MODULUS",
    "JointState",
    "Birth",
    "Status",
    "encode_json",
    "encode_binary",
    "decode",
    "encode_birth",
    "decode_birth",
    "encode_status",
    "decode_status",
    "BINARY_MAGIC",
    "DEFAULT_MAX_PAYLOAD_BYTES",
    "RejectReason",
    "TelemetryError",
    "Topics",
    "DEFAULT_PREFIX",
    # pipeline
    "TelemetryIngest",
    "Received",
    "LinkEvent",
    "EventKind",
    "IngestStats",
    "ClockSync",
    "ClockSyncError",
    "ClockSnapshot",
    "SequenceTracker",
    "SeqVerdict",
    # settings
    "BrokerSettings",
    "TelemetrySettings",
    "ClockSettings",
    "SettingsError",
    # lazily imported
    "MqttLink",
    "LinkState",
    "LinkHealth",
    "LinkConfigError",
    "McapRecorder",
    "McapReplay",
    "RecordingError",
    "EmbeddedBroker",
    "EmbeddedBrokerError",
    "Command",
    "CommandError",
]

_LAZY = {
    "MqttLink": ".mqtt_link",
    "LinkState": ".mqtt_link",
    "LinkHealth": ".mqtt_link",
    "LinkConfigError": ".mqtt_link",
    "McapRecorder": ".recording",
    "McapReplay": ".recording",
    "RecordingError": ".recording",
    "EmbeddedBroker": ".embedded_broker",  # amqtt: only for the zero-setup demo
    "EmbeddedBrokerError": ".embedded_broker",
    "Command": ".commands",  # twin -> robot command schema (twin_ext.telemetry.commands)
    "CommandError": ".commands",
}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'twin_ext.telemetry' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value
