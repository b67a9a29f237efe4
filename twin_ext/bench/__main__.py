# SPDX-License-Identifier: Apache-2.0
"""Dispatch ``python -m twin_ext.bench <name> [options]`` to ``twin_ext.bench.<name>.main``."""

from __future__ import annotations

import importlib
import sys

from . import BENCHMARKS


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(__import__("twin_ext.bench", fromlist=["__doc__"]).__doc__)
        return 0
    name, rest = args[0], args[1:]
    names = BENCHMARKS if name == "all" else (name,)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark {unknown[0]!r}; choose one of {', '.join(BENCHMARKS)} or 'all'", file=sys.stderr)
        return 2
    code = 0
    for n in names:
        module = importlib.import_module(f"twin_ext.bench._{n}")
        code = max(code, int(module.main(rest) or 0))
    return code


if __name__ == "__main__":
    raise SystemExit(main())
