# SPDX-License-Identifier: Apache-2.0
"""MCAP record/replay: everything received is recorded with its verdict and replays to the same result."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest

from twin_ext.telemetry import (
    REJECTED_TOPIC,
    Birth,
    EventKind,
    JointState,
    McapRecorder,
    McapReplay,
    RecordingError,
    Status,
    TelemetryIngest,
    TelemetrySettings,
    Topics,
    encode_binary,
    encode_birth,
    encode_json,
    encode_status,
)

NAMES = ("shoulder", "elbow", "wrist")
TOPICS = Topics("arm-7")


def _session(ingest: TelemetryIngest) -> None:
    """A mixed stream: birth, status, JSON and binary states, a duplicate, a late one, garbage."""
    ingest.on_payload(TOPICS.birth, encode_birth(Birth("arm-7", "arm", NAMES, 100.0, "boot-x", "binary")), 1_000)
    ingest.on_payload(TOPICS.status, encode_status(Status("arm-7", "online", "boot-x")), 2_000)
    t = 10_000_000
    for k, seq in enumerate([0, 1, 2, 2, 4, 3, 5, 6, 7, 8]):
        msg = JointState(
            "arm-7", seq, 5_000_000_000 + seq * 10_000_000, NAMES, np.sin(np.arange(3) + seq), np.cos(np.arange(3.0))
        )
        payload = encode_binary(msg) if k % 3 else encode_json(msg)
        ingest.on_payload(TOPICS.joint_states, payload, t + k * 10_000_000)
    ingest.on_payload(TOPICS.joint_states, b"TWJS\x01garbage", 500_000_000)
    ingest.on_payload(
        TOPICS.joint_states,
        b'{"version":1,"robot_id":"arm-7","seq":9,"stamp_ns":1,"name":["x"],"position":[NaN]}',
        510_000_000,
    )
    ingest.on_payload("twin/v1/arm-7/unknown", b"{}", 520_000_000)


def test_replay_reproduces_accepted_samples_and_counters(tmp_path):
    """Replaying a recording into a fresh ingest gives the same accepted samples, arrival times and counters."""
    path = tmp_path / "session.mcap"
    with McapRecorder(path) as recorder:
        live = TelemetryIngest(settings=TelemetrySettings(robot_id="arm-7"), recorder=recorder)
        _session(live)
    replayed = TelemetryIngest(settings=TelemetrySettings(robot_id="arm-7"))
    result = McapReplay(path).replay(replayed)
    assert result.payloads == live.stats.received == 15
    a, b = live.poll_states(), replayed.poll_states()
    assert [r.message.seq for r in a] == [0, 1, 2, 4, 3, 5, 6, 7, 8]  # the late 3 is handed on, flagged late
    assert [r.late for r in a] == [False] * 4 + [True] + [False] * 4
    assert a == b  # same messages (bit-exact arrays) and same arrival times
    sa, sb = live.stats, replayed.stats
    assert sa.rejected_by_reason == sb.rejected_by_reason == {
        "duplicate": 1, "malformed_binary": 1, "non_finite": 1, "unexpected_topic": 1,
    }  # fmt: skip
    assert sa.accepted_late == sb.accepted_late == 1
    assert (sa.accepted, sa.births, sa.statuses) == (sb.accepted, sb.births, sb.statuses)
    assert replayed.robot_online is True and replayed.birth == live.birth
    assert any(e.kind is EventKind.REPLAY_FINISHED for e in replayed.poll_events())


def test_recording_has_schemas_and_rejections_with_reasons(tmp_path):
    """Accepted payloads are JSON with a JSON Schema (binary re-encoded); rejected ones carry reason, detail and raw bytes."""
    from mcap.reader import make_reader

    path = tmp_path / "session.mcap"
    with McapRecorder(path) as recorder:
        _session(TelemetryIngest(settings=TelemetrySettings(robot_id="arm-7"), recorder=recorder))
    with open(path, "rb") as stream:
        messages = list(make_reader(stream).iter_messages())
    by_topic: dict[str, list] = {}
    for schema, channel, message in messages:
        assert schema is not None and schema.encoding == "jsonschema" and channel.message_encoding == "json"
        by_topic.setdefault(channel.topic, []).append((schema, message))
    states = by_topic[TOPICS.joint_states]
    assert [json.loads(m.data)["seq"] for _, m in states] == [0, 1, 2, 4, 3, 5, 6, 7, 8]  # the late 3 is kept
    assert states[1][1].sequence == 1 and states[1][1].publish_time == 5_010_000_000
    assert states[0][0].name == "twin_ext.JointState"
    rejected = [json.loads(m.data) for _, m in by_topic[REJECTED_TOPIC]]
    assert [r["reason"] for r in rejected] == [
        "duplicate",
        "malformed_binary",
        "non_finite",
        "unexpected_topic",
    ]
    assert all(r["detail"] and r["payload_base64"] for r in rejected)
    assert set(McapReplay(path).topics()) == {TOPICS.birth, TOPICS.status, TOPICS.joint_states, REJECTED_TOPIC}


def test_record_json_channels_are_read_back(tmp_path):
    """record_json writes extra JSON channels (e.g. emulator ground truth) that read_json returns in time order."""
    path = tmp_path / "truth.mcap"
    schema = {"type": "object", "properties": {"q": {"type": "array"}}}
    with McapRecorder(path, compression="lz4") as recorder:
        for k in (3, 1, 2):
            recorder.record_json(
                "/emulator/truth", {"q": [k, k + 0.5]}, k * 1000, "twin_ext.emulator.Truth", schema=schema
            )
    assert list(McapReplay(path).read_json("/emulator/truth")) == [
        (1000, {"q": [1, 1.5]}),
        (2000, {"q": [2, 2.5]}),
        (3000, {"q": [3, 3.5]}),
    ]
    replayed = TelemetryIngest(settings=TelemetrySettings(robot_id="arm-7"))
    assert McapReplay(path).replay(replayed).payloads == 0  # extra channels are not telemetry


def test_paced_replay_runs_at_the_requested_speed(tmp_path):
    """At 4x a 0.4 s recording takes ~0.1 s, re-stamped onto the ingest's clock; as-fast-as-possible takes far less."""
    path = tmp_path / "paced.mcap"
    with McapRecorder(path, background=False) as recorder:
        ingest = TelemetryIngest(settings=TelemetrySettings(robot_id="arm-7"), recorder=recorder)
        for seq in range(41):
            msg = JointState("arm-7", seq, seq * 10_000_000, NAMES, [0.0, 0.0, 0.0])
            ingest.on_payload(TOPICS.joint_states, encode_binary(msg), 1_000_000_000 + seq * 10_000_000)
    target = TelemetryIngest(settings=TelemetrySettings(robot_id="arm-7"))
    start = time.monotonic()
    result = McapReplay(path).replay(target, speed=4.0)
    elapsed = time.monotonic() - start
    assert 0.09 <= elapsed < 1.0 and result.payloads == 41
    arrivals = [r.arrival_ns for r in target.poll_states()]
    assert arrivals[-1] - arrivals[0] == pytest.approx(0.1e9, rel=1e-6)  # 400 ms of log time at 4x
    fast = TelemetryIngest(settings=TelemetrySettings(robot_id="arm-7"))
    assert McapReplay(path).replay(fast).wall_s < elapsed


def test_background_replay_can_be_stopped(tmp_path):
    """A replay started in the background stops on request and leaves no thread behind."""
    path = tmp_path / "long.mcap"
    with McapRecorder(path) as recorder:
        ingest = TelemetryIngest(settings=TelemetrySettings(robot_id="arm-7"), recorder=recorder)
        for seq in range(200):
            ingest.on_payload(
                TOPICS.joint_states, encode_binary(JointState("arm-7", seq, seq, NAMES, [0, 0, 0])), seq * 50_000_000
            )
    threads = set(threading.enumerate())
    handle = McapReplay(path).start(TelemetryIngest(settings=TelemetrySettings(robot_id="arm-7")), speed=1.0)
    time.sleep(0.2)
    result = handle.stop()
    assert handle.done and result.stopped and 0 < result.payloads < 200
    assert set(threading.enumerate()) == threads


def test_errors_name_the_file(tmp_path):
    """A missing or damaged recording raises RecordingError naming the file; a closed recorder refuses records."""
    with pytest.raises(RecordingError, match="does not exist"):
        McapReplay(tmp_path / "nope.mcap")
    bad = tmp_path / "bad.mcap"
    bad.write_bytes(b"not an mcap file at all")
    with pytest.raises(RecordingError, match="bad.mcap"):
        list(McapReplay(bad).iter_payloads())
    recorder = McapRecorder(tmp_path / "closed.mcap")
    recorder.close()
    with pytest.raises(RecordingError, match="closed"):
        recorder.record_json("/x", {}, 0, "x")


def test_full_writer_queue_drops_and_counts_instead_of_blocking(tmp_path):
    """When the writer falls behind, records beyond the queue are dropped and counted; the caller never waits."""
    recorder = McapRecorder(tmp_path / "tiny.mcap", queue_capacity=1)
    recorder._lock.acquire()  # stall the writer thread
    try:
        start = time.monotonic()
        for k in range(100):
            recorder.record_json("/x", {"k": k}, k, "x")
        assert time.monotonic() - start < 0.5
    finally:
        recorder._lock.release()
    recorder.close()
    assert recorder.dropped >= 97 and recorder.written + recorder.dropped == 100


def test_ingest_from_settings_records_to_record_path(tmp_path):
    """telemetry.record_path makes from_settings open a recorder that close() finishes into a readable file."""
    path = tmp_path / "deep" / "auto.mcap"
    ingest = TelemetryIngest.from_settings(TelemetrySettings(robot_id="arm-7", record_path=str(path)))
    _session(ingest)
    ingest.close()
    ingest.close()  # idempotent
    assert McapReplay(path).topics()[TOPICS.joint_states] == 9  # 10 states, one duplicate dropped
