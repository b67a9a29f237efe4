# SPDX-License-Identifier: Apache-2.0
"""The live twin's health service: what it hands the monitor per display tick."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
from conftest import REPO

from twin_ext.health import HealthMonitor, HealthSettings
from twin_ext.live import HealthService
from twin_ext.robot import load_robot


def _message(model, stamp_ns: int) -> SimpleNamespace:
    q = 0.5 * (np.asarray(model.lower) + np.asarray(model.upper))
    n = model.ndof
    return SimpleNamespace(
        names=model.dof_names, position=q, velocity=np.zeros(n), effort=np.zeros(n), stamp_ns=stamp_ns
    )


def test_a_flood_in_one_tick_is_thinned_to_the_bound_keeping_the_newest_and_counted():
    """500 samples arriving within one tick: the monitor judges max_samples_per_tick of them (the display loop
    cannot stall on health), the newest among them, and the other 468 are counted as thinned."""
    model = load_robot(REPO / "usd/franka_panda/panda.usda")
    service = HealthService(HealthMonitor(model, HealthSettings(max_samples_per_tick=32)))
    stamps = [1_000_000_000 + k * 1_000_000 for k in range(500)]
    for stamp in reversed(stamps):  # arrival order does not matter: the service sorts by source time
        service.on_sample(_message(model, stamp))
    service.poll()
    assert service.monitor.samples == 32
    assert service.thinned == 468
    assert service.monitor._last_t == stamps[-1] * 1e-9  # internal: the newest sample was judged
    for k in range(10):  # a normal tick (within the bound) is judged in full
        service.on_sample(_message(model, stamps[-1] + (k + 1) * 1_000_000))
    service.poll()
    assert service.monitor.samples == 42 and service.thinned == 468


def test_a_real_time_twin_also_bounds_judging_by_its_time_budget_and_an_offline_one_does_not():
    """With 100 µs measured per sample and a 2 ms budget, a real-time service judges 20 samples of a 40-sample
    tick, and never fewer than 16 however slow; an offline one (virtual clock) judges its count bound, 32."""
    model = load_robot(REPO / "usd/franka_panda/panda.usda")
    settings = HealthSettings(max_samples_per_tick=32, tick_budget_ms=2.0)
    for realtime, cost_s, judged in ((True, 1e-4, 20), (True, 1e-2, 16), (False, 1e-4, 32)):
        service = HealthService(HealthMonitor(model, settings), realtime=realtime)
        service._cost_s = cost_s  # internal: as if the monitor had measured this per sample
        for k in range(40):
            service.on_sample(_message(model, 1_000_000_000 + k * 1_000_000))
        service.poll()
        assert service.monitor.samples == judged and service.thinned == 40 - judged


def test_samples_in_the_models_order_are_stacked_as_the_general_path_would_place_them():
    """Messages with every joint in the model's order (the fast path) and the same messages with their joints in
    reverse order (the general path, placing each by name) give bit-identical ``(t, q, qd, tau)``; a message
    without efforts makes the general path give NaN efforts for it."""
    model = load_robot(REPO / "usd/franka_panda/panda.usda")
    rng = np.random.default_rng(4)
    n = model.ndof
    ordered, reversed_ = [], []
    for k in range(12):
        q, qd, tau = rng.normal(size=(3, n))
        stamp = 1_000_000_000 + k * 5_000_000
        ordered.append(SimpleNamespace(names=model.dof_names, position=q, velocity=qd, effort=tau, stamp_ns=stamp))
        reversed_.append(
            SimpleNamespace(names=tuple(reversed(model.dof_names)), position=q[::-1], velocity=qd[::-1],
                            effort=tau[::-1], stamp_ns=stamp)
        )  # fmt: skip
    results = []
    for messages in (ordered, reversed_):
        service = HealthService(HealthMonitor(model, HealthSettings()))
        for m in messages:
            service.on_sample(m)
        results.append(service.take_samples())
    for fast, general in zip(*results, strict=True):
        np.testing.assert_array_equal(fast, general)
    service = HealthService(HealthMonitor(model, HealthSettings()))
    service.on_sample(SimpleNamespace(**{**vars(ordered[0]), "effort": None}))
    assert np.all(np.isnan(service.take_samples()[3]))
