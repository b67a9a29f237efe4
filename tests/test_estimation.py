# SPDX-License-Identifier: Apache-2.0
"""The Kalman estimator: latency compensation, monotonic time, gating, staleness and honest uncertainty.

These tests use synthetic measurement streams whose truth is known exactly; the end-to-end check against
the emulator's MuJoCo plant lives in tests/test_twin_*.py and the fidelity benchmark.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from twin_ext.estimation import EstimatorSettings, Health, ObserveResult, TwinEstimator
from twin_ext.robot import default_robot_path, load_robot

NS = 1_000_000_000


@pytest.fixture(scope="module")
def panda():
    """The Panda without position limits: the synthetic motions below swing every joint ±0.4 rad around 0,
    outside some real limits, and limit projection has its own test."""
    robot = load_robot(default_robot_path())
    return dataclasses.replace(robot, lower=np.full(robot.ndof, -np.inf), upper=np.full(robot.ndof, np.inf))


def _truth(t: np.ndarray, n: int):
    """Smooth joint motion: different sinusoids per joint (rad, rad/s)."""
    w = 1.0 + 0.3 * np.arange(n)
    a = 0.4 / (1 + 0.1 * np.arange(n))
    return a * np.sin(np.outer(t, w)), a * w * np.cos(np.outer(t, w))


def _feed(est, names, t, q, qd, *, latency=0.02, noise=(1e-4, 1e-3), seed=0):
    rng = np.random.default_rng(seed)
    for k in range(len(t)):
        est.observe(
            names,
            q[k] + rng.normal(0, noise[0], q.shape[1]),
            qd[k] + rng.normal(0, noise[1], q.shape[1]),
            sample_ns=int(t[k] * NS),
            arrival_ns=int((t[k] + latency) * NS),
        )


def test_prediction_to_display_time_beats_last_sample_hold_by_far(panda):
    """With 20 ms latency at 200 Hz, the estimate at arrival time is >20x closer to the truth than the sample."""
    n = panda.ndof
    est = TwinEstimator(panda)
    t = np.arange(0, 2.0, 0.005)
    q, qd = _truth(t, n)
    rng = np.random.default_rng(1)
    err_est, err_hold = [], []
    for k in range(len(t)):
        meas = q[k] + rng.normal(0, 1e-4, n)
        est.observe(
            panda.dof_names,
            meas,
            qd[k] + rng.normal(0, 1e-3, n),
            sample_ns=int(t[k] * NS),
            arrival_ns=int((t[k] + 0.02) * NS),
        )
        if t[k] > 0.25:
            display = t[k] + 0.02
            q_true = _truth(np.array([display]), n)[0][0]
            err_est.append(est.snapshot(int(display * NS)).q - q_true)
            err_hold.append(meas - q_true)
    rms_est, rms_hold = np.sqrt(np.mean(np.square(err_est))), np.sqrt(np.mean(np.square(err_hold)))
    assert rms_est < rms_hold / 20, (rms_est, rms_hold)
    assert est.health(int((t[-1] + 0.02) * NS)) == Health.OK


def test_late_measurements_never_move_the_state_backwards(panda):
    """A measurement older than the newest fused one is dropped as late; the filter time and state keep."""
    est = TwinEstimator(panda)
    t = np.arange(0, 0.5, 0.005)
    q, qd = _truth(t, panda.ndof)
    _feed(est, panda.dof_names, t, q, qd)
    t_filter = est.filter_time_ns
    before = est.snapshot(t_filter + NS // 100)
    result = est.observe(panda.dof_names, q[10] + 0.3, qd[10], sample_ns=int(t[10] * NS), arrival_ns=t_filter + NS)
    assert result == ObserveResult.LATE and est.stats.late == 1
    assert est.filter_time_ns == t_filter
    np.testing.assert_array_equal(est.snapshot(t_filter + NS // 100).q, before.q)
    # Within the out-of-sequence window (1 ms older) it is fused at its own time; the filter time keeps.
    ok = est.observe(panda.dof_names, q[-1], qd[-1], sample_ns=t_filter - 1_000_000, arrival_ns=t_filter + NS)
    assert ok == ObserveResult.FUSED_LATE and est.filter_time_ns == t_filter


def test_a_gap_grows_the_covariance_turns_stale_and_caps_the_extrapolation(panda):
    """After telemetry stops: variance grows monotonically, health becomes stale, displayed q stops moving."""
    s = EstimatorSettings(stale_after_s=0.25, max_extrapolation_s=0.1)
    est = TwinEstimator(panda, s)
    t = np.arange(0, 1.0, 0.005)
    q, qd = _truth(t, panda.ndof)
    _feed(est, panda.dof_names, t, q, qd)
    last_arrival = int((t[-1] + 0.02) * NS)
    horizons = [0.0, 0.05, 0.2, 0.5, 2.0]
    snaps = [est.snapshot(last_arrival + int(h * NS)) for h in horizons]
    variances = [s_.std_q[0] for s_ in snaps]
    assert all(b > a for a, b in zip(variances, variances[1:], strict=False))
    assert [s_.health for s_ in snaps] == [Health.OK, Health.OK, Health.OK, Health.STALE, Health.STALE]
    np.testing.assert_allclose(snaps[3].q, snaps[4].q)  # held beyond the cap
    assert np.all(snaps[4].qd == 0)
    assert snaps[4].age_s == pytest.approx(2.0)


def test_lost_before_any_data_and_after_a_disconnect(panda):
    """No data yet, a dropped link, or a robot LWT 'offline' all make the state lost."""
    est = TwinEstimator(panda)
    assert est.snapshot(0).health == Health.LOST
    t = np.arange(0, 0.2, 0.005)
    q, qd = _truth(t, panda.ndof)
    _feed(est, panda.dof_names, t, q, qd)
    now = int(0.22 * NS)
    assert est.health(now) == Health.OK
    est.set_link(connected=False)
    assert est.health(now) == Health.LOST
    est.set_link(connected=True, robot_online=False)
    assert est.health(now) == Health.LOST
    est.set_link(robot_online=True)
    assert est.health(now) == Health.OK


def test_an_outlier_is_gated_and_a_persistent_jump_resets_the_joint(panda):
    """A 0.5 rad spike on one joint is rejected and counted; a lasting offset re-initialises that joint."""
    est = TwinEstimator(panda, EstimatorSettings(gate_reset_after=5))
    n = panda.ndof
    t = np.arange(0, 0.5, 0.005)
    q, qd = _truth(t, n)
    _feed(est, panda.dof_names, t, q, qd)
    k_t = t[-1] + 0.005
    q1, qd1 = _truth(np.array([k_t]), n)
    spike = q1[0].copy()
    spike[2] += 0.5
    est.observe(panda.dof_names, spike, qd1[0], sample_ns=int(k_t * NS), arrival_ns=int((k_t + 0.02) * NS))
    assert est.stats.gated["joint3"] == 1 and sum(est.stats.gated.values()) == 1
    assert abs(est.snapshot(int(k_t * NS)).q[2] - q1[0][2]) < 1e-3  # the spike did not pull the state
    for i in range(1, 7):  # the joint really moved by 0.5 rad and stays there
        tk = k_t + i * 0.005
        qk, qdk = _truth(np.array([tk]), n)
        moved = qk[0].copy()
        moved[2] += 0.5
        est.observe(panda.dof_names, moved, qdk[0], sample_ns=int(tk * NS), arrival_ns=int((tk + 0.02) * NS))
    assert est.stats.joint_resets == 1
    assert abs(est.snapshot(int(tk * NS)).q[2] - moved[2]) < 1e-3


def test_messages_with_a_subset_of_joints_update_only_those(panda):
    """A message naming two joints (in any order) moves those two towards it; the others are untouched."""
    t = np.arange(0, 0.3, 0.005)
    q, qd = _truth(t, panda.ndof)
    # The display's plain constant-acceleration prediction (stillness_sigma = 0), so the reference's 5 ms
    # prediction of the untouched joints equals the filter's own predict step in `partial`.
    plain = EstimatorSettings(stillness_sigma=0.0)
    partial, reference = TwinEstimator(panda, plain), TwinEstimator(panda, plain)
    for est in (partial, reference):
        _feed(est, panda.dof_names, t, q, qd)
    t_next = t[-1] + 0.005
    q_next = _truth(np.array([t_next]), panda.ndof)[0][0]
    offset = 5e-4  # inside the gate (d² ≈ 6 < 16 with sigma_q = 2e-4 rad), well above the noise
    partial.observe(
        ("joint2", "joint1"),
        np.array([q_next[1], q_next[0]]) + offset,
        None,
        sample_ns=int(t_next * NS),
        arrival_ns=int(t_next * NS),
    )
    a, b = partial.snapshot(int(t_next * NS)), reference.snapshot(int(t_next * NS))
    moved = a.q[:2] - b.q[:2]  # Kalman gain ~0.1 here: the prior (sigma ~7e-5 rad) is tighter than one sample
    assert np.all((moved > 0.05 * offset) & (moved < offset)), moved
    np.testing.assert_array_equal(a.q[2:], b.q[2:])


def test_unknown_joint_names_are_a_clear_error_naming_them(panda):
    """Names that are not joints of the model raise ValueError listing them and the model's joints."""
    est = TwinEstimator(panda)
    with pytest.raises(ValueError, match=r"\['elbow'\].*joint1"):
        est.observe(("joint1", "elbow"), np.zeros(2), None, sample_ns=0, arrival_ns=0)


def test_reported_uncertainty_matches_the_actual_error(panda):
    """On a true constant-acceleration process with the model's jerk noise, the normalised estimation error
    squared (NEES, 2 dof per joint) averages 2 within statistical bounds: the covariance is honest, which the
    what-if engine relies on for P(violation)."""
    s = EstimatorSettings(jerk_psd=50.0, sigma_q=1e-3, sigma_qd=1e-2, time_sigma_s=0.0)  # exact sample times here
    est = TwinEstimator(panda, s)
    n, dt, steps = panda.ndof, 0.005, 3000
    rng = np.random.default_rng(7)
    x = np.zeros((n, 3))
    F = np.array([[1, dt, dt * dt / 2], [0, 1, dt], [0, 0, 1]])
    # Discrete covariance of white jerk with PSD q over one step (textbook, Bar-Shalom et al. 2001, eq. 6.2.3-8),
    # written out here rather than taken from the filter so the truth does not share the filter's code.
    q = s.jerk_psd
    Q = q * np.array(
        [[dt**5 / 20, dt**4 / 8, dt**3 / 6], [dt**4 / 8, dt**3 / 3, dt**2 / 2], [dt**3 / 6, dt**2 / 2, dt]]
    )
    L = np.linalg.cholesky(Q)
    nees = []
    for k in range(steps):
        x = x @ F.T + (L @ rng.standard_normal((3, n))).T
        est.observe(
            panda.dof_names,
            x[:, 0] + rng.normal(0, s.sigma_q, n),
            x[:, 1] + rng.normal(0, s.sigma_qd, n),
            sample_ns=int(k * dt * NS),
            arrival_ns=int(k * dt * NS),
        )
        if k > 200:
            snap = est.snapshot(int(k * dt * NS))
            cov = snap.covariance
            for j in range(n):
                e = np.array([snap.q[j] - x[j, 0], snap.qd[j] - x[j, 1]])
                c = cov[np.ix_([j, n + j], [j, n + j])]
                nees.append(e @ np.linalg.solve(c, e))
    mean = float(np.mean(nees))
    # ~25k correlated samples: a consistent filter gives 2.0 +- a few percent; +-15 % is a wide, safe band
    # that still fails a covariance off by a factor of 1.3 or more.
    assert 1.7 < mean < 2.3, mean


def test_displayed_positions_are_projected_onto_the_joint_limits():
    """A finger that runs into its hard stop is shown at the stop, not beyond it, with no outward speed."""
    robot = load_robot(default_robot_path())  # with its limits (this module's `panda` fixture has none)
    est = TwinEstimator(robot)
    f = robot.dof_index("finger_joint1")
    q = np.array(robot.clip_to_limits(np.array(robot.drive_target)), dtype=float)
    # The finger closes at 0.05 m/s towards its lower limit (0 m); telemetry ends 1 mm before the stop.
    for k in range(79):
        q[f] = 0.02 - 0.05 * k * 0.005
        qd = np.zeros(robot.ndof)
        qd[f] = -0.05
        est.observe(robot.dof_names, q, qd, sample_ns=int(k * 0.005 * NS), arrival_ns=int(k * 0.005 * NS))
    assert q[f] == pytest.approx(0.0005)
    snap = est.snapshot(int((k * 0.005 + 0.1) * NS))  # 100 ms of extrapolation would reach -4.5 mm
    assert snap.q[f] == robot.lower[f] and snap.qd[f] == 0.0
    assert np.all(snap.q >= robot.lower) and np.all(snap.q <= robot.upper)


def test_a_robot_noisier_than_configured_is_followed_instead_of_gated_out(panda):
    """Encoders 10x noisier than sigma_q (and velocities 20x sigma_qd): with the adaptive noise estimate
    (default) the learned noise settles near the true one, few samples are gated and the estimate is far
    closer to the truth than with the configured noise held fixed.

    Tolerances: the learned sigma is an exponential average over ~100 innovations (rate 0.01), so ±35 %
    of the true 2e-3 rad covers its sampling spread; the fixed filter gates most samples (each one is a
    ~10-sigma innovation) and coasts on stale velocities, the adaptive one does not (measured: 1.4 vs 8.2 mrad,
    142 vs 6075 gated; learned sigmas 1.9-2.2e-3 rad and 0.050-0.061 rad/s), so 2x and 10x are safe margins."""
    t = np.arange(0, 4.0, 0.005)
    q, qd = _truth(t, panda.ndof)
    noise = (2e-3, 6e-2)
    results = {}
    for rate in (0.01, 0.0):
        est = TwinEstimator(panda, EstimatorSettings(noise_adapt_rate=rate))
        assert est.settings.sigma_q == 2e-4 and est.settings.sigma_qd == 3e-3
        rng = np.random.default_rng(4)
        errors = []
        for k in range(len(t)):
            est.observe(
                panda.dof_names,
                q[k] + rng.normal(0, noise[0], panda.ndof),
                qd[k] + rng.normal(0, noise[1], panda.ndof),
                sample_ns=int(t[k] * NS),
                arrival_ns=int((t[k] + 0.02) * NS),
            )
            if k >= len(t) // 2:  # after convergence: the display 20 ms after each sample (its arrival)
                truth, _ = _truth(np.array([t[k] + 0.02]), panda.ndof)
                errors.append(est.snapshot(int((t[k] + 0.02) * NS)).q - truth[0])
        results[rate] = (float(np.sqrt(np.mean(np.square(errors)))), sum(est.stats.gated.values()), est.filter.r.copy())
    rms_adapt, gated_adapt, r = results[0.01]
    rms_fixed, gated_fixed, r_fixed = results[0.0]
    assert np.all(np.abs(np.sqrt(r[:, 0]) / noise[0] - 1) < 0.35), np.sqrt(r[:, 0])
    assert np.all(np.abs(np.sqrt(r[:, 1]) / noise[1] - 1) < 0.35), np.sqrt(r[:, 1])
    np.testing.assert_array_equal(np.sqrt(r_fixed), [[2e-4, 3e-3]] * panda.ndof)
    assert gated_adapt < 0.1 * gated_fixed, (gated_adapt, gated_fixed)
    assert rms_adapt < 0.5 * rms_fixed, (rms_adapt, rms_fixed)


def test_the_learned_noise_never_drops_below_the_configured_floor_and_shrugs_off_an_outlier(panda):
    """Cleaner data than configured keeps the configured noise (it is a floor); one 0.5 rad spike, though
    gated, raises the learned sigma of that joint by a bounded amount (the clip at 3 sigma of the spread)."""
    t = np.arange(0, 2.0, 0.005)
    q, qd = _truth(t, panda.ndof)
    est = TwinEstimator(panda, EstimatorSettings())
    _feed(est, panda.dof_names, t, q, qd, noise=(1e-5, 1e-4), seed=5)
    np.testing.assert_allclose(np.sqrt(est.filter.r), [[2e-4, 3e-3]] * panda.ndof)
    k_t = t[-1] + 0.005
    q1, qd1 = _truth(np.array([k_t]), panda.ndof)
    spike = q1[0].copy()
    spike[2] += 0.5
    est.observe(panda.dof_names, spike, qd1[0], sample_ns=int(k_t * NS), arrival_ns=int((k_t + 0.02) * NS))
    assert est.stats.gated["joint3"] == 1
    # One clipped innovation (<= 9 S) with weight 0.01: the variance grows by at most ~9 % of S.
    assert np.sqrt(est.filter.r[2, 0]) < 1.5 * 2e-4


def test_an_impossible_measurement_never_reaches_the_filter(panda):
    """Positions of 1e300 rad or NaN are refused (IMPLAUSIBLE, counted) without an overflow warning or a
    re-initialisation; the estimate and its uncertainty stay as they were (before: std 3.1e5 rad)."""
    import warnings

    est = TwinEstimator(panda)
    t = np.arange(0, 0.5, 0.005)
    q, qd = _truth(t, panda.ndof)
    _feed(est, panda.dof_names, t, q, qd)
    before = est.snapshot(est.filter_time_ns)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an overflow in the filter would raise here
        for bad in (np.full(panda.ndof, 1e300), np.full(panda.ndof, np.nan)):
            result = est.observe(panda.dof_names, bad, qd[-1], sample_ns=int(0.5 * NS), arrival_ns=int(0.52 * NS))
            assert result == ObserveResult.IMPLAUSIBLE
    after = est.snapshot(est.filter_time_ns)
    assert est.stats.implausible == 2 and est.stats.joint_resets == 0
    np.testing.assert_array_equal(after.q, before.q)
    assert np.all(after.std_q < 1e-3)


def test_joints_never_measured_are_shown_with_an_unknown_state(panda):
    """A robot that only ever sends some joints: the others are shown at their default with a huge variance."""
    est = TwinEstimator(panda)
    for k in range(20):
        est.observe(("joint1", "joint2"), np.array([0.1, 0.2]), None, sample_ns=k * NS // 100, arrival_ns=k * NS // 100)
    snap = est.snapshot(20 * NS // 100)
    assert snap.std_q[0] < 1e-2 and np.all(snap.std_q[2:] > 100.0)
    n = panda.ndof
    assert np.all(snap.covariance[2, :2] == 0.0) and snap.covariance[n + 2, n + 2] == 1e6


def _textbook_update(x, P, r, r_floor, z, *, adapt_rate, gate_chi2):
    """One joint's update written out with explicit matrices (the oracle for `JointKalmanFilter.update`): noise
    adaptation, chi-square gate, then the Joseph form. ``x: [3]``, ``P: [3, 3]``, ``r, r_floor, z: [2]``."""
    H = np.eye(3)[:2]
    y = z - H @ x
    hph = np.diag(H @ P @ H.T)
    r = np.maximum((1 - adapt_rate) * r + adapt_rate * (np.minimum(y * y, 9 * (hph + r)) - hph), r_floor)
    S = H @ P @ H.T + np.diag(r)
    if y @ np.linalg.solve(S, y) > gate_chi2:
        return x, P, r, True
    K = P @ H.T @ np.linalg.inv(S)
    A = np.eye(3) - K @ H
    return x + K @ y, A @ P @ A.T + K @ np.diag(r) @ K.T, r, False


def test_the_every_joint_update_matches_a_textbook_kalman_filter_over_a_long_run():
    """The batched every-joint update (position + velocity, adaptive noise, gate, Joseph form) equals explicit
    per-joint matrix arithmetic over 3000 steps with outliers, to relative 1e-9 (rounding accumulated over the
    run; measured ~1e-13)."""
    from twin_ext.estimation import JointKalmanFilter

    n, rng = 4, np.random.default_rng(5)
    kf = JointKalmanFilter(n, jerk_psd=50.0, sigma_q=1e-4, sigma_qd=2e-3, noise_adapt_rate=0.01, gate_chi2=13.8)
    kf.initialize(np.ones(n, dtype=bool), np.zeros(n), np.zeros(n))
    x, P, r = kf.x.copy(), kf.P.copy(), kf.r.copy()
    gated_total = 0
    for k in range(1, 3000):
        t = k * 1e-3
        q = np.sin(t * (1 + np.arange(n))) + rng.normal(0, 1e-4, n) + np.where(rng.random(n) < 0.01, 0.3, 0.0)
        qd = (1 + np.arange(n)) * np.cos(t * (1 + np.arange(n))) + rng.normal(0, 2e-3, n)
        kf.predict(1e-3)
        F = np.array([[1, 1e-3, 0.5e-6], [0, 1, 1e-3], [0, 0, 1]])
        Q = np.asarray(kf.jerk_psd)[:, None, None] * np.array(
            [[1e-15 / 20, 1e-12 / 8, 1e-9 / 6], [1e-12 / 8, 1e-9 / 3, 1e-6 / 2], [1e-9 / 6, 1e-6 / 2, 1e-3]]
        )
        gated = kf.update(q, qd)
        for j in range(n):
            z = np.array([q[j], qd[j]])
            prior = (F @ x[j], F @ P[j] @ F.T + Q[j])
            x[j], P[j], r[j], g = _textbook_update(*prior, r[j], kf.r_floor[j], z, adapt_rate=0.01, gate_chi2=13.8)
            assert g == gated[j], (k, j)
            gated_total += g
    assert gated_total > 50  # the outliers really were gated
    np.testing.assert_allclose(kf.x, x, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(kf.P, P, rtol=1e-9, atol=1e-18)
    np.testing.assert_allclose(kf.r, r, rtol=1e-9, atol=0)
