# SPDX-License-Identifier: Apache-2.0
"""Impairment profiles: validation, and channel statistics that match the profile (stated tolerances).

Statistical tolerances are 5 standard errors of the estimate (false-failure odds ~1e-6 per check);
the seeds are fixed, so the tests are deterministic -- the tolerances say the result would also
hold for any other seed.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest

from twin_ext.emulator import (
    ClockJump,
    ImpairedChannel,
    ImpairmentError,
    ImpairmentProfile,
    Pause,
    RobotClock,
    SensorNoise,
)

ROOT = Path(__file__).resolve().parents[1]
PERIOD_NS = 5_000_000  # 200 Hz
N = 200_000


def _run(profile: ImpairmentProfile, n: int = N, seed: int = 1):
    """Send n samples at 200 Hz through a channel; return per-sample fates."""
    ch = ImpairedChannel(profile, seed=seed)
    send = np.arange(n, dtype=np.int64) * PERIOD_NS
    fates = [ch.submit(int(t)) for t in send]
    return ch, send, fates


def _first_arrivals(send, fates):
    idx = np.array([k for k, f in enumerate(fates) if f])
    arr = np.array([fates[k][0][0] for k in idx], dtype=np.int64)
    return idx, arr


# ---- profiles --------------------------------------------------------------------------------------
def test_shipped_standard_profile_is_the_contract():
    """config/impairments/standard.toml is 200 Hz, 20 +- 10 ms, 5 % bursty loss, 250 ms, 50 ppm, 1e-4 rad."""
    p = ImpairmentProfile.from_toml(ROOT / "config" / "impairments" / "standard.toml")
    assert (p.rate_hz, p.latency_ms, p.jitter_ms, p.loss, p.offset_ms, p.drift_ppm, p.position_noise) == (
        200.0, 20.0, 10.0, 0.05, 250.0, 50.0, 1e-4,
    )  # fmt: skip
    assert p.burst > 1.0 / (1.0 - p.loss)  # burstier than independent losses


def test_shipped_none_profile_is_clean_and_all_shipped_profiles_load():
    """none.toml impairs nothing; every shipped profile parses and validates."""
    assert ImpairmentProfile.from_toml(ROOT / "config" / "impairments" / "none.toml").is_clean
    files = sorted((ROOT / "config" / "impairments").glob("*.toml"))
    assert {f.name for f in files} >= {"standard.toml", "none.toml"}
    for f in files:
        ImpairmentProfile.from_toml(f)


def test_every_profile_key_is_documented_in_settings_md():
    """Each ImpairmentProfile key (and event key) has a row in docs/SETTINGS.md 'Impairment profiles'."""
    text = (ROOT / "docs" / "SETTINGS.md").read_text(encoding="utf-8")
    section = text.split("## Impairment profiles", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `([a-z_\[\]\.]+)` \|", section, flags=re.M))
    expected = set(ImpairmentProfile.keys()) | {
        "pauses[].at_s", "pauses[].duration_s", "pauses[].backlog", "clock_jumps[].at_s", "clock_jumps[].step_ms",
        "restarts[].at_s", "restarts[].down_s",
    }  # fmt: skip
    assert expected <= documented, sorted(expected - documented)


@pytest.mark.parametrize(
    ("mapping", "match"),
    [
        (dict(latency_ms=-1.0), "latency_ms must be >= 0"),
        (dict(loss=1.5), r"loss is a fraction of samples and must be in \[0, 1\]"),
        (dict(loss=1.0), "loss must be < 1"),
        (dict(duplicate=-0.1), "duplicate is a fraction"),
        (
            dict(latnecy_ms=5.0),
            r"unknown key 'latnecy_ms' \(did you mean 'latency_ms'\?\); valid keys: \['description', 'rate_hz', 'latency_ms'",
        ),
        (dict(rate_hz=0.0), r"rate_hz must be in \(0, 10000\]"),
        (dict(burst=0.5), "burst is the mean length of a loss run"),
        (dict(loss=0.6, burst=1.0), "impossible for a two-state chain"),
        (dict(jitter_ms=5.0), "gamma jitter needs latency_ms > latency_floor_ms"),
        (dict(latency_ms=5.0, jitter_ms=5.0, jitter_distribution="uniform"), "would go below the floor"),
        (dict(latency_ms=5.0, latency_floor_ms=6.0), "cannot exceed the mean delay latency_ms"),
        (dict(jitter_distribution="cauchy"), "jitter_distribution must be one of"),
        (dict(in_order=True, reorder=0.1), "reorder has no effect with in_order"),
        (dict(latency_ms="20"), "latency_ms must be a number"),
        (dict(in_order=1), "in_order must be true or false"),
        (dict(seed=-3), "seed must be a non-negative integer"),
        (dict(seq_start=2**32), r"seq_start must be an integer in \[0, 2\*\*32\)"),
        (dict(pauses=[{"at_s": 1.0}]), r"pauses\[0\] needs key\(s\) \['duration_s'\]"),
        (
            dict(pauses=[{"at_s": 1.0, "duration_s": 1.0, "flush": True}]),
            r"unknown key 'flush'; valid keys: \['at_s', 'duration_s', 'backlog'\]",
        ),
        (dict(pauses=[{"at_s": 1.0, "duration_s": 2.0}, {"at_s": 2.0, "duration_s": 1.0}]), "pauses overlap"),
        (dict(pauses={"at_s": 1.0}), "must be a list of tables"),
        (dict(clock_jumps=[{"at_s": -1.0, "step_ms": 3.0}]), r"clock_jumps\[0\].at_s must be >= 0"),
        (dict(restarts=[{"at_s": 1.0, "down_s": -1.0}]), r"restarts\[0\].down_s must be >= 0"),
        (dict(drift_ppm=math.inf), "drift_ppm must be a finite number"),
    ],
)
def test_bad_profiles_are_refused_with_a_clear_error(mapping, match):
    """Negative latency, loss > 1, unknown keys (naming the valid ones), impossible combinations, bad events."""
    with pytest.raises(ImpairmentError, match=match):
        ImpairmentProfile.from_mapping(mapping, source="p.toml")


def test_profile_file_errors_name_the_file(tmp_path):
    """A missing or malformed profile file names the file."""
    with pytest.raises(ImpairmentError, match="cannot read impairment profile"):
        ImpairmentProfile.from_toml(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("loss = [\n")
    with pytest.raises(ImpairmentError, match=r"bad.toml: not valid TOML"):
        ImpairmentProfile.from_toml(bad)


def test_mapping_round_trip_and_events():
    """to_mapping -> from_mapping gives the same profile, events included."""
    p = ImpairmentProfile.from_toml(ROOT / "config" / "impairments" / "harsh.toml")
    assert p.pauses and p.restarts and p.clock_jumps
    assert ImpairmentProfile.from_mapping(p.to_mapping()) == p


# ---- loss ------------------------------------------------------------------------------------------
def test_bursty_loss_rate_and_burst_length_match_the_profile():
    """Gilbert-Elliott loss: long-run rate = loss and mean run length = burst, within 5 standard errors
    (the rate's variance is inflated by the chain's correlation rho = 1 - p - r: factor (1+rho)/(1-rho));
    and losses cluster: P(lost | previous lost) = 1 - 1/burst instead of loss."""
    loss, burst = 0.05, 4.0
    profile = ImpairmentProfile(loss=loss, burst=burst)
    ch, _, fates = _run(profile)
    lost = np.array([not f for f in fates])
    p, r = profile.gilbert_elliott
    rho = 1.0 - p - r
    se_rate = math.sqrt(loss * (1 - loss) / N * (1 + rho) / (1 - rho))
    assert abs(lost.mean() - loss) < 5 * se_rate, (lost.mean(), se_rate)
    assert ch.stats.lost == lost.sum()
    # run lengths: geometric with mean 1/r
    edges = np.diff(np.concatenate([[0], lost.astype(np.int8), [0]]))
    runs = np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)
    se_run = math.sqrt(1 - r) / r / math.sqrt(len(runs))
    assert abs(runs.mean() - burst) < 5 * se_run, (runs.mean(), se_run)
    after_loss = lost[1:][lost[:-1]]
    se_cond = math.sqrt((1 - r) * r / len(after_loss) * (1 + rho) / (1 - rho))
    assert abs(after_loss.mean() - (1 - r)) < 5 * se_cond


def test_independent_loss_when_burst_is_zero():
    """burst = 0: Bernoulli losses (rate = loss; P(lost | previous lost) = loss), 5 standard errors."""
    _, _, fates = _run(ImpairmentProfile(loss=0.1))
    lost = np.array([not f for f in fates])
    se = math.sqrt(0.1 * 0.9 / N)
    assert abs(lost.mean() - 0.1) < 5 * se
    after = lost[1:][lost[:-1]]
    assert abs(after.mean() - 0.1) < 5 * math.sqrt(0.09 / len(after))


# ---- latency ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("distribution", "latency", "jitter", "floor"),
    [("gamma", 20.0, 10.0, 0.0), ("gamma", 20.0, 10.0, 10.0), ("normal", 30.0, 10.0, 0.0), ("uniform", 20.0, 5.0, 0.0)],
)
def test_latency_mean_and_std_match_the_profile(distribution, latency, jitter, floor):
    """One-way delays have mean latency_ms and std jitter_ms and never undercut latency_floor_ms: mean within 5 SE
    (jitter/sqrt(n)); std within 5 SE of a sample std (sigma * sqrt((kurtosis - 1) / 4n), kurtosis 3 + 6/k for gamma
    of shape k = ((latency - floor)/jitter)^2: 4.5 for k = 4, 9 for the exponential k = 1; 3 normal, 1.8 uniform);
    with a floor, the fastest 0.1 % of delays lie within 0.02 ms of it (exponential: 0.001 * 10 ms)."""
    profile = ImpairmentProfile(
        latency_ms=latency, latency_floor_ms=floor, jitter_ms=jitter, jitter_distribution=distribution
    )
    n = 100_000
    _, send, fates = _run(profile, n=n)
    idx, arr = _first_arrivals(send, fates)
    delay_ms = (arr - send[idx]) / 1e6
    assert delay_ms.min() >= floor
    if floor > 0.0:
        assert np.quantile(delay_ms, 0.001) < floor + 0.02
    kurtosis = {"gamma": 3 + 6 / ((latency - floor) / jitter) ** 2, "normal": 3.0, "uniform": 1.8}[distribution]
    assert abs(delay_ms.mean() - latency) < 5 * jitter / math.sqrt(n)
    assert abs(delay_ms.std() - jitter) < 5 * jitter * math.sqrt((kurtosis - 1) / (4 * n))
    if distribution == "uniform":
        half = math.sqrt(3) * jitter
        assert latency - half - 1e-6 <= delay_ms.min() and delay_ms.max() <= latency + half + 1e-6


def _erlang_cdf(x: np.ndarray, k: int, theta: float) -> np.ndarray:
    y = np.maximum(x, 0.0) / theta
    s = sum(y**i / math.factorial(i) for i in range(k))
    return np.where(x > 0, 1.0 - np.exp(-y) * s, 0.0)


def test_jitter_reorders_adjacent_messages_at_the_analytic_rate():
    """With independent gamma delays (k = 4, theta = 5 ms: 20 +- 10 ms) and 5 ms between samples, message k
    arrives after k+1 with probability P(d_k - d_(k+1) > 5 ms), integrated numerically from the Erlang density;
    the observed rate is within 6 binomial SE (adjacent pairs are weakly dependent)."""
    profile = ImpairmentProfile(latency_ms=20.0, jitter_ms=10.0)
    _, _, fates = _run(profile, n=100_000)
    arr = np.array([f[0][0] for f in fates])
    inverted = arr[:-1] > arr[1:]
    x = np.linspace(0.0, 200.0, 400_001)
    k, theta = 4, 5.0
    pdf = x ** (k - 1) * np.exp(-x / theta) / (math.factorial(k - 1) * theta**k)
    expected = np.trapezoid(pdf * (1.0 - _erlang_cdf(x + 5.0, k, theta)), x)
    se = math.sqrt(expected * (1 - expected) / len(inverted))
    assert 0.3 < expected < 0.4  # about P(Z > 5 / (10 sqrt 2)) for a normal approximation
    assert abs(inverted.mean() - expected) < 6 * se, (inverted.mean(), expected)


def test_explicit_reorder_delays_the_stated_fraction():
    """reorder = 3 % with reorder_ms = 12 ms on a jitter-free 10 ms link: the held-back messages are exactly the
    ones counted; a held message lands after a later one unless the next two were held too: rate r (1 - r^2)."""
    r = 0.03
    profile = ImpairmentProfile(latency_ms=10.0, reorder=r, reorder_ms=12.0)
    ch, send, fates = _run(profile)
    arr = np.array([f[0][0] for f in fates])
    late = arr - send > 10_000_000
    assert late.sum() == ch.stats.delayed
    assert abs(late.mean() - r) < 5 * math.sqrt(r * (1 - r) / N)
    later_min = np.minimum.accumulate(arr[::-1])[::-1]  # earliest arrival among messages sent at or after k
    reordered = arr[:-1] > later_min[1:]
    expected = r * (1 - r * r)
    assert abs(reordered.mean() - expected) < 5 * math.sqrt(expected / N)


def test_in_order_delivery_never_reorders():
    """in_order = true (one TCP connection): arrivals follow send order; every message is at least as late
    as its own drawn delay, and jitter now bunches messages instead of reordering them."""
    profile = ImpairmentProfile(latency_ms=20.0, jitter_ms=10.0, in_order=True, duplicate=0.05)
    _, send, fates = _run(profile, n=20_000)
    flat = [a for f in fates for a, _ in f]
    assert all(b >= a for a, b in zip(flat, flat[1:], strict=False))
    free = ImpairedChannel(profile.replace(in_order=False), seed=1)
    free_arrivals = [free.submit(int(t)) for t in send]
    for ordered, unordered in zip(fates, free_arrivals, strict=True):
        assert ordered[0][0] >= unordered[0][0]


# ---- duplicates, pauses -----------------------------------------------------------------------------
def test_duplicates_match_the_fraction_and_copies_arrive_separately():
    """duplicate = 2 %: that fraction of delivered samples arrives twice (5 binomial SE); lost samples never."""
    profile = ImpairmentProfile(latency_ms=20.0, jitter_ms=10.0, duplicate=0.02, loss=0.05, burst=4.0)
    ch, _, fates = _run(profile)
    delivered = [f for f in fates if f]
    copies = np.array([len(f) == 2 for f in delivered])
    assert abs(copies.mean() - 0.02) < 5 * math.sqrt(0.02 * 0.98 / len(delivered))
    assert ch.stats.duplicated == copies.sum()
    assert all(f[1][1] and not f[0][1] for f in delivered if len(f) == 2)
    assert ch.stats.delivered == sum(len(f) for f in fates)


def test_pauses_drop_or_hold_back_their_samples():
    """A plain pause sends nothing in [at, at + duration); a backlog pause delivers its samples after it ends."""
    profile = ImpairmentProfile(
        latency_ms=2.0,
        pauses=(Pause(at_s=1.0, duration_s=0.5), Pause(at_s=3.0, duration_s=0.25, backlog=True)),
    )
    ch, send, fates = _run(profile, n=1000)
    t = send / 1e9
    in_gap = (t >= 1.0) & (t < 1.5)
    in_stall = (t >= 3.0) & (t < 3.25)
    assert all(not f for f, g in zip(fates, in_gap, strict=False) if g) and ch.stats.paused == in_gap.sum() == 100
    stalled = [f[0][0] for f, s in zip(fates, in_stall, strict=False) if s]
    assert len(stalled) == 50 and min(stalled) == 3_250_000_000 + 2_000_000
    assert ch.stats.backlogged == 50
    assert all(f for f, g, s in zip(fates, in_gap, in_stall, strict=False) if not (g or s))


# ---- determinism -----------------------------------------------------------------------------------
def test_same_seed_same_schedule_different_seed_different():
    """The channel is a pure function of (profile, seed, send times)."""
    profile = ImpairmentProfile(latency_ms=20.0, jitter_ms=10.0, loss=0.05, burst=4.0, duplicate=0.01)
    a = _run(profile, n=5000, seed=11)[2]
    b = _run(profile, n=5000, seed=11)[2]
    c = _run(profile, n=5000, seed=12)[2]
    assert a == b and a != c


def test_aspects_draw_from_independent_streams():
    """Turning duplicates or reordering on does not change which samples are lost or their base delays."""
    base = ImpairmentProfile(latency_ms=20.0, jitter_ms=10.0, loss=0.05, burst=4.0)
    plain = _run(base, n=20_000)[2]
    noisy = _run(base.replace(duplicate=0.2), n=20_000)[2]
    assert [bool(f) for f in plain] == [bool(f) for f in noisy]
    assert [f[0][0] for f in plain if f] == [f[0][0] for f in noisy if f]


# ---- clock and noise -------------------------------------------------------------------------------
def test_robot_clock_is_exactly_offset_plus_drift_plus_jumps():
    """robot_ns = host + offset + round(drift (host - epoch)) + jumps, for scalars and arrays alike."""
    profile = ImpairmentProfile(offset_ms=250.0, drift_ppm=50.0, clock_jumps=(ClockJump(at_s=2.0, step_ms=-40.0),))
    epoch = 123_456_789
    clock = RobotClock.from_profile(profile, epoch_ns=epoch)
    host = epoch + np.arange(0, 4_000_000_000, 1_000_003, dtype=np.int64)
    expected = host + 250_000_000 + np.round((host - epoch) * 50e-6).astype(np.int64)
    expected = expected - np.where(host >= epoch + 2_000_000_000, 40_000_000, 0)
    np.testing.assert_array_equal(clock.to_robot_ns_array(host), expected)
    assert [clock.to_robot_ns(int(h)) for h in host[::97]] == expected[::97].tolist()
    assert clock.to_robot_ns(epoch) - epoch == 250_000_000
    clock.add_jump(epoch + 3_000_000_000, 1_000)
    assert clock.to_robot_ns(epoch + 3_000_000_000) - int(expected[0]) - 3_000_000_000 == 150_000 - 40_000_000 + 1_000


def test_sensor_noise_has_the_profile_std_and_none_is_exact():
    """Position/velocity/effort noise are zero-mean with the profile's std (5 SE); no noise returns the input."""
    ndof, n = 9, 20_000
    noise = SensorNoise(
        ImpairmentProfile(position_noise=1e-4, velocity_noise=2e-3, effort_noise=0.05), ndof=ndof, seed=3
    )
    zeros = np.zeros(ndof)
    draws = np.array([np.concatenate(noise.apply(zeros, zeros, zeros)) for _ in range(n)])
    for block, sigma in enumerate((1e-4, 2e-3, 0.05)):
        x = draws[:, block * ndof : (block + 1) * ndof].ravel()
        assert abs(x.mean()) < 5 * sigma / math.sqrt(x.size)
        assert abs(x.std() - sigma) < 5 * sigma / math.sqrt(2 * x.size)
    clean = SensorNoise(ImpairmentProfile(), ndof=ndof)
    q = np.linspace(-1, 1, ndof)
    out = clean.apply(q, 2 * q, 3 * q)
    for a, b in zip(out, (q, 2 * q, 3 * q), strict=True):
        np.testing.assert_array_equal(a, b)
