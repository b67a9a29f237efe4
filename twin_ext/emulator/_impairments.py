# SPDX-License-Identifier: Apache-2.0
"""Impairment profiles: what the network and the sensors do to the robot's telemetry.

A profile (`ImpairmentProfile`, loaded from ``config/impairments/*.toml``; every key is documented in
docs/SETTINGS.md, "Impairment profiles") drives three pure, seeded models:

* `RobotClock` -- the robot's clock, ``robot_ns = host_ns + offset_ns + drift * (host_ns - epoch_ns)``
  plus any configured jumps. ``epoch_ns`` is the host time at which the run starts, so ``offset_ms``
  is the offset at the start of the run; written the contract's way this is
  ``robot_ns = offset' + (1 + drift) * host_ns`` with ``offset' = offset_ns - drift * epoch_ns``.
* `ImpairedChannel` -- for each telemetry sample: lost or not (Gilbert-Elliott bursts), how many copies
  arrive (duplicates), and when each copy arrives (latency + jitter, explicit reordering, optional
  TCP-like in-order delivery, pauses with or without backlog).
* `SensorNoise` -- white Gaussian noise on position, velocity and effort.

Determinism. Every random aspect draws from its own stream, seeded from ``(seed, aspect)``, and each
sample consumes exactly one draw per aspect whether or not it is used. So a given seed gives the same
result whether samples are processed one by one (live) or in bulk (offline), and changing one aspect
(say the duplicate fraction) never changes the draws of another (say the loss pattern).

Loss model. With ``burst = 0`` samples are lost independently with probability ``loss``. With
``burst >= 1`` the channel is a two-state Gilbert-Elliott chain (Good: delivered, Bad: lost -- the
Gilbert special case with loss probability 0 in Good and 1 in Bad) with ``P(Bad -> Good) = r = 1/burst``
and ``P(Good -> Bad) = p = loss * r / (1 - loss)``; its long-run loss fraction is ``loss`` and the mean
length of a run of consecutive losses is ``burst`` samples. (Independent losses have mean run length
``1 / (1 - loss)``; a larger ``burst`` is burstier.) The chain starts in Good.

Latency model. Every delivered copy gets an independent one-way delay with mean ``latency_ms`` and
standard deviation ``jitter_ms``: the path's minimum ``latency_floor_ms`` (default 0) plus a queueing delay of
mean ``latency_ms - latency_floor_ms`` drawn from ``gamma`` (default; positive and right-skewed, shape
``((latency - floor)/jitter)^2``; shape 1 (floor = latency - jitter) is exponential: the fastest messages
cluster at the floor as on real paths), ``normal`` (clipped at the floor; for jitter <= (latency - floor)/2
this shifts the mean by < 0.5 %), or ``uniform`` (``latency +- sqrt(3) * jitter``). Independent delays larger than the
sample period reorder messages, as on a multi-path or UDP link; ``in_order = true`` instead delivers in
send order (``arrival_k = max(arrival_k, arrival_{k-1})``), as one TCP connection does: jitter then
bunches messages instead of reordering them. ``reorder`` adds ``reorder_ms`` to that fraction of
samples, reordering them explicitly.

Faults. A profile may also carry a ``[faults]`` table (`FaultProfile`, module ``_faults``: friction
wear, collisions, payload changes, encoder glitches, torque-sensor bias), the ground truth for a health
monitor; ``config/faults/*.toml`` are profiles of that kind.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import check_keys
from ._faults import FaultProfile, ImpairmentError

__all__ = [
    "JITTER_DISTRIBUTIONS",
    "ChannelStats",
    "ClockJump",
    "ImpairedChannel",
    "ImpairmentError",
    "ImpairmentProfile",
    "Pause",
    "Restart",
    "RobotClock",
    "SensorNoise",
]

JITTER_DISTRIBUTIONS = ("gamma", "normal", "uniform")

# Stream keys: fixed forever, so a seed keeps meaning the same thing across versions.
_STREAM_LOSS, _STREAM_DUPLICATE, _STREAM_DELAY, _STREAM_COPY_DELAY, _STREAM_REORDER, _STREAM_NOISE = range(6)
_BLOCK = 1024  # draws per refill of a stream buffer


@dataclass(frozen=True)
class Pause:
    """The robot publishes nothing from ``at_s`` for ``duration_s`` (s, from the start of the run).

    With ``backlog = true`` the samples of the pause are held and sent when it ends (a stalled link
    that then flushes); otherwise they are never sent (the robot stopped publishing).
    """

    at_s: float
    duration_s: float
    backlog: bool = False


@dataclass(frozen=True)
class ClockJump:
    """At ``at_s`` (s, from the start of the run) the robot clock jumps by ``step_ms`` (ms, may be < 0)."""

    at_s: float
    step_ms: float


@dataclass(frozen=True)
class Restart:
    """At ``at_s`` the robot's telemetry stack restarts: offline for ``down_s`` s, then a new birth
    (new boot id) and sequence numbers from 0. The arm itself keeps moving."""

    at_s: float
    down_s: float = 1.0


_EVENT_TYPES: dict[str, type] = {"pauses": Pause, "clock_jumps": ClockJump, "restarts": Restart}


@dataclass(frozen=True)
class ImpairmentProfile:
    """What the network and sensors do to telemetry. Units are in the key names (ms, s, hz, ppm);
    noise is in the joint's unit (rad or m, rad/s or m/s, N·m or N). See docs/SETTINGS.md."""

    description: str = ""
    rate_hz: float = 200.0
    latency_ms: float = 0.0
    latency_floor_ms: float = 0.0
    jitter_ms: float = 0.0
    jitter_distribution: str = "gamma"
    loss: float = 0.0
    burst: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    reorder_ms: float = 20.0
    in_order: bool = False
    offset_ms: float = 0.0
    drift_ppm: float = 0.0
    position_noise: float = 0.0
    velocity_noise: float = 0.0
    effort_noise: float = 0.0
    pauses: tuple[Pause, ...] = ()
    clock_jumps: tuple[ClockJump, ...] = ()
    restarts: tuple[Restart, ...] = ()
    seq_start: int = 0
    seed: int = 0
    faults: FaultProfile = FaultProfile()

    def __post_init__(self) -> None:
        _check_profile(self)

    # ---- construction -------------------------------------------------------------------------
    @classmethod
    def keys(cls) -> tuple[str, ...]:
        """The valid TOML keys, in documentation order."""
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, object], *, source: str = "impairment profile") -> ImpairmentProfile:
        """Build a profile from a parsed TOML table; unknown keys are rejected naming the valid ones."""
        if not isinstance(mapping, Mapping):
            raise ImpairmentError(f"{source}: expected a table of settings, got {type(mapping).__name__}")
        valid = cls.keys()
        check_keys(mapping, valid, where=f"{source}:", error=ImpairmentError)
        kwargs: dict[str, object] = {}
        types = {f.name: f.type for f in dataclasses.fields(cls)}
        for key, value in mapping.items():
            if key in _EVENT_TYPES:
                kwargs[key] = _events(key, value, source)
            elif key == "faults":
                try:
                    kwargs[key] = FaultProfile.from_mapping(value)
                except ImpairmentError as exc:
                    raise ImpairmentError(f"{source}: {exc}") from None
            else:
                kwargs[key] = _scalar(key, value, types[key], source)
        try:
            return cls(**kwargs)
        except ImpairmentError as exc:
            raise ImpairmentError(f"{source}: {exc}") from None

    @classmethod
    def from_toml(cls, path: str | Path) -> ImpairmentProfile:
        """Read a profile TOML file (``config/impairments/standard.toml`` is the reference)."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ImpairmentError(
                f"cannot read impairment profile {str(path)!r}: {exc.strerror}; "
                "the shipped profiles are in config/impairments/"
            ) from None
        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ImpairmentError(f"{path}: not valid TOML: {exc}") from None
        return cls.from_mapping(doc, source=str(path))

    def replace(self, **changes: object) -> ImpairmentProfile:
        """A copy with some keys changed (validated)."""
        return dataclasses.replace(self, **changes)

    def to_mapping(self) -> dict[str, object]:
        """The profile as a plain dict (TOML-ready; the inverse of `from_mapping`)."""
        out: dict[str, object] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in _EVENT_TYPES:
                value = [dataclasses.asdict(e) for e in value]
            elif f.name == "faults":
                if value.is_empty:
                    continue  # a profile without faults maps (and records) as it always did
                value = value.to_mapping()
            elif f.name == "latency_floor_ms" and value == 0.0:
                continue  # so does a profile without a latency floor
            out[f.name] = value
        return out

    # ---- derived quantities -------------------------------------------------------------------
    @property
    def period_s(self) -> float:
        """s, nominal time between samples (``1 / rate_hz``)."""
        return 1.0 / self.rate_hz

    @property
    def gilbert_elliott(self) -> tuple[float, float] | None:
        """``(p, r)`` = (P(Good->Bad), P(Bad->Good)) per sample, or None for independent losses."""
        if self.burst == 0.0 or self.loss == 0.0:
            return None
        r = 1.0 / self.burst
        return self.loss * r / (1.0 - self.loss), r

    @property
    def is_clean(self) -> bool:
        """True when the profile changes nothing but the rate (the ``none`` profile)."""
        return self == ImpairmentProfile(rate_hz=self.rate_hz, description=self.description, seed=self.seed)


# ---- robot clock -----------------------------------------------------------------------------
class RobotClock:
    """The robot's clock as a function of the host's monotonic clock (both int ns).

    ``robot_ns = host_ns + offset_ns + round(drift * (host_ns - epoch_ns)) + sum(steps of jumps at or
    before host_ns)``.

    Args:
        offset_ns: ns, robot minus host at ``epoch_ns``.
        drift: dimensionless rate error (``drift_ppm * 1e-6``); the robot clock runs ``1 + drift`` as fast.
        epoch_ns: ns, host time of the start of the run.
        jumps: ``[(at_host_ns, step_ns), ...]`` clock jumps.
    """

    def __init__(self, *, offset_ns: int, drift: float, epoch_ns: int, jumps: Sequence[tuple[int, int]] = ()) -> None:
        self.offset_ns = int(offset_ns)
        self.drift = float(drift)
        self.epoch_ns = int(epoch_ns)
        self._jumps: list[tuple[int, int]] = sorted((int(a), int(s)) for a, s in jumps)

    @classmethod
    def from_profile(cls, profile: ImpairmentProfile, *, epoch_ns: int) -> RobotClock:
        jumps = [(epoch_ns + round(j.at_s * 1e9), round(j.step_ms * 1e6)) for j in profile.clock_jumps]
        return cls(
            offset_ns=round(profile.offset_ms * 1e6), drift=profile.drift_ppm * 1e-6, epoch_ns=epoch_ns, jumps=jumps
        )

    def add_jump(self, at_host_ns: int, step_ns: int) -> None:
        """Make the clock jump by ``step_ns`` from host time ``at_host_ns`` on (live 'clock jump' trigger)."""
        self._jumps.append((int(at_host_ns), int(step_ns)))
        self._jumps.sort()

    @property
    def jumps(self) -> tuple[tuple[int, int], ...]:
        return tuple(self._jumps)

    def to_robot_ns(self, host_ns: int) -> int:
        """Robot clock reading (int ns) at host time ``host_ns`` (int ns)."""
        host_ns = int(host_ns)
        step = sum(s for at, s in self._jumps if at <= host_ns)
        return host_ns + self.offset_ns + round(self.drift * (host_ns - self.epoch_ns)) + step

    def to_robot_ns_array(self, host_ns: np.ndarray) -> np.ndarray:
        """Vectorised `to_robot_ns`: ``[N]`` int64 ns -> ``[N]`` int64 ns (same rounding)."""
        h = np.asarray(host_ns, dtype=np.int64)
        out = h + self.offset_ns + np.round(self.drift * (h - self.epoch_ns).astype(np.float64)).astype(np.int64)
        for at, s in self._jumps:
            out = out + np.where(h >= at, s, 0).astype(np.int64)
        return out


# ---- random streams --------------------------------------------------------------------------
class _Stream:
    """Buffered draws from one seeded generator: the k-th value is the same however it is fetched."""

    def __init__(self, seed: int, key: int, draw: Callable[[np.random.Generator, int], np.ndarray]) -> None:
        self._rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(key,))))
        self._draw = draw
        self._buf = np.empty(0)
        self._pos = 0

    def take(self, n: int) -> np.ndarray:
        out = []
        while n > 0:
            if self._pos >= len(self._buf):
                self._buf = np.asarray(self._draw(self._rng, _BLOCK), dtype=np.float64)
                self._pos = 0
            m = min(n, len(self._buf) - self._pos)
            out.append(self._buf[self._pos : self._pos + m])
            self._pos += m
            n -= m
        return out[0] if len(out) == 1 else np.concatenate(out) if out else np.empty(0)

    def one(self) -> float:
        if self._pos >= len(self._buf):
            self._buf = np.asarray(self._draw(self._rng, _BLOCK), dtype=np.float64)
            self._pos = 0
        x = self._buf[self._pos]
        self._pos += 1
        return float(x)


def _uniform(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.random(n)


def _delay_draw(profile: ImpairmentProfile) -> Callable[[np.random.Generator, int], np.ndarray]:
    """Delays in ms: ``latency_floor_ms`` plus a queueing part of mean ``latency_ms - latency_floor_ms`` and
    standard deviation ``jitter_ms`` (so ``latency_ms`` and ``jitter_ms`` stay the delay's mean and std)."""
    floor, std = profile.latency_floor_ms, profile.jitter_ms
    mean = profile.latency_ms - floor
    if std == 0.0:
        return lambda rng, n: np.full(n, profile.latency_ms)
    if profile.jitter_distribution == "gamma":
        shape, scale = (mean / std) ** 2, std * std / mean
        return lambda rng, n: floor + rng.gamma(shape, scale, n)
    if profile.jitter_distribution == "normal":
        return lambda rng, n: floor + np.maximum(rng.normal(mean, std, n), 0.0)
    half = math.sqrt(3.0) * std
    return lambda rng, n: floor + rng.uniform(mean - half, mean + half, n)


# ---- the channel -----------------------------------------------------------------------------
@dataclass
class ChannelStats:
    """Counters of what the channel did (samples offered, lost, ... ); plain ints."""

    offered: int = 0
    lost: int = 0
    paused: int = 0
    backlogged: int = 0
    duplicated: int = 0
    delayed: int = 0
    delivered: int = 0  # copies handed out, duplicates included

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


class ImpairedChannel:
    """Decides, sample by sample, whether a telemetry sample arrives, how often, and when.

    Args:
        profile: the impairment profile.
        seed: overrides ``profile.seed``.
        epoch_ns: host ns of the start of the run (pauses are relative to it).

    Call `submit` once per sample, in send order (sample ``k`` is the k-th call). Pure: no clocks, no I/O.
    """

    def __init__(self, profile: ImpairmentProfile, *, seed: int | None = None, epoch_ns: int = 0) -> None:
        self.profile = profile
        self.seed = profile.seed if seed is None else int(seed)
        self.epoch_ns = int(epoch_ns)
        self.stats = ChannelStats()
        self._loss = _Stream(self.seed, _STREAM_LOSS, _uniform)
        self._dup = _Stream(self.seed, _STREAM_DUPLICATE, _uniform)
        self._reorder = _Stream(self.seed, _STREAM_REORDER, _uniform)
        delay = _delay_draw(profile)
        self._delay = _Stream(self.seed, _STREAM_DELAY, delay)
        self._copy_delay = _Stream(self.seed, _STREAM_COPY_DELAY, delay)
        self._ge = profile.gilbert_elliott
        self._bad = False
        self._last_arrival = -(2**62)
        self._pauses = [
            (self.epoch_ns + round(p.at_s * 1e9), self.epoch_ns + round((p.at_s + p.duration_s) * 1e9), p.backlog)
            for p in profile.pauses
        ]
        self._reorder_ns = round(profile.reorder_ms * 1e6)

    def submit(self, send_ns: int) -> list[tuple[int, bool]]:
        """Deliveries of the next sample, sent at host time ``send_ns`` (int ns).

        Returns:
            ``[(arrival_ns, is_copy), ...]``: empty if lost or paused; the original first, then a
            duplicate if any. Arrival times are host ns.
        """
        p = self.profile
        u_loss, u_dup, u_reorder = self._loss.one(), self._dup.one(), self._reorder.one()
        delay_ms, copy_delay_ms = self._delay.one(), self._copy_delay.one()
        self.stats.offered += 1
        if self._ge is None:
            lost = u_loss < p.loss
        else:
            g2b, b2g = self._ge
            self._bad = (u_loss >= b2g) if self._bad else (u_loss < g2b)
            lost = self._bad
        send_ns = int(send_ns)
        for start, end, backlog in self._pauses:
            if start <= send_ns < end:
                if not backlog:
                    self.stats.paused += 1
                    return []
                self.stats.backlogged += 1
                send_ns = end
                break
        if lost:
            self.stats.lost += 1
            return []
        arrival = send_ns + round(delay_ms * 1e6)
        if u_reorder < p.reorder:
            arrival += self._reorder_ns
            self.stats.delayed += 1
        out = [(arrival, False)]
        if u_dup < p.duplicate:
            out.append((send_ns + round(copy_delay_ms * 1e6), True))
            self.stats.duplicated += 1
        if p.in_order:
            fifo = []
            for a, copy in out:
                self._last_arrival = max(a, self._last_arrival)
                fifo.append((self._last_arrival, copy))
            out = fifo
        self.stats.delivered += len(out)
        return out


class SensorNoise:
    """White Gaussian measurement noise (std ``position_noise``, ``velocity_noise``, ``effort_noise``).

    Each sample consumes ``3 * ndof`` draws from its own stream whether or not noise is enabled.
    """

    def __init__(self, profile: ImpairmentProfile, *, ndof: int, seed: int | None = None) -> None:
        self.profile = profile
        self.ndof = int(ndof)
        self._stream = _Stream(
            profile.seed if seed is None else int(seed), _STREAM_NOISE, lambda rng, n: rng.standard_normal(n)
        )
        self._scale = np.repeat(
            np.array([profile.position_noise, profile.velocity_noise, profile.effort_noise]), self.ndof
        )

    def apply(self, q: np.ndarray, qd: np.ndarray, tau: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Noisy copies of ``q, qd, tau`` (each ``[ndof]``)."""
        z = self._stream.take(3 * self.ndof) * self._scale
        n = self.ndof
        return q + z[:n], qd + z[n : 2 * n], tau + z[2 * n :]


# ---- validation ------------------------------------------------------------------------------
def _scalar(key: str, value: object, typ: object, source: str) -> object:
    typ = typ if isinstance(typ, str) else getattr(typ, "__name__", str(typ))
    if typ == "bool":
        if not isinstance(value, bool):
            raise ImpairmentError(f"{source}: {key} must be true or false, got {value!r}")
        return value
    if typ == "str":
        if not isinstance(value, str):
            raise ImpairmentError(f"{source}: {key} must be a string, got {value!r}")
        return value
    if typ == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ImpairmentError(f"{source}: {key} must be an integer, got {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ImpairmentError(f"{source}: {key} must be a number, got {value!r}")
    return float(value)


def _events(key: str, value: object, source: str) -> tuple[object, ...]:
    cls = _EVENT_TYPES[key]
    names = [f.name for f in dataclasses.fields(cls)]
    required = [f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING]
    if not isinstance(value, list):
        raise ImpairmentError(
            f"{source}: {key} must be a list of tables like [[{key}]] with keys {names}, got {value!r}"
        )
    out = []
    for i, item in enumerate(value):
        if not isinstance(item, Mapping):
            raise ImpairmentError(f"{source}: {key}[{i}] must be a table with keys {names}")
        check_keys(item, names, where=f"{source}: {key}[{i}]:", error=ImpairmentError)
        missing = [k for k in required if k not in item]
        if missing:
            raise ImpairmentError(f"{source}: {key}[{i}] needs key(s) {missing}")
        kwargs = {}
        for f in dataclasses.fields(cls):
            if f.name in item:
                kwargs[f.name] = _scalar(f"{key}[{i}].{f.name}", item[f.name], f.type, source)
        out.append(cls(**kwargs))
    return tuple(out)


def _check_profile(p: ImpairmentProfile) -> None:
    def finite(key: str) -> float:
        value = getattr(p, key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ImpairmentError(f"{key} must be a finite number, got {value!r}")
        return float(value)

    def fraction(key: str) -> None:
        x = finite(key)
        if not 0.0 <= x <= 1.0:
            raise ImpairmentError(f"{key} is a fraction of samples and must be in [0, 1], got {x:g}")

    if not isinstance(p.description, str):
        raise ImpairmentError(f"description must be a string, got {p.description!r}")
    rate = finite("rate_hz")
    if not 0.0 < rate <= 10_000.0:
        raise ImpairmentError(f"rate_hz must be in (0, 10000] Hz, got {rate:g}")
    for key in (
        "latency_ms",
        "latency_floor_ms",
        "jitter_ms",
        "reorder_ms",
        "position_noise",
        "velocity_noise",
        "effort_noise",
    ):
        if finite(key) < 0.0:
            raise ImpairmentError(f"{key} must be >= 0, got {getattr(p, key):g}")
    for key in ("offset_ms", "drift_ppm"):
        finite(key)
    if abs(p.drift_ppm) > 10_000.0:
        raise ImpairmentError(f"drift_ppm must be within +-10000 ppm (1 %), got {p.drift_ppm:g}")
    for key in ("loss", "duplicate", "reorder"):
        fraction(key)
    if p.loss >= 1.0:
        raise ImpairmentError("loss must be < 1 (with loss = 1 nothing would ever arrive)")
    if p.jitter_distribution not in JITTER_DISTRIBUTIONS:
        raise ImpairmentError(
            f"jitter_distribution must be one of {list(JITTER_DISTRIBUTIONS)}, got {p.jitter_distribution!r}"
        )
    if p.latency_floor_ms > p.latency_ms:
        raise ImpairmentError(
            f"latency_floor_ms ({p.latency_floor_ms:g}) is the minimum delay and cannot exceed the mean delay "
            f"latency_ms ({p.latency_ms:g}); lower the floor or raise latency_ms"
        )
    queueing = p.latency_ms - p.latency_floor_ms  # ms, mean delay above the floor
    if p.jitter_ms > 0.0:
        if p.jitter_distribution == "gamma" and queueing <= 0.0:
            raise ImpairmentError(
                "gamma jitter needs latency_ms > latency_floor_ms (their difference is the mean queueing delay); "
                'raise latency_ms, lower latency_floor_ms or use jitter_distribution = "normal"'
            )
        if p.jitter_distribution == "uniform" and queueing < math.sqrt(3.0) * p.jitter_ms:
            raise ImpairmentError(
                f"uniform jitter spans latency_ms +- sqrt(3)*jitter_ms and would go below the floor "
                f"(latency_floor_ms = {p.latency_floor_ms:g}): need latency_ms >= "
                f"{p.latency_floor_ms + math.sqrt(3.0) * p.jitter_ms:.3g} for jitter_ms = {p.jitter_ms:g}"
            )
    burst = finite("burst")
    if burst != 0.0 and burst < 1.0:
        raise ImpairmentError(
            f"burst is the mean length of a loss run in samples: 0 (independent losses) or >= 1, got {burst:g}"
        )
    if burst >= 1.0 and p.loss > 0.0 and p.loss / ((1.0 - p.loss) * burst) > 1.0:
        raise ImpairmentError(
            f"loss = {p.loss:g} with burst = {burst:g} is impossible for a two-state chain; "
            f"use burst >= {p.loss / (1.0 - p.loss):.3g}"
        )
    if p.in_order and p.reorder > 0.0:
        raise ImpairmentError("reorder has no effect with in_order = true (TCP-like delivery); set one of them")
    if isinstance(p.seq_start, bool) or not isinstance(p.seq_start, int) or not 0 <= p.seq_start < 2**32:
        raise ImpairmentError(f"seq_start must be an integer in [0, 2**32), got {p.seq_start!r}")
    if isinstance(p.seed, bool) or not isinstance(p.seed, int) or p.seed < 0:
        raise ImpairmentError(f"seed must be a non-negative integer, got {p.seed!r}")
    if not isinstance(p.faults, FaultProfile):
        raise ImpairmentError(f"faults must be a FaultProfile ([faults] table), got {type(p.faults).__name__}")
    for key, cls in _EVENT_TYPES.items():
        events = getattr(p, key)
        if not isinstance(events, tuple) or not all(isinstance(e, cls) for e in events):
            raise ImpairmentError(f"{key} must be a tuple of {cls.__name__}")
        for i, e in enumerate(events):
            for f in dataclasses.fields(cls):
                v = getattr(e, f.name)
                if f.name == "backlog":
                    if not isinstance(v, bool):
                        raise ImpairmentError(f"{key}[{i}].backlog must be true or false")
                    continue
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                    raise ImpairmentError(f"{key}[{i}].{f.name} must be a finite number, got {v!r}")
            if e.at_s < 0.0:
                raise ImpairmentError(
                    f"{key}[{i}].at_s must be >= 0 s (time from the start of the run), got {e.at_s:g}"
                )
        for i, e in enumerate(events):
            if isinstance(e, Pause) and e.duration_s <= 0.0:
                raise ImpairmentError(f"pauses[{i}].duration_s must be > 0 s, got {e.duration_s:g}")
            if isinstance(e, Restart) and e.down_s < 0.0:
                raise ImpairmentError(f"restarts[{i}].down_s must be >= 0 s, got {e.down_s:g}")
    spans = sorted((e.at_s, e.at_s + e.duration_s) for e in p.pauses)
    for (a0, a1), (b0, _) in zip(spans, spans[1:], strict=False):
        if b0 < a1:
            raise ImpairmentError(f"pauses overlap ({a0:g}..{a1:g} s and one starting at {b0:g} s); merge them")
    spans = sorted((e.at_s, e.at_s + e.down_s) for e in p.restarts)
    for (a0, a1), (b0, _) in zip(spans, spans[1:], strict=False):
        if b0 <= a1:
            raise ImpairmentError(f"restarts overlap ({a0:g}..{a1:g} s and one at {b0:g} s); space them out")
