# SPDX-License-Identifier: Apache-2.0
"""Big what-if sweeps in suites (thousands of variants split into batches over the workers, merged equal to the
whole sweep in one process) and clearance checks (collision and clearance verdicts against a USD scene)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from junitparser import Failure, JUnitXml

from twin_ext.batch import (
    SuiteError,
    load_suite,
    run_suite,
    run_sweep,
    sweep_scenario,
    sweep_variants,
    variant_rows,
    verdicts_digest,
)

REPO = Path(__file__).resolve().parents[1]
SUITES = REPO / "config" / "suites"
REACH = str(SUITES / "scenarios" / "reach_fast.toml")


def whole_sweep_in_one_process(params: dict) -> tuple[str, list[dict]]:
    """The reference: every variant of the sweep in one `WhatIfEngine.run` in this process (no batches, the
    duration left to the engine) -> (digest of the full verdicts, the rows a job keeps)."""
    from twin_ext.robot import default_robot_path, load_robot
    from twin_ext.whatif import WhatIfEngine, WhatIfSettings

    settings = WhatIfSettings(use_process_pool=False)
    with WhatIfEngine(load_robot(default_robot_path()), settings=settings) as engine:
        verdicts = [v.to_dict() for v in engine.run(sweep_scenario(params)).variants]
    return verdicts_digest(verdicts), variant_rows(verdicts)


def test_the_shipped_2000_variant_sweep_on_the_process_pool_equals_the_whole_sweep_in_one_process(tmp_path):
    """config/suites/sweep.toml (2000 variants in 8 batches of 250) on 2 worker processes: every variant's
    verdict (all figures, by digest) equals one engine run over the whole sweep; the checks pass."""
    (job,) = load_suite(SUITES / "sweep.toml").jobs
    assert job.kind == "sweep" and len(sweep_variants(job.params)) == 2000
    summary = run_suite(SUITES / "sweep.toml", out=tmp_path, workers=2)
    (result,) = summary["results"]
    assert summary["passed"], result
    metrics = result["metrics"]
    assert metrics["batches"] == 8 and metrics["sweep_variants"] == 2000
    digest, rows = whole_sweep_in_one_process(job.params)
    assert metrics["verdicts_sha256"] == digest
    assert metrics["variants"] == rows
    assert 0 < metrics["counts"]["fail"] < 2000  # a sweep that tells variants apart


def test_a_sweep_gives_the_same_verdicts_for_any_batch_size(tmp_path):
    """Batches of 1, 7 and all variants (the slowest variant in another batch than most) give one digest."""
    grid = {"speed_scale": [0.7, 1.0, 2.0], "payload_kg": [0.0, 3.0], "latency": [0.0, 0.02]}
    digests = {b: run_sweep(REACH, grid, batch=b, samples=2)["metrics"]["verdicts_sha256"] for b in (1, 7, 12)}
    assert len(set(digests.values())) == 1
    params = {"scenario": REACH, "grid": grid, "samples": 2, "payload_link": "hand", "payload_com": [0, 0, 0]}
    assert digests[7] == whole_sweep_in_one_process(params)[0]


def test_a_sweep_grid_expands_in_a_documented_order_with_readable_names():
    """The product of the grid's lists, the last key varying fastest, named ``key=value`` per key."""
    params = {"grid": {"speed_scale": [1.0, 1.5], "payload_kg": [0.0, 2.0]}, "payload_link": "hand"}
    variants = sweep_variants(params)
    assert [v.name for v in variants] == [
        "speed_scale=1 payload_kg=0",
        "speed_scale=1 payload_kg=2",
        "speed_scale=1.5 payload_kg=0",
        "speed_scale=1.5 payload_kg=2",
    ]
    assert variants[3].speed_scale == 1.5 and variants[3].payloads[0].mass == 2.0 and not variants[2].payloads
    assert [v.name for v in sweep_variants(params, 1, 3)] == [v.name for v in variants[1:3]]


@pytest.mark.parametrize(
    ("grid", "message"),
    [
        ("speed_scal = [1.0]", r"speed_scal.*did you mean 'speed_scale'"),
        ("speed_scale = [1.0, 1.0]", r"distinct numbers"),
        ("speed_scale = [0.0, 1.0]", r"> 0"),
    ],
)
def test_a_bad_sweep_grid_is_refused_naming_the_key(tmp_path, grid, message):
    """Unknown grid keys, repeated values and impossible speeds are refused when the suite loads."""
    suite = tmp_path / "s.toml"
    suite.write_text(f'[[sweep]]\nscenario = "{REACH}"\n[sweep.grid]\n{grid}\n')
    with pytest.raises(SuiteError, match=message):
        load_suite(suite)


def test_the_shipped_clearance_suite_checks_a_clearance_bound_and_an_expected_collision(tmp_path):
    """config/suites/clearance.toml: the program keeps its bound and collides with nothing, the 0.3 m bar is
    predicted to hit /Cell/Fixture; each is a check of the job, and the suite passes."""
    summary = run_suite(SUITES / "clearance.toml", out=tmp_path)
    (result,) = summary["results"]
    assert summary["passed"], result
    checks = {c["name"]: c for c in result["checks"]}
    assert set(checks) == {
        "clearance:as programmed:min_distance_m",
        "clearance:as programmed:collision",
        "clearance:long part (0.3 m bar):collision",
    }
    assert "/Cell/Fixture" in checks["clearance:long part (0.3 m bar):collision"]["detail"]
    bar = next(r for r in result["metrics"]["variants"] if r["name"] == "long part (0.3 m bar)")
    assert bar["collision"]["obstacles"] == ["/Cell/Fixture"] and bar["closest"]["distance_m"] < 0


def test_a_wrong_clearance_expectation_is_a_junit_failure_saying_what_was_predicted(tmp_path):
    """Expecting the program as written to collide, and the bar to clear 5 cm, fail with the prediction in the
    message; a clearance check on a job without a scene fails saying to set one."""
    scenario = str(SUITES / "scenarios" / "cell_long_part.toml")
    scene = str(REPO / "usd" / "scenes" / "pick_place_cell.usda")
    suite = tmp_path / "wrong.toml"
    suite.write_text(
        f'name = "wrong"\n[[whatif]]\nscenarios = ["{scenario}"]\nscene = "{scene}"\nsamples = 2\n'
        '[[whatif.checks.clearance]]\nvariant = "as programmed"\ncollision = true\n'
        '[[whatif.checks.clearance]]\nvariant = "long part (0.3 m bar)"\nmin_distance_m = 0.05\n'
        f'[[whatif]]\nscenarios = ["{scenario}"]\nsamples = 2\n'  # no scene
        "[[whatif.checks.clearance]]\nmin_distance_m = 0.01\n"
    )
    summary = run_suite(suite, out=tmp_path)
    assert not summary["passed"]
    cases = {c.name: c for s in JUnitXml.fromfile(str(tmp_path / "wrong" / "junit.xml")) for c in s}
    assert len(cases) == 2
    failures = [r.message for c in cases.values() for r in c.result if isinstance(r, Failure)]
    text = json.dumps(failures)
    assert "no collision predicted (expected)" in text
    assert "/Cell/Fixture" in text and "at least 0.05 m asked" in text
    assert "no scene in this job's what-if" in text


def test_a_clearance_check_without_anything_to_check_or_with_a_bad_key_is_refused(tmp_path):
    """A [[checks.clearance]] table with neither min_distance_m nor collision, or with a misspelt key, is refused
    when the suite loads, naming the fix."""
    base = f'[[whatif]]\nscenarios = ["{REACH}"]\n[[whatif.checks.clearance]]\n'
    suite = tmp_path / "s.toml"
    suite.write_text(base + 'variant = "as programmed"\n')
    with pytest.raises(SuiteError, match="min_distance_m.*collision"):
        load_suite(suite)
    suite.write_text(base + "min_distance = 0.01\n")
    with pytest.raises(SuiteError, match="did you mean 'min_distance_m'"):
        load_suite(suite)
    suite.write_text(base + 'scenario = "other"\nmin_distance_m = 0.01\n')
    with pytest.raises(SuiteError, match="'other' is not one of this group's"):
        load_suite(suite)


def test_the_clearance_and_sweep_examples_in_batch_md_load_as_documented(tmp_path):
    """docs/batch.md's clearance and sweep examples parse (every key understood) into a whatif job with two
    clearance tables and a scene, and a 2000-variant sweep job in batches of 250."""
    import re

    text = (REPO / "docs" / "batch.md").read_text(encoding="utf-8")
    clearance, sweep = re.findall(r"```toml\n(.*?)\n```", text, re.S)[1:3]
    kinds = []
    for i, block in enumerate((clearance, sweep)):
        suite = tmp_path / f"s{i}.toml"
        suite.write_text(block.replace('"scenarios/', f'"{SUITES}/scenarios/').replace('"../../usd', f'"{REPO}/usd'))
        (job,) = load_suite(suite).jobs
        kinds.append(job.kind)
        if job.kind == "whatif":
            assert len(job.checks["clearance"]) == 2 and job.params["scene"].endswith("pick_place_cell.usda")
        else:
            assert len(sweep_variants(job.params)) == 2000 and job.params["batch"] == 250
    assert kinds == ["whatif", "sweep"]
