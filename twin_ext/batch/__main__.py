# SPDX-License-Identifier: Apache-2.0
"""``python -m twin_ext.batch SUITE.toml [options]`` — the same as ``python -m twin_ext batch``; the form to use
from Isaac Sim's own Python (``./python.sh -m twin_ext.batch SUITE.toml``, docs/kit.md)."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    from ._cli import add_batch_arguments, run_batch

    parser = argparse.ArgumentParser(prog="python -m twin_ext.batch", description="Run a twin_ext suite (headless).")
    add_batch_arguments(parser)
    return run_batch(parser.parse_args(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    raise SystemExit(main())
