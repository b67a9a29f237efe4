# SPDX-License-Identifier: Apache-2.0
"""Kit host process for tests (run by tests/kit_harness.py; not collected by pytest)."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import traceback
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kit", required=True)
    parser.add_argument("--exts", required=True)
    parser.add_argument("--scenario", required=True)
    parser.add_argument("--args", default="{}")
    parser.add_argument("--enable", action="store_true")
    parser.add_argument("--setting", action="append", default=[])
    opts = parser.parse_args()

    # Make sure the repository is importable only through the linked extension folder, as in Isaac Sim:
    # drop the repo from sys.path and the editable-install finder that pip -e registers.
    repo = str(Path(__file__).resolve().parents[1])
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != repo]
    sys.meta_path[:] = [
        f
        for f in sys.meta_path
        if "__editable__" not in getattr(f, "__module__", "") and "__editable__" not in type(f).__module__
    ]

    import omni.kit_app  # noqa: E402  (boots carb)

    # --portable-root keeps Kit's user config, logs and caches inside the test's temporary folder.
    argv = [
        opts.kit,
        "--no-window",
        "--portable-root",
        str(Path(opts.kit).parent / "kit_data"),
        "--ext-folder",
        opts.exts,
    ]
    if opts.enable:
        argv += ["--enable", "twin_ext"]
    argv += [f"--/{s.lstrip('/')}" for s in opts.setting]
    app = omni.kit_app.KitApp()
    app.startup(argv)
    for _ in range(3):
        app.update()

    spec = importlib.util.spec_from_file_location("kit_scenarios", Path(__file__).with_name("kit_scenarios.py"))
    scenarios = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(scenarios)
    code = 0
    try:
        result = getattr(scenarios, opts.scenario)(app, json.loads(opts.args))
    except Exception:  # report, then leave with a failing code
        result = {"error": traceback.format_exc()}
        code = 1
    print("KIT_RESULT " + json.dumps(result, default=str), flush=True)
    sys.stdout.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
