# SPDX-License-Identifier: Apache-2.0
"""``python -m twin_ext batch SUITE.toml``: suites expand to jobs, run, resume from the cache, and report in JUnit
XML (read back with a JUnit parser), a summary JSON and HTML; the exit code is the verdict."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from junitparser import Error, Failure, JUnitXml

from twin_ext.batch import SuiteError, load_suite, run_suite

REPO = Path(__file__).resolve().parents[1]
SUITES = REPO / "config" / "suites"

# Small on purpose: a 7 s emulated run with a collision, 4 s without, and a what-if with 2 samples per variant.
QUICK = """
name = "quick"
[[emulate]]
faults = ["collision_joint2"]
duration_s = 7.0
[emulate.checks]
expect_events = ["collision"]
[[emulate]]
faults = ["none"]
duration_s = 4.0
[emulate.checks]
forbid_events = ["collision"]
max_fidelity_ratio = 0.34
[[whatif]]
scenarios = ["speed_payload_check"]
samples = 2
[whatif.checks]
verdicts = { speed_payload_check = "fail" }
"""


def _batch(*args, timeout=600):
    return subprocess.run(
        [sys.executable, "-m", "twin_ext", "batch", *args], capture_output=True, text=True, timeout=timeout, cwd=REPO
    )


def test_the_shipped_smoke_suite_passes_and_its_junit_xml_reads_back_one_case_per_job(tmp_path):
    """config/suites/smoke.toml (shipped recording vs truth, emulated collision, what-if verdicts) exits 0; a
    JUnit parser finds one passing test case per job; summary.json and the HTML pages are written."""
    proc = _batch(str(SUITES / "smoke.toml"), "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    folder = tmp_path / "smoke"
    xml = JUnitXml.fromfile(str(folder / "junit.xml"))
    cases = [case for suite in xml for case in suite]
    assert len(cases) == 3 and all(case.is_passed for case in cases)
    assert {case.classname for case in cases} == {"smoke.replay", "smoke.emulate", "smoke.whatif"}
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["passed"] and summary["counts"] == {"pass": 3, "fail": 0, "error": 0}
    replay = next(r for r in summary["results"] if r["kind"] == "replay")
    assert replay["metrics"]["fidelity_ratio"] < 0.34  # the anchor's 0.10 on this recording
    index = (folder / "index.html").read_text()
    assert "<svg" in index and index.count("href='jobs/") == 3
    pages = list((folder / "jobs").glob("*.html"))
    assert len(pages) == 3 and any("<polyline" in p.read_text() for p in pages)


def test_broken_jobs_are_failed_test_cases_with_their_reason_and_the_suite_exits_1(tmp_path):
    """A missing recording and an unknown scenario are JUnit errors naming the file or scenario; the good job
    beside them still runs and passes; no traceback reaches the terminal."""
    proc = _batch(str(SUITES / "broken.toml"), "--out", str(tmp_path))
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr + proc.stdout
    cases = {case.name: case for suite in JUnitXml.fromfile(str(tmp_path / "broken" / "junit.xml")) for case in suite}
    assert len(cases) == 3
    missing = cases["replay/does_not_exist.mcap@default"].result[0]
    assert isinstance(missing, Error) and "does_not_exist.mcap" in missing.message
    unknown = cases["whatif/no_such_scenario@default"].result[0]
    assert isinstance(unknown, Error) and "no_such_scenario" in unknown.message
    assert cases["whatif/speed_payload_check@default"].is_passed


def test_a_failed_check_is_a_junit_failure_saying_what_was_expected(tmp_path):
    """Expecting ``pass`` from a scenario that fails gives a <failure> with the verdict and the expectation."""
    suite = tmp_path / "expect.toml"
    suite.write_text(
        '[[whatif]]\nscenarios = ["speed_payload_check"]\nsamples = 2\n[whatif.checks]\nexpect_verdict = "pass"\n'
    )
    summary = run_suite(suite, out=tmp_path)
    assert not summary["passed"]
    case = next(c for s in JUnitXml.fromfile(str(tmp_path / "expect" / "junit.xml")) for c in s)
    failure = case.result[0]
    assert isinstance(failure, Failure) and "verdict fail (expected pass)" in failure.message


def test_an_interrupted_suite_resumes_without_redoing_finished_jobs_and_gives_the_same_results(tmp_path):
    """Stopped after one job, the suite run again runs only the rest (results cached by job hash); a full run
    from scratch gives the same metrics (the jobs are deterministic)."""
    suite = tmp_path / "quick.toml"
    suite.write_text(QUICK)
    first = run_suite(suite, out=tmp_path / "a", max_jobs=1)
    assert first["ran"] == 1 and first["pending"] == 2 and not first["passed"]
    second = run_suite(suite, out=tmp_path / "a")
    assert second["ran"] == 2 and second["pending"] == 0 and second["passed"], second
    again = run_suite(suite, out=tmp_path / "a")
    assert again["ran"] == 0 and again["passed"]
    fresh = run_suite(suite, out=tmp_path / "b")
    assert _metrics(fresh) == _metrics(second)


def _metrics(summary):
    return {r["name"]: (r["status"], json.dumps(r["metrics"], sort_keys=True)) for r in summary["results"]}


def test_editing_an_input_file_reruns_only_the_jobs_that_read_it(tmp_path):
    """The job hash covers its input files' bytes: a changed scenario reruns its job, the others come from the
    cache."""
    scenario = tmp_path / "mine.toml"
    scenario.write_text((REPO / "config" / "scenarios" / "speed_payload_check.toml").read_text().replace(
        '"../../data/scenarios/pick_place.toml"', repr(str(REPO / "data" / "scenarios" / "pick_place.toml")).replace("'", '"')
    ))  # fmt: skip
    suite = tmp_path / "s.toml"
    suite.write_text('[[whatif]]\nscenarios = ["mine.toml", "speed_payload_check"]\nsamples = 2\n')
    assert run_suite(suite, out=tmp_path)["ran"] == 2
    scenario.write_text(scenario.read_text().replace("speed_scale = 1.5", "speed_scale = 1.2"))
    assert run_suite(suite, out=tmp_path)["ran"] == 1


def test_a_bad_suite_file_is_refused_with_the_key_and_the_fix(tmp_path):
    """A misspelt check says "did you mean"; an empty glob names the pattern; the command exits 2 without a
    traceback."""
    bad = tmp_path / "bad.toml"
    bad.write_text('[[whatif]]\nscenarios = ["speed_payload_check"]\n[whatif.checks]\nexpect_verdicts = "pass"\n')
    with pytest.raises(SuiteError, match=r"expect_verdicts.*did you mean 'expect_verdict'"):
        load_suite(bad)
    glob = tmp_path / "glob.toml"
    glob.write_text('[[replay]]\nrecordings = ["nothing/*.mcap"]\n')
    with pytest.raises(SuiteError, match=r"nothing/\*\.mcap.*matches no file"):
        load_suite(glob)
    proc = _batch(str(bad), "--out", str(tmp_path))
    assert proc.returncode == 2 and "did you mean" in proc.stderr and "Traceback" not in proc.stderr


def test_a_suite_expands_robots_profiles_faults_and_seeds_into_named_jobs(tmp_path):
    """robots x impairments x faults x seeds: every combination is one job with a readable name."""
    suite = tmp_path / "grid.toml"
    suite.write_text(
        'name = "grid"\n[[emulate]]\nimpairments = ["standard", "none"]\nfaults = ["none", "collision_joint2"]\n'
        "seeds = [0, 1]\n"
    )
    names = [job.name for job in load_suite(suite).jobs]
    assert len(names) == 8 and len(set(names)) == 8
    assert "emulate/standard+collision_joint2@default#seed1" in names


def test_the_suite_example_in_batch_md_expands_as_documented(tmp_path):
    """docs/batch.md's example suite parses (every key and check it shows is understood) and expands into the
    product it describes (the shipped recording and one bag; 2 impairments x 2 faults x 2 seeds; 2 scenarios)."""
    import re

    block = re.findall(r"```toml\n(.*?)\n```", (REPO / "docs" / "batch.md").read_text(encoding="utf-8"), re.S)[0]
    folder = tmp_path / "a" / "b"
    (folder / "bags").mkdir(parents=True)
    (folder / "bags" / "robot.mcap").write_bytes(b"")  # expansion lists files; reading them is the job's work
    suite = folder / "nightly.toml"
    suite.write_text(block.replace("../../data/recordings/*.mcap", str(REPO / "data" / "recordings" / "*.mcap")))
    jobs = load_suite(suite).jobs
    kinds = [job.kind for job in jobs]
    assert kinds.count("replay") == 2 and kinds.count("emulate") == 8 and kinds.count("whatif") == 2


def test_the_batch_module_entry_point_is_the_same_command(tmp_path):
    """``python -m twin_ext.batch`` (what Isaac Sim's python.sh runs) gives the same verdict as the CLI command."""
    proc = subprocess.run(
        [sys.executable, "-m", "twin_ext.batch", str(SUITES / "broken.toml"), "--out", str(tmp_path), "--quiet"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert proc.returncode == 1 and (tmp_path / "broken" / "junit.xml").is_file()


def test_a_suite_stopped_with_ctrl_c_exits_130_and_the_next_run_resumes_from_the_cache(tmp_path):
    """SIGINT after the first job finished: exit 130 with a line saying how to resume; the same command again
    takes the finished job from the cache, runs the rest and passes."""
    import signal
    import time

    suite = tmp_path / "three.toml"
    suite.write_text('name = "three"\n[[emulate]]\nfaults = ["none"]\nduration_s = 4.0\nseeds = [0, 1, 2]\n')
    cache = tmp_path / "three" / "jobs"
    cmd = [sys.executable, "-m", "twin_ext", "batch", str(suite), "--out", str(tmp_path)]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(1200):  # bounded: at most ~2 min for the first job
            if cache.is_dir() and any(cache.glob("*.json")) or proc.poll() is not None:
                break
            time.sleep(0.1)
        assert proc.poll() is None, "the suite finished before it could be interrupted"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130 and "run the same command again to resume" in err
    done = len(list(cache.glob("*.json")))
    assert 1 <= done < 3
    again = _batch(str(suite), "--out", str(tmp_path))
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"{3 - done} run now" in again.stdout and f"{done} from the cache" in again.stdout
