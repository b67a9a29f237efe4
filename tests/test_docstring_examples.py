# SPDX-License-Identifier: Apache-2.0
"""The ``>>>`` examples in the package's docstrings run and print what they say (they are tests too)."""

from __future__ import annotations

import doctest
import importlib
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _modules_with_examples() -> list[str]:
    names = []
    for path in sorted((REPO / "twin_ext").rglob("*.py")):
        rel = path.relative_to(REPO).with_suffix("")
        if rel.parts[1] == "kit" or rel.name == "__main__":  # the Kit skin needs Kit; entry points run as commands
            continue
        if ">>>" in path.read_text(encoding="utf-8"):
            parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
            names.append(".".join(parts))
    return names


MODULES = _modules_with_examples()


def test_the_package_has_docstring_examples():
    """The finder below sees the examples (an empty list would make the test after it vacuous)."""
    assert len(MODULES) >= 5, MODULES


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name, monkeypatch):
    """Every example in the module's docstrings runs from the extension folder and prints the documented output."""
    monkeypatch.chdir(REPO)
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    tests = [t for t in finder.find(module, name) if t.examples]
    assert tests, f"{name} has '>>>' in its source but no example doctest could find"
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    report: list[str] = []
    for test in tests:
        runner.run(test, out=report.append)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {name} failed:\n" + "".join(report)
    assert os.getcwd() == str(REPO)
