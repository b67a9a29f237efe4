# SPDX-License-Identifier: Apache-2.0
"""Clock drift and offset converge on every shipped impairment profile, over many seeds (offline, no broker).

Oracle: the emulator's `RobotClock` (the true offset and drift) and `ImpairedChannel` (the true send and
arrival times; the profile's scripted pauses, restarts and clock jumps removed). The clock sync is fed what the
ingest feeds it: (stamp, arrival) of the samples that are newest by sequence number when they arrive. "Offset
error" is the error of the sample-time mapping at the newest sample minus the smallest latency the channel
actually produced: one-way traffic cannot see that minimum (docs/telemetry.md, "Clock sync accuracy").

Tolerances. The shipped profiles' gamma delays have no floor (their density vanishes like x^(k-1) at 0,
k = (latency / jitter)^2). For k > 2 no estimator beats the Cramér-Rao bound of i.i.d. gamma delays,
sd(drift) = theta * sqrt(k - 2) / (sqrt(N) * std(t)) with theta = jitter^2 / latency: after 10 s that is 57 ppm on
`standard` (N ~ 1900), 26 on `fast_tcp`, 75 / 186 / 152 on `reordering` / `harsh` / `wifi_pause` (fewer samples
are newest by sequence number), and the bound falls like T^-1.5; FIFO delivery only loses information. There the
bounds are the measured median and worst case over the seeds with ~25 % margin (measured values in comments).
With a latency floor (`latency_floor_ms`: the fastest messages cluster at the path's minimum delay) the drift is
the lower envelope's slope (Moon, Skelly & Towsley's line), which converges like 1 / (N T), and the issue's goal
(< 10 ppm, < 1 ms after 10 s) is met in the median, the offset for every seed (the last tests). The offset error
follows the drift error: a slope off by d over the window moves the line at the newest sample by about d * T / 2.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from twin_ext.emulator import ImpairedChannel, ImpairmentProfile, RobotClock
from twin_ext.telemetry import ClockSettings, ClockSync

PROFILES = Path(__file__).resolve().parents[1] / "config" / "impairments"
SEEDS = 24  # all of them checked after 10 s
LONG_SEEDS = 6  # the first ones also run to 30 s


def _clock_errors(
    profile: ImpairmentProfile,
    seed: int,
    checkpoints_s: tuple[float, ...],
    wander_ms: Callable[[float], float] | None = None,
    settings: ClockSettings | None = None,
) -> list[tuple[float, float, float]]:
    """(|drift error| ppm, |offset error| ms, the drift's estimated standard error ppm) at each checkpoint (s of host
    time) of the profile's stream; ``wander_ms(t_s)`` adds a time-varying delay (ms) to every arrival."""
    epoch = 1_000_000_000_000
    channel = ImpairedChannel(profile.replace(pauses=(), restarts=(), clock_jumps=()), seed=seed, epoch_ns=epoch)
    robot = RobotClock(offset_ns=round(profile.offset_ms * 1e6), drift=profile.drift_ppm * 1e-6, epoch_ns=epoch)
    period = 1e9 / profile.rate_hz
    arrivals = []
    for k in range(int(max(checkpoints_s) * profile.rate_hz)):
        send = epoch + round(k * period)
        extra = 0 if wander_ms is None else round(wander_ms(k * period * 1e-9) * 1e6)
        arrivals.extend((arrival + extra, k, send) for arrival, copy in channel.submit(send) if not copy)
    arrivals.sort()
    stamps = robot.to_robot_ns_array(np.array([send for _, _, send in arrivals], dtype=np.int64)).tolist()
    sync = ClockSync(settings=settings or ClockSettings())
    newest, min_latency, last = -1, np.inf, None
    todo, errors = [epoch + round(t * 1e9) for t in checkpoints_s], []

    def error() -> tuple[float, float, float]:
        stamp, send = last
        mapping = sync.to_twin_ns(stamp) - send
        return abs(sync.drift * 1e6 - profile.drift_ppm), abs(mapping - min_latency) * 1e-6, sync.drift_sd * 1e6

    for (arrival, k, send), stamp in zip(arrivals, stamps, strict=True):
        if todo and arrival >= todo[0]:
            errors.append(error())
            todo.pop(0)
        if k <= newest:
            continue  # late by sequence number: the ingest hands it to the estimator, not to the clock sync
        newest, last = k, (stamp, send)
        sync.update(stamp, arrival)
        min_latency = min(min_latency, arrival - send)
    errors.extend(error() for _ in todo)
    return errors


def _errors_over_seeds(profile: ImpairmentProfile) -> tuple[np.ndarray, np.ndarray]:
    """``[SEEDS, 2]`` errors after 10 s and ``[LONG_SEEDS, 2]`` after 30 s (drift ppm, offset ms)."""
    at_10, at_30 = [], []
    for seed in range(SEEDS):
        errors = _clock_errors(profile, seed, (10.0, 30.0) if seed < LONG_SEEDS else (10.0,))
        at_10.append(errors[0])
        if seed < LONG_SEEDS:
            at_30.append(errors[1])
    return np.array(at_10), np.array(at_30)


# name: (after 10 s: median drift ppm, worst drift ppm, worst offset ms; after 30 s: the same)
BOUNDS = {
    "none": (0.1, 0.1, 0.01, 0.1, 0.1, 0.01),
    "standard": (57.0, 220.0, 1.75, 13.0, 25.0, 0.55),  # measured 45 / 177 / 1.39; 10 / 20 / 0.44
    "standard_fifo": (57.0, 220.0, 1.75, 13.0, 25.0, 0.55),  # the same profile as standard
    "reordering": (78.0, 230.0, 1.65, 26.5, 29.5, 0.8),  # 62 / 183 / 1.31; 21 / 23 / 0.64
    "fast_tcp": (62.0, 165.0, 1.25, 21.0, 33.0, 0.7),  # 49 / 132 / 1.00; 16 / 26 / 0.55
    "tcp_1khz": (16.0, 45.0, 0.35, 3.0, 10.0, 0.17),  # 12 / 35 / 0.26; 2.1 / 4.3 / 0.13
    "harsh": (190.0, 340.0, 2.7, 75.0, 127.0, 3.3),  # 153 / 269 / 2.11; 60 / 101 / 2.66
    "wifi_pause": (120.0, 320.0, 2.6, 48.0, 89.0, 1.85),  # 96 / 256 / 2.07; 38 / 71 / 1.47
}


def test_every_shipped_profile_has_convergence_bounds():
    """Each config/impairments/*.toml is covered by the convergence test below (a new profile needs bounds)."""
    assert sorted(p.stem for p in PROFILES.glob("*.toml")) == sorted(BOUNDS)


@pytest.mark.parametrize("name", sorted(BOUNDS))
def test_drift_and_offset_converge_on_shipped_profiles(name):
    """After 10 s and 30 s the drift error (ppm) and offset error (ms) are within the stated bounds for every seed."""
    med_10, max_10, off_10, med_30, max_30, off_30 = BOUNDS[name]
    at_10, at_30 = _errors_over_seeds(ImpairmentProfile.from_toml(PROFILES / f"{name}.toml"))
    assert np.median(at_10[:, 0]) <= med_10 and at_10[:, 0].max() <= max_10, at_10[:, 0]
    assert at_10[:, 1].max() <= off_10, at_10[:, 1]
    assert np.median(at_30[:, 0]) <= med_30 and at_30[:, 0].max() <= max_30, at_30[:, 0]
    assert at_30[:, 1].max() <= off_30, at_30[:, 1]


@pytest.mark.parametrize(
    ("rate_hz", "in_order", "median_ppm", "max_ppm"),
    [(100.0, False, 2.6, 8.5), (100.0, True, 2.6, 10.0), (1000.0, False, 0.3, 2.0)],
)
def test_sharp_latency_floor_meets_the_10_ppm_1_ms_goal_after_10_s(rate_hz, in_order, median_ppm, max_ppm):
    """With a sharp minimum latency (exponential delays, mean 5 ms) the envelope line meets the goal after 10 s for
    every seed: drift error < 10 ppm, offset error < 1 ms.

    Measured over the seeds (median / worst drift ppm, worst offset ms): 100 Hz independent 2.0 / 6.5 / 0.04,
    100 Hz in order 1.9 / 9.5 / 0.04, 1 kHz independent 0.2 / 1.5 / 0.01. (The lowest quantile line alone, before
    the envelope was used for sharp floors, gave 3.7 / 11.3, 3.1 / 25.2 and 0.4 / 0.9 ppm.)
    """
    standard = ImpairmentProfile.from_toml(PROFILES / "standard.toml")
    profile = standard.replace(rate_hz=rate_hz, latency_ms=5.0, latency_floor_ms=0.0, jitter_ms=5.0, in_order=in_order)
    errors = np.array([_clock_errors(profile, seed, (10.0,))[0] for seed in range(SEEDS)])
    assert np.median(errors[:, 0]) <= median_ppm and errors[:, 0].max() <= max_ppm, errors[:, 0]
    assert errors[:, 1].max() < 1.0, errors[:, 1]


# name: (after 10 s: median drift ppm, worst drift ppm, worst offset ms), with latency_floor_ms = latency - jitter
FLOOR_BOUNDS = {
    "reordering": (2.5, 13.0, 0.08),  # measured 1.4 / 10.5 / 0.06 (floorless 62 / 183 / 1.31)
    "harsh": (17.5, 75.0, 0.52),  # 13.9 / 59.7 / 0.41 (153 / 269 / 2.11)
    "wifi_pause": (4.5, 37.0, 0.2),  # 3.7 / 29.8 / 0.16 (96 / 256 / 2.07)
}


@pytest.mark.parametrize("name", sorted(FLOOR_BOUNDS))
def test_a_latency_floor_lets_the_drift_converge_like_the_envelope(name):
    """The independent-delay profiles with a floor of latency - jitter (exponential queueing above it: the fastest
    messages cluster at the floor) are within the stated bounds after 10 s: < 1 ms for every seed, < 10 ppm in the
    median on `reordering` and `wifi_pause` (`harsh`, 100 Hz with 10 % loss and a -200 ppm clock: 13.9); the
    envelope line, not a quantile line, is chosen."""
    med_10, max_10, off_10 = FLOOR_BOUNDS[name]
    profile = ImpairmentProfile.from_toml(PROFILES / f"{name}.toml")
    profile = profile.replace(latency_floor_ms=profile.latency_ms - profile.jitter_ms)
    errors = np.array([_clock_errors(profile, seed, (10.0,))[0] for seed in range(SEEDS)])
    assert np.median(errors[:, 0]) <= med_10 and errors[:, 0].max() <= max_10, errors[:, 0]
    assert errors[:, 1].max() <= off_10, errors[:, 1]


@pytest.mark.parametrize(
    ("name", "floor"),
    [(n, None) for n in ("standard", "fast_tcp", "tcp_1khz", "reordering", "wifi_pause", "harsh")] + [("harsh", 15.0)],
)
def test_the_drift_standard_error_covers_the_actual_error(name, floor):
    """The reported drift standard error is honest after 10 s: over 24 seeds at least 90 % of the drift errors are
    within 3 standard errors and the errors are not all far inside one (median |error| / sd above 0.1, i.e. the
    figure is not inflated tenfold). Measured: within 3 sd 96-100 %, median ratio 0.37-1.32."""
    profile = ImpairmentProfile.from_toml(PROFILES / f"{name}.toml")
    if floor is not None:
        profile = profile.replace(latency_floor_ms=floor)
    errors = np.array([_clock_errors(profile, seed, (10.0,))[0] for seed in range(SEEDS)])
    ratio = errors[:, 0] / errors[:, 2]
    assert np.all(np.isfinite(errors[:, 2])) and np.mean(ratio <= 3.0) >= 0.9, ratio
    assert np.median(ratio) > 0.1, ratio


def test_a_wandering_latency_floor_is_weighed_against_the_drift_prior():
    """A latency floor that wanders by +-4 ms over 15 s (a loaded host, a changing path) looks like drift to the
    envelope. After 10 s on `standard` the wander shows as slope uncertainty and the prior (drift_prior_ppm = 200)
    keeps the drift error's median below 60 ppm; taking every fit as it is (drift_prior_ppm = 0) gives ~700 ppm and
    a 6.7 ms offset error. Measured over 12 seeds: 34 / 610 ppm, 0.45 ms with the prior; 711 / 830 ppm, 6.74 ms
    without."""

    def wander(t_s):
        return 4.0 * math.sin(2.0 * math.pi * t_s / 15.0)

    profile = ImpairmentProfile.from_toml(PROFILES / "standard.toml")
    runs = {}
    for prior in (200.0, 0.0):
        settings = ClockSettings(drift_prior_ppm=prior)
        runs[prior] = np.array([_clock_errors(profile, seed, (10.0,), wander, settings)[0] for seed in range(12)])
    assert np.median(runs[200.0][:, 0]) < 60.0 and runs[200.0][:, 1].max() < 1.0, runs[200.0]
    assert np.median(runs[0.0][:, 0]) > 5 * np.median(runs[200.0][:, 0]), runs[0.0]
