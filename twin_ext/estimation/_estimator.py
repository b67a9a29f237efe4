# SPDX-License-Identifier: Apache-2.0
"""`TwinEstimator`: the twin's state estimate, fed by telemetry, read at display time.

Time. The filter runs in the twin's clock: each measurement is placed at the twin time at which the robot
sampled it (the caller maps the robot's source stamp through the clock sync), so transport latency is
removed before fusion, and `snapshot(t)` predicts to the display time ``t`` — this is the latency
compensation. The filter never moves backwards: a measurement older than the newest fused one (beyond a
small clock-sync tolerance) is dropped and counted as late.

Limits. Displayed positions are projected onto the joint limits (a hard stop is a constraint the
constant-acceleration model does not know; without it a joint that stops at a limit is shown beyond it).

Health. ``ok`` while measurements keep arriving; ``stale`` once none was accepted for
``stale_after_s`` (the covariance keeps growing, the displayed extrapolation is capped at
``max_extrapolation_s``); ``lost`` when the link is down, the robot announced itself offline, or nothing
was ever received.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..robot import RobotModel
from ._kalman import JointKalmanFilter
from ._settings import EstimatorSettings
from ._snapshot import Health, TwinSnapshot

__all__ = ["EstimatorStats", "TwinEstimator", "ObserveResult"]


class ObserveResult:
    """Outcome of one `TwinEstimator.observe` call."""

    FUSED = "fused"
    LATE = "late"
    INITIALIZED = "initialized"
    IMPLAUSIBLE = "implausible"
    """Refused: a non-finite value, or a position more than one joint range outside the limits."""


_MAX_POSITION = 1e6
"""Largest plausible position of an unlimited joint, rad | m (the backstop against absurd values)."""
_MAX_SPEED = 1e6
"""Largest plausible speed, rad/s | m/s."""


@dataclass
class EstimatorStats:
    """Counters since the last reset (plain ints; safe to copy)."""

    fused: int = 0
    """Measurements fused into the filter."""
    late: int = 0
    """Measurements dropped because they were older than the filter's time."""
    gated: dict[str, int] = field(default_factory=dict)
    """Per joint: measurements rejected by the Mahalanobis gate."""
    joint_resets: int = 0
    """Joints re-initialised after repeated gate rejections."""
    resets: int = 0
    """Whole-filter resets (robot restart, explicit reset)."""
    implausible: int = 0
    """Measurements refused as impossible (non-finite, or a position more than one joint range outside the
    limits); they never reach the filter."""


class TwinEstimator:
    """Kalman estimate of every joint of ``model``.

    Args:
        model: the robot; states are in ``model.dof_names`` order.
        settings: `EstimatorSettings`.
    """

    def __init__(self, model: RobotModel, settings: EstimatorSettings | None = None) -> None:
        self.model = model
        self.settings = settings or EstimatorSettings()
        self._index_cache: dict[tuple[str, ...], np.ndarray] = {}
        self._link_up = True
        self._robot_online = True
        self._held_q: np.ndarray | None = None
        self._all_joints = np.ones(model.ndof, dtype=bool)
        lower = np.asarray(model.lower, dtype=np.float64)
        upper = np.asarray(model.upper, dtype=np.float64)
        span = np.where(np.isfinite(upper - lower), upper - lower, 0.0)
        self._plausible_lo = np.where(np.isfinite(lower), lower - span, -_MAX_POSITION)
        self._plausible_hi = np.where(np.isfinite(upper), upper + span, _MAX_POSITION)
        self.reset(count=False)

    # ---- lifecycle ---------------------------------------------------------------------------------
    def reset(self, *, count: bool = True) -> None:
        """Forget the estimate (robot restart, new session); health becomes ``lost`` until data arrives.

        Until then snapshots show the last estimated positions (held, at rest, with a huge covariance) rather
        than jumping to a default pose."""
        s = self.settings
        if getattr(self, "_t_filter", None) is not None:
            self._held_q = np.array(self.filter.x[:, 0])
        self.filter = JointKalmanFilter(
            self.model.ndof,
            jerk_psd=s.jerk_psd,
            sigma_q=s.sigma_q,
            sigma_qd=s.sigma_qd,
            gate_chi2=s.gate_chi2,
            noise_adapt_rate=s.noise_adapt_rate,
        )
        self._t_filter: int | None = None
        self._last_arrival: int | None = None
        self._gate_streak = np.zeros(self.model.ndof, dtype=np.int64)
        self._streaking = False
        previous = getattr(self, "stats", None)
        self.stats = EstimatorStats(gated={n: 0 for n in self.model.dof_names})
        if previous is not None:
            self.stats.resets = previous.resets + (1 if count else 0)

    def set_link(self, *, connected: bool | None = None, robot_online: bool | None = None) -> None:
        """Tell the estimator about the link (broker connection) and the robot's LWT status."""
        if connected is not None:
            self._link_up = bool(connected)
        if robot_online is not None:
            self._robot_online = bool(robot_online)

    # ---- measurements --------------------------------------------------------------------------------
    def _indices(self, names: Sequence[str]) -> tuple[np.ndarray, bool]:
        """Model indices of ``names`` and whether they are every joint in model order."""
        key = tuple(names)
        hit = self._index_cache.get(key)
        if hit is None:
            lookup = {n: i for i, n in enumerate(self.model.dof_names)}
            unknown = [n for n in key if n not in lookup]
            if unknown:
                raise ValueError(
                    f"telemetry joint names {unknown} are not joints of {self.model.name} "
                    f"({list(self.model.dof_names)}); fix: align the robot's joint names with the USD joint prims "
                    f"or load the matching robot USD"
                )
            idx = np.array([lookup[n] for n in key], dtype=np.int64)
            hit = (idx, key == tuple(self.model.dof_names))
            if len(self._index_cache) < 64:
                self._index_cache[key] = hit
        return hit

    def observe(
        self,
        names: Sequence[str],
        position: np.ndarray,
        velocity: np.ndarray | None,
        *,
        sample_ns: int,
        arrival_ns: int,
    ) -> str:
        """Fuse one joint-state measurement.

        Args:
            names: ``[k]`` joint names of the message (any order, any subset of the model's dofs).
            position: ``[k]`` rad|m.
            velocity: ``[k]`` rad/s | m/s, or None.
            sample_ns: twin-clock time at which the robot sampled it (source stamp through the clock sync), ns.
            arrival_ns: twin-clock arrival time, ns (for staleness).

        Returns:
            `ObserveResult.FUSED`, `INITIALIZED`, `LATE` or `IMPLAUSIBLE` (refused: non-finite, or more than one
            joint range outside the limits; counted in ``stats.implausible``, the filter is untouched).

        Raises:
            ValueError: names that are not joints of the model (the message names them and the fix).
        """
        idx, full = self._indices(names)
        s = self.settings
        n = self.model.ndof
        position = np.asarray(position, dtype=np.float64)
        if velocity is not None:
            velocity = np.asarray(velocity, dtype=np.float64)
        if not self._plausible(idx, position, velocity):
            # Never let an impossible value (1e300 rad, NaN) into the filter: it would re-initialise joints with
            # an absurd covariance. The ingest refuses such samples first (out_of_limits); this is the backstop.
            self.stats.implausible += 1
            return ObserveResult.IMPLAUSIBLE
        if self._t_filter is not None and sample_ns < self._t_filter:
            if self._t_filter - sample_ns > s.late_tolerance_s * 1e9:
                self.stats.late += 1
                return ObserveResult.LATE
            sample_ns = self._t_filter
        use_qd = s.use_velocity and velocity is not None
        if full:  # the common case: every joint, in model order (the ingest delivers in model order)
            q = position
            qd = velocity if use_qd else None
            measured = self._all_joints
        else:  # unmeasured joints are 0 so the filter arithmetic stays finite; the mask decides what is used
            q = np.zeros(n)
            q[idx] = position
            qd = None
            if use_qd:
                qd = np.zeros(n)
                qd[idx] = velocity
            measured = np.zeros(n, dtype=bool)
            measured[idx] = True
        self._last_arrival = arrival_ns if self._last_arrival is None else max(self._last_arrival, arrival_ns)
        if self._t_filter is not None:
            self.filter.predict((sample_ns - self._t_filter) * 1e-9)
        self._t_filter = sample_ns
        self.stats.fused += 1
        fresh = measured & ~self.filter.initialized
        any_fresh = fresh.any()
        if any_fresh:
            self.filter.initialize(fresh, q, qd)
            update = measured & ~fresh
            if not update.any():
                return ObserveResult.INITIALIZED
        else:
            update = measured
        gated = self.filter.update(q, qd, mask=update)
        if gated.any():
            streak = self._gate_streak
            streak[update & ~gated] = 0
            streak[gated] += 1
            for j in np.flatnonzero(gated):
                self.stats.gated[self.model.dof_names[j]] += 1
            stuck = streak >= s.gate_reset_after
            if stuck.any():
                # Persistently rejected: the robot really is elsewhere. Restart those joints from the data.
                self.filter.initialize(stuck, q, qd)
                streak[stuck] = 0
                self.stats.joint_resets += int(stuck.sum())
        elif self._streaking:
            self._gate_streak[update] = 0
        self._streaking = bool(self._gate_streak.any())
        return ObserveResult.FUSED

    def _plausible(self, idx: np.ndarray, position: np.ndarray, velocity: np.ndarray | None) -> bool:
        """Finite values, and positions within one joint range (or 1e6 rad|m for unlimited joints) of the limits."""
        lo, hi = self._plausible_lo[idx], self._plausible_hi[idx]
        if not (position.shape == idx.shape and bool(np.all((position >= lo) & (position <= hi)))):
            return False  # also False for NaN (comparisons with NaN are False)
        return velocity is None or bool(np.all(np.abs(velocity) <= _MAX_SPEED))

    # ---- reading ---------------------------------------------------------------------------------------
    def noisier_than_configured(self, factor: float = 2.0) -> dict[str, float]:
        """Joints whose learned position noise exceeds ``factor`` x ``sigma_q``: ``{name: sigma}`` (1 sigma,
        rad|m), noisiest first; empty with fixed noise or clean sensors."""
        kf = self.filter
        learned = np.sqrt(kf.r[:, 0])
        noisy = np.flatnonzero(kf.initialized & (learned > factor * np.sqrt(kf.r_floor[:, 0])))
        return {self.model.dof_names[j]: float(learned[j]) for j in noisy[np.argsort(-learned[noisy])]}

    @property
    def filter_time_ns(self) -> int | None:
        """Twin time of the newest fused measurement (None before the first)."""
        return self._t_filter

    def health(self, t_ns: int) -> Health:
        """Health of the estimate at twin time ``t_ns``."""
        if self._t_filter is None or not self._link_up or not self._robot_online:
            return Health.LOST
        if (t_ns - self._last_arrival) * 1e-9 > self.settings.stale_after_s:
            return Health.STALE
        return Health.OK

    def snapshot(self, t_ns: int, *, target: np.ndarray | None = None) -> TwinSnapshot:
        """The estimate predicted to twin time ``t_ns`` as an immutable `TwinSnapshot`."""
        model = self.model
        n = model.ndof
        if self._t_filter is None:
            q = model.clip_to_limits(
                self._held_q if self._held_q is not None else np.array(model.drive_target, dtype=np.float64)
            )
            big = np.full(2 * n, 1e6)
            return TwinSnapshot(
                t_ns=t_ns,
                q=q,
                qd=np.zeros(n),
                qdd=np.zeros(n),
                covariance=np.diag(big),
                health=Health.LOST,
                model=model,
                target=target,
                age_s=float("inf"),
            )
        horizon = max(0.0, (t_ns - self._t_filter) * 1e-9)
        shown = min(horizon, self.settings.max_extrapolation_s)
        x, P = self.filter.predicted(shown, covariance_dt=horizon)
        if shown < horizon:
            x[:, 1:] = 0.0  # held beyond the extrapolation cap: the displayed state does not move
        cov = np.zeros((2 * n, 2 * n))
        j = np.arange(n)
        cov[j, j] = P[:, 0, 0]
        cov[n + j, n + j] = P[:, 1, 1]
        cov[j, n + j] = cov[n + j, j] = P[:, 0, 1]
        # A common, unknown shift dt of the sample times moves every joint together: q by qd·dt and qd by
        # qdd·dt. That correlated term is what the per-joint filters cannot see.
        sigma_t = self.settings.time_sigma_s
        if sigma_t > 0:
            shift = np.concatenate([x[:, 1], x[:, 2]])
            cov += np.outer(shift, shift) * sigma_t**2
        uninit = ~self.filter.initialized
        if np.any(uninit):
            x[uninit, 0] = model.clip_to_limits(np.array(model.drive_target))[uninit]
            k = np.flatnonzero(uninit)  # never measured: position and velocity unknown
            cov[k, :] = cov[:, k] = cov[n + k, :] = cov[:, n + k] = 0.0
            cov[k, k] = cov[n + k, n + k] = 1e6
        # A joint cannot be beyond its hard stop: project the estimate onto the limits (the constant-
        # acceleration model does not know them and overshoots when a joint stops at a limit).
        above, below = x[:, 0] > model.upper, x[:, 0] < model.lower
        x[:, 0] = np.clip(x[:, 0], model.lower, model.upper)
        outward = (above & (x[:, 1] > 0)) | (below & (x[:, 1] < 0))
        x[outward, 1:] = 0.0
        return TwinSnapshot(
            t_ns=t_ns,
            q=x[:, 0].copy(),
            qd=x[:, 1].copy(),
            qdd=x[:, 2].copy(),
            covariance=cov,
            health=self.health(t_ns),
            model=model,
            target=target,
            age_s=(t_ns - self._last_arrival) * 1e-9,
        )
