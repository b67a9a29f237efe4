# SPDX-License-Identifier: Apache-2.0
"""`TwinEstimator`: the twin's state estimate, fed by telemetry, read at display time.

Time. The filter runs in the twin's clock: each measurement is placed at the twin time at which the robot
sampled it (the caller maps the robot's source stamp through the clock sync), so transport latency is
removed before fusion, and `snapshot(t)` predicts to the display time ``t`` — this is the latency
compensation.

Out-of-sequence measurements. A measurement older than the newest fused one (reordered by the network) but
at most ``max_lag_ms`` older is fused at its own sample time: the estimator keeps a short history of its
fused measurements with the filter state after each (`_FusionHistory`, ``max_lag_ms`` of twin time), goes
back to the state just before the late one, fuses it and re-fuses the newer ones ("reprocessing", the
exact solution to out-of-sequence measurements; counted in ``stats.fused_late``). The re-filtering is deferred
until the estimate is next needed (the next in-order measurement, `snapshot`, `filter`), so the late samples of
one display tick or drained batch cost one re-filter from the earliest of them, not one each. The result is the
same, bit for bit, as if the samples had arrived in order. An older measurement is dropped and counted
(``stats.late``, "too late"). The filter's time is always the newest sample time, so the displayed state
never moves backwards in time.

Gaps. Beyond ``coast_after_s`` past the newest measurement the display stops trusting the constant-acceleration
model. Joints whose robot sends its controller's reference (`observe_reference`) follow that reference,
extrapolated with its own velocity and acceleration and then bounded (`extrapolate_reference`), through the
robot model's drives (`tracking_error`, linearised PD); the others coast with the bounded decaying-velocity
predictor (`_coasted`).

Limits. Displayed positions are projected onto the joint limits (a hard stop is a constraint the
constant-acceleration model does not know; without it a joint that stops at a limit is shown beyond it).

Health. ``ok`` while measurements keep arriving; ``stale`` once none was accepted for
``stale_after_s`` (the covariance keeps growing, the displayed extrapolation is capped at
``max_extrapolation_s``); ``lost`` when the link is down, the robot announced itself offline, or nothing
was ever received.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..robot import RobotModel
from ._kalman import JointKalmanFilter
from ._kalman_kernel import FLAG_FRESH, FLAG_GATED, FLAG_RESET, CompiledFusion, build_kalman_kernel, ready
from ._reference import ReferenceTrack, extrapolate_reference, tracking_error
from ._settings import EstimatorSettings
from ._snapshot import Health, TwinSnapshot

__all__ = ["EstimatorStats", "TwinEstimator", "ObserveResult", "shown_prediction"]


class ObserveResult:
    """Outcome of one `TwinEstimator.observe` call."""

    FUSED = "fused"
    FUSED_LATE = "fused_late"
    """Older than the newest fused measurement, within ``max_lag_ms``: fused at its own time by re-filtering."""
    LATE = "late"
    """Older than the newest fused measurement by more than ``max_lag_ms``: dropped (too late)."""
    INITIALIZED = "initialized"
    IMPLAUSIBLE = "implausible"
    """Refused: a non-finite value, or a position more than one joint range outside the limits."""


_MAX_POSITION = 1e6
"""Largest plausible position of an unlimited joint, rad | m (the backstop against absurd values)."""
_MAX_SPEED = 1e6
"""Largest plausible speed, rad/s | m/s."""


@dataclass
class EstimatorStats:
    """Counters (plain ints; safe to copy): ``fused``, ``fused_late``, ``late``, ``implausible`` and ``resets``
    since the estimator was made; the gate's counters (``gated``, ``joint_resets``) since the last reset."""

    fused: int = 0
    """Measurements fused into the filter."""
    late: int = 0
    """Measurements dropped as too late: older than the filter's time by more than ``max_lag_ms``."""
    fused_late: int = 0
    """Measurements that arrived after a newer one and were fused at their own time (re-filtered; also in
    ``fused``)."""
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
        self._max_lag_ns = int(round(self.settings.max_lag_ms * 1e6))
        kp = np.asarray(model.kp, dtype=np.float64)
        # [n] bool: joints with known drive gains (the others track a reference with coast_time_constant_s)
        self._driven = np.asarray(model.has_drive, dtype=bool) & (kp > 0)
        self._dynamics = None  # RigidBodyDynamics, made on the first gap with a reference
        self._inertia_cache: tuple[int, np.ndarray] | None = None
        self._stale_from: int | None = None
        self._compiled: CompiledFusion | None = None  # the Warp fusion kernel's buffers, once it is built
        if self.settings.kalman_backend == "warp":
            # Built once per process in a background thread (warm kernel cache ~0.3 s, cold ~1.9 s on the 2-core
            # VM). Wait a little so a warm cache gives this estimator the kernel from its first sample;
            # otherwise the NumPy path fuses until the kernel is ready: nobody waits for the compiler.
            build_kalman_kernel(_KERNEL_WAIT_S)
        self.reset(count=False)

    # ---- lifecycle ---------------------------------------------------------------------------------
    def reset(self, *, count: bool = True) -> None:
        """Forget the estimate (robot restart, new session); health becomes ``lost`` until data arrives.

        Until then snapshots show the last estimated positions (held, at rest, with a huge covariance) rather
        than jumping to a default pose."""
        s = self.settings
        if getattr(self, "_t_filter", None) is not None:
            self._held_q = np.array(self.filter.x[:, 0])
        self._kf = JointKalmanFilter(
            self.model.ndof,
            jerk_psd=s.jerk_psd,
            sigma_q=s.sigma_q,
            sigma_qd=s.sigma_qd,
            gate_chi2=s.gate_chi2,
            noise_adapt_rate=s.noise_adapt_rate,
        )
        self._t_filter: int | None = None
        self._last_arrival: int | None = None
        self._history = _FusionHistory(self._max_lag_ns)
        self._stale_from = None  # history index from which the entries' filter states wait for `_refilter`
        self._reference = ReferenceTrack(self.model.ndof)
        self._inertia_cache = None
        self._gate_streak = np.zeros(self.model.ndof, dtype=np.int64)
        self._streaking = False
        previous = getattr(self, "stats", None)
        self.stats = EstimatorStats(gated={n: 0 for n in self.model.dof_names})
        if previous is not None:
            self.stats.resets = previous.resets + (1 if count else 0)
            for name in ("fused", "fused_late", "late", "implausible"):
                setattr(self.stats, name, getattr(previous, name))

    @property
    def filter(self) -> JointKalmanFilter:
        """The per-joint Kalman filter, with every observed measurement fused (late ones are re-filtered first)."""
        if self._stale_from is not None:
            self._refilter()
        return self._kf

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
            `ObserveResult.FUSED`, `FUSED_LATE` (older than the newest, within ``max_lag_ms``: fused at its own
            time), `INITIALIZED`, `LATE` (too late: dropped) or `IMPLAUSIBLE` (refused: non-finite, or more than
            one joint range outside the limits; counted in ``stats.implausible``, the filter is untouched).

        Raises:
            ValueError: names that are not joints of the model (the message names them and the fix).
        """
        idx, full = self._indices(names)
        s = self.settings
        n = self.model.ndof
        position = np.asarray(position, dtype=np.float64)
        if velocity is not None:
            velocity = np.asarray(velocity, dtype=np.float64)
        if not self._plausible(idx, position, velocity, full):
            # Never let an impossible value (1e300 rad, NaN) into the filter: it would re-initialise joints with
            # an absurd covariance. The ingest refuses such samples first (out_of_limits); this is the backstop.
            self.stats.implausible += 1
            return ObserveResult.IMPLAUSIBLE
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
        t_filter = self._t_filter
        if t_filter is not None and sample_ns < t_filter:
            lag = t_filter - sample_ns
            history = self._history
            if lag <= self._max_lag_ns and history.times and history.times[0] <= sample_ns:
                self._last_arrival = max(self._last_arrival, arrival_ns)
                self._insert_late(sample_ns, q, qd, measured)
                self.stats.fused += 1
                self.stats.fused_late += 1
                return ObserveResult.FUSED_LATE
            if lag > s.late_tolerance_s * 1e9:
                self.stats.late += 1
                return ObserveResult.LATE
            sample_ns = t_filter  # clock-sync wobble with no history to re-filter: fuse at the filter's time
        self._last_arrival = arrival_ns if self._last_arrival is None else max(self._last_arrival, arrival_ns)
        if self._stale_from is not None:
            self._refilter()
        self.stats.fused += 1
        compiled = self._compiled_fusion() if qd is not None and full else None
        if compiled is not None and self._common_step(sample_ns):
            state, result = self._fuse_run(compiled, [sample_ns], [q], [qd], [True])[0]
            if self._max_lag_ns > 0:
                self._history.append(sample_ns, q, qd, measured, state)
            return result
        result = self._fuse(sample_ns, q, qd, measured, count=True)
        if self._max_lag_ns > 0:
            self._history.append(sample_ns, q, qd, measured, self._filter_state())
        return result

    def observe_reference(
        self, names: Sequence[str], position: np.ndarray, velocity: np.ndarray | None, *, sample_ns: int
    ) -> bool:
        """Take the robot controller's reference sent with a measurement (``reference_position`` /
        ``reference_velocity`` of the joint-state message); through a gap the joints follow it (`_tracked`).

        Args:
            names: ``[k]`` joint names (as in `observe`).
            position: ``[k]`` reference position, rad | m.
            velocity: ``[k]`` reference velocity, rad/s | m/s, or None (then the difference of the last two
                references).
            sample_ns: twin-clock time the reference belongs to (the message's sample time), ns.

        Returns:
            True if it was taken; False if ``use_reference`` is off or a value is not finite (nothing changes).
            A reference older than the joint's newest one is ignored.

        Raises:
            ValueError: names that are not joints of the model.
        """
        if not self.settings.use_reference:
            return False
        idx, _ = self._indices(names)
        position = np.asarray(position, dtype=np.float64)
        if velocity is not None:
            velocity = np.asarray(velocity, dtype=np.float64)
        if position.shape != idx.shape or not np.isfinite(position).all():
            return False
        if velocity is not None and (velocity.shape != idx.shape or not np.isfinite(velocity).all()):
            return False
        max_diff_ns = int(self.settings.coast_after_s * 1e9)
        self._reference.update(idx, position, velocity, int(sample_ns), max_diff_ns)
        return True

    # ---- fusion and out-of-sequence re-filtering ---------------------------------------------------------
    def _fuse(self, sample_ns: int, q: np.ndarray, qd: np.ndarray | None, measured: np.ndarray, *, count: bool) -> str:
        """Predict to ``sample_ns`` and update with one measurement (``q``/``qd``: ``[n]``, ``measured``: ``[n]``
        bool). ``count`` is False while re-filtering samples whose gate outcomes were already counted once (the
        caller counts ``stats.fused``)."""
        s = self.settings
        kf = self._kf
        if self._t_filter is not None:
            dt = (sample_ns - self._t_filter) * 1e-9
            if dt > s.stale_after_s:
                # After a gap the constant-acceleration model's prediction across it means nothing (its q and qd
                # are off by a quadratic in the gap): start the joints again from this measurement.
                kf.initialized[:] = False
            else:
                kf.predict(dt)
        self._t_filter = sample_ns
        initialized = kf.initialized
        fresh = None if initialized.all() else measured & ~initialized
        if fresh is not None and fresh.any():
            kf.initialize(fresh, q, qd)
            update = measured & ~fresh
            if not update.any():
                return ObserveResult.INITIALIZED
        else:
            update = measured
        every = update is self._all_joints  # the common case: no mask to check
        self._track_gates(kf.update(q, qd, mask=None if every else update), update, q, qd, count=count)
        return ObserveResult.FUSED

    def _track_gates(
        self, gated: np.ndarray, update: np.ndarray, q: np.ndarray, qd: np.ndarray | None, *, count: bool
    ) -> None:
        """Gate streaks after an update of the joints ``update`` (``gated``, ``update``: ``[n]`` bool; ``q``/``qd``:
        ``[n]`` the measurement): a joint gated ``gate_reset_after`` times in a row restarts from the data."""
        if gated.any():
            streak = self._gate_streak
            streak[update & ~gated] = 0
            streak[gated] += 1
            if count:
                for j in np.flatnonzero(gated):
                    self.stats.gated[self.model.dof_names[j]] += 1
            stuck = streak >= self.settings.gate_reset_after
            if stuck.any():
                # Persistently rejected: the robot really is elsewhere. Restart those joints from the data.
                self._kf.initialize(stuck, q, qd)
                streak[stuck] = 0
                if count:
                    self.stats.joint_resets += int(stuck.sum())
            self._streaking = bool(streak.any())
        elif self._streaking:
            self._gate_streak[update] = 0
            self._streaking = bool(self._gate_streak.any())

    def _filter_state(self) -> tuple[np.ndarray, ...]:
        """A copy of everything `_fuse` changes (the filter's x, P, r, initialized and the gate streaks)."""
        kf = self._kf
        return (kf.x.copy(), kf.P.copy(), kf.r.copy(), kf.initialized.copy(), self._gate_streak.copy())

    def _restore(self, t_ns: int, state: tuple[np.ndarray, ...]) -> None:
        kf = self._kf
        x, P, r, initialized, streak = state
        kf.x, kf.P, kf.r, kf.initialized = x.copy(), P.copy(), r.copy(), initialized.copy()
        self._gate_streak = streak.copy()
        self._streaking = bool(streak.any())
        self._t_filter = t_ns

    def _insert_late(self, sample_ns: int, q: np.ndarray, qd: np.ndarray | None, measured: np.ndarray) -> None:
        """Put a measurement older than the filter into the history at its own time, after the newest entry not later
        than it; `_refilter` fuses it and re-fuses the newer entries when the estimate is next needed, so several
        late measurements (a display tick's, a drained batch's) cost one re-filter from the earliest."""
        k = self._history.insert(sample_ns, q, qd, measured)
        self._stale_from = k if self._stale_from is None else min(self._stale_from, k)

    def _refilter(self) -> None:
        """Go back to the filter state after the newest entry before the first late one, and fuse every entry from
        there in time order (late ones for the first time, their gate outcomes counted; the others again). The
        result equals in-order delivery of the same samples (bit for bit: the same operations run in the same
        order on the same state)."""
        history = self._history
        k, self._stale_from = self._stale_from, None
        times, measurements, states, pending = history.times, history.measurements, history.states, history.pending
        self._restore(times[k - 1], states[k - 1])
        compiled = self._compiled_fusion()
        i, end = k, len(times)
        while i < end:
            if compiled is not None:  # the longest run of full measurements from i: one kernel call
                j, t_prev = i, self._t_filter
                while j < end and measurements[j][1] is not None and measurements[j][2] is self._all_joints:
                    if t_prev is not None and (times[j] - t_prev) * 1e-9 > self.settings.stale_after_s:
                        break
                    t_prev = times[j]
                    j += 1
                if j > i:
                    run = self._fuse_run(
                        compiled,
                        times[i:j],
                        [measurements[e][0] for e in range(i, j)],
                        [measurements[e][1] for e in range(i, j)],
                        pending[i:j],
                    )
                    for e, (state, _) in enumerate(run, start=i):
                        states[e] = state
                        pending[e] = False
                    i = j
                    continue
            tq, tqd, tmeasured = measurements[i]
            self._fuse(times[i], tq, tqd, tmeasured, count=pending[i])
            states[i] = self._filter_state()
            pending[i] = False
            i += 1
        history.prune()

    def _compiled_fusion(self) -> CompiledFusion | None:
        """The Warp fusion kernel's buffers when ``kalman_backend = "warp"`` and the kernel is built, else None."""
        if self._compiled is None and self.settings.kalman_backend == "warp" and ready():
            self._compiled = CompiledFusion(self.model.ndof)
        return self._compiled

    def _common_step(self, sample_ns: int) -> bool:
        """Whether the step to ``sample_ns`` is one the kernel takes (not across a gap, which restarts the joints)."""
        t = self._t_filter
        return t is None or (sample_ns - t) * 1e-9 <= self.settings.stale_after_s

    def _fuse_run(self, compiled: CompiledFusion, times, qs, qds, counts) -> list[tuple[tuple[np.ndarray, ...], str]]:
        """`_fuse` of full measurements at ``times`` (ns, ascending, none across a gap; ``qs``/``qds``: ``[n]`` each)
        in one kernel call; ``counts`` says whose gate outcomes are counted. Returns per measurement the filter state
        after it (as `_filter_state`) and its `ObserveResult`."""
        t_prev = self._t_filter
        dts = np.empty(len(times))
        for e, t in enumerate(times):
            dts[e] = 0.0 if t_prev is None else (t - t_prev) * 1e-9
            t_prev = t
        x, P, r, initialized, streaks, flags = compiled.run(
            self._kf, self._gate_streak, dts, qs, qds, reset_after=self.settings.gate_reset_after
        )
        self._t_filter = times[-1]
        self._streaking = bool(self._gate_streak.any())
        names = self.model.dof_names
        results = [ObserveResult.FUSED] * len(times)
        for e in np.flatnonzero(flags.any(axis=1)):  # the few measurements with a gated or a new joint
            row = flags[e]
            if (row & FLAG_FRESH).all():
                results[e] = ObserveResult.INITIALIZED
            if counts[e]:
                for j in np.flatnonzero(row & FLAG_GATED):
                    self.stats.gated[names[j]] += 1
                self.stats.joint_resets += int(np.count_nonzero(row & FLAG_RESET))
        return [((x[e], P[e], r[e], initialized[e], streaks[e]), results[e]) for e in range(len(times))]

    def _coasted(self, horizon_s: float) -> np.ndarray:
        """``[n, 3]`` displayed (q, qd, qdd) ``horizon_s`` beyond the newest measurement: the bounded predictor.

        Up to ``coast_after_s`` the filter's constant-acceleration prediction (what bridges network latency).
        Beyond it the acceleration is dropped and the velocity decays towards hold with time constant
        ``coast_time_constant_s``, so over a gap the displayed position moves at most ``|qd| * tau`` further
        than the constant-acceleration prediction at ``coast_after_s`` (a quadratic extrapolated through a
        400 ms gap can be off by hundreds of mrad). Beyond ``max_extrapolation_s`` the state holds. Joints with
        a recent reference (`observe_reference`) follow it instead of coasting (`_tracked`).
        """
        s = self.settings
        kf = self._kf
        cap = s.max_extrapolation_s
        free = min(horizon_s, s.coast_after_s, cap)
        x = shown_prediction(kf.x, kf.P, free, s.stillness_sigma)
        coast = min(horizon_s, cap) - free
        tracked = None
        if coast > 0.0 and self._reference.any:
            tracked = self._tracked(x, free, coast)
        if coast > 0.0:
            tau = s.coast_time_constant_s
            v = x[:, 1].copy()
            if tau > 0.0:
                decay = np.exp(-coast / tau)
                x[:, 0] += v * tau * (1.0 - decay)
                x[:, 1] = v * decay
                x[:, 2] = -x[:, 1] / tau
            else:
                x[:, 1:] = 0.0
        if tracked is not None:
            mask, xt = tracked
            x[mask] = xt[mask]
        if horizon_s > cap:
            x[:, 1:] = 0.0  # held beyond the extrapolation cap: the displayed state does not move
        return x

    def _tracked(self, x_free: np.ndarray, free_s: float, coast_s: float) -> tuple[np.ndarray, np.ndarray] | None:
        """Joints with a usable reference, and ``[n, 3]`` their state ``coast_s`` after ``x_free`` (the
        constant-acceleration prediction ``free_s`` past the newest measurement) following the extrapolated
        reference: through the model's drives where its gains are known, else with the tracking error decaying
        at ``coast_time_constant_s``. None when no joint has a reference within ``coast_after_s`` of the newest
        measurement."""
        s = self.settings
        ref = self._reference
        t0 = self._t_filter
        mask = ref.usable(t0, int(s.coast_after_s * 1e9))
        if not mask.any():
            return None
        start_ns = t0 + int(round(free_s * 1e9))
        tau = s.coast_time_constant_s
        # [n] s from each joint's last reference to the start of the coast (0 for joints without one)
        since = (start_ns - np.where(mask, ref.t_ns, start_ns)) * 1e-9
        ca, rd, rdd = s.reference_coast_after_s, ref.velocity, ref.acceleration
        r_start = extrapolate_reference(ref.position, rd, rdd, since, ca_s=ca, tau_s=tau)
        r_end = extrapolate_reference(ref.position, rd, rdd, since + coast_s, ca_s=ca, tau_s=tau)
        x0 = np.array(x_free)
        e0, ed0 = x0[:, 0] - r_start[:, 0], x0[:, 1] - r_start[:, 1]
        # The tracking error at the start of the coast (the filter's state vs the reference) dies out: through the
        # model's drives where their gains are known ("drive"), else with coast_time_constant_s ("track").
        decay = np.exp(-coast_s / tau) if tau > 0.0 else 0.0
        err = np.stack([e0 * decay, ed0 * decay, -(ed0 * decay) / tau if tau > 0.0 else np.zeros_like(e0)], axis=1)
        driven = mask & self._driven
        if s.reference_model == "drive" and driven.any():
            model = self.model
            drive = tracking_error(
                e0,
                ed0,
                coast_s,
                kp=np.where(self._driven, model.kp, 1.0),
                kd=np.asarray(model.kd, dtype=np.float64),
                inertia=self._inertia(start_ns, x0[:, 0]),
            )
            err[driven] = drive[driven]
        out = r_end + err
        return mask, out

    def _inertia(self, key: int, q: np.ndarray) -> np.ndarray:
        """``[n]`` effective joint inertias (mass-matrix diagonal with armature) at ``q`` rad|m, kg·m² | kg, kept per
        gap (``key``); the armature alone (or 1) if the model's dynamics cannot be built."""
        cached = self._inertia_cache
        if cached is not None and cached[0] == key:
            return cached[1]
        model = self.model
        armature = np.asarray(model.armature, dtype=np.float64)
        fallback = np.where(armature > 0, armature, 1.0)
        try:
            if self._dynamics is None:
                from ..robot import RigidBodyDynamics

                self._dynamics = RigidBodyDynamics(model)
            m = np.diag(self._dynamics.mass_matrix(np.where(np.isfinite(q), q, 0.0))).copy()
            m = np.where(np.isfinite(m) & (m > 0), m, fallback)
        except Exception:  # noqa: BLE001 - a model without usable inertias: the armature is the best we know
            m = fallback
        self._inertia_cache = (key, m)
        return m

    def _plausible(
        self, idx: np.ndarray, position: np.ndarray, velocity: np.ndarray | None, full: bool = False
    ) -> bool:
        """Finite values, and positions within one joint range (or 1e6 rad|m for unlimited joints) of the limits
        (``full``: ``idx`` is every joint in model order)."""
        if full:
            lo, hi = self._plausible_lo, self._plausible_hi
        else:
            lo, hi = self._plausible_lo[idx], self._plausible_hi[idx]
        if not (position.shape == idx.shape and bool(((position >= lo) & (position <= hi)).all())):
            return False  # also False for NaN (comparisons with NaN are False)
        return velocity is None or bool((np.abs(velocity) <= _MAX_SPEED).all())

    # ---- reading ---------------------------------------------------------------------------------------
    def noisier_than_configured(self, factor: float = 2.0) -> dict[str, float]:
        """Joints whose learned position noise exceeds ``factor`` x ``sigma_q``: ``{name: sigma}`` (1 sigma,
        rad|m), noisiest first; empty with fixed noise or clean sensors."""
        kf = self.filter
        learned = np.sqrt(kf.r[:, 0])
        noisy = np.flatnonzero(kf.initialized & (learned > factor * np.sqrt(kf.r_floor[:, 0])))
        return {self.model.dof_names[j]: float(learned[j]) for j in noisy[np.argsort(-learned[noisy])]}

    def bridges_with_reference(self, t_ns: int) -> bool:
        """Whether `snapshot` at twin time ``t_ns`` bridges a gap with the robot's reference (some joint has a
        reference and ``t_ns`` is more than ``coast_after_s`` past the newest measurement)."""
        t_filter = self._t_filter
        # The time first: asked for every robot on every fleet tick, and ``_reference.any`` costs a NumPy reduction.
        if t_filter is None or (t_ns - t_filter) * 1e-9 <= self.settings.coast_after_s or not self._reference.any:
            return False
        return bool(self._reference.usable(t_filter, int(self.settings.coast_after_s * 1e9)).any())

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
        x_ca, P = self.filter.predicted(horizon)  # `filter` fuses late measurements still waiting
        x = self._coasted(horizon)
        # The covariance is the constant-acceleration model's over the whole horizon (it grows like t^5 with the
        # jerk PSD), widened by how far the displayed state is from that model's mean: both are possible.
        P[:, 0, 0] += (x_ca[:, 0] - x[:, 0]) ** 2
        P[:, 1, 1] += (x_ca[:, 1] - x[:, 1]) ** 2
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
        uninit = ~self._kf.initialized
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


def shown_prediction(x: np.ndarray, P: np.ndarray, horizon_s, stillness_sigma: float) -> np.ndarray:
    """``[m, 3]`` displayed (q, qd, qdd) ``horizon_s`` (s, scalar or ``[m]``, >= 0) ahead of filter states ``x: [m, 3]``
    (rad|m, rad/s|m/s, rad/s²|m/s²) with covariances ``P: [m, 3, 3]``: the constant-acceleration prediction, with
    corrections for what a robot does and the model does not know (``stillness_sigma`` > 0; 0 = the plain
    prediction):

    * rest: each joint's predicted motion is scaled by `motion_weight`, so a joint whose velocity estimate is noise
      is shown still instead of following the noise of its acceleration estimate;
    * noisy acceleration: the acceleration is shrunk by its own signal-to-noise ratio, ``qdd² / (qdd² + P_qdd)``
      (the Wiener factor): the estimate's noise (~1 rad/s² at 100-200 Hz) is 6-13 mrad over a 100-150 ms loss gap,
      while a real acceleration of several rad/s² is kept;
    * stops: a decelerating joint (velocity and acceleration of opposite signs) comes to rest where its velocity
      reaches zero instead of reversing (a constant deceleration extrapolated through the end of a move runs
      backwards: 30 mrad after 0.25 s for a joint braking at 2 rad/s²).
    """
    # Called for every robot of a fleet on every display tick: few NumPy calls, no boolean-index copies.
    x = np.asarray(x, dtype=np.float64)
    q, v, a = x[:, 0], x[:, 1], x[:, 2]
    h = np.asarray(horizon_s, dtype=np.float64)
    if h.shape != q.shape:
        h = np.broadcast_to(h, q.shape)
    out = np.empty((len(q), 3))
    if not stillness_sigma > 0.0:  # the plain prediction: no joint is braking
        out[:, 0] = q + v * h + 0.5 * a * h * h
        out[:, 1] = v + a * h
        out[:, 2] = a
        return out
    a2 = a * a
    a = a * (a2 / (a2 + np.maximum(P[:, 2, 2], 0.0) + 1e-300))
    w = motion_weight(v, P[:, 1, 1], stillness_sigma)
    v, a = v * w, a * w
    stop = np.empty(q.shape)  # s until a braking joint's velocity reaches zero (inf for the others)
    stop.fill(np.inf)
    np.divide(-v, a, out=stop, where=v * a < 0.0)
    stopped = stop < h
    h = np.minimum(h, stop)
    out[:, 0] = q + v * h + 0.5 * a * h * h
    out[:, 1] = np.where(stopped, 0.0, v + a * h)
    out[:, 2] = np.where(stopped, 0.0, a)
    return out


def motion_weight(qd: np.ndarray, var_qd: np.ndarray, sigma: float) -> np.ndarray:
    """``[n]`` in [0, 1): how clearly each joint moves, ``qd² / (qd² + sigma² var_qd)`` for its estimated velocity
    ``qd: [n]`` rad/s | m/s and that estimate's variance ``var_qd: [n]`` (rad/s)² | (m/s)². The display scales a
    joint's predicted motion by it (``estimator.stillness_sigma``): a joint at rest, whose velocity estimate is
    noise, is shown still instead of extrapolating the noise of its acceleration estimate."""
    v2 = qd * qd
    return v2 / (v2 + sigma * sigma * np.maximum(var_qd, 0.0) + 1e-300)


class _FusionHistory:
    """The fused measurements of the last ``lag_ns`` of twin time, each with the filter state right after it.

    Kept in sample-time order. Pruning keeps one entry older than the window as the base a late measurement
    re-filters from, so every time within ``lag_ns`` of the newest has an entry at or before it. Bounded in
    count too (``_MAX_ENTRIES``), so a flood cannot grow it without limit.
    """

    def __init__(self, lag_ns: int) -> None:
        self.lag_ns = int(lag_ns)
        self.times: list[int] = []
        """``[m]`` sample times, ns, ascending."""
        self.measurements: list[tuple[np.ndarray, np.ndarray | None, np.ndarray]] = []
        """``[m]`` (q ``[n]``, qd ``[n]`` or None, measured ``[n]`` bool) as fused."""
        self.states: list[tuple[np.ndarray, ...] | None] = []
        """``[m]`` filter states right after each measurement (see `TwinEstimator._filter_state`); None for an
        inserted late one until `TwinEstimator._refilter` fuses it (the entries after it are stale until then)."""
        self.pending: list[bool] = []
        """``[m]`` True for an inserted late measurement not fused yet."""

    def append(self, t_ns: int, q: np.ndarray, qd: np.ndarray | None, measured: np.ndarray, state) -> None:
        """Add the newest fused measurement (``q``, ``qd``: ``[n]``, copied) and the filter ``state`` after it; prune
        to the window."""
        if self.lag_ns <= 0:
            return
        self.times.append(t_ns)
        q, qd = np.array(q), None if qd is None else np.array(qd)
        self.measurements.append((q, qd, measured))
        self.states.append(state)
        self.pending.append(False)
        self.prune()

    def prune(self) -> None:
        """Drop the entries older than ``lag_ns`` before the newest but one (the base), and the oldest beyond
        ``_MAX_ENTRIES``. Only while no entry waits for re-filtering."""
        times = self.times
        horizon = times[-1] - self.lag_ns
        drop = bisect.bisect_left(times, horizon) - 1  # keep the newest entry before the horizon as the base
        drop = max(drop, len(times) - _MAX_ENTRIES)
        if drop > 0:
            del times[:drop], self.measurements[:drop], self.states[:drop], self.pending[:drop]

    def insert(self, t_ns: int, q: np.ndarray, qd: np.ndarray | None, measured: np.ndarray) -> int:
        """Insert a late measurement (copied) after the newest entry not later than ``t_ns`` (there must be one), with
        no filter state yet; returns its index. Nothing is pruned until the re-filter (`prune`)."""
        k = bisect.bisect_right(self.times, t_ns)
        self.times.insert(k, t_ns)
        self.measurements.insert(k, (np.array(q), None if qd is None else np.array(qd), measured))
        self.states.insert(k, None)
        self.pending.insert(k, True)
        return k


_KERNEL_WAIT_S = 2.0
"""Longest wait at construction for the Warp fusion kernel (``kalman_backend = "warp"``), s; then NumPy until ready."""
_MAX_ENTRIES = 2048
"""Most history entries kept (250 ms at 8 kHz); beyond it the oldest go first (late samples then count as too late)."""
