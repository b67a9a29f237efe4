# SPDX-License-Identifier: Apache-2.0
"""What fusing one joint-state sample costs the estimator, in order and with out-of-sequence re-filtering.

A synthetic 1 kHz stream of the Panda's 9 joints (smooth sinusoids plus encoder noise) is fused by a
`TwinEstimator` in sample order, then the same stream delivered in the arrival order of independent per-message
delays (gamma, mean and jitter as given): every sample that arrives after a newer one is fused at its own time by
re-filtering, and as the live twin fuses it (each 60 Hz tick's arrivals sorted by stamp first, so only samples
older than an earlier tick's need re-filtering, and the estimator re-filters once per tick from the earliest of
them). Reported: CPU µs per sample (process time, median of ``repeat`` runs, including the re-filter of the last
late samples) and the share of late samples, for the configured ``estimator.kalman_backend`` or a given one (the
Warp kernel is built before the timing starts: its one-off compile is not a per-sample cost).
Used by ``python -m twin_ext.bench telemetry`` (ingest + estimation per process).
"""

from __future__ import annotations

import statistics
import time

import numpy as np

__all__ = ["estimator_cost"]


def _stream(model, count: int, rate_hz: float, seed: int = 0):
    """Sample times ``[m]`` s and noisy q, qd ``[m, n]`` (rad|m, rad/s|m/s): each joint swings over a fifth of its
    range around the middle of its limits."""
    rng = np.random.default_rng(seed)
    n = model.ndof
    lower, upper = np.asarray(model.lower, dtype=float), np.asarray(model.upper, dtype=float)
    finite = np.isfinite(lower) & np.isfinite(upper)
    centre = np.where(finite, 0.5 * (lower + upper), 0.0)
    amplitude = np.where(finite, 0.1 * (upper - lower), 0.4)
    t = np.arange(count) / rate_hz
    w = 1.0 + 0.3 * np.arange(n)
    q = centre + amplitude * np.sin(np.outer(t, w)) + rng.normal(0, 1e-4, (count, n))
    qd = amplitude * w * np.cos(np.outer(t, w)) + rng.normal(0, 2e-3, (count, n))
    return t, q, qd


def _fuse(model, order, t, q, qd, arrival, settings) -> tuple[float, int]:
    from ..estimation import ObserveResult, TwinEstimator

    est = TwinEstimator(model, settings)
    names = model.dof_names
    late = 0
    start = time.process_time()
    for k in order:
        result = est.observe(names, q[k], qd[k], sample_ns=int(t[k] * 1e9), arrival_ns=int(arrival[k] * 1e9))
        late += result == ObserveResult.FUSED_LATE
    est.filter  # noqa: B018 - reading the filter re-filters the late samples still waiting (their cost counts)
    return (time.process_time() - start) / len(order) * 1e6, late


def estimator_cost(
    *,
    rate_hz: float = 1000.0,
    count: int = 5000,
    latency_ms: float = 20.0,
    jitter_ms: float = 10.0,
    repeat: int = 3,
    kalman_backend: str | None = None,
) -> dict:
    """CPU µs per fused sample of the Panda at ``rate_hz``: ``in_order_us``, ``reordered_us`` (independent gamma
    delays of ``latency_ms`` ± ``jitter_ms``), ``late_fraction`` of the reordered stream, ``in_order_msg_s`` and
    ``reordered_msg_s`` (1e6 / µs: samples one core can fuse per second), with ``kalman_backend`` ("numpy" |
    "warp"; None = the `EstimatorSettings` default; reported as ``kalman_backend``, "numpy" if the kernel could not
    be built)."""
    from ..estimation import EstimatorSettings
    from ..robot import default_robot_path, load_robot

    settings = EstimatorSettings() if kalman_backend is None else EstimatorSettings(kalman_backend=kalman_backend)
    if settings.kalman_backend == "warp":
        from ..estimation import build_kalman_kernel

        if not build_kalman_kernel(120.0):
            settings = EstimatorSettings(kalman_backend="numpy")
    model = load_robot(default_robot_path())
    t, q, qd = _stream(model, count, rate_hz)
    rng = np.random.default_rng(1)
    shape, scale = (latency_ms / jitter_ms) ** 2, jitter_ms**2 / latency_ms * 1e-3
    arrival = t + rng.gamma(shape, scale, count)
    in_order = np.arange(count)
    reordered = np.argsort(arrival, kind="stable")
    ordered_us = statistics.median(_fuse(model, in_order, t, q, qd, arrival, settings)[0] for _ in range(repeat))
    runs = [_fuse(model, reordered, t, q, qd, arrival, settings) for _ in range(repeat)]
    late_us = statistics.median(r[0] for r in runs)
    # What the live twin does: each 60 Hz display tick fuses what arrived since the last one in stamp order.
    tick = np.floor(arrival * 60.0)
    batched = np.lexsort((t, tick))
    batch_runs = [_fuse(model, batched, t, q, qd, arrival, settings) for _ in range(repeat)]
    batch_us = statistics.median(r[0] for r in batch_runs)
    return {
        "kalman_backend": settings.kalman_backend,
        "rate_hz": rate_hz,
        "samples": count,
        "in_order_us": round(ordered_us, 1),
        "reordered_us": round(late_us, 1),
        "late_fraction": round(runs[0][1] / count, 3),
        "reordering_delay_ms": [latency_ms, jitter_ms],
        "in_order_msg_s": round(1e6 / ordered_us),
        "reordered_msg_s": round(1e6 / late_us),
        "reordered_per_tick_us": round(batch_us, 1),
        "late_fraction_per_tick": round(batch_runs[0][1] / count, 3),
        "reordered_per_tick_msg_s": round(1e6 / batch_us),
    }
