# SPDX-License-Identifier: Apache-2.0
"""`BatchedHealthMonitor` lets other threads run during a pass (checkpoints that release the GIL, the dynamics in
calls of bounded size) without changing what it computes.

Oracle: the same engine without checkpoints and with the dynamics in one call per model; the results must be
equal bit for bit (the checkpoints change when, not what, it computes; the dynamics' rows are independent).
"""

from __future__ import annotations

import numpy as np
import pytest
from test_health_core import Plant

import twin_ext.health._batched_monitor as batched_module
from twin_ext.health import BatchedHealthMonitor, HealthMonitor, HealthSettings


@pytest.fixture(scope="module")
def short_fleet_data():
    """Three robots' 200 Hz joint states over 6 s: healthy, worn with a payload, and a slower program."""
    return [
        Plant(viscous=1.0).run(6.0),
        Plant(viscous=2.0, coulomb=0.8, payload=(1.5, (0.0, 0.0, 0.05)), seed=1).run(6.0),
        Plant(viscous=1.0, seed=2).run(6.0, speed=0.7),
    ]


def _judge(panda, data, engine, chunk=32):
    monitors = [HealthMonitor(panda, HealthSettings(), epoch_unix_s=1.0e9) for _ in data]
    events = [[] for _ in data]
    for start in range(0, min(len(d[0]) for d in data), chunk):
        batches = [tuple(a[start : start + chunk] for a in d) for d in data]
        for r, result in enumerate(engine.observe(monitors, batches)):
            assert not isinstance(result, Exception), result
            events[r] += [e.to_dict() for e in result]
    return monitors, events


def test_a_yielding_pass_in_small_dynamics_calls_gives_bit_identical_results(panda, short_fleet_data, monkeypatch):
    """A pass that yields at every checkpoint with the dynamics cut into calls of ~40 rows equals, bit for bit, a
    pass that never yields and evaluates the dynamics in one call (events, RLS, spreads, observer state)."""
    plain_engine = BatchedHealthMonitor(yield_every_s=None)
    plain, plain_events = _judge(panda, short_fleet_data, plain_engine)
    assert plain_engine.yields == 0 and plain_engine.batched_calls > 0
    monkeypatch.setattr(batched_module, "_SAMPLES_PER_CALL", 40)
    engine = BatchedHealthMonitor(yield_every_s=0.0)
    yielding, events = _judge(panda, short_fleet_data, engine)
    assert engine.fallbacks == 0, engine.last_error
    assert engine.yields > 100  # between robots, every stacked step and dynamics call
    assert engine.batched_calls > plain_engine.batched_calls  # the dynamics did run in several calls
    assert events == plain_events
    for a, b in zip(yielding, plain, strict=True):
        np.testing.assert_array_equal(a.identifier.rls.theta, b.identifier.rls.theta)
        np.testing.assert_array_equal(a.identifier.rls.covariance, b.identifier.rls.covariance)
        np.testing.assert_array_equal(a.observer_spread.var, b.observer_spread.var)
        np.testing.assert_array_equal(a.residual_spread.var, b.residual_spread.var)
        np.testing.assert_array_equal(a.external_torque(), b.external_torque())
        assert a.samples == b.samples


def test_dynamics_calls_are_cut_into_runs_of_about_the_row_limit():
    """16 robots of 32 samples go in two calls of 8 robots at 256 rows a call; 4 robots in one; order is kept."""
    assert batched_module._chunks(list(range(16)), [32] * 16, 256) == [list(range(8)), list(range(8, 16))]
    assert batched_module._chunks(list(range(4)), [32] * 4, 256) == [list(range(4))]
    assert sum(batched_module._chunks(list(range(7)), [50] * 7, 100), []) == list(range(7))
