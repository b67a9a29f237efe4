# SPDX-License-Identifier: Apache-2.0
"""`JointTrajectory`: timed joint-space waypoints joined by minimum-jerk (quintic) segments.

Used by the emulator's controller (the robot's program) and by the what-if engine as a candidate
command. Pure NumPy; no heavy imports.

Interpolation. Between waypoints ``i`` and ``i+1`` (duration ``T = t[i+1] - t[i]``, ``s = (t - t[i]) / T``)
every joint follows the minimum-jerk profile

    q(s) = q_i + (q_{i+1} - q_i) * (10 s^3 - 15 s^4 + 6 s^5)

which is the quintic with zero velocity AND zero acceleration at both ends. We chose it over a
through-waypoint spline because (a) a pick-and-place program really does come to rest at its
waypoints (approach, grasp, release), (b) it never overshoots: every joint stays between the two
waypoints of its segment, so checking the waypoints against joint limits checks the whole motion,
and (c) its peaks are closed-form: ``|qd|max = 1.875 |dq| / T`` and ``|qdd|max = 5.7735 |dq| / T^2``,
so speed limits can be checked exactly (`peak_velocity`). Velocity and acceleration are continuous
everywhere (jerk is not, at waypoints). Before the first and after the last waypoint the trajectory
holds its end positions with zero velocity.

TOML format (``from_toml`` / ``to_toml``)::

    joint_names = ["joint1", "joint2"]

    [[waypoint]]
    t = 0.0                 # s, strictly increasing
    q = [0.0, -0.785]       # rad (revolute) | m (prismatic), one per joint
    label = "home"          # optional

Example::

    >>> traj = JointTrajectory(["j1"], [0.0, 1.0], [[0.0], [1.0]])
    >>> q, qd, qdd = traj.sample([0.0, 0.5, 1.0])     # each [3, 1]
    >>> traj.time_scaled(2.0).duration                 # twice as fast
    0.5
"""

from __future__ import annotations

import bisect
import math
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from .. import TwinExtError
from ..config import check_keys

__all__ = ["JointTrajectory", "TrajectoryError"]

# Peak of the normalised minimum-jerk velocity p'(s) (at s = 1/2) and acceleration p''(s)
# (at s = (3 - sqrt 3) / 6); used for exact speed/acceleration limits.
_PEAK_VELOCITY_FACTOR = 1.875
_PEAK_ACCELERATION_FACTOR = 10.0 / math.sqrt(3.0)

_TOP_KEYS = ("joint_names", "waypoint")
_WAYPOINT_KEYS = ("t", "q", "label")


class TrajectoryError(TwinExtError, ValueError):
    """A trajectory that cannot be used; the message names the problem and how to fix it."""


class JointTrajectory:
    """Joint-space waypoints ``positions[k]`` at ``times[k]`` with minimum-jerk segments in between.

    Args:
        joint_names: ``[n]`` unique, non-empty joint names; the columns of ``positions``.
        times: ``[K]`` s, finite and strictly increasing (K >= 1; K == 1 is a hold).
        positions: ``[K, n]`` rad (revolute) | m (prismatic), finite.
        labels: optional ``[K]`` waypoint names (e.g. ``"pre-grasp"``); ``""`` when absent.

    Raises:
        TrajectoryError: wrong shapes, non-finite values, non-increasing times, bad names.

    The instance is immutable (its arrays are read-only).
    """

    __slots__ = ("_joint_names", "_times", "_positions", "_labels", "_time_list", "_steps")

    def __init__(
        self,
        joint_names: Sequence[str],
        times: Sequence[float] | np.ndarray,
        positions: Sequence[Sequence[float]] | np.ndarray,
        *,
        labels: Sequence[str] | None = None,
    ) -> None:
        names = _check_joint_names(joint_names)
        t = _check_times(times)
        q = _check_positions(positions, len(t), len(names))
        if labels is None:
            labels = ("",) * len(t)
        labels = tuple(labels)
        if len(labels) != len(t) or not all(isinstance(x, str) for x in labels):
            raise TrajectoryError(f"labels must be {len(t)} strings (one per waypoint), got {labels!r}")
        t.setflags(write=False)
        q.setflags(write=False)
        self._joint_names = names
        self._times = t
        self._positions = q
        self._labels = labels
        self._time_list = t.tolist()  # scalar fast path (the controller samples one t per 1 ms step)
        self._steps = np.diff(q, axis=0)

    # ---- shape and identity -------------------------------------------------------------------
    @property
    def joint_names(self) -> tuple[str, ...]:
        """``[n]`` joint names, the column order of every array."""
        return self._joint_names

    @property
    def times(self) -> np.ndarray:
        """``[K]`` s, waypoint times (read-only)."""
        return self._times

    @property
    def positions(self) -> np.ndarray:
        """``[K, n]`` rad|m, waypoint positions (read-only)."""
        return self._positions

    @property
    def labels(self) -> tuple[str, ...]:
        """``[K]`` waypoint labels (``""`` when unnamed)."""
        return self._labels

    @property
    def ndof(self) -> int:
        """Number of joints ``n``."""
        return len(self._joint_names)

    @property
    def start_time(self) -> float:
        """s, time of the first waypoint."""
        return float(self._times[0])

    @property
    def end_time(self) -> float:
        """s, time of the last waypoint."""
        return float(self._times[-1])

    @property
    def duration(self) -> float:
        """s, ``end_time - start_time``."""
        return float(self._times[-1] - self._times[0])

    def __len__(self) -> int:
        return len(self._times)

    def __repr__(self) -> str:
        return (
            f"JointTrajectory({len(self._times)} waypoints, {self.ndof} joints, "
            f"t=[{self.start_time:g}, {self.end_time:g}] s)"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, JointTrajectory):
            return NotImplemented
        return (
            self._joint_names == other._joint_names
            and self._labels == other._labels
            and np.array_equal(self._times, other._times)
            and np.array_equal(self._positions, other._positions)
        )

    __hash__ = None  # equality is by value over float arrays: not meaningful as a dict key

    # ---- evaluation ---------------------------------------------------------------------------
    def sample(self, t: float | Sequence[float] | np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Evaluate the trajectory at time(s) ``t``.

        Args:
            t: s, scalar or array of any shape ``[...]``; values outside ``[start_time, end_time]``
                hold the end positions.

        Returns:
            ``(q, qd, qdd)``, each ``[..., n]`` (``[n]`` for scalar ``t``): position rad|m,
            velocity rad/s|m/s, acceleration rad/s^2|m/s^2.
        """
        if isinstance(t, (float, int)) and len(self._time_list) > 1:
            return self._sample_scalar(float(t))
        tt = np.asarray(t, dtype=np.float64)
        if not np.all(np.isfinite(tt)):
            raise TrajectoryError("sample times must be finite; got NaN or inf")
        q0 = self._positions
        if len(self._times) == 1:
            shape = tt.shape + (self.ndof,)
            return np.broadcast_to(q0[0], shape).copy(), np.zeros(shape), np.zeros(shape)
        times = self._times
        seg = np.clip(np.searchsorted(times, tt, side="right") - 1, 0, len(times) - 2)
        t_start = times[seg]
        span = times[seg + 1] - t_start
        s = np.clip((tt - t_start) / span, 0.0, 1.0)
        s2 = s * s
        s3 = s2 * s
        p = s3 * (10.0 + s * (-15.0 + 6.0 * s))
        dp = 30.0 * s2 * (1.0 + s * (-2.0 + s))
        ddp = s * (60.0 + s * (-180.0 + 120.0 * s))
        dq = q0[seg + 1] - q0[seg]  # [..., n]
        p = p[..., None]
        inv_span = (1.0 / span)[..., None]
        q = q0[seg] + dq * p
        qd = dq * (dp[..., None] * inv_span)
        qdd = dq * (ddp[..., None] * inv_span * inv_span)
        return q, qd, qdd

    def _sample_scalar(self, t: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if not math.isfinite(t):
            raise TrajectoryError("sample times must be finite; got NaN or inf")
        times = self._time_list
        seg = min(max(bisect.bisect_right(times, t) - 1, 0), len(times) - 2)
        span = times[seg + 1] - times[seg]
        s = min(max((t - times[seg]) / span, 0.0), 1.0)
        s2 = s * s
        p = s2 * s * (10.0 + s * (-15.0 + 6.0 * s))
        dp = 30.0 * s2 * (1.0 + s * (-2.0 + s)) / span
        ddp = s * (60.0 + s * (-180.0 + 120.0 * s)) / (span * span)
        dq = self._steps[seg]
        return self._positions[seg] + dq * p, dq * dp, dq * ddp

    def peak_velocity(self) -> np.ndarray:
        """``[n]`` rad/s|m/s, exact maximum of ``|qd|`` over the whole trajectory."""
        if len(self._times) == 1:
            return np.zeros(self.ndof)
        dq = np.abs(np.diff(self._positions, axis=0))
        span = np.diff(self._times)[:, None]
        return (_PEAK_VELOCITY_FACTOR * dq / span).max(axis=0)

    def peak_acceleration(self) -> np.ndarray:
        """``[n]`` rad/s^2|m/s^2, exact maximum of ``|qdd|`` over the whole trajectory."""
        if len(self._times) == 1:
            return np.zeros(self.ndof)
        dq = np.abs(np.diff(self._positions, axis=0))
        span = np.diff(self._times)[:, None]
        return (_PEAK_ACCELERATION_FACTOR * dq / span**2).max(axis=0)

    # ---- derived trajectories -----------------------------------------------------------------
    def nearest_time(
        self,
        q: Sequence[float] | np.ndarray,
        qd: Sequence[float] | np.ndarray | None = None,
        *,
        resolution_s: float = 0.01,
        velocity_weight_s: float = 0.1,
    ) -> float:
        """The trajectory time whose state is closest to a measured one: where a running program "is".

        Used to align a candidate command with the robot's current state (a twin sees the robot's joints,
        not its program counter). Minimises ``|q(t) - q|² + (velocity_weight_s · |qd(t) - qd|)²`` over a grid
        of ``resolution_s``; the velocity term tells apart the two passes through one pose (out and back).

        Args:
            q: ``[n]`` positions in `joint_names` order, rad|m.
            qd: ``[n]`` velocities, rad/s|m/s, or None.

        Returns:
            t in ``[start_time, end_time]``, s.
        """
        q = np.asarray(q, dtype=np.float64).reshape(-1)
        if q.shape != (self.ndof,) or (qd is not None and np.shape(qd) != (self.ndof,)):
            raise TrajectoryError(
                f"q (and qd) must have {self.ndof} entries in joint_names order {list(self._joint_names)}"
            )
        grid = np.arange(self.start_time, self.end_time + resolution_s / 2, resolution_s)
        pos, vel, _ = self.sample(grid)
        cost = np.sum((pos - q) ** 2, axis=1)
        if qd is not None:
            cost += velocity_weight_s**2 * np.sum((vel - np.asarray(qd, dtype=np.float64)) ** 2, axis=1)
        return float(min(grid[int(np.argmin(cost))], self.end_time))

    def repeated(self, times: int) -> JointTrajectory:
        """The program played ``times`` times in a row (a looping program unrolled; it must end where it
        starts)."""
        if times < 1:
            raise TrajectoryError(f"times must be >= 1, got {times}")
        if times == 1:
            return self
        if not np.allclose(self._positions[0], self._positions[-1], atol=1e-9, rtol=0):
            raise TrajectoryError("only a program that ends where it starts can be repeated (last waypoint == first)")
        span = self.duration
        t = [self._times] + [self._times[1:] + k * span for k in range(1, times)]
        q = [self._positions] + [self._positions[1:]] * (times - 1)
        labels = list(self._labels) + list(self._labels[1:]) * (times - 1)
        return JointTrajectory(self._joint_names, np.concatenate(t), np.concatenate(q), labels=labels)

    def time_scaled(self, speed: float) -> JointTrajectory:
        """The same path run ``speed`` times as fast (start time kept).

        Velocities scale by ``speed`` and accelerations by ``speed**2``.

        Args:
            speed: dimensionless, finite and > 0 (``2.0`` halves every segment's duration).
        """
        speed = float(speed)
        if not math.isfinite(speed) or speed <= 0.0:
            raise TrajectoryError(f"speed must be a finite number > 0, got {speed!r}")
        t0 = self._times[0]
        times = t0 + (self._times - t0) / speed
        return JointTrajectory(self._joint_names, times, self._positions, labels=self._labels)

    def shifted(self, dt: float) -> JointTrajectory:
        """The same trajectory starting ``dt`` s later (``dt`` may be negative)."""
        dt = float(dt)
        if not math.isfinite(dt):
            raise TrajectoryError(f"dt must be finite, got {dt!r}")
        return JointTrajectory(self._joint_names, self._times + dt, self._positions, labels=self._labels)

    def select(self, joint_names: Sequence[str]) -> JointTrajectory:
        """The trajectory of ``joint_names`` only, in that order (e.g. a robot model's dof order)."""
        names = _check_joint_names(joint_names)
        missing = [n for n in names if n not in self._joint_names]
        if missing:
            raise TrajectoryError(f"joints {missing} are not in this trajectory; it has {list(self._joint_names)}")
        cols = [self._joint_names.index(n) for n in names]
        return JointTrajectory(names, self._times, self._positions[:, cols], labels=self._labels)

    # ---- TOML ---------------------------------------------------------------------------------
    @classmethod
    def from_mapping(cls, mapping: Mapping[str, object], *, source: str = "trajectory") -> JointTrajectory:
        """Build from a parsed TOML document (see the module docstring for the format)."""
        if not isinstance(mapping, Mapping):
            raise TrajectoryError(f"{source}: expected a table, got {type(mapping).__name__}")
        check_keys(mapping, _TOP_KEYS, where=f"{source}:", error=TrajectoryError)
        if "joint_names" not in mapping:
            raise TrajectoryError(f"{source}: missing 'joint_names = [...]'")
        waypoints = mapping.get("waypoint")
        if not isinstance(waypoints, list) or not waypoints:
            raise TrajectoryError(f"{source}: needs at least one [[waypoint]] table with t and q")
        times, positions, labels = [], [], []
        for k, wp in enumerate(waypoints):
            if not isinstance(wp, Mapping):
                raise TrajectoryError(f"{source}: waypoint {k} must be a table")
            check_keys(wp, _WAYPOINT_KEYS, where=f"{source}: waypoint {k}:", error=TrajectoryError)
            if "t" not in wp or "q" not in wp:
                raise TrajectoryError(f"{source}: waypoint {k} needs both 't' (s) and 'q' (list)")
            t, q, label = wp["t"], wp["q"], wp.get("label", "")
            if isinstance(t, bool) or not isinstance(t, (int, float)):
                raise TrajectoryError(f"{source}: waypoint {k} 't' must be a number of seconds, got {t!r}")
            if not isinstance(q, list) or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in q):
                raise TrajectoryError(f"{source}: waypoint {k} 'q' must be a list of numbers, got {q!r}")
            if not isinstance(label, str):
                raise TrajectoryError(f"{source}: waypoint {k} 'label' must be a string, got {label!r}")
            times.append(float(t))
            positions.append([float(x) for x in q])
            labels.append(label)
        names = mapping["joint_names"]
        if not isinstance(names, list):
            raise TrajectoryError(f"{source}: 'joint_names' must be a list of strings, got {names!r}")
        for k, q in enumerate(positions):
            if len(q) != len(names):
                raise TrajectoryError(
                    f"{source}: waypoint {k} has {len(q)} positions but there are {len(names)} joint_names"
                )
        try:
            return cls(names, times, positions, labels=labels)
        except TrajectoryError as exc:
            raise TrajectoryError(f"{source}: {exc}") from None

    @classmethod
    def from_toml_text(cls, text: str, *, source: str = "<string>") -> JointTrajectory:
        """Parse TOML text (see the module docstring for the format)."""
        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise TrajectoryError(f"{source}: not valid TOML: {exc}") from None
        return cls.from_mapping(doc, source=source)

    @classmethod
    def from_toml(cls, path: str | Path) -> JointTrajectory:
        """Read a trajectory TOML file (see the module docstring for the format)."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise TrajectoryError(f"cannot read trajectory file {str(path)!r}: {exc.strerror}") from None
        return cls.from_toml_text(text, source=str(path))

    def to_toml(self, path: str | Path | None = None, *, header: str = "") -> str:
        """Serialise as TOML (floats written with full precision: the round trip is exact).

        Args:
            path: if given, also write the text there.
            header: optional comment lines put at the top (each prefixed with ``# ``).

        Returns:
            The TOML text.
        """
        lines = [f"# {line}".rstrip() for line in header.splitlines()]
        if lines:
            lines.append("")
        lines.append("joint_names = [" + ", ".join(_toml_str(n) for n in self._joint_names) + "]")
        for t, q, label in zip(self._times, self._positions, self._labels, strict=True):
            lines += ["", "[[waypoint]]", f"t = {float(t)!r}"]
            lines.append("q = [" + ", ".join(repr(float(x)) for x in q) + "]")
            if label:
                lines.append(f"label = {_toml_str(label)}")
        text = "\n".join(lines) + "\n"
        if path is not None:
            Path(path).write_text(text, encoding="utf-8")
        return text


# ---- validation ------------------------------------------------------------------------------
def _check_joint_names(joint_names: Iterable[str]) -> tuple[str, ...]:
    if isinstance(joint_names, str):
        raise TrajectoryError(f"joint_names must be a list of names, got the string {joint_names!r}")
    names = tuple(joint_names)
    if not names:
        raise TrajectoryError("joint_names is empty; give one name per trajectory column")
    bad = [n for n in names if not isinstance(n, str) or not n]
    if bad:
        raise TrajectoryError(f"joint_names must be non-empty strings; bad entries: {bad!r}")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise TrajectoryError(f"joint_names must be unique; repeated: {dup}")
    return names


def _check_times(times: object) -> np.ndarray:
    try:
        t = np.array(times, dtype=np.float64)
    except (TypeError, ValueError):
        raise TrajectoryError(f"times must be a 1-D list of seconds, got {times!r}") from None
    if t.ndim != 1 or t.size == 0:
        raise TrajectoryError(f"times must be a non-empty 1-D array [K] s, got shape {t.shape}")
    if not np.all(np.isfinite(t)):
        bad = np.flatnonzero(~np.isfinite(t)).tolist()
        raise TrajectoryError(f"times must be finite; waypoint(s) {bad} are NaN or inf")
    steps = np.diff(t)
    if np.any(steps <= 0.0):
        k = int(np.flatnonzero(steps <= 0.0)[0])
        raise TrajectoryError(
            f"times must be strictly increasing: waypoint {k + 1} (t={t[k + 1]:g} s) does not come after "
            f"waypoint {k} (t={t[k]:g} s); give every waypoint a later time than the previous one"
        )
    return t


def _check_positions(positions: object, k: int, n: int) -> np.ndarray:
    try:
        q = np.array(positions, dtype=np.float64)
    except (TypeError, ValueError):
        raise TrajectoryError(f"positions must be a [K={k}, n={n}] array of numbers (rows of equal length)") from None
    if q.shape != (k, n):
        raise TrajectoryError(f"positions must have shape [K={k}, n={n}] (waypoints x joints), got {q.shape}")
    if not np.all(np.isfinite(q)):
        row, col = (int(x[0]) for x in np.nonzero(~np.isfinite(q)))
        raise TrajectoryError(f"positions must be finite; waypoint {row}, joint {col} is {q[row, col]}")
    return q


def _toml_str(s: str) -> str:
    escaped = s.replace("\\", "\\\\").replace('"', '\\"')
    escaped = "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in escaped)
    return f'"{escaped}"'
