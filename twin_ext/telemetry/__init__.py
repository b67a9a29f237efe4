# SPDX-License-Identifier: Apache-2.0
"""Live telemetry: messages and codecs, the MQTT link, clock sync, ordering, MCAP record/replay, commands.

    ingest = TelemetryIngest(settings=TelemetrySettings(robot_id="panda-01"))
    link = MqttLink(ingest, BrokerSettings(url="mqtt://127.0.0.1:1883"))
    link.start()                      # never raises for network trouble: see ingest.poll_events()
    for sample in ingest.poll_states():
        t_twin = ingest.clock.to_twin_ns(sample.message.stamp_ns)   # when it was sampled
    link.stop()

Wire formats, the clock-sync method and the public API are documented in docs/telemetry.md. Names are
loaded on first use: paho-mqtt with the MQTT link, mcap with recording, amqtt with the embedded broker.
"""

from .. import lazy_exports

_EXPORTS = {
    "SCHEMA_VERSION": "._messages",
    "MAX_JOINTS": "._messages",
    "SEQ_MODULUS": "._messages",
    "JointState": "._messages",
    "Birth": "._messages",
    "Status": "._messages",
    "encode_json": "._codecs",
    "encode_binary": "._codecs",
    "decode": "._codecs",
    "encode_birth": "._codecs",
    "decode_birth": "._codecs",
    "encode_status": "._codecs",
    "decode_status": "._codecs",
    "BINARY_MAGIC": "._codecs",
    "DEFAULT_MAX_PAYLOAD_BYTES": "._codecs",
    "RejectReason": "._errors",
    "TelemetryError": "._errors",
    "Topics": "._topics",
    "DEFAULT_PREFIX": "._topics",
    "TelemetryIngest": "._ingest",
    "Received": "._ingest",
    "LinkEvent": "._events",
    "EventKind": "._events",
    "IngestStats": "._ingest",
    "ClockSync": "._clock_sync",
    "ClockSyncError": "._clock_sync",
    "ClockSnapshot": "._clock_sync",
    "SequenceTracker": "._ordering",
    "SeqVerdict": "._ordering",
    "BrokerSettings": "._settings",
    "TelemetrySettings": "._settings",
    "ClockSettings": "._settings",
    "MqttLink": "._mqtt_link",
    "BatchedReadClient": "._mqtt_link",
    "LinkState": "._mqtt_link",
    "LinkHealth": "._mqtt_link",
    "McapRecorder": "._recording",
    "McapReplay": "._recording",
    "RecordingError": "._recording",
    "REJECTED_TOPIC": "._recording",
    "EmbeddedBroker": "._embedded_broker",
    "EmbeddedBrokerError": "._embedded_broker",
    "Command": "._commands",
    "CommandError": "._commands",
    "MoveTo": "._commands",
    "Resume": "._commands",
    "SpeedOverride": "._commands",
    "Stop": "._commands",
    "decode_command": "._commands",
    "encode_command": "._commands",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
