# SPDX-License-Identifier: Apache-2.0
"""The display at rest and at stops (``estimator.stillness_sigma``): never worse than holding the last sample.

The constant-acceleration filter's acceleration estimate is noise when a joint is still (~1 rad/s² at 100 Hz with
1e-2 rad/s velocity noise); extrapolated over a 100-250 ms loss gap it showed a still arm moving by 6-30 mrad, where
holding the last sample is off by the sensor noise only (harsh profile: worst 1 s window 4.95 x hold). And a
joint braking to a stop was extrapolated through zero velocity into a reversal. Oracles: the emulator's plant
(ground truth at display time) and analytic motions.
"""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest

from twin_ext.estimation import EstimatorSettings, Health, TwinEstimator
from twin_ext.robot import default_robot_path, load_robot

NS = 1_000_000_000
PLAIN = EstimatorSettings(stillness_sigma=0.0)
"""The previous display: plain constant-acceleration extrapolation (to show each test can fail)."""


@pytest.fixture(scope="module")
def panda():
    robot = load_robot(default_robot_path())
    return dataclasses.replace(robot, lower=np.full(robot.ndof, -np.inf), upper=np.full(robot.ndof, np.inf))


def _gap_errors(panda, settings, *, trials: int, gap_s: float = 0.25) -> tuple[float, float]:
    """RMS display error (rad) of the twin and of holding the last sample, over ``gap_s`` after the last of 1 s of
    100 Hz samples of a still arm (noise 5e-4 rad, 1e-2 rad/s: the harsh profile's sensors), ``trials`` runs."""
    n = panda.ndof
    twin, hold = [], []
    for trial in range(trials):
        rng = np.random.default_rng(trial)
        q0 = rng.uniform(-1.0, 1.0, n)
        est = TwinEstimator(panda, settings)
        t = np.arange(0.0, 1.0, 0.01)
        last = None
        for tk in t:
            last = q0 + rng.normal(0, 5e-4, n)
            est.observe(
                panda.dof_names, last, rng.normal(0, 1e-2, n), sample_ns=int(tk * NS), arrival_ns=int((tk + 0.04) * NS)
            )
        for d in np.arange(0.04, gap_s, 1 / 60):
            twin.append(est.snapshot(int((t[-1] + d) * NS)).q - q0)
            hold.append(last - q0)
    rms = lambda e: float(np.sqrt(np.mean(np.square(e))))  # noqa: E731
    return rms(twin), rms(hold)


def test_a_still_arm_is_shown_still_through_a_loss_gap(panda):
    """A still arm with the harsh profile's sensor noise (RMS over 40 gaps and 9 joints): through 0.1 s without
    samples the display is no worse than holding the last sample (the plain display: 6 x worse); through 0.25 s it is
    at most a fifth of the plain display's error (measured 0.13; it is still ~3 x hold there, because the filter's
    velocity variance is ~30 % optimistic at this noise, see docs/design.md "Rest and stops")."""
    twin, hold = _gap_errors(panda, EstimatorSettings(), trials=40, gap_s=0.1)
    plain, _ = _gap_errors(panda, PLAIN, trials=40, gap_s=0.1)
    assert twin <= hold, (twin, hold)
    assert plain > 3.0 * hold, (plain, hold)  # the defect this guards against
    twin, _ = _gap_errors(panda, EstimatorSettings(), trials=40, gap_s=0.25)
    plain, _ = _gap_errors(panda, PLAIN, trials=40, gap_s=0.25)
    assert twin <= 0.2 * plain, (twin, plain)


def test_a_joint_braking_to_a_stop_is_shown_coming_to_rest(panda):
    """A joint braking at 3 rad/s² from 0.3 rad/s (from 0.95 s) stops 50 ms after its last sample: over 5 noisy runs
    the display through the next 0.5 s stays within 3 mrad of the true motion (the filter's acceleration lags the
    braking a little; holding the last sample is off by 3.75 mrad), where the plain extrapolation ran backwards by
    more than 20 mrad on average."""
    n = panda.ndof
    v0, decel, t_stop = 0.3, 3.0, 1.05  # rad/s, rad/s², s (the stop)
    brake_from = t_stop - v0 / decel

    def motion(t):
        """q rad of the braking joint: constant speed until ``brake_from``, then constant deceleration to rest."""
        tb = np.clip(np.asarray(t, dtype=np.float64) - brake_from, 0.0, v0 / decel)
        return v0 * np.minimum(t, brake_from) + v0 * tb - 0.5 * decel * tb * tb

    def speed(t):
        return np.clip(v0 - decel * np.clip(t - brake_from, 0.0, None), 0.0, None)

    worst = {}
    for name, settings in (("shown", EstimatorSettings()), ("plain", PLAIN)):
        errors = []
        for seed in range(5):
            est = TwinEstimator(panda, settings)
            rng = np.random.default_rng(seed)
            for tk in np.arange(0.0, 1.0 + 1e-9, 0.005):  # 200 Hz up to 1.0 s, the standard profile's sensor noise
                q, qd = np.zeros(n), np.zeros(n)
                q[0] = motion(tk) + rng.normal(0, 1e-4)
                qd[0] = speed(tk) + rng.normal(0, 2e-3)
                est.observe(panda.dof_names, q, qd, sample_ns=int(tk * NS), arrival_ns=int((tk + 0.02) * NS))
            display = np.arange(1.02, 1.5, 1 / 60)
            shown = np.array([est.snapshot(int(d * NS)).q[0] for d in display])
            errors.append(float(np.abs(shown - motion(display)).max()))
        worst[name] = errors
    assert max(worst["shown"]) <= 3e-3, worst
    assert np.mean(worst["plain"]) > 20e-3, worst


def test_health_goes_stale_as_before(panda):
    """Showing a still arm still changes nothing about health: ``stale`` after ``stale_after_s`` without samples."""
    est = TwinEstimator(panda)
    for k in range(100):
        est.observe(
            panda.dof_names,
            np.zeros(panda.ndof),
            np.zeros(panda.ndof),
            sample_ns=k * NS // 100,
            arrival_ns=k * NS // 100,
        )
    last = 99 * NS // 100
    assert est.health(last + int(0.2 * NS)) == Health.OK
    assert est.health(last + int(0.3 * NS)) == Health.STALE


def test_harsh_windows_at_rest_are_not_worse_than_hold():
    """Emulator oracle: harsh without its scripted events (seed 2, 25 s, which had a window at rest 4.95 x worse
    than hold): every 1 s window of the twin is at most hold's RMS (goal <= 1), where the plain display's worst window
    is above 1.5."""
    from twin_ext._paths import impairments_dir
    from twin_ext.emulator import EmulatedRobot, ImpairmentProfile
    from twin_ext.runs import evaluate_fidelity

    model = load_robot(default_robot_path())
    profile = ImpairmentProfile.from_toml(impairments_dir() / "harsh.toml").replace(
        pauses=(), restarts=(), clock_jumps=()
    )
    sim = EmulatedRobot(profile=profile).simulate(25.0, seed=2)
    shown = evaluate_fidelity(model, profile, simulation=sim)
    plain = evaluate_fidelity(model, profile, simulation=sim, estimator_settings=PLAIN)
    assert shown.worst_window_ratio <= 1.0, (shown.worst_window_ratio, shown.worst_window_s)
    assert plain.worst_window_ratio > 1.5, (plain.worst_window_ratio, plain.worst_window_s)
    assert shown.ratio_to_hold <= plain.ratio_to_hold * 1.02  # not bought with worse tracking in motion


def test_fused_fraction_counts_what_was_delivered_within_the_lag_window():
    """`fusable_samples`: duplicates count once, a sample logged as sent but never delivered (in flight at a
    restart) is not counted, and one delivered more than the lag window behind the newest is counted apart."""
    from twin_ext.runs import fusable_samples

    ms = 1_000_000
    samples = SimpleNamespace(
        stamp_ns=np.array([10, 20, 30, 40, 50]) * ms + 7,
        host_ns=np.array([10, 20, 30, 40, 50]) * ms,
        boot=np.zeros(5, dtype=np.int64),
    )
    stamps = [s * ms + 7 for s in (10, 50, 40, 40, 10 + 0)]  # 10, then 50; 40 in the window; a duplicate of 40
    stamps.append(20 * ms + 7)  # 20: 30 ms behind 50, beyond a 25 ms window
    delivered, within = fusable_samples(samples, stamps, max_lag_ms=25.0)
    assert delivered == 4  # 10, 50, 40, 20 (30 never arrived; duplicates of 40 and 10 once)
    assert within == 3  # 20 arrived 30 ms behind 50
