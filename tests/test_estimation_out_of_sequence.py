# SPDX-License-Identifier: Apache-2.0
"""Out-of-sequence fusion: late samples within ``max_lag_ms`` are fused at their own time by re-filtering.

Oracle: the same samples delivered in sample-time order to a second estimator. Re-filtering runs exactly
the operations in-order fusion runs, so the estimates must agree to floating-point identity; the stated
tolerance (1e-12 rad) only allows for nothing.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from twin_ext.estimation import EstimatorSettings, ObserveResult, TwinEstimator
from twin_ext.robot import default_robot_path, load_robot

NS = 1_000_000_000


@pytest.fixture(scope="module")
def panda():
    """The Panda without limits (the synthetic motion swings every joint ±0.4 rad)."""
    robot = load_robot(default_robot_path())
    return dataclasses.replace(robot, lower=np.full(robot.ndof, -np.inf), upper=np.full(robot.ndof, np.inf))


def _stream(n: int, *, rate_hz: float = 200.0, seconds: float = 3.0, seed: int = 0):
    """Noisy samples of smooth sinusoids: times ``[m]`` s, q and qd ``[m, n]`` (rad, rad/s)."""
    rng = np.random.default_rng(seed)
    t = np.arange(0.0, seconds, 1.0 / rate_hz)
    w = 1.0 + 0.3 * np.arange(n)
    a = 0.4 / (1 + 0.1 * np.arange(n))
    q = a * np.sin(np.outer(t, w)) + rng.normal(0, 1e-4, (len(t), n))
    qd = a * w * np.cos(np.outer(t, w)) + rng.normal(0, 2e-3, (len(t), n))
    return t, q, qd


def _arrivals(t: np.ndarray, seed: int) -> np.ndarray:
    """Independent gamma delays (20 +- 10 ms, plus 3 % delayed by 60 ms more): reorders about a third."""
    rng = np.random.default_rng(seed)
    delay = rng.gamma(4.0, 0.005, len(t)) + np.where(rng.random(len(t)) < 0.03, 0.06, 0.0)
    return t + delay


def test_late_samples_fused_equal_in_order_delivery(panda):
    """Reordered delivery (within the lag window) gives the same estimate as in-order delivery, to 1e-12 rad."""
    names = panda.dof_names
    t, q, qd = _stream(panda.ndof)
    arrival = _arrivals(t, seed=1)
    order = np.argsort(arrival, kind="stable")
    reordered, in_order = TwinEstimator(panda), TwinEstimator(panda)
    late = 0
    for k in order:
        result = reordered.observe(names, q[k], qd[k], sample_ns=int(t[k] * NS), arrival_ns=int(arrival[k] * NS))
        late += result == ObserveResult.FUSED_LATE
    for k in range(len(t)):
        in_order.observe(names, q[k], qd[k], sample_ns=int(t[k] * NS), arrival_ns=int(arrival[k] * NS))
    assert late > 0.2 * len(t), late  # the test really reorders
    assert reordered.stats.fused_late == late and reordered.stats.late == 0
    assert reordered.stats.fused == in_order.stats.fused == len(t)
    now = int((t[-1] + 0.03) * NS)
    a, b = reordered.snapshot(now), in_order.snapshot(now)
    np.testing.assert_allclose(a.q, b.q, rtol=0, atol=1e-12)
    np.testing.assert_allclose(a.qd, b.qd, rtol=0, atol=1e-12)
    np.testing.assert_allclose(a.covariance, b.covariance, rtol=1e-12, atol=1e-18)
    assert reordered.filter_time_ns == in_order.filter_time_ns  # the filter's time is the newest sample


def test_a_sample_older_than_the_lag_window_is_dropped_and_counted(panda):
    """A sample older than max_lag_ms behind the newest is dropped as too late; the estimate is untouched."""
    names = panda.dof_names
    est = TwinEstimator(panda, EstimatorSettings(max_lag_ms=100.0))
    t, q, qd = _stream(panda.ndof, seconds=1.0)
    for k in range(len(t)):
        est.observe(names, q[k], qd[k], sample_ns=int(t[k] * NS), arrival_ns=int((t[k] + 0.02) * NS))
    now = int((t[-1] + 0.02) * NS)
    before = est.snapshot(now)
    k_old = len(t) - 1 - 21  # 105 ms older than the newest at 200 Hz
    result = est.observe(names, q[k_old] + 0.3, qd[k_old], sample_ns=int(t[k_old] * NS), arrival_ns=now)
    assert result == ObserveResult.LATE and est.stats.late == 1 and est.stats.fused_late == 0
    np.testing.assert_array_equal(est.snapshot(now).q, before.q)
    k_ok = len(t) - 1 - 19  # 95 ms older: within the window, fused at its own time
    result = est.observe(names, q[k_ok], qd[k_ok], sample_ns=int(t[k_ok] * NS), arrival_ns=now)
    assert result == ObserveResult.FUSED_LATE and est.stats.fused_late == 1
    assert est.filter_time_ns == int(t[-1] * NS)


def test_history_stays_bounded_by_the_lag_window(panda):
    """The re-filtering history holds about max_lag_ms of samples (plus the base entry), not the whole run."""
    names = panda.dof_names
    est = TwinEstimator(panda, EstimatorSettings(max_lag_ms=50.0))
    t, q, qd = _stream(panda.ndof, seconds=2.0)
    for k in range(len(t)):
        est.observe(names, q[k], qd[k], sample_ns=int(t[k] * NS), arrival_ns=int((t[k] + 0.02) * NS))
    assert len(est._history.times) <= 50e-3 * 200 + 2


def _counting_updates(est: TwinEstimator) -> list[int]:
    """Count the filter updates ``est`` runs (a list holding the count, so the caller sees it change)."""
    calls = [0]
    update = est._kf.update

    def counted(*args, **kwargs):
        calls[0] += 1
        return update(*args, **kwargs)

    est._kf.update = counted
    return calls


def test_a_ticks_late_samples_are_refiltered_once_and_equal_one_at_a_time_bit_for_bit(panda):
    """Late samples waiting to be re-filtered together (as one 60 Hz tick's) give bit-identical estimates,
    snapshots and counters to re-filtering after each one and to in-order delivery, with fewer filter updates."""
    names = panda.dof_names
    t, q, qd = _stream(panda.ndof, rate_hz=1000.0, seconds=1.5)
    arrival = _arrivals(t, seed=2)
    arrival[0] = t[0]  # the first sample comes first: every later one has a history entry to re-filter from
    tick = np.floor(arrival * 60.0)
    order = np.lexsort((t, tick))  # each tick's arrivals in stamp order, as LiveTwin fuses them
    numpy = EstimatorSettings(kalman_backend="numpy")  # counts JointKalmanFilter.update calls: the NumPy path
    together, one_at_a_time, in_order = (TwinEstimator(panda, numpy) for _ in range(3))
    updates_together, updates_each = _counting_updates(together), _counting_updates(one_at_a_time)
    for j, k in enumerate(order):
        kw = {"sample_ns": int(t[k] * NS), "arrival_ns": int(arrival[k] * NS)}
        assert together.observe(names, q[k], qd[k], **kw) == one_at_a_time.observe(names, q[k], qd[k], **kw)
        one_at_a_time.filter  # noqa: B018 - reading the filter re-filters now: the per-sample path
        if j + 1 == len(order) or tick[order[j + 1]] != tick[k]:  # end of a tick: the display reads both
            now = int((tick[k] + 1) / 60.0 * NS)
            a, b = together.snapshot(now), one_at_a_time.snapshot(now)
            np.testing.assert_array_equal(a.q, b.q)
            np.testing.assert_array_equal(a.covariance, b.covariance)
    for k in range(len(t)):
        in_order.observe(names, q[k], qd[k], sample_ns=int(t[k] * NS), arrival_ns=int(arrival[k] * NS))
    assert together.stats.fused_late > 0.2 * len(t)  # the test really reorders
    assert together.stats == one_at_a_time.stats and together.stats.fused == in_order.stats.fused == len(t)
    for est in (one_at_a_time, in_order):
        for name in ("x", "P", "r", "initialized"):
            np.testing.assert_array_equal(getattr(together.filter, name), getattr(est.filter, name))
    assert updates_together[0] < 0.7 * updates_each[0], (updates_together, updates_each)


def test_a_snapshot_between_late_samples_sees_every_sample_observed(panda):
    """A read after a late sample (snapshot, filter) fuses what waits: it equals in-order delivery of the samples
    observed so far, to floating-point identity."""
    names = panda.dof_names
    t, q, qd = _stream(panda.ndof, seconds=0.5)
    est, ref = TwinEstimator(panda), TwinEstimator(panda)
    newest = len(t) - 1
    for k in range(newest - 5):
        est.observe(names, q[k], qd[k], sample_ns=int(t[k] * NS), arrival_ns=int(t[k] * NS))
    est.observe(names, q[newest], qd[newest], sample_ns=int(t[newest] * NS), arrival_ns=int(t[newest] * NS))
    for k in (newest - 3, newest - 5):  # two late ones, the second older than the first
        result = est.observe(names, q[k], qd[k], sample_ns=int(t[k] * NS), arrival_ns=int(t[newest] * NS))
        assert result == ObserveResult.FUSED_LATE
    for k in sorted([*range(newest - 5), newest - 5, newest - 3, newest]):
        ref.observe(names, q[k], qd[k], sample_ns=int(t[k] * NS), arrival_ns=int(t[k] * NS))
    now = int((t[newest] + 0.02) * NS)
    a, b = est.snapshot(now), ref.snapshot(now)
    np.testing.assert_array_equal(a.q, b.q)
    np.testing.assert_array_equal(a.covariance, b.covariance)
    assert est.filter_time_ns == ref.filter_time_ns == int(t[newest] * NS)
