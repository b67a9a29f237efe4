# SPDX-License-Identifier: Apache-2.0
"""The estimation step of a fleet tick, batched across robots: one `FleetKalman` predict + update for every
robot's newest sample, one batched prediction to the display time for every robot's snapshot.

Each robot keeps its own `TwinEstimator` (here `BatchedEstimator`, a subclass): its filter state, gate streaks,
out-of-sequence history and counters stay per robot and remain the source of truth. A fleet tick runs in three
steps (`FleetSession.advance`):

1. every robot's `LiveTwin` drains its ingest; the estimator *defers* each sample on the common path (in order,
   every joint, plausible, filter running, no gap beyond ``stale_after_s``) instead of fusing it at once; any
   other sample (late, partial, first, after a gap, implausible, a second one this tick) goes through the
   per-robot `TwinEstimator.observe` unchanged (a deferred sample is fused first, so the order is kept);
2. `fuse_deferred`: the deferred samples' filters are gathered into one `FleetKalman` (``robots x joints`` rows),
   predicted each by its own ``dt`` and updated at once (one Warp kernel launch with ``kalman_backend = "warp"``,
   `twin_ext.fleet._batched_kalman_kernel`), scattered back, and each robot does its own
   bookkeeping (counters, gate streaks and resets, out-of-sequence history) exactly as `TwinEstimator` does;
   `prepare_snapshots` predicts every running robot to the display time at once (constant acceleration,
   bounded coasting, limits, covariance as `TwinEstimator.snapshot`);
3. every robot's `LiveTwin` ticks as usual; its estimator returns the prepared snapshot.

Same arithmetic per joint as the per-robot filter (every batched operation is per joint), so a robot's
values cannot reach another robot's, and the results equal the per-robot estimator's to rounding
(tests/test_fleet_batched_estimation.py: relative 1e-9).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from ..estimation import ObserveResult, TwinEstimator, TwinSnapshot, shown_prediction
from ._batched_kalman import FleetKalman, _predicted
from ._batched_kalman_kernel import FleetFusionKernel, start_warm_up
from ._batched_kalman_kernel import ready as fusion_kernel_ready

__all__ = ["BatchedEstimator", "fuse_deferred", "prepare_snapshots"]


class BatchedEstimator(TwinEstimator):
    """A `TwinEstimator` whose common-path samples a fleet fuses batched across robots (see the module docstring).

    Outside a fleet's drain step (``deferring`` False) it behaves exactly as `TwinEstimator`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.deferring = False
        """Set by the fleet while the robot's twin drains its ingest: common-path samples wait for `fuse_deferred`."""
        self.deferred: tuple[np.ndarray, np.ndarray | None, int, int] | None = None
        """The waiting sample: (q ``[ndof]`` rad|m, qd ``[ndof]`` rad/s|m/s or None as measured, sample ns,
        arrival ns). Its plausibility is checked by `fuse_deferred` (for all waiting robots at once)."""
        self.committed: tuple[int, np.ndarray, np.ndarray] | None = None
        """``(stats.fused, x [ndof, 3], P [ndof, 3, 3])``: read-only copies of the filter right after the last batched
        fusion (what the fleet publishes as the robot's fused state without copying again), valid while
        ``stats.fused`` is unchanged."""
        self._prepared: TwinSnapshot | None = None
        # Robots of one model share one read-only copy of the plausible range (equal values), so a batch of them
        # checks its waiting samples against one row instead of stacking a copy per robot (`_on_common_path`).
        self._plausible_lo = _shared_row(self._plausible_lo)
        self._plausible_hi = _shared_row(self._plausible_hi)

    # ---- deferring ----------------------------------------------------------------------------------------
    def observe(self, names: Sequence[str], position, velocity, *, sample_ns: int, arrival_ns: int) -> str:
        """As `TwinEstimator.observe`; while ``deferring``, a common-path sample waits for the fleet's batch."""
        self._prepared = None
        if self.deferring:
            if self.deferred is not None:
                self.flush()  # one deferred sample per robot and batch: an earlier one is fused first (order kept)
            idx, full = self._indices(names)  # raises ValueError for names that are not the model's
            s = self.settings
            t_filter = self._t_filter
            # Every joint initialised and plausible values are checked for all waiting robots at once (fuse_deferred).
            if full and t_filter is not None and sample_ns >= t_filter:
                if (sample_ns - t_filter) * 1e-9 <= s.stale_after_s:
                    q = np.asarray(position, dtype=np.float64)
                    qd = None if velocity is None else np.asarray(velocity, dtype=np.float64)
                    self.deferred = (q, qd, int(sample_ns), int(arrival_ns))
                    return ObserveResult.FUSED
        return super().observe(names, position, velocity, sample_ns=sample_ns, arrival_ns=arrival_ns)

    def _compiled_fusion(self):  # noqa: ANN202 - see TwinEstimator._compiled_fusion
        """As `TwinEstimator._compiled_fusion`, but a robot's first sample (which only initialises its joints: the
        same assignments on either path) does not make the Warp kernel's buffers (~1 ms per robot joining the
        fleet): its later common-path samples are fused batched, so they are made only when a per-robot run needs
        them (a late sample's re-filter, a sample off the common path)."""
        if self._compiled is None and self._t_filter is None:
            return None
        return super()._compiled_fusion()

    def flush(self) -> None:
        """Fuse the deferred sample on its own (the per-robot path), if there is one."""
        if self.deferred is None:
            return
        q, qd, sample_ns, arrival_ns = self.deferred
        self.deferred = None
        super().observe(self.model.dof_names, q, qd, sample_ns=sample_ns, arrival_ns=arrival_ns)

    def _commit(
        self, q: np.ndarray, qd: np.ndarray | None, sample_ns: int, arrival_ns: int, gated: np.ndarray | None
    ) -> None:
        """The bookkeeping of `TwinEstimator.observe`/`_fuse` after a batched predict + update of every joint
        (``gated: [ndof]`` bool from the update, None when no joint was gated); the filter's x, P, r are already
        this robot's rows. The out-of-sequence history entry follows in `_remember` (after every robot's gates)."""
        self._last_arrival = arrival_ns if self._last_arrival is None else max(self._last_arrival, arrival_ns)
        self._t_filter = sample_ns
        self.stats.fused += 1
        if gated is not None or self._streaking:  # else _track_gates would change nothing
            self._track_gates(~self._all_joints if gated is None else gated, self._all_joints, q, qd, count=True)

    def _remember(
        self,
        q: np.ndarray,
        qd: np.ndarray | None,
        x: np.ndarray,
        P: np.ndarray,
        r: np.ndarray,
        initialized: np.ndarray,
        at_rest: np.ndarray,
    ) -> None:
        """The history entry and `committed` state of a batched fusion: ``x``, ``P``, ``r`` are read-only copies of
        this robot's filter rows (what `_filter_state` would copy). ``initialized`` (all True) and ``at_rest`` (all
        0) are shared read-only rows: after a batched fusion every joint is initialised (the common path requires
        it and a gate restart initialises), and gate streaks are all 0 unless ``_streaking`` (`_restore` copies)."""
        self.committed = (self.stats.fused, x, P)
        if self._max_lag_ns > 0:
            streak = self._gate_streak.copy() if self._streaking else at_rest
            self._history.append(self._t_filter, q, qd, self._all_joints, (x, P, r, initialized, streak))

    # ---- snapshots ------------------------------------------------------------------------------------------
    def snapshot(self, t_ns: int, *, target: np.ndarray | None = None) -> TwinSnapshot:
        """As `TwinEstimator.snapshot`; returns the fleet's prepared snapshot when it is for ``t_ns``."""
        prepared, self._prepared = self._prepared, None
        if self.deferred is not None:  # the batch step did not run for this robot: fuse its sample on its own
            self.flush()
            prepared = None
        if prepared is not None and prepared.t_ns == t_ns and target is None:
            return prepared
        return super().snapshot(t_ns, target=target)

    def set_link(self, *, connected: bool | None = None, robot_online: bool | None = None) -> None:  # noqa: D102
        self._prepared = None  # the prepared snapshot's health may change
        super().set_link(connected=connected, robot_online=robot_online)

    def reset(self, *, count: bool = True) -> None:  # noqa: D102 - see TwinEstimator.reset
        self.deferred = None
        self.committed = None
        self._prepared = None
        super().reset(count=count)


_shared_rows: dict[bytes, np.ndarray] = {}


def _shared_row(row: np.ndarray) -> np.ndarray:
    """One read-only float64 array per distinct value of ``row`` (``[n]``), kept for the process (one per model)."""
    row = np.asarray(row, dtype=np.float64)
    key = row.tobytes() + bytes([row.ndim]) + np.asarray(row.shape).tobytes()
    hit = _shared_rows.get(key)
    if hit is None:
        if len(_shared_rows) > 1024:  # a process that builds ever new models: no growth without bound
            _shared_rows.clear()
        hit = row.copy()
        hit.setflags(write=False)
        _shared_rows[key] = hit
    return hit


def _groups(estimators: Iterable[BatchedEstimator], key) -> dict[Any, list[BatchedEstimator]]:
    groups: dict[Any, list[BatchedEstimator]] = {}
    for e in estimators:
        groups.setdefault(key(e), []).append(e)
    return groups


_BATCHED_MAX_SPEED = 1e3
"""rad/s | m/s: a waiting sample faster than this takes the per-robot path (whose own plausibility bound is higher
and exact); no joint of a real robot moves this fast, so the batched check never refuses what that one accepts."""


_kalmans = threading.local()


def _fleet_kalman(robots: int, joints: int, s: Any) -> FleetKalman:
    """A `FleetKalman` for one batched step; every array it fuses with is set by the caller. Kept per thread,
    size and settings: building one costs more than a step's predict (fusion on arrival runs hundreds a second).
    With ``kalman_backend = "warp"`` it predicts and updates in one kernel launch once the kernel is built
    (`FleetFusionKernel`: ~100 NumPy calls of ~1 µs each otherwise, the larger part of a step with ~10 robots)."""
    cache = getattr(_kalmans, "cache", None)
    if cache is None or len(cache) > 4096:
        cache = _kalmans.cache = {}
    key = (robots, joints, id(s))
    hit = cache.get(key)
    if hit is None or hit[0] is not s:
        kf = FleetKalman(robots, joints, jerk_psd=s.jerk_psd, sigma_q=s.sigma_q, sigma_qd=s.sigma_qd,
                         gate_chi2=s.gate_chi2, noise_adapt_rate=s.noise_adapt_rate)  # fmt: skip
        hit = cache[key] = (s, kf)
        if s.kalman_backend == "warp":
            start_warm_up()
    kf = hit[1]
    if kf.fusion_kernel is None and s.kalman_backend == "warp" and fusion_kernel_ready():
        try:
            kf.fusion_kernel = FleetFusionKernel(robots * joints)
        except Exception:  # noqa: BLE001 - no kernel buffers: this filter keeps fusing with NumPy
            kf.fusion_kernel = False
    return kf


_constants: dict[int, tuple[np.ndarray, np.ndarray]] = {}


def _constant_rows(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Read-only ``[n]`` all-True (bool) and all-zero (int64) rows: the ``initialized`` flags and gate streaks of the
    filter states a batched fusion remembers (`BatchedEstimator._remember`)."""
    hit = _constants.get(n)
    if hit is None:
        ones, zeros = np.ones(n, dtype=bool), np.zeros(n, dtype=np.int64)
        ones.setflags(write=False)
        zeros.setflags(write=False)
        hit = _constants[n] = (ones, zeros)
    return hit


def _on_common_path(
    group: list[BatchedEstimator],
) -> tuple[list[BatchedEstimator], np.ndarray | None, np.ndarray | None]:
    """The robots of one `fuse_deferred` group whose waiting sample can be fused batched — every joint initialised,
    finite positions within the estimator's plausible range, plausible speeds — checked for all at once; the
    others fuse their sample on their own now (the per-robot path, which counts what it refuses). Also returns
    those robots' waiting positions and velocities (None without), ``[R*n]`` each, for the batched update."""
    R, n = len(group), group[0].model.ndof
    initialized = np.concatenate([e.filter.initialized for e in group]).reshape(R, n).all(axis=1)
    q = np.concatenate([e.deferred[0] for e in group]).reshape(R, n)
    lo, hi = group[0]._plausible_lo, group[0]._plausible_hi
    if not all(e._plausible_lo is lo and e._plausible_hi is hi for e in group):  # robots of several models
        lo = np.concatenate([e._plausible_lo for e in group]).reshape(R, n)
        hi = np.concatenate([e._plausible_hi for e in group]).reshape(R, n)
    ok = initialized & ((q >= lo) & (q <= hi)).all(axis=1)  # False for NaN too
    qd = None
    if group[0].deferred[1] is not None:
        qd = np.concatenate([e.deferred[1] for e in group]).reshape(R, n)
        ok &= (np.abs(qd) <= _BATCHED_MAX_SPEED).all(axis=1)
    if ok.all():
        return group, q.reshape(-1), None if qd is None else qd.reshape(-1)
    for e in (e for e, good in zip(group, ok, strict=True) if not good):
        e.flush()
    return (
        [e for e, good in zip(group, ok, strict=True) if good],
        q[ok].reshape(-1),
        None if qd is None else qd[ok].reshape(-1),
    )


def fuse_deferred(estimators: Iterable[BatchedEstimator]) -> int:
    """Fuse every deferred sample of ``estimators`` in batched predict + update steps (one per model, settings
    and velocity-or-not group); returns how many samples were fused batched. A robot without one is left as it
    is; one whose sample is off the common path (`_on_common_path`) fuses it on its own."""
    groups: dict[tuple, list[BatchedEstimator]] = {}
    for e in estimators:  # grouped in one pass (fusion on arrival runs hundreds of these a second)
        deferred = e.deferred
        if deferred is not None:
            key = (e.model.ndof, id(e.settings), deferred[1] is None)
            group = groups.get(key)
            if group is None:
                groups[key] = [e]
            else:
                group.append(e)
    fused = 0
    for group in groups.values():
        group, q, qd = _on_common_path(group)
        if not group:
            continue
        fused += _fuse_group(group, q, qd)
    return fused


def _fuse_group(group: list[BatchedEstimator], q: np.ndarray, qd: np.ndarray | None) -> int:
    """One batched predict + update of the waiting samples of ``group`` (``R`` robots of ``n`` joints, one model
    size and settings object; ``q``, ``qd``: ``[R*n]`` their positions and velocities, or None), scattered back
    to each robot with its bookkeeping; returns ``R``."""
    s = group[0].settings
    n = group[0].model.ndof
    R = len(group)
    filters = [e.filter for e in group]
    samples = [e.deferred for e in group]
    kf = _fleet_kalman(R, n, s)
    kf.x = np.concatenate([f.x for f in filters])
    kf.P = np.concatenate([f.P for f in filters])
    kf.r = np.concatenate([f.r for f in filters])
    kf.r_floor = np.concatenate([f.r_floor for f in filters])
    kf.jerk_psd = np.concatenate([f.jerk_psd for f in filters])
    kf.initialized[:] = True
    dt = np.array([(d[2] - e._t_filter) * 1e-9 for e, d in zip(group, samples, strict=True)]).repeat(n)  # [R*n] s
    if not s.use_velocity:
        qd = None
    if qd is None:
        kf.predict_each(dt)
        gated = kf.update(q, qd)
    else:  # the common case: one Warp launch with kalman_backend = "warp" (once built), else NumPy
        gated = kf.predict_update_each(dt, q, qd)
    # Each robot's rows as views of the batch's [R, n, ...] arrays (iterating over the first axis), plain Python
    # bools for the per-robot branches; its measurement as it waited (the values the batch fused).
    qs = [d[0] for d in samples]
    qds = [None] * R if qd is None else [d[1] for d in samples]
    gs = gated.reshape(R, n)
    any_gated = gs.any(axis=1).tolist()
    rows = zip(group, filters, samples, list(kf.x.reshape(R, n, 3)), list(kf.P.reshape(R, n, 3, 3)),
               list(kf.r.reshape(R, n, 2)), qs, qds, any_gated, strict=True)  # fmt: skip
    for r, (e, f, (_, _, sample_ns, arrival_ns), x_r, P_r, r_r, q_r, qd_r, gated_r) in enumerate(rows):
        e.deferred = None  # cleared only now: if the batch failed, each robot fuses its sample on its own
        f.x, f.P, f.r = x_r, P_r, r_r
        e._commit(q_r, qd_r, sample_ns, arrival_ns, gs[r] if gated_r else None)
    # Copies taken after every robot's gate bookkeeping (a joint restart changes its rows in place); each robot's
    # history entry and committed state are read-only views of them (nothing writes into them later).
    x, P, rr = kf.x.copy(), kf.P.copy(), kf.r.copy()
    for a in (x, P, rr):
        a.setflags(write=False)
    initialized, at_rest = _constant_rows(n)
    rows = zip(group, qs, qds, list(x.reshape(R, n, 3)), list(P.reshape(R, n, 3, 3)), list(rr.reshape(R, n, 2)),
               strict=True)  # fmt: skip
    for e, q_r, qd_r, x_r, P_r, r_r in rows:
        e._remember(q_r, qd_r, x_r, P_r, r_r, initialized, at_rest)
    return R


def prepare_snapshots(estimators: Iterable[BatchedEstimator], t_ns: int) -> int:
    """Predict every running estimator of ``estimators`` to twin time ``t_ns`` at once and keep the result as
    its next `snapshot(t_ns)`; returns how many were prepared. Same values as `TwinEstimator.snapshot`."""
    # A robot bridging a gap with its reference (TwinEstimator._tracked) takes the per-robot snapshot.
    running = [
        e
        for e in estimators
        if e._t_filter is not None and e.deferred is None and not e.bridges_with_reference(int(t_ns))
    ]
    done = 0
    for group in _groups(running, lambda e: (id(e.model), id(e.settings))).values():
        _prepare_group(group, int(t_ns))
        done += len(group)
    return done


def _prepare_group(group: list[BatchedEstimator], t_ns: int) -> None:
    """`TwinEstimator.snapshot` for robots of one model and one settings object, batched (``R`` robots, ``n``
    joints each): the constant-acceleration prediction over each robot's horizon (joints at rest shown still), the bounded coasting of
    `TwinEstimator._coasted`, the covariance, the joint limits."""
    model, s = group[0].model, group[0].settings
    R, n = len(group), model.ndof
    X = np.concatenate([e.filter.x for e in group])  # [R*n, 3]
    P = np.concatenate([e.filter.P for e in group])  # [R*n, 3, 3]
    jerk = np.concatenate([e.filter.jerk_psd for e in group])
    horizon = np.maximum(0.0, np.array([(t_ns - e._t_filter) * 1e-9 for e in group]))  # [R] s
    cap = s.max_extrapolation_s
    free = np.minimum(horizon, min(s.coast_after_s, cap))
    h = np.repeat(horizon, n)
    # The constant-acceleration prediction over the horizon (the fleet filter's own, element-wise over all joints):
    # its q and qd, and the three covariance elements a snapshot shows.
    x_ca, P_ca = _predicted(X, P, h, jerk)
    ca_q, ca_qd = x_ca[:, 0], x_ca[:, 1]
    P00, P01, P11 = P_ca[:, 0, 0], P_ca[:, 0, 1], P_ca[:, 1, 1]  # views of a fresh array: changed in place below
    x = shown_prediction(X, P, np.repeat(free, n), s.stillness_sigma)  # rest and stops as in the twin
    coast_r = np.minimum(horizon, cap) - free  # [R] s (per joint only when some robot coasts)
    if (coast_r > 0.0).any():
        coast = np.repeat(coast_r, n)
        coasting = coast > 0.0
        tau = s.coast_time_constant_s
        v = x[coasting, 1].copy()
        if tau > 0.0:
            decay = np.exp(-coast[coasting] / tau)
            x[coasting, 0] += v * tau * (1.0 - decay)
            x[coasting, 1] = v * decay
            x[coasting, 2] = -x[coasting, 1] / tau
        else:
            x[coasting, 1:] = 0.0
    held = horizon > cap
    if held.any():
        x[np.repeat(held, n), 1:] = 0.0
    P00 += (ca_q - x[:, 0]) ** 2
    P11 += (ca_qd - x[:, 1]) ** 2
    x = x.reshape(R, n, 3)
    # cov [R, 2n, 2n]: the common time shift's term, plus the per-joint variances on the diagonal and the q-qd
    # covariances on the diagonals of the off-diagonal blocks (strided views of the flat rows).
    sigma_t = s.time_sigma_s
    if sigma_t > 0:
        shift = np.concatenate([x[:, :, 1], x[:, :, 2]], axis=1)  # [R, 2n]
        cov = (shift[:, :, None] * shift[:, None, :]) * sigma_t**2
    else:
        cov = np.zeros((R, 2 * n, 2 * n))
    flat = cov.reshape(R, 4 * n * n)
    step = 2 * n + 1
    diagonal = flat[:, ::step]
    diagonal[:, :n] += P00.reshape(R, n)
    diagonal[:, n:] += P11.reshape(R, n)
    flat[:, n : 2 * n * n : step] += P01.reshape(R, n)  # (j, n + j)
    flat[:, 2 * n * n :: step] += P01.reshape(R, n)  # (n + j, j)
    initialized = np.concatenate([e.filter.initialized for e in group]).reshape(R, n)
    if not initialized.all():
        for r in np.flatnonzero(~initialized.all(axis=1)):
            uninit = ~initialized[r]
            x[r, uninit, 0] = model.clip_to_limits(np.array(model.drive_target))[uninit]
            k = np.flatnonzero(uninit)
            c = cov[r]
            c[k, :] = c[:, k] = c[n + k, :] = c[:, n + k] = 0.0
            c[k, k] = c[n + k, n + k] = 1e6
    above, below = x[:, :, 0] > model.upper, x[:, :, 0] < model.lower
    x[:, :, 0] = np.clip(x[:, :, 0], model.lower, model.upper)
    outward = (above & (x[:, :, 1] > 0)) | (below & (x[:, :, 1] < 0))
    x[outward, 1:] = 0.0
    # Each snapshot's arrays are read-only rows of the batch's arrays (made read-only here, so every view is).
    q, qd, qdd = x[:, :, 0].copy(), x[:, :, 1].copy(), x[:, :, 2].copy()
    for a in (q, qd, qdd, cov):
        a.setflags(write=False)
    for r, e in enumerate(group):
        e._prepared = _snapshot(
            t_ns, q[r], qd[r], qdd[r], cov[r], e.health(t_ns), model, (t_ns - e._last_arrival) * 1e-9
        )


def _snapshot(t_ns: int, q, qd, qdd, covariance, health, model, age_s: float) -> TwinSnapshot:
    """``TwinSnapshot(t_ns=t_ns, q=q, ..., target=None, age_s=age_s)`` for arrays that are read-only and of the
    right shapes already (`_prepare_group` makes them so), without the constructor's checks: a fleet makes one per
    robot per display tick. Same object as the constructor's (tests/test_fleet_batched_estimation_internals.py)."""
    snapshot = object.__new__(TwinSnapshot)
    snapshot.__dict__.update(
        t_ns=t_ns, q=q, qd=qd, qdd=qdd, covariance=covariance, health=health, model=model, target=None, age_s=age_s
    )
    return snapshot
