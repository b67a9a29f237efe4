# SPDX-License-Identifier: Apache-2.0
"""Clock sync against a synthetic robot clock with known offset, drift and latency (deterministic streams).

Truth model (same as the emulator's): robot_ns = offset + (1 + drift) * twin_ns; a sample taken at
twin time t arrives at t + L with L uniform in [10, 30] ms ("20 ± 10 ms"). The minimum latency
(10 ms) is not observable from one-way traffic, so the tests give it as ``min_latency_ms`` and then
check the quantity the estimator needs: to_twin_ns(stamp) against the true sampling time t.
"""

from __future__ import annotations

import numpy as np
import pytest

from twin_ext.telemetry import ClockSettings, ClockSync, ClockSyncError

OFFSET_NS = 250_000_000  # robot clock ahead by 250 ms (the emulator's standard impairment)
T0_NS = 5_000_000_000_000  # twin monotonic clock ~83 min after boot


def _stream(seed: int, *, duration_s: float, rate_hz: float, drift: float, latency_ms=(10.0, 30.0), t0_ns: int = T0_NS):
    rng = np.random.default_rng(seed)
    t_ns = t0_ns + np.round(np.arange(0.0, duration_s, 1.0 / rate_hz) * 1e9).astype(np.int64)
    stamp = OFFSET_NS + t_ns + np.round(drift * (t_ns - t0_ns)).astype(np.int64) + np.int64(round(drift * t0_ns))
    arrival = t_ns + np.round(rng.uniform(*latency_ms, t_ns.size) * 1e6).astype(np.int64)
    return t_ns, stamp, arrival


def _feed(clock: ClockSync, stamp, arrival) -> None:
    for s, a in zip(stamp.tolist(), arrival.tolist(), strict=False):
        clock.update(s, a)


@pytest.mark.parametrize("drift_ppm", [-100.0, 0.0, 50.0, 100.0])
def test_error_below_1ms_after_2s_at_100hz_with_20_10ms_jitter(drift_ppm):
    """After 2 s of 100 Hz samples with 20 ± 10 ms latency, to_twin_ns is within 1 ms of the true sampling time.

    Tolerance: the requirement's 1 ms, over 100 seeds per drift. Expected error: the envelope sits
    above the floor by the lowest of ~200 uniform latencies (mean 20 ms / 201 ≈ 0.1 ms, 99th
    percentile ≈ 0.46 ms) plus an unestimated drift over 2 s (≤ 0.2 ms at 100 ppm) — so a 1 ms
    bound has margin without being loose enough to hide a biased (mean-based) estimator, whose
    error would be the 10 ms mean jitter.
    """
    worst = 0
    for seed in range(100):
        t_ns, stamp, arrival = _stream(seed, duration_s=2.0, rate_hz=100.0, drift=drift_ppm * 1e-6)
        clock = ClockSync(min_latency_ms=10.0)
        _feed(clock, stamp, arrival)
        assert clock.ready
        errors = clock.to_twin_ns(stamp[-50:]) - t_ns[-50:]  # the last half second, vectorised path
        assert clock.to_twin_ns(int(stamp[-1])) == int(clock.to_twin_ns(stamp[-1:])[0])
        worst = max(worst, int(np.abs(errors).max()))
    assert worst < 1_000_000, f"worst error {worst / 1e6:.3f} ms"


def test_drift_and_offset_converge_over_a_long_window():
    """Over 60 s at 200 Hz, drift is estimated within 5 ppm and the mapping within 0.1 ms (50 ppm true drift).

    Tolerance: the lower envelope of 30 s of 200 Hz samples pins the line to ~10 µs at both ends,
    i.e. ~1 ppm of slope; 5 ppm / 0.1 ms leave room for unlucky seeds.
    """
    t_ns, stamp, arrival = _stream(7, duration_s=60.0, rate_hz=200.0, drift=50e-6)
    clock = ClockSync(min_latency_ms=10.0)
    _feed(clock, stamp, arrival)
    assert abs(clock.drift * 1e6 - 50.0) < 5.0
    assert abs(clock.to_twin_ns(int(stamp[-1])) - int(t_ns[-1])) < 100_000
    # offset convention: twin ≈ robot + offset_ns at the latest sample
    assert abs(clock.offset_ns - (int(t_ns[-1]) - int(stamp[-1]))) < 100_000
    # latency estimate: 10 ms assumed floor + mean excess of the uniform jitter (10 ms)
    assert 18e6 < clock.latency_ns < 22e6
    snap = clock.snapshot()
    assert snap.ready and snap.jumps == 0 and abs(snap.drift_ppm - 50.0) < 5.0


def test_to_robot_is_the_inverse_of_to_twin():
    """to_robot_ns(to_twin_ns(s)) == s within 1 ns rounding, for scalars and arrays."""
    _, stamp, arrival = _stream(3, duration_s=20.0, rate_hz=100.0, drift=-80e-6)
    clock = ClockSync()
    _feed(clock, stamp, arrival)
    assert abs(clock.to_robot_ns(clock.to_twin_ns(int(stamp[-1]))) - int(stamp[-1])) <= 1
    back = clock.to_robot_ns(clock.to_twin_ns(stamp))
    assert np.abs(back - stamp).max() <= 1


def test_epoch_stamps_keep_nanosecond_precision():
    """Robot stamps in Unix-epoch ns (~1.7e18, beyond float64's integer range) map without precision loss."""
    epoch = 1_750_000_000_000_000_000
    t_ns, stamp, arrival = _stream(11, duration_s=3.0, rate_hz=100.0, drift=0.0, latency_ms=(1.0, 1.0))
    stamp = stamp + epoch
    clock = ClockSync(min_latency_ms=1.0)
    _feed(clock, stamp, arrival)
    assert abs(clock.to_twin_ns(int(stamp[-1])) - int(t_ns[-1])) <= 2


def test_forward_clock_step_is_detected_and_reinitialised():
    """A robot clock jumping 500 ms forward is a jump (counted) and the mapping re-converges within 2 s."""
    t_ns, stamp, arrival = _stream(5, duration_s=10.0, rate_hz=100.0, drift=0.0)
    stamp = stamp.copy()
    stamp[500:] += 500_000_000
    clock = ClockSync(min_latency_ms=10.0)
    _feed(clock, stamp[:700], arrival[:700])
    assert clock.jumps == 1 and "forward" in clock.last_jump
    assert abs(clock.to_twin_ns(int(stamp[699])) - int(t_ns[699])) < 1_000_000


def test_backward_clock_step_is_detected_at_once():
    """A robot clock stepping back by 2 s is detected on the first sample after the step."""
    t_ns, stamp, arrival = _stream(6, duration_s=6.0, rate_hz=100.0, drift=0.0)
    stamp = stamp.copy()
    stamp[300:] -= 2_000_000_000
    clock = ClockSync(min_latency_ms=10.0)
    _feed(clock, stamp[:301], arrival[:301])
    assert clock.jumps == 1 and "back" in clock.last_jump
    _feed(clock, stamp[301:], arrival[301:])
    assert clock.jumps == 1
    assert abs(clock.to_twin_ns(int(stamp[-1])) - int(t_ns[-1])) < 1_000_000


def test_latency_step_reinitialises_but_a_burst_does_not():
    """A permanent +100 ms latency step is a jump after jump_confirm_s; a 300 ms stall followed by a burst is not."""
    t_ns, stamp, arrival = _stream(8, duration_s=8.0, rate_hz=100.0, drift=0.0)
    stepped = arrival.copy()
    stepped[400:] += 100_000_000
    clock = ClockSync(settings=ClockSettings(min_latency_ms=10.0, jump_confirm_s=1.0))
    _feed(clock, stamp, stepped)
    assert clock.jumps == 1 and "late" in clock.last_jump
    stalled = arrival.copy()
    stall_end = int(t_ns[430]) + 15_000_000
    stalled[400:430] = np.maximum(stalled[400:430], stall_end)  # nothing delivered for 300 ms, then all at once
    clock = ClockSync(min_latency_ms=10.0)
    _feed(clock, stamp, stalled)
    assert clock.jumps == 0
    assert abs(clock.to_twin_ns(int(stamp[-1])) - int(t_ns[-1])) < 1_000_000


def test_single_impossible_stamp_is_ignored():
    """One sample stamped 1 s in the future (a corrupt stamp) neither pulls the envelope nor counts as a jump."""
    t_ns, stamp, arrival = _stream(9, duration_s=4.0, rate_hz=100.0, drift=0.0)
    stamp = stamp.copy()
    stamp[200] += 1_000_000_000
    clock = ClockSync(min_latency_ms=10.0)
    _feed(clock, stamp[:200], arrival[:200])
    before = clock.to_twin_ns(int(stamp[199]))
    clock.update(int(stamp[200]), int(arrival[200]))
    assert clock.to_twin_ns(int(stamp[199])) == before
    _feed(clock, stamp[201:], arrival[201:])
    assert clock.jumps == 0 and abs(clock.to_twin_ns(int(stamp[-1])) - int(t_ns[-1])) < 1_000_000


def test_reset_keeps_the_drift_of_the_oscillator():
    """After reset (robot reboot) the drift estimate is kept, the offset is forgotten."""
    _, stamp, arrival = _stream(4, duration_s=40.0, rate_hz=100.0, drift=60e-6)
    clock = ClockSync()
    _feed(clock, stamp, arrival)
    drift = clock.drift
    clock.reset()
    assert clock.samples == 0 and not clock.ready and clock.drift == pytest.approx(drift)
    with pytest.raises(ClockSyncError, match="no telemetry sample"):
        clock.to_twin_ns(0)


def test_slow_first_samples_are_not_a_clock_jump():
    """Samples that queued 100 ms behind a connection set-up, then normal ones, lower the warm-up envelope
    without a jump, and the mapping is right after 2 s."""
    t_ns, stamp, arrival = _stream(12, duration_s=3.0, rate_hz=100.0, drift=0.0)
    arrival = arrival.copy()
    arrival[:10] = np.maximum(arrival[:10], int(t_ns[10]) + 100_000_000)  # a burst 100 ms late
    clock = ClockSync(min_latency_ms=10.0)
    _feed(clock, stamp, arrival)
    assert clock.jumps == 0 and clock.samples == len(stamp)
    assert abs(clock.to_twin_ns(int(stamp[-1])) - int(t_ns[-1])) < 1_000_000


def test_high_samples_around_a_pause_are_not_a_latency_step():
    """Three slow samples before a 1.5 s publishing pause and three after it are no jump: the 1 s of
    "every sample late" must be covered by samples (a pause restarts the run), not by the silence."""
    t_ns, stamp, arrival = _stream(13, duration_s=8.0, rate_hz=100.0, drift=0.0)
    arrival = arrival.copy()
    arrival[397:400] += 50_000_000  # the last three before the pause: 50 ms slower than usual
    arrival[550:553] += 50_000_000  # and the first three after it
    keep = np.r_[0:400, 550 : len(stamp)]  # nothing published for 1.5 s
    clock = ClockSync(min_latency_ms=10.0)
    _feed(clock, stamp[keep], arrival[keep])
    assert clock.jumps == 0, clock.last_jump
    assert abs(clock.to_twin_ns(int(stamp[-1])) - int(t_ns[-1])) < 1_000_000
