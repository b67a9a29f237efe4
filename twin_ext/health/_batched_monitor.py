# SPDX-License-Identifier: Apache-2.0
"""`BatchedHealthMonitor`: many robots' `HealthMonitor` judgements in one pass, the heavy arithmetic batched.

A fleet process judges the health of tens of robots every second. One robot's judgement (a few dozen samples)
costs a few milliseconds, most of it in three numeric steps whose cost is per call more than per sample: the
momentum observer's inverse dynamics (`RigidBodyDynamics.observer_terms`), the identification's inverse
dynamics and payload regressor (`RigidBodyDynamics.inverse_dynamics_and_regressor`) with its velocity fits, and
the recursive least squares of the identification. Here those run once over the samples of every robot that
shares a model (stacked rows ``[sum of N_r, ...]``; the RLS as ``[R, P, P]`` covariances stepped together), and
everything else — time order, thresholds, episodes, saturation, encoders, slow checks, trends, events — stays in
each robot's own `HealthMonitor`, phase by phase in the order `HealthMonitor.observe` runs them. The state lives
in the monitors: a robot can be judged alone (`HealthMonitor.observe`) or in a batch at any time, with the same
results to rounding (`tests/test_health_batched.py`: relative 1e-9).

Robots group by model (the same `RobotModel` object, the same holding body); a robot whose observer carries an
identified payload has dynamics of its own and gets its observer terms alone. A batched step that fails (a
singular RLS system in one robot, say) is redone robot by robot, so one robot's trouble stays its own: it gets
its exception back instead of events, the others their events.

A pass of 16 robots takes tens of milliseconds of mostly Python; a thread waiting for the GIL meanwhile (the
network thread) would get it only at the interpreter's switch interval (5 ms) each time it asks. So the pass lets
other threads run (`time.sleep(0)` releases the GIL) at its checkpoints — between robots,
every step of the stacked loops, between the dynamics calls of about ``_SAMPLES_PER_CALL`` rows — once
``yield_every_s`` has passed since it last did (`BatchedHealthMonitor.let_others_run`), and only then cuts its
dynamics into several calls. That changes when, not what, it computes. Off by default: in a live fleet each release
hands the GIL to the busy network thread for up to the switch interval, and the tick that judges (and fuses) got
longer (`[fleet] health_yield_ms`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from ._events import HealthEvent
from ._monitor import _IDENTIFY_HZ, HealthMonitor, _Judgement, velocity_slopes

__all__ = ["BatchedHealthMonitor"]

_SAMPLES_PER_CALL = 256
"""The batched dynamics (observer terms; velocity fits, inverse dynamics and regressor) run over robots' samples in
calls of about this many rows, with a checkpoint between calls: one call over 16 robots x 32 samples runs ~10 ms
without one; two calls of half the rows cost ~5 % more than one (the rows are independent: the same numbers either
way)."""


def _release_gil() -> None:
    """Release the GIL for a moment. ``time.sleep(0)`` takes ~60 us of wall time here (no CPU: the timer slack),
    long enough for a waiting thread to wake and take the GIL; `os.sched_yield` (~1 us) returns before it has woken
    and retakes the GIL, so the waiter still waits for the switch interval (measured: p99 wait 1.3 ms with
    sleep(0), 1.4-7 ms with sched_yield, 3-5 ms without checkpoints)."""
    time.sleep(0)


Samples = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
"""``(t_s [N], q [N, ndof], qd [N, ndof], tau [N, ndof])`` as `HealthMonitor.observe` takes them."""


class BatchedHealthMonitor:
    """Runs `HealthMonitor.observe` for many robots at once (see the module docstring).

    Args:
        yield_every_s: longest stretch, s, a pass runs between two moments it lets other threads run (releases
            the GIL; checked at its checkpoints, see the module docstring); 0 = at every checkpoint, None = never
            (the default).

    Attributes:
        batched_calls: observer or identification steps evaluated for two or more robots in one pass.
        fallbacks: batched steps that failed and were redone robot by robot; ``last_error`` says why.
        yields: times a pass let other threads run.
    """

    def __init__(self, *, yield_every_s: float | None = None) -> None:
        self.batched_calls = 0
        self.fallbacks = 0
        self.last_error = ""
        self.yield_every_s = yield_every_s
        self.yields = 0
        self._next_yield = -math.inf

    @property
    def _rows_per_call(self) -> float:
        """Rows per batched dynamics call: `_SAMPLES_PER_CALL` when the pass yields (a checkpoint between calls), else
        all in one call (splitting costs ~5 % more dynamics time and only serves the checkpoints)."""
        return math.inf if self.yield_every_s is None else _SAMPLES_PER_CALL

    def let_others_run(self) -> None:
        """A checkpoint: release the GIL for a moment (`_release_gil`) if ``yield_every_s`` has passed since the
        last time (also called by the fleet between the robots it hands in and takes back)."""
        if self.yield_every_s is None:
            return
        now = time.perf_counter()
        if now >= self._next_yield:
            _release_gil()
            self.yields += 1
            self._next_yield = time.perf_counter() + self.yield_every_s

    def observe(
        self, monitors: Sequence[HealthMonitor], samples: Sequence[Samples]
    ) -> list[list[HealthEvent] | Exception]:
        """Judge each monitor's samples (as ``monitors[i].observe(*samples[i])`` would); returns per monitor its
        new events, or the exception its judgement raised (its state is then as far as it got, like a failed
        `HealthMonitor.observe`)."""
        if len(monitors) != len(samples):
            raise ValueError(f"{len(monitors)} monitors but {len(samples)} sample batches")
        if len(monitors) == 1:  # nothing to batch: the monitor's own path has less overhead
            try:
                return [monitors[0].observe(*samples[0])]
            except Exception as exc:  # noqa: BLE001
                return [exc]
        results: list[list[HealthEvent] | Exception | None] = [None] * len(monitors)
        judgements: list[_Judgement | None] = [None] * len(monitors)
        pause = self.let_others_run
        for i, (monitor, batch) in enumerate(zip(monitors, samples, strict=True)):
            pause()
            try:
                judgements[i] = monitor._begin(*batch)
            except Exception as exc:  # noqa: BLE001 - this robot's failure is its own
                results[i] = exc
                continue
            if judgements[i] is None:
                results[i] = []
        live = [i for i, j in enumerate(judgements) if j is not None and results[i] is None]

        # The momentum observer: one inverse-dynamics pass per shared model.
        terms = self._observer_terms(monitors, judgements, live)
        outputs: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        for i in live:
            pause()
            monitor, judgement = monitors[i], judgements[i]
            try:
                r = monitor.observer.update(**monitor._observer_inputs(judgement), terms=terms.get(i))
                outputs[i] = (r, monitor.observer.quadrature_error, monitor.observer.noise_inflation)
            except Exception as exc:  # noqa: BLE001
                results[i] = exc
        live = [i for i in live if results[i] is None]
        # Episodes and saturation sample by sample: robots without an open episode step together.
        quiet = [i for i in live if monitors[i]._episode is None]
        alone = [i for i in live if monitors[i]._episode is not None]
        for group in _groups(monitors, quiet, key=lambda m: len(m.joint_index)):
            if len(group) < 2:
                alone += group
                continue
            try:
                steps = _observer_steps([monitors[i] for i in group], [judgements[i] for i in group],
                                        [outputs[i] for i in group], pause)  # fmt: skip
            except Exception as exc:  # noqa: BLE001 - nothing was written back: each robot steps alone
                self._failed(exc)
                alone += group
                continue
            self.batched_calls += 1
            for i, finish in zip(group, steps, strict=True):
                pause()
                try:
                    finish()
                except Exception as exc:  # noqa: BLE001
                    results[i] = exc
        for i in alone:
            pause()
            try:
                monitors[i]._after_observer(judgements[i], outputs[i][0])
            except Exception as exc:  # noqa: BLE001
                results[i] = exc
        live = [i for i in live if results[i] is None]

        # Identification: velocity fits, inverse dynamics + regressor, and the RLS, per model group.
        due = [i for i in live if judgements[i].identification is not None]
        for group in _groups(monitors, due, key=lambda m: (id(m.model), m.payload_body)):
            pause()
            self._identify(monitors, judgements, group, results)

        for i in live:
            pause()
            if results[i] is None:
                try:
                    results[i] = monitors[i]._end(judgements[i])
                except Exception as exc:  # noqa: BLE001
                    results[i] = exc
        return results  # type: ignore[return-value]

    # ---- the batched steps --------------------------------------------------------------------------------------
    def _observer_terms(
        self, monitors: Sequence[HealthMonitor], judgements: Sequence[_Judgement | None], live: list[int]
    ) -> dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """``{robot index: (p, g, C^T qd)}`` for the robots whose observer uses its model's nominal dynamics; the
        others (an adopted payload) and a failed pass are left to each observer."""
        nominal = [i for i in live if monitors[i].observer.dynamics is monitors[i].nominal]
        out: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        for group in _groups(monitors, nominal, key=lambda m: id(m.model)):
            if len(group) < 2:
                continue
            for chunk in _chunks(group, [len(judgements[i].t) for i in group], self._rows_per_call):
                self.let_others_run()
                try:
                    q = np.concatenate([judgements[i].q for i in chunk])
                    qd = np.concatenate([judgements[i].qd for i in chunk])
                    p, g, ctqd = monitors[chunk[0]].nominal.observer_terms(q, qd)
                except Exception as exc:  # noqa: BLE001 - each observer then evaluates its own
                    self._failed(exc)
                    continue
                self.batched_calls += 1
                start = 0
                for i in chunk:
                    n = len(judgements[i].t)
                    out[i] = (p[start : start + n], g[start : start + n], ctqd[start : start + n])
                    start += n
        return out

    def _identify(
        self,
        monitors: Sequence[HealthMonitor],
        judgements: Sequence[_Judgement | None],
        group: list[int],
        results: list[Any],
    ) -> None:
        works = [judgements[i].identification for i in group]
        try:
            first = monitors[group[0]]
            args = []
            for chunk in _chunks(list(range(len(group))), [len(w.t) for w in works], self._rows_per_call):
                self.let_others_run()
                part = [works[k] for k in chunk]
                qdd = velocity_slopes(
                    np.concatenate([w.window_t for w in part]), np.concatenate([w.window_qd for w in part])
                )
                q = np.concatenate([w.q for w in part])
                qd = np.concatenate([w.qd for w in part])
                rigid, rows = first.nominal.inverse_dynamics_and_regressor(q, qd, qdd, body=first.payload_body)
                start = 0
                for k, w in zip(chunk, part, strict=True):
                    self.let_others_run()
                    n = len(w.t)
                    args.append(
                        monitors[group[k]]._identification_rows(w, rigid[start : start + n], rows[start : start + n])
                    )
                    start += n
            innovations = _rls_updates([monitors[i].identifier for i in group], args, self.let_others_run)
            self.batched_calls += len(group) > 1
        except Exception as exc:  # noqa: BLE001 - redo robot by robot: only the culprit fails
            self._failed(exc)
            for i, w in zip(group, works, strict=True):
                self.let_others_run()
                self._identify_alone(monitors[i], w, results, i)
            return
        learning = [k for k, i in enumerate(group) if monitors[i]._episode is None]
        if len(learning) > 1:
            try:  # `HealthMonitor._identification_learned` of these robots, stacked
                _learn_residual_spreads(
                    [monitors[group[k]] for k in learning], [works[k] for k in learning],
                    [innovations[k] for k in learning], self.let_others_run,
                )  # fmt: skip
                return
            except Exception as exc:  # noqa: BLE001 - nothing was written back: each robot learns alone
                self._failed(exc)
        for i, w, innovation in zip(group, works, innovations, strict=True):
            self.let_others_run()
            try:
                monitors[i]._identification_learned(w, innovation)
            except Exception as exc:  # noqa: BLE001
                results[i] = exc

    @staticmethod
    def _identify_alone(monitor: HealthMonitor, work: Any, results: list[Any], i: int) -> None:
        try:
            qdd = velocity_slopes(work.window_t, work.window_qd)
            rigid, rows = monitor.nominal.inverse_dynamics_and_regressor(
                work.q, work.qd, qdd, body=monitor.payload_body
            )
            innovation = monitor.identifier.update(*monitor._identification_rows(work, rigid, rows))
            monitor._identification_learned(work, innovation)
        except Exception as exc:  # noqa: BLE001
            results[i] = exc

    def _failed(self, exc: Exception) -> None:
        self.fallbacks += 1
        self.last_error = f"a batched health step failed and was redone robot by robot: {exc!r}"


def _chunks(items: list[int], sizes: list[int], limit: float) -> list[list[int]]:
    """``items`` in order, cut into runs whose ``sizes`` add up to about ``limit`` (inf: one run)."""
    total = sum(sizes)
    calls = max(1, round(total / limit))
    out: list[list[int]] = [[]]
    done = 0
    for item, size in zip(items, sizes, strict=True):
        if out[-1] and done >= total * len(out) / calls:
            out.append([])
        out[-1].append(item)
        done += size
    return out


def _groups(monitors: Sequence[HealthMonitor], indices: list[int], *, key) -> list[list[int]]:
    groups: dict[Any, list[int]] = {}
    for i in indices:
        groups.setdefault(key(monitors[i]), []).append(i)
    return list(groups.values())


def _observer_steps(
    monitors: Sequence[HealthMonitor],
    judgements: Sequence[_Judgement],
    outputs: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
    pause=lambda: None,
) -> list[Any]:
    """`HealthMonitor._after_observer` for ``R`` robots without an open episode, the observer's sample-by-sample
    detector (`HealthMonitor._observer_step`: normalisation, over-threshold runs, the learned spread) stepped over
    ``[R, J]`` arrays. A robot whose episode opens at a sample leaves the stack there and finishes its samples
    alone; saturation (independent state) runs per robot only where a drive is at its limit.

    Args:
        outputs: per robot the observer's ``(r [N, ndof], quadrature_error [N, ndof], noise_inflation [N])``.
        pause: a checkpoint called every sample step (`BatchedHealthMonitor.let_others_run`).

    Returns:
        Per robot a callable that writes its new state back and finishes it (events, identification windows).
        Nothing is written before they are called, so a failure here leaves every monitor as it was.
    """
    n_robots = len(monitors)
    counts = np.array([len(j.t) for j in judgements])
    steps, n_joints = int(counts.max()), len(monitors[0].joint_index)
    r = np.zeros((n_robots, steps, n_joints))
    qd = np.zeros((n_robots, steps, n_joints))
    unseen = np.zeros((n_robots, steps, n_joints))
    inflation = np.ones((n_robots, steps))
    for k, (m, jd, (r_all, u_all, infl)) in enumerate(zip(monitors, judgements, outputs, strict=True)):
        c, j = counts[k], m.joint_index
        r[k, :c], qd[k, :c], unseen[k, :c], inflation[k, :c] = r_all[:, j], jd.qd[:, j], u_all[:, j], infl
    spreads = _StackedSpreads([m.observer_spread for m in monitors])
    over_run = np.stack([m._over_run for m in monitors])
    threshold = np.array([m._z_observer for m in monitors])[:, None]
    warm_samples = np.array([m.samples > 400 for m in monitors])
    weight = np.array([1.0 - math.exp(-m._dt / m.settings.noise_window_s) for m in monitors])[:, None]
    min_speed = np.array([m.settings.min_speed for m in monitors])[:, None]
    confirm = np.array([m.settings.confirm_samples for m in monitors])[:, None]
    eps = np.array([m.settings.friction_smoothing for m in monitors])[:, None]
    coulomb = np.stack(
        [
            np.maximum(
                m.model.friction[m.joint_index]
                + np.where(m._trusted, m.identifier.rls.theta[10 + 3 * np.arange(n_joints)], 0.0),
                0.0,
            )
            for m in monitors
        ]
    )  # static friction's reach (`HealthMonitor._static_friction`), N·m
    running = np.ones(n_robots, dtype=bool)
    last_step = np.full(n_robots, -1)
    opened: dict[int, tuple[int, np.ndarray, np.ndarray]] = {}  # robot -> (sample, z, over) of its episode's onset
    # What does not depend on the learned spreads, for all samples at once (the per-sample arithmetic, elementwise).
    static2 = (coulomb[:, None] * (1.0 - np.abs(np.tanh(qd / eps[:, :, None])))) ** 2
    unseen2 = unseen**2
    fi_all = inflation[:, :, None]
    steady = (np.abs(qd) >= min_speed[:, :, None]) & (fi_all < 1.1)
    for i in range(steps):
        pause()
        act = running & (counts > i)
        if not act.any():
            break
        everyone = bool(act.all())
        ri, ui = r[:, i], unseen[:, i]
        spread = spreads.std()
        sigma = np.sqrt(fi_all[:, i] * spread**2 + static2[:, i] + unseen2[:, i])
        z = ri / sigma
        warm = warm_samples & (spreads.used.min(axis=1) > 100)
        over = np.abs(z) > threshold
        counted = np.where(over, over_run + 1, 0)
        over_run = counted if everyone else np.where(act[:, None], counted, over_run)
        spreads.update(ri, weight, steady[:, i] & (ui < spread), None if everyone else act)
        last_step[act] = i
        for k in np.flatnonzero(act & warm & np.any(over_run >= confirm, axis=1)):
            running[k] = False
            opened[int(k)] = (i, z[k].copy(), over[k].copy())

    def finisher(k: int):
        m, jd = monitors[k], judgements[k]

        def finish() -> None:
            spreads.write_back(k, m.observer_spread)
            m._over_run = over_run[k].copy()
            if last_step[k] >= 0:
                m._last_r = r[k, last_step[k]].copy()
            t_s, j = jd.t, m.joint_index
            found: list[tuple[int, int, list[HealthEvent]]] = []  # (sample, observer 0 | saturation 1, events)
            if k in opened:
                i0, z0, over0 = opened[k]
                found.append((i0, 0, m._open_episode(float(t_s[i0]), r[k, i0].copy(), z0, over0)))
                r_all, u_all, infl = outputs[k]
                for i in range(i0 + 1, len(t_s)):
                    step = m._observer_step(float(t_s[i]), r_all[i, j], jd.qd[i, j], u_all[i, j], float(infl[i]))
                    found.append((i, 0, step))
            tau = jd.tau[:, j]
            limit = m.model.effort_limit[j]
            if np.any(np.isfinite(limit) & (np.abs(tau) >= m.settings.saturation_ratio * limit)):
                for i in range(len(t_s)):
                    found.append((i, 1, m._saturation_step(float(t_s[i]), tau[i])))
            else:  # no drive at its limit in these samples: what every `_saturation_step` would leave
                m._saturated_since[:] = math.nan
                m._saturation_flagged[:] = False
            for _, _, events in sorted(found, key=lambda f: (f[0], f[1])):
                jd.events += events
            jd.identification = m._identification_due(t_s, jd.q, jd.qd, jd.tau)

        return finish

    return [finisher(k) for k in range(n_robots)]


class _StackedSpreads:
    """``R`` robots' `RunningSpread` of the same width as ``[R, J]`` arrays, updated together with the arithmetic of
    `RunningSpread.update` row by row; `write_back` returns each robot's state to its own spread."""

    def __init__(self, spreads: Sequence[Any]) -> None:
        width = len(spreads[0].var)
        self.var = np.stack([x.var for x in spreads])
        self.cov1 = np.stack([x._cov1 for x in spreads])
        self.has_last = np.array([x._last is not None for x in spreads])
        self.last = np.stack([x._last if x._last is not None else np.zeros(width) for x in spreads])
        self.last_used = np.stack([x._last_used for x in spreads])
        self.used = np.stack([x.counts for x in spreads])
        self.floor2 = np.array([x.floor**2 for x in spreads])[:, None]

    def std(self) -> np.ndarray:
        """``[R, J]`` as `RunningSpread.std`."""
        return np.sqrt(np.maximum(self.var, self.floor2))

    def update(self, x: np.ndarray, weight: np.ndarray, mask: np.ndarray, active: np.ndarray | None) -> None:
        """`RunningSpread.update` of the ``active [R]`` robots (None: all) with ``x [R, J]``, ``weight [R, 1]``,
        ``mask [R, J]``."""
        use = mask if active is None else mask & active[:, None]
        xx = x * x
        x2 = np.where(self.used > 0, np.minimum(xx, 16.0 * np.maximum(self.var, self.floor2)), xx)
        w = np.maximum(weight, 1.0 / (self.used + 1))
        keep = 1.0 - w
        self.var = np.where(use, keep * self.var + w * x2, self.var)
        bound = 4.0 * np.sqrt(np.maximum(self.var, self.floor2))
        low = -bound  # np.clip's arithmetic without its wrapper: min(max(x, -bound), bound)
        prod = np.minimum(np.maximum(x, low), bound) * np.minimum(np.maximum(self.last, low), bound)
        paired = use & self.last_used & self.has_last[:, None]
        self.cov1 = np.where(paired, keep * self.cov1 + w * prod, self.cov1)
        if active is None:
            self.last = x.copy()
            self.last_used = use
            self.has_last = np.ones_like(self.has_last)
        else:
            a = active[:, None]
            self.last = np.where(a, x, self.last)
            self.last_used = np.where(a, use, self.last_used)
            self.has_last = self.has_last | active
        self.used = self.used + use

    def write_back(self, k: int, spread: Any) -> None:
        spread.var, spread._cov1 = self.var[k].copy(), self.cov1[k].copy()
        if self.has_last[k]:
            spread._last = self.last[k].copy()
        spread._last_used, spread.counts = self.last_used[k].copy(), self.used[k].copy()
        spread.samples = int(spread.counts.min())


def _learn_residual_spreads(
    monitors: Sequence[HealthMonitor], works: Sequence[Any], innovations: Sequence[np.ndarray], pause=lambda: None
) -> None:
    """`HealthMonitor._identification_learned` for robots outside an episode: their residual spreads learn from
    the innovations ``[K_r, J]`` (N·m) of their moving joints, stepped together."""
    spreads = _StackedSpreads([m.residual_spread for m in monitors])
    counts = np.array([len(x) for x in innovations])
    n_joints = innovations[0].shape[1]
    x = np.zeros((len(monitors), int(counts.max()), n_joints))
    moving = np.zeros(x.shape, dtype=bool)
    for k, (m, w, innovation) in enumerate(zip(monitors, works, innovations, strict=True)):
        x[k, : counts[k]] = innovation
        moving[k, : counts[k]] = np.abs(w.qd[:, m.joint_index]) >= m.settings.min_speed
    weight = np.array([1.0 - math.exp(-1.0 / (_IDENTIFY_HZ * m.settings.noise_window_s)) for m in monitors])[:, None]
    for k in range(x.shape[1]):
        pause()
        active = counts > k
        spreads.update(x[:, k], weight, moving[:, k], None if active.all() else active)
    for k, m in enumerate(monitors):
        spreads.write_back(k, m.residual_spread)


def _rls_updates(
    identifiers: Sequence[Any], args: Sequence[tuple[np.ndarray, ...]], pause=lambda: None
) -> list[np.ndarray]:
    """`ModelIdentifier.update` for ``R`` identifiers of the same shape at once: their covariances stepped together
    as ``[R, P, P]`` (robot r's k-th update at step k; robots with fewer updates sit the last steps out).

    Args:
        identifiers: ``[R]`` `ModelIdentifier` with the same ``P`` parameters, ``J`` joints and settings.
        args: per identifier ``(phi [K_r, J, P], residual [K_r, J], noise_var [J], qd [K_r, J], dt [K_r])``.
        pause: a checkpoint called every step (`BatchedHealthMonitor.let_others_run`).

    Returns:
        Per identifier the innovations ``[K_r, J]`` before each update. Nothing is written back unless every
        step succeeds (a failure leaves every identifier as it was).
    """
    rls = [ident.rls for ident in identifiers]
    n_robots, (n_joints, n_params) = len(identifiers), args[0][0].shape[1:]
    counts = np.array([len(a[1]) for a in args])
    steps = int(counts.max())
    phi = np.zeros((n_robots, steps, n_joints, n_params))
    y = np.zeros((n_robots, steps, n_joints))
    var = np.ones((n_robots, steps, n_joints))
    qd = np.zeros((n_robots, steps, n_joints))
    h = np.zeros((n_robots, steps))
    for r, (phi_r, y_r, var_r, qd_r, dt_r) in enumerate(args):
        k = counts[r]
        phi[r, :k], y[r, :k], var[r, :k], qd[r, :k], h[r, :k] = phi_r, y_r, var_r, qd_r, dt_r
    window = np.array([ident.window_s for ident in identifiers])
    min_speed = np.array([ident.min_speed for ident in identifiers])[:, None]
    theta = np.stack([x.theta for x in rls])
    cov = np.stack([x.covariance for x in rls])
    prior_var = np.stack([x.prior_var for x in rls])
    # The four motion statistics as one [R, 4, J] state: moved positive, moved negative, speed sum, speed time.
    moved = np.stack(
        [
            np.stack([ident._moved_positive, ident._moved_negative, ident._speed_sum, ident._speed_time])
            for ident in identifiers
        ]
    )
    # Everything that does not depend on the recursion, for all steps at once (the same elementwise arithmetic
    # as step by step): forgetting, the resting joints' weightless rows, the motion statistics' increments.
    active_all = counts[:, None] > np.arange(steps)  # [R, S]
    every = active_all.all(axis=0)  # [S]: no robot sits this step out
    decay_all = np.exp(-h / window[:, None])
    divisor_all = np.where(active_all, decay_all, 1.0)
    resting_all = np.abs(qd) < min_speed[:, :, None]
    noise_all = np.where(resting_all, 1e12, var)[..., None] * np.eye(n_joints)  # [R, S, J, J]
    hj = h[:, :, None]
    increments = np.stack(
        [
            hj * (qd > min_speed[:, :, None]),
            hj * (qd < -min_speed[:, :, None]),
            hj * np.where(~resting_all, np.abs(qd), 0.0),
            hj * ~resting_all,
        ],
        axis=2,
    )  # [R, S, 4, J]
    innovations = np.zeros((n_robots, steps, n_joints))
    for k in range(steps):
        pause()
        ph = phi[:, k]
        ph_t = np.swapaxes(ph, 1, 2)
        innovation = y[:, k] - (ph @ theta[:, :, None])[:, :, 0]
        ph_p = ph @ cov
        s = ph_p @ ph_t + noise_all[:, k]
        gain = np.swapaxes(np.linalg.solve(s, ph_p), 1, 2)  # P phi^T S^-1 (S symmetric)
        new_theta = theta + (gain @ innovation[:, :, None])[:, :, 0]
        # (gain phi) P as ModelIdentifier.update groups it: gain (phi P) would be a fifth of the work, but its
        # rounding drifts the covariance's small off-diagonal terms by ~1e-8 relative over a run
        p = (cov - gain @ ph @ cov) / divisor_all[:, k, None, None]
        p = p + np.swapaxes(p, 1, 2)
        p *= 0.5
        # Ceiling: forgetting must not inflate unexcited directions beyond the prior (wind-up); a diagonal within
        # it gets the factor 1 exactly (prior / prior).
        scale = np.sqrt(prior_var / np.maximum(np.diagonal(p, axis1=1, axis2=2), prior_var))
        p *= scale[:, :, None] * scale[:, None, :]
        dk = decay_all[:, k, None, None]
        if every[k]:
            theta, cov = new_theta, p
            moved = moved * dk + increments[:, k]
        else:
            active = active_all[:, k]
            theta = np.where(active[:, None], new_theta, theta)
            cov = np.where(active[:, None, None], p, cov)
            moved = np.where(active[:, None, None], moved * dk + increments[:, k], moved)
        innovations[:, k] = innovation
    if not (np.all(np.isfinite(theta)) and np.all(np.isfinite(cov))):
        raise FloatingPointError("the batched RLS produced non-finite parameters")
    for r, ident in enumerate(identifiers):
        ident.rls.theta = theta[r].copy()
        ident.rls.covariance = cov[r].copy()
        ident.rls.updates += int(counts[r])
        ident._moved_positive, ident._moved_negative = moved[r, 0].copy(), moved[r, 1].copy()
        ident._speed_sum, ident._speed_time = moved[r, 2].copy(), moved[r, 3].copy()
    return [innovations[r, : counts[r]] for r in range(n_robots)]
