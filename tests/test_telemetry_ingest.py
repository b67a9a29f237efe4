# SPDX-License-Identifier: Apache-2.0
"""TelemetryIngest without a network: ordering, births/restarts, status, routing, buffers, events, counters."""

from __future__ import annotations

import numpy as np
import pytest

from twin_ext.telemetry import (
    Birth,
    EventKind,
    JointState,
    RejectReason,
    SequenceTracker,
    Status,
    TelemetryIngest,
    TelemetrySettings,
    Topics,
    encode_binary,
    encode_birth,
    encode_json,
    encode_status,
)

NAMES = ("j1", "j2", "j3")
TOPICS = Topics("arm-1")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000_000

    def __call__(self) -> int:
        return self.now


def _state(seq: int, *, robot_id: str = "arm-1", names=NAMES, q: float = 0.0) -> bytes:
    stamp = 10_000_000_000 + seq * 10_000_000
    return encode_binary(JointState(robot_id, seq % 2**32, stamp, names, np.full(len(names), q)))


def _birth(boot: str, *, names=NAMES, robot_id: str = "arm-1") -> bytes:
    return encode_birth(Birth(robot_id, "test_arm", names, 100.0, boot, "binary"))


def _ingest(**settings) -> TelemetryIngest:
    settings.setdefault("robot_id", "arm-1")
    return TelemetryIngest(settings=TelemetrySettings(**settings), now_ns=FakeClock())


def _feed(ingest: TelemetryIngest, seqs, **kwargs) -> list[int]:
    for seq in seqs:
        ingest.on_payload(TOPICS.joint_states, _state(seq, **kwargs), 20_000_000_000 + (seq % 2**32) * 10_000_000)
    return [r.message.seq for r in ingest.poll_states()]


def test_sequence_tracker_classifies_duplicates_late_and_wrap():
    """Duplicates and late numbers are told apart; 2**32-1 -> 0 is one step forward; gaps are counted."""
    tracker = SequenceTracker(window=64)
    verdicts = [tracker.check(s).value for s in (2**32 - 2, 2**32 - 1, 0, 0, 3, 1, 1, 2**32 - 1)]
    assert verdicts == ["accept", "accept", "accept", "duplicate", "accept", "out_of_order", "duplicate", "duplicate"]
    assert tracker.gaps == 2 and tracker.late == 1 and tracker.last == 3


def test_duplicates_are_dropped_and_late_samples_handed_on_flagged_late():
    """Duplicates are dropped and counted; a late (reordered) sample is handed on flagged late, not rejected."""
    ingest = _ingest()
    for seq in [0, 1, 1, 3, 2, 4, 4, 0, 5]:
        ingest.on_payload(TOPICS.joint_states, _state(seq), 20_000_000_000 + seq * 10_000_000)
    received = ingest.poll_states()
    assert [(r.message.seq, r.late) for r in received] == [
        (0, False),
        (1, False),
        (3, False),
        (2, True),
        (4, False),
        (5, False),
    ]
    stats = ingest.stats
    assert stats.duplicates == 3 and stats.out_of_order == 0 and stats.accepted_late == 1
    assert stats.accepted == 6 and stats.rejected == 3 and stats.received == 9
    assert stats.seq_gaps == 1 and stats.seq_late == 1


def test_sequence_wrap_is_continuous():
    """Sequence numbers wrapping from 2**32-1 to 0 are accepted without a gap or reset."""
    ingest = _ingest()
    accepted = _feed(ingest, [2**32 - 3, 2**32 - 2, 2**32 - 1, 2**32, 2**32 + 1])
    assert accepted == [2**32 - 3, 2**32 - 2, 2**32 - 1, 0, 1]
    assert ingest.stats.seq_gaps == 0 and ingest.stats.seq_resets == 0 and ingest.stats.rejected == 0


def test_restart_with_new_birth_resets_sequence_and_clock():
    """A birth with a new boot id is a restart: the sequence starts over (no 'late' drops), the clock re-learns."""
    ingest = _ingest()
    ingest.on_payload(TOPICS.birth, _birth("boot-1"), 1)
    assert _feed(ingest, range(100, 120)) == list(range(100, 120))
    assert ingest.clock.samples == 20
    ingest.on_payload(TOPICS.birth, _birth("boot-1"), 2)  # retained birth redelivered on reconnect: no restart
    assert ingest.stats.restarts == 0 and ingest.clock.samples == 20
    ingest.on_payload(TOPICS.birth, _birth("boot-2"), 3)
    assert ingest.clock.samples == 0
    assert _feed(ingest, range(0, 5)) == [0, 1, 2, 3, 4]
    kinds = [e.kind for e in ingest.poll_events()]
    assert EventKind.BIRTH in kinds and EventKind.ROBOT_RESTARTED in kinds
    assert ingest.stats.restarts == 1 and ingest.stats.out_of_order == 0


def test_restart_without_birth_is_confirmed_after_consecutive_samples():
    """Without a birth, a far jump back is a restart only after restart_confirm consistent samples; one stray sample is dropped."""
    ingest = _ingest(restart_confirm=3, reorder_window=64)
    _feed(ingest, range(5000, 5010))
    assert _feed(ingest, [7]) == []  # a stray old sample
    assert _feed(ingest, [5010]) == [5010]
    assert _feed(ingest, [0, 1, 2, 3, 4]) == [2, 3, 4]
    assert ingest.stats.seq_resets == 1
    assert any(e.kind is EventKind.SEQUENCE_RESET for e in ingest.poll_events())


def test_status_and_stale_will_of_an_earlier_boot():
    """online/offline come from the status topic; an 'offline' will of an earlier boot does not mark the new boot offline."""
    ingest = _ingest()
    assert ingest.robot_online is None
    ingest.on_payload(TOPICS.birth, _birth("boot-2"), 1)
    ingest.on_payload(TOPICS.status, encode_status(Status("arm-1", "online", "boot-2")), 2)
    assert ingest.robot_online is True
    ingest.on_payload(TOPICS.status, encode_status(Status("arm-1", "offline", "boot-1")), 3)
    assert ingest.robot_online is True
    ingest.on_payload(TOPICS.status, encode_status(Status("arm-1", "offline", "boot-2")), 4)
    assert ingest.robot_online is False
    kinds = [e.kind for e in ingest.poll_events()]
    assert kinds.count(EventKind.ROBOT_ONLINE) == 1 and kinds.count(EventKind.ROBOT_OFFLINE) == 1


def test_names_are_checked_against_the_birth_and_the_model():
    """After a birth, states with other joints are refused; a model refuses a mismatching birth with an event."""
    ingest = _ingest()
    ingest.on_payload(TOPICS.birth, _birth("b"), 1)
    assert _feed(ingest, [1], names=("j1", "j2", "x")) == []
    assert ingest.stats.rejected_by_reason == {"unknown_joint": 1}

    class Model:
        dof_names = ("j1", "j2", "j3", "j4")

    strict = TelemetryIngest(settings=TelemetrySettings(robot_id="arm-1"), model=Model())
    strict.on_payload(TOPICS.birth, _birth("b"), 1)
    assert strict.birth is None and strict.stats.rejected_by_reason == {"missing_joint": 1}
    event = next(e for e in strict.poll_events() if e.kind is EventKind.BIRTH_MISMATCH)
    assert "j4" in event.message and "USD" in event.message


def test_require_birth_refuses_states_until_the_birth():
    """With require_birth, joint states before the birth are NO_BIRTH; after it they pass."""
    ingest = _ingest(require_birth=True)
    assert _feed(ingest, [1]) == []
    ingest.on_payload(TOPICS.birth, _birth("b"), 1)
    assert _feed(ingest, [2]) == [2]
    assert ingest.stats.rejected_by_reason == {"no_birth": 1}


def test_robot_routing_and_following_the_first_robot():
    """With no robot id configured the ingest follows the first robot heard from and refuses others."""
    ingest = _ingest(robot_id="")
    assert ingest.topics.joint_states == "twin/v1/+/joint_states"
    ingest.on_payload("twin/v1/arm-1/joint_states", _state(1), 1)
    ingest.on_payload("twin/v1/arm-2/joint_states", _state(2, robot_id="arm-2"), 2)
    ingest.on_payload("twin/v1/arm-2/joint_states", _state(3, robot_id="arm-1"), 3)
    ingest.on_payload("twin/v1/arm-1/whatever", _state(4), 4)
    ingest.on_payload("other/arm-1/joint_states", _state(5), 5)
    assert ingest.robot_id == "arm-1" and [r.message.seq for r in ingest.poll_states()] == [1]
    assert ingest.stats.rejected_by_reason == {"wrong_robot": 2, "unexpected_topic": 2}
    followed = [e for e in ingest.poll_events() if e.kind is EventKind.ROBOT_SELECTED]
    assert len(followed) == 1 and "telemetry.robot_id" in followed[0].message


def test_payload_robot_id_must_match_the_topic():
    """A payload whose robot_id differs from its topic's is refused as wrong_robot."""
    ingest = _ingest()
    ingest.on_payload(TOPICS.joint_states, _state(1, robot_id="arm-9"), 1)
    assert ingest.stats.rejected_by_reason == {"wrong_robot": 1}


def test_state_buffer_drops_oldest_and_latest_wins_with_capacity_one():
    """A full state buffer drops the oldest sample (counted); capacity 1 keeps only the newest."""
    ingest = _ingest(state_buffer=4)
    for seq in range(10):
        ingest.on_payload(TOPICS.joint_states, _state(seq), seq)
    assert [r.message.seq for r in ingest.poll_states()] == [6, 7, 8, 9]
    assert ingest.stats.states_dropped == 6 and ingest.latest.message.seq == 9
    latest = _ingest(state_buffer=1)
    _feed(latest, [])
    for seq in range(5):
        latest.on_payload(TOPICS.joint_states, _state(seq), seq)
    assert [r.message.seq for r in latest.poll_states()] == [4] and latest.poll_states() == []


def test_event_buffer_is_bounded_and_rejection_events_are_rate_limited():
    """Rejection events are at most one per reason per interval (counting all); the event queue drops oldest."""
    clock = FakeClock()
    ingest = TelemetryIngest(
        settings=TelemetrySettings(robot_id="arm-1", event_buffer=3, reject_event_interval_s=1.0), now_ns=clock
    )
    for _ in range(50):
        ingest.on_payload(TOPICS.joint_states, b"\x00junk", 1)
    events = ingest.poll_events()
    assert len(events) == 1 and events[0].detail["count"] == 1
    clock.now += 1_000_000_000
    ingest.on_payload(TOPICS.joint_states, b"\x00junk", 1)
    (event,) = ingest.poll_events()
    assert event.detail["count"] == 50 and event.detail["total"] == 51 and "fix:" in event.message
    for i in range(5):
        ingest.post_event(EventKind.CONNECTED, f"e{i}")
    assert [e.message for e in ingest.poll_events()] == ["e2", "e3", "e4"]
    assert ingest.stats.events_dropped == 2


def test_wait_for_states_wakes_on_data():
    """wait_for_states returns True at once when data waits and False after the timeout when none comes."""
    ingest = _ingest()
    assert ingest.wait_for_states(0.01) is False
    ingest.on_payload(TOPICS.joint_states, _state(1), 1)
    assert ingest.wait_for_states(0.01) is True


def test_internal_errors_never_reach_the_feeding_thread():
    """A failing recorder does not stop telemetry: samples are still accepted and one recording_failed event is posted."""

    class BrokenRecorder:
        def record_accepted(self, *args, **kwargs):
            raise OSError(28, "No space left on device")

        record_rejected = record_accepted

    ingest = TelemetryIngest(settings=TelemetrySettings(robot_id="arm-1"), recorder=BrokenRecorder())
    assert _feed(ingest, [1, 2, 2]) == [1, 2]
    kinds = [e.kind for e in ingest.poll_events()]
    assert kinds.count(EventKind.RECORDING_FAILED) == 1


def test_json_and_binary_states_mix():
    """The same stream may mix JSON and binary payloads; both reach the consumer identically."""
    ingest = _ingest()
    msg = JointState("arm-1", 1, 5, NAMES, [0.1, 0.2, 0.3])
    ingest.on_payload(TOPICS.joint_states, encode_json(msg), 1)
    ingest.on_payload(TOPICS.joint_states, encode_binary(JointState("arm-1", 2, 6, NAMES, [0.1, 0.2, 0.3])), 2)
    first, second = ingest.poll_states()
    assert first.message == msg and np.array_equal(first.message.position, second.message.position)


@pytest.mark.parametrize("bad", [b"", b"{}", b"\x00" * 10])
def test_rejections_leave_accepted_state_untouched(bad):
    """A refused payload changes no accepted state: latest sample, sequence and clock stay as they were."""
    ingest = _ingest()
    _feed(ingest, [1, 2, 3])
    before = (ingest.latest, ingest.stats.last_seq, ingest.clock.samples, ingest.clock.offset_ns)
    ingest.on_payload(TOPICS.joint_states, bad, 99)
    assert (ingest.latest, ingest.stats.last_seq, ingest.clock.samples, ingest.clock.offset_ns) == before
    assert ingest.poll_states() == []
    assert sum(ingest.stats.rejected_by_reason.values()) == 1
    assert ingest.stats.rejected_by_reason.get(RejectReason.EMPTY.value, 0) == (bad == b"")


# ---- hostile input (issue 16): one stray message costs at most itself -----------------------------------------


class LimitedModel:
    """Three revolute joints with limits ±1 rad and 2 rad/s (what the plausibility checks read from a RobotModel)."""

    dof_names = NAMES
    lower = np.full(3, -1.0)
    upper = np.full(3, 1.0)
    velocity_limit = np.full(3, 2.0)


def _at(ingest: TelemetryIngest, seq: int, *, q: float = 0.0, stamp_shift_ns: int = 0, **kwargs) -> list[int]:
    """Feed one sample at the arrival time its sequence number implies (10 ms period, 10 s latency offset)."""
    arrival = 20_000_000_000 + seq * 10_000_000
    ingest.now_ns.now = arrival
    payload = encode_binary(
        JointState("arm-1", seq, 10_000_000_000 + seq * 10_000_000 + stamp_shift_ns, NAMES, np.full(3, q), **kwargs)
    )
    ingest.on_payload(TOPICS.joint_states, payload, arrival)
    return [r.message.seq for r in ingest.poll_states()]


def test_a_spoofed_forward_seq_jump_is_held_then_discarded_and_the_real_samples_flow():
    """seq = last + 1000 is held (not accepted); the real numbering goes on being accepted, and after a second of
    it the stray is refused as seq_jump. Before: the next ~1000 real samples were refused as out_of_order."""
    ingest = _ingest()
    assert [s for k in range(50) for s in _at(ingest, k)] == list(range(50))
    stray = JointState("arm-1", 1049, 10_000_000_000 + 50 * 10_000_000, NAMES, np.zeros(3))  # a current stamp
    ingest.on_payload(TOPICS.joint_states, encode_binary(stray), 20_000_000_000 + 50 * 10_000_000)
    accepted = [s for k in range(50, 200) for s in _at(ingest, k)]
    assert accepted == list(range(50, 200))
    stats = ingest.stats
    assert stats.rejected_by_reason == {"seq_jump": 1} and stats.out_of_order == 0


def test_a_genuine_forward_jump_is_followed_after_restart_confirm_samples_and_nothing_is_lost():
    """Samples lost on a QoS0 link: the jump is confirmed by the next samples and the held ones are delivered in order."""
    ingest = _ingest(max_seq_jump=16, restart_confirm=3)
    _feed(ingest, range(10))
    assert _feed(ingest, [500]) == [] and _feed(ingest, [502]) == []  # held (any order within the new numbering)
    assert _feed(ingest, [501, 503]) == [500, 501, 502, 503]
    assert ingest.stats.rejected == 0 and ingest.stats.seq_gaps == 490


def test_a_backlog_overtaken_by_a_new_sample_is_not_a_stray():
    """After an outage a robot's client resends its backlog while a new sample overtakes it: the new one is held
    and released once the backlog catches up (nothing refused: the few samples it overtook come flagged late)."""
    ingest = _ingest()
    _feed(ingest, range(20))
    _feed(ingest, [400])  # a fresh sample, 4 s ahead in robot time too
    for seq in range(20, 400):  # the backlog, drained over 3 s of twin time
        ingest.on_payload(TOPICS.joint_states, _state(seq), 30_000_000_000 + seq * 8_000_000)
    received = ingest.poll_states()
    in_order = [r.message.seq for r in received if not r.late]
    assert in_order[-1] == 400 and ingest.stats.rejected_by_reason.get("seq_jump", 0) == 0
    assert set(range(20, 400)) <= {r.message.seq for r in received}


def test_an_offline_status_contradicted_by_flowing_data_is_flagged_not_obeyed():
    """'offline' for the running boot while samples keep coming: contradicted_status, the robot stays online;
    an 'offline' after which the data stop is obeyed once offline_grace_s has passed."""
    ingest = _ingest(offline_grace_s=0.5)
    ingest.on_payload(TOPICS.birth, _birth("boot-1"), 1)
    ingest.on_payload(TOPICS.status, encode_status(Status("arm-1", "online", "boot-1")), 2)
    for k in range(100):
        _at(ingest, k)
    ingest.on_payload(TOPICS.status, encode_status(Status("arm-1", "offline", "boot-1")), ingest.now_ns.now)
    assert ingest.robot_online is True  # held: data were arriving a moment ago
    for k in range(100, 160):
        _at(ingest, k)
    assert ingest.robot_online is True and ingest.stats.rejected_by_reason == {"contradicted_status": 1}
    ingest.on_payload(TOPICS.status, encode_status(Status("arm-1", "offline", "boot-1")), ingest.now_ns.now)
    ingest.now_ns.now += 600_000_000  # no sample for offline_grace_s: the robot really went offline
    assert ingest.robot_online is False
    kinds = [e.kind for e in ingest.poll_events()]
    assert kinds.count(EventKind.ROBOT_OFFLINE) == 1


def test_a_birth_with_a_new_boot_is_followed_only_once_the_data_confirm_it():
    """A spoofed birth while the data continue the old boot: contradicted_birth, no robot_restarted event, the old
    birth, numbering and clock stay; a real restart (seq from 0) is announced after restart_confirm samples."""
    ingest = _ingest()
    ingest.on_payload(TOPICS.birth, _birth("boot-1"), 1)
    for k in range(100):
        _at(ingest, k)
    ingest.poll_events()
    clock_samples = ingest.clock.samples
    ingest.on_payload(TOPICS.birth, _birth("spoofed"), ingest.now_ns.now)
    assert ingest.clock.samples == 0  # the new boot's estimate starts, the old one is kept aside
    assert [s for k in range(100, 110) for s in _at(ingest, k)] == list(range(100, 110))
    assert ingest.birth.boot_id == "boot-1" and ingest.stats.restarts == 0
    assert ingest.clock.samples >= clock_samples and ingest.stats.rejected_by_reason == {"contradicted_birth": 1}
    kinds = [e.kind for e in ingest.poll_events()]
    assert EventKind.ROBOT_RESTARTED not in kinds
    ingest.on_payload(TOPICS.birth, _birth("spoofed"), ingest.now_ns.now)  # the retained spoof, redelivered
    assert ingest.stats.rejected_by_reason == {"contradicted_birth": 2} and ingest.birth.boot_id == "boot-1"
    ingest.on_payload(TOPICS.birth, _birth("boot-2"), ingest.now_ns.now)  # a real restart: seq from 0
    got = [s for k in range(5) for s in _feed(ingest, [k])]
    assert got == [0, 1, 2, 3, 4] and ingest.stats.restarts == 1
    assert [e.kind for e in ingest.poll_events()].count(EventKind.ROBOT_RESTARTED) == 1


def test_impossible_values_are_refused_and_a_confirmed_jump_is_followed():
    """Positions beyond the limits (+10 % of the range) and velocities beyond 1.5x the limit are out_of_limits; a
    jump faster than the velocity limit is implausible_jump, unless restart_confirm consecutive samples agree."""
    ingest = TelemetryIngest(settings=TelemetrySettings(robot_id="arm-1"), model=LimitedModel(), now_ns=FakeClock())
    for k in range(30):
        _at(ingest, k, q=0.0)
    assert _at(ingest, 30, q=1e300) == [] and _at(ingest, 31, q=1.5) == []  # 1.5 rad: beyond 1 + 0.2 (10 % of 2)
    assert _at(ingest, 32, q=0.0, velocity=np.full(3, 1e12)) == []
    assert _at(ingest, 33, q=0.0, velocity=np.full(3, 2.9)) == [33]  # within 1.5 x the 2 rad/s limit
    assert ingest.stats.rejected_by_reason == {"out_of_limits": 3}
    # 0 -> 0.9 rad in 10 ms where 3 rad/s x 0.01 s + 0.2 (slack) = 0.23 are possible; 0.1 is fine.
    assert _at(ingest, 34, q=0.9) == [] and _at(ingest, 35, q=0.1) == [35]
    assert ingest.stats.rejected_by_reason["implausible_jump"] == 1
    # The robot really is elsewhere (moved while nobody watched): three consistent samples, the third is followed.
    assert _at(ingest, 36, q=-0.9) == [] and _at(ingest, 37, q=-0.9) == [] and _at(ingest, 38, q=-0.9) == [38]
    assert ingest.stats.rejected_by_reason["implausible_jump"] == 3


def test_implausible_stamps_are_refused_until_a_run_confirms_a_clock_step():
    """stamp_ns = 0 or one hour ahead is implausible_stamp and leaves the clock estimate as it was; a real 5 s step,
    repeated by jump_confirm_samples consecutive samples, re-initialises the estimate once."""
    ingest = _ingest()
    for k in range(200):
        _at(ingest, k)
    assert ingest.clock.ready
    offset = ingest.clock.offset_ns
    zero = JointState("arm-1", 200, 0, NAMES, np.zeros(3))  # stamp_ns = 0
    ingest.on_payload(TOPICS.joint_states, encode_binary(zero), ingest.now_ns.now)
    assert _at(ingest, 201, stamp_shift_ns=3600 * 10**9) == []
    assert ingest.stats.rejected_by_reason == {"implausible_stamp": 2}
    assert ingest.clock.jumps == 0 and ingest.clock.offset_ns == offset
    assert _at(ingest, 202, stamp_shift_ns=5 * 10**9) == [] and _at(ingest, 203, stamp_shift_ns=5 * 10**9) == []
    assert _at(ingest, 204, stamp_shift_ns=5 * 10**9) == [204] and ingest.clock.jumps == 1
    assert _at(ingest, 205, stamp_shift_ns=5 * 10**9) == [205]
    assert ingest.stats.rejected_by_reason == {"implausible_stamp": 4}
