# SPDX-License-Identifier: Apache-2.0
"""``estimator.kalman_backend = "warp"`` (one compiled kernel call per run of full samples) is the NumPy filter.

Oracle: the same samples through an estimator with ``kalman_backend = "numpy"``. Both run the same operations on
the same float64 state; only the summation order of F P Fᵀ (one Kronecker product in NumPy, explicit sums in the
kernel) and of the small matrix products can differ, so the estimates agree to rounding: stated tolerance 1e-10
relative (1e-12 rad absolute on positions), measured ~1e-14. Gate decisions (per-joint rejection counts, joint
restarts, every `observe` result) must be identical.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from twin_ext._paths import sample_recording
from twin_ext.estimation import EstimatorSettings, JointKalmanFilter, TwinEstimator, _estimator, _kalman_kernel
from twin_ext.robot import default_robot_path, load_robot
from twin_ext.telemetry import McapReplay, TelemetryIngest, TelemetrySettings

NS = 1_000_000_000
NUMPY, WARP = EstimatorSettings(kalman_backend="numpy"), EstimatorSettings(kalman_backend="warp")


@pytest.fixture(scope="module", autouse=True)
def kernel():
    """The kernel built (a cold cache compiles it here, once)."""
    assert _kalman_kernel.build_kalman_kernel(120), _kalman_kernel._kernel.error


@pytest.fixture(scope="module")
def robot():
    return load_robot(default_robot_path())


@pytest.fixture(scope="module")
def panda(robot):
    """The Panda without limits (the synthetic motion swings every joint ±0.4 rad)."""
    return dataclasses.replace(robot, lower=np.full(robot.ndof, -np.inf), upper=np.full(robot.ndof, np.inf))


def _counting(monkeypatch):
    """Counts of kernel runs and of NumPy filter updates, over every estimator."""
    calls = {"kernel": 0, "numpy": 0}
    run, update = _kalman_kernel.CompiledFusion.run, JointKalmanFilter.update

    def counted_run(self, *args, **kw):
        calls["kernel"] += 1
        return run(self, *args, **kw)

    def counted_update(self, *args, **kw):
        calls["numpy"] += 1
        return update(self, *args, **kw)

    monkeypatch.setattr(_kalman_kernel.CompiledFusion, "run", counted_run)
    monkeypatch.setattr(JointKalmanFilter, "update", counted_update)
    return calls


def _stream_1khz(n: int, seconds: float = 2.0, seed: int = 0):
    """1 kHz noisy sinusoids (rad, rad/s) with outliers on joint 4 and a 0.3 rad jump of joint 3 held for 20 ms
    (gated, then restarted after ``gate_reset_after`` rejections); gamma arrival delays (20 ± 10 ms)."""
    rng = np.random.default_rng(seed)
    t = np.arange(0.0, seconds, 1e-3)
    w = 1.0 + 0.3 * np.arange(n)
    a = 0.4 / (1 + 0.1 * np.arange(n))
    q = a * np.sin(np.outer(t, w)) + rng.normal(0, 1e-4, (len(t), n))
    qd = a * w * np.cos(np.outer(t, w)) + rng.normal(0, 2e-3, (len(t), n))
    q[::97, 3] += 0.05
    q[1000:1020, 2] += 0.3
    arrival = t + rng.gamma(4.0, 0.005, len(t))
    arrival[0] = t[0]
    return t, q, qd, arrival


def _replay_per_tick(model, settings, names_of, t, q, qd, arrival):
    """Fuse in the live twin's order (each 60 Hz tick's arrivals by stamp) with a snapshot at every tick end.
    ``names_of(k)`` -> (names, index array) of sample k's joints. Returns (estimator, results, snapshots)."""
    est = TwinEstimator(model, settings)
    tick = np.floor(arrival * 60.0)
    order = np.lexsort((t, tick))
    results, snapshots = [], []
    for j, k in enumerate(order):
        names, idx = names_of(k)
        velocity = None if qd[k] is None else qd[k][idx]
        results.append(
            est.observe(names, q[k][idx], velocity, sample_ns=int(t[k] * NS), arrival_ns=int(arrival[k] * NS))
        )
        if j + 1 == len(order) or tick[order[j + 1]] != tick[k]:
            snapshots.append(est.snapshot(int((tick[k] + 1) / 60.0 * NS)))
    return est, results, snapshots


def _assert_same(a, b):
    """Per-tick snapshots, final filter state and every counter of two replays ``(est, results, snapshots)``."""
    (ea, ra, sa), (eb, rb, sb) = a, b
    assert ra == rb  # every observe result (fused, fused late, initialised, late)
    assert ea.stats == eb.stats  # gate rejections per joint, joint restarts, fused / late counts
    assert len(sa) == len(sb)
    for x, y in zip(sa, sb, strict=True):
        np.testing.assert_allclose(x.q, y.q, rtol=0, atol=1e-12)
        np.testing.assert_allclose(x.qd, y.qd, rtol=1e-10, atol=1e-12)
        scale = np.abs(y.covariance).max()
        np.testing.assert_allclose(x.covariance, y.covariance, rtol=0, atol=1e-10 * scale)
        assert x.health == y.health
    fa, fb = ea.filter, eb.filter
    np.testing.assert_allclose(fa.x, fb.x, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(fa.P, fb.P, rtol=0, atol=1e-10 * np.abs(fb.P).max())
    np.testing.assert_allclose(fa.r, fb.r, rtol=1e-10)
    np.testing.assert_array_equal(fa.initialized, fb.initialized)
    np.testing.assert_array_equal(ea._gate_streak, eb._gate_streak)


def test_the_warp_backend_equals_numpy_over_a_reordered_1khz_stream_with_outliers(panda, monkeypatch):
    """Reordered 1 kHz, per-tick order: the same snapshots, final state and gate decisions, 1e-10 relative."""
    t, q, qd, arrival = _stream_1khz(panda.ndof)
    every = (panda.dof_names, np.arange(panda.ndof))
    calls = _counting(monkeypatch)
    warp = _replay_per_tick(panda, WARP, lambda k: every, t, q, qd, arrival)
    assert calls == {"kernel": calls["kernel"], "numpy": 0} and calls["kernel"] > 0  # only the kernel fused
    numpy = _replay_per_tick(panda, NUMPY, lambda k: every, t, q, qd, arrival)
    assert numpy[0].stats.fused_late > 0.2 * len(t)  # the test really reorders
    assert sum(numpy[0].stats.gated.values()) > 20 and numpy[0].stats.joint_resets > 0  # and gates, and restarts
    _assert_same(warp, numpy)


def test_the_warp_backend_equals_numpy_over_the_shipped_recording(robot):
    """The shipped recording (200 Hz, lossy), as delivered and delayed by 0-40 ms per message: the same result."""
    replay = McapReplay(sample_recording())
    ingest = TelemetryIngest(settings=TelemetrySettings(robot_id="panda", state_buffer=100_000))
    replay.replay(ingest)
    received = list(ingest.poll_states())
    assert len(received) > 1500
    t = np.array([r.message.stamp_ns for r in received]) * 1e-9
    q = [np.asarray(r.message.position, dtype=float) for r in received]
    qd = [np.asarray(r.message.velocity, dtype=float) for r in received]
    arrival = np.array([r.arrival_ns for r in received]) * 1e-9
    every = (robot.dof_names, np.arange(robot.ndof))
    delayed = arrival + np.random.default_rng(3).uniform(0.0, 0.04, len(t))
    for when in (arrival, delayed):
        warp = _replay_per_tick(robot, WARP, lambda k: every, t, q, qd, when)
        _assert_same(warp, _replay_per_tick(robot, NUMPY, lambda k: every, t, q, qd, when))
    assert warp[0].stats.fused_late > 100


def test_partial_and_position_only_messages_and_gaps_fall_back_to_numpy(panda, monkeypatch):
    """Messages with a subset of the joints, without velocity, or after a gap longer than stale_after_s are
    fused by the NumPy path (the kernel takes only the runs of full ones between them): the same result."""
    t, q, qd, arrival = _stream_1khz(panda.ndof, seconds=1.5, seed=4)
    keep = t < 0.6
    keep |= t > 0.6 + 0.4  # a 0.4 s gap: the joints restart after it
    t, q, qd, arrival = t[keep], q[keep], qd[keep], arrival[keep]
    qd = [None if k % 7 == 3 else qd[k] for k in range(len(t))]  # position only
    names = panda.dof_names
    subset = np.array([0, 1, 2, 5, 6])

    def names_of(k):
        idx = subset if k % 11 == 5 else np.arange(panda.ndof)  # a subset of the joints
        return tuple(names[i] for i in idx), idx

    calls = _counting(monkeypatch)
    warp = _replay_per_tick(panda, WARP, names_of, t, q, qd, arrival)
    assert calls["kernel"] > 0 and calls["numpy"] > 0.2 * len(t)  # both paths really ran
    _assert_same(warp, _replay_per_tick(panda, NUMPY, names_of, t, q, qd, arrival))
    assert warp[0].stats.resets == 0 and warp[0].stats.fused_late > 0.1 * len(t)


def test_until_the_kernel_is_ready_the_warp_backend_fuses_with_numpy_bit_for_bit(panda, monkeypatch):
    """While the kernel is not built (cold cache, compile in the background) nothing waits: the NumPy path fuses,
    bit for bit as the NumPy backend; once it is ready the kernel takes over."""
    t, q, qd, arrival = _stream_1khz(panda.ndof, seconds=0.5, seed=5)
    every = (panda.dof_names, np.arange(panda.ndof))
    monkeypatch.setattr(_estimator, "ready", lambda: False)
    calls = _counting(monkeypatch)
    pending = _replay_per_tick(panda, WARP, lambda k: every, t, q, qd, arrival)
    assert calls["kernel"] == 0 and pending[0]._compiled is None
    numpy = _replay_per_tick(panda, NUMPY, lambda k: every, t, q, qd, arrival)
    for a, b in zip(pending[2], numpy[2], strict=True):
        np.testing.assert_array_equal(a.q, b.q)
        np.testing.assert_array_equal(a.covariance, b.covariance)
    monkeypatch.setattr(_estimator, "ready", _kalman_kernel.ready)
    est = pending[0]
    est.observe(every[0], q[-1], qd[-1], sample_ns=int((t[-1] + 1e-3) * NS), arrival_ns=int((t[-1] + 0.02) * NS))
    assert calls["kernel"] == 1
