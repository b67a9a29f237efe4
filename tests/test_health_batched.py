# SPDX-License-Identifier: Apache-2.0
"""`BatchedHealthMonitor` judges many robots at once with the same events and figures as each robot's own
`HealthMonitor.observe`, and one robot's bad data or failure stays its own.

Oracle: the per-robot `HealthMonitor` on the same samples (itself checked against a MuJoCo Panda in
test_health_core.py, whose plant this file reuses). Tolerance: relative 1e-9 (absolute 1e-9 in the unit of the
figure near zero). The batched path stacks rows that the per-robot path evaluates alone, so matrix products may
round differently in the last bits (~1e-16); the RLS and the observer filters are contractive, so such
differences stay near 1e-13 over a run; 1e-9 leaves room without hiding a real difference (a wrong update is off
by whole percent).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from test_health_core import Plant

from twin_ext.health import BatchedHealthMonitor, HealthMonitor, HealthSettings
from twin_ext.robot import default_robot_path, load_robot

REL = 1e-9
CHUNK = 25  # samples per judgement (the fleet judges 16-32)


@pytest.fixture(scope="module")
def fleet_data():
    """Four robots' 200 Hz joint states: a healthy one hit on joint 2 at 20.5 s; a worn one (2x viscous, 0.8 N·m
    dry friction, 0.7 N·m bias on joint 6, a 1.5 kg payload); the hit one again with a 200 ms gap and an encoder
    glitch; and the healthy one with a slower program (its own timing)."""
    hit = np.zeros(9)
    hit[1] = 10.0
    healthy = Plant(viscous=1.0).run(24.0, external=lambda s: hit if 20.5 <= s < 20.58 else np.zeros(9))
    bias = np.zeros(9)
    bias[5] = 0.7
    worn = Plant(viscous=2.0, coulomb=0.8, payload=(1.5, (0.0, 0.0, 0.05)), seed=1).run(40.0, bias=bias)
    t, q, qd, tau = (a.copy() for a in healthy)
    keep = ~((t > 3.66) & (t < 3.86))
    q[1500, 3] += 0.02  # a 20 mrad encoder glitch on joint 4 for one sample
    glitchy = (t[keep], q[keep], qd[keep], tau[keep])
    slow = Plant(viscous=1.0, seed=2).run(16.0, speed=0.7)
    return [healthy, worn, glitchy, slow]


def _chunks(data, chunk=CHUNK):
    t, q, qd, tau = data
    return [
        (t[i : i + chunk], q[i : i + chunk], qd[i : i + chunk], tau[i : i + chunk]) for i in range(0, len(t), chunk)
    ]


def _close(a, b, path=""):
    """Compare nested summaries: numbers within REL (or 1e-9 absolute), everything else equal."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            _close(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _close(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and isinstance(b, float):
        assert math.isclose(a, b, rel_tol=REL, abs_tol=1e-9) or (math.isnan(a) and math.isnan(b)), (path, a, b)
    else:
        assert a == b, (path, a, b)


def _event_doc(e):
    doc = e.to_dict()
    doc.pop("message")  # formatted from the figures compared below (2-3 decimals)
    return doc


def _run(models, data, *, epoch=1.0e9):
    settings = HealthSettings()
    alone = [HealthMonitor(m, settings, epoch_unix_s=epoch) for m in models]
    batched = [HealthMonitor(m, settings, epoch_unix_s=epoch) for m in models]
    chunks = [_chunks(d) for d in data]
    engine = BatchedHealthMonitor()
    events_alone = [[] for _ in models]
    events_batched = [[] for _ in models]
    for k in range(max(len(c) for c in chunks)):
        robots = [r for r in range(len(models)) if k < len(chunks[r])]
        for r in robots:
            events_alone[r] += alone[r].observe(*chunks[r][k])
        results = engine.observe([batched[r] for r in robots], [chunks[r][k] for r in robots])
        for r, result in zip(robots, results, strict=True):
            assert not isinstance(result, Exception), result
            events_batched[r] += result
    return alone, batched, events_alone, events_batched, engine


def test_batched_judgements_give_the_per_robot_events_and_figures(panda, fleet_data):
    """Four Panda robots with different faults (a collision, friction rise + sensor bias + payload, a gap and an
    encoder glitch, a healthy slower one), one of them on a second copy of the model (its own group), judged 25
    samples at a time: every event (kind, joints, times, magnitude, confidence, detail) and every summary figure
    (external torque, friction, bias, payload, thresholds) equals the per-robot monitor's within relative 1e-9;
    the identification's parameters and covariance too; the expected events were actually raised."""
    other_copy = load_robot(default_robot_path())
    models = [panda, panda, panda, other_copy]
    alone, batched, events_alone, events_batched, engine = _run(models, fleet_data)
    assert engine.batched_calls > 0 and engine.fallbacks == 0, engine.last_error
    for r in range(len(models)):
        assert len(events_alone[r]) == len(events_batched[r]), (r, events_alone[r], events_batched[r])
        for a, b in zip(events_alone[r], events_batched[r], strict=True):
            _close(_event_doc(a), _event_doc(b), f"robot {r} event")
        _close(alone[r].summary().to_dict(), batched[r].summary().to_dict(), f"robot {r} summary")
        np.testing.assert_allclose(batched[r].identifier.rls.theta, alone[r].identifier.rls.theta, rtol=REL, atol=1e-9)
        np.testing.assert_allclose(
            batched[r].identifier.rls.covariance, alone[r].identifier.rls.covariance, rtol=REL, atol=1e-12
        )
        assert batched[r].samples == alone[r].samples
    kinds = [{e.kind for e in ev} for ev in events_alone]
    assert "collision" in kinds[0], events_alone[0]
    assert {"payload_change", "torque_sensor_bias", "friction_rise"} <= kinds[1], events_alone[1]
    assert "encoder_glitch" in kinds[2], events_alone[2]
    # after its payload was adopted the worn robot's observer has dynamics of its own (judged outside the group)
    assert batched[1].observer.dynamics is not batched[1].nominal


def test_a_failing_or_garbage_robot_does_not_disturb_the_others(panda, fleet_data):
    """In one batch with a robot whose samples have the wrong shape (its judgement raises) and one that sends only
    NaN efforts and time going backwards, the healthy robots' results equal their per-robot monitors' (relative
    1e-9): the bad robot gets its exception back, the garbage one no events and a note; a robot whose identification went
    non-finite makes the batched RLS step fall back robot by robot, and only that robot carries the fault."""
    settings = HealthSettings()
    data = fleet_data[0]
    chunks = _chunks(tuple(a[:1200] for a in data))
    good_alone = HealthMonitor(panda, settings, epoch_unix_s=1e9)
    good = HealthMonitor(panda, settings, epoch_unix_s=1e9)
    broken = HealthMonitor(panda, settings, epoch_unix_s=1e9)
    garbage = HealthMonitor(panda, settings, epoch_unix_s=1e9)
    singular = HealthMonitor(panda, settings, epoch_unix_s=1e9)
    engine = BatchedHealthMonitor()
    for k, chunk in enumerate(chunks):
        t, q, qd, tau = chunk
        good_alone.observe(*chunk)
        if k == 20:  # from here on one robot's identification cannot be solved
            singular.identifier.rls.covariance[:] = np.nan
        bad = (t, q[:, :3], qd[:, :3], tau[:, :3])
        nan_tau = (t[::-1] - 100.0, q, qd, np.full_like(tau, np.nan))
        results = engine.observe([good, broken, garbage, singular], [chunk, bad, nan_tau, chunk])
        assert not isinstance(results[0], Exception), results[0]
        assert isinstance(results[1], Exception)
        assert results[2] == []
    _close(good_alone.summary().to_dict(), good.summary().to_dict(), "good robot")
    np.testing.assert_allclose(good.identifier.rls.theta, good_alone.identifier.rls.theta, rtol=REL, atol=1e-9)
    assert "no effort" in " ".join(garbage.notes)
    assert engine.fallbacks > 0 and "robot by robot" in engine.last_error
    assert not np.all(np.isfinite(singular.identifier.rls.theta))  # the culprit alone carries its fault
