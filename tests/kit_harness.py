# SPDX-License-Identifier: Apache-2.0
"""Boot the real Kit kernel (omniverse-kit from PyPI) headless in a subprocess, with this repository linked
into a temporary extension folder as ``twin_ext`` (what premake5.lua's prebuild_link makes), run a scenario
function inside the Kit process, and return its JSON result.

A scenario is a function ``name(app, args) -> dict`` in tests/kit_scenarios.py; it runs in the Kit process
after start-up, may pump ``app.update()``, and reports through its return value. The host always leaves
with ``os._exit`` (Kit's process otherwise exits 0 even after an exception).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HOST = Path(__file__).with_name("kit_host.py")

APP_KIT = """\
[package]
title = "twin_ext test app"
version = "1.0.0"

[dependencies]
"omni.kit.async_engine" = {}

[settings]
app.extensions.registryEnabled = false
app.window.enabled = false
app.renderer.enabled = false
crashreporter.enabled = false
app.enableStdoutOutput = true
"""


def require_kit() -> None:
    """Skip (locally) or fail (under CI=true) when the Kit kernel is not installed."""
    if importlib.util.find_spec("omni") is not None and importlib.util.find_spec("omni.kit_app") is not None:
        return
    message = "the Kit kernel is missing: pip install omniverse-kit==110.4.0.386251 (make test installs it)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def run_in_kit(
    tmp_path: Path,
    scenario: str,
    *,
    settings: dict[str, str] | None = None,
    args: dict | None = None,
    enable: bool = False,
    timeout: float = 180.0,
) -> dict:
    """Run ``scenario`` inside a freshly booted Kit; return its result dict (raises on a failed run)."""
    require_kit()
    exts = tmp_path / "exts"
    exts.mkdir(exist_ok=True)
    link = exts / "twin_ext"
    if not link.exists():
        link.symlink_to(REPO, target_is_directory=True)
    kit_file = tmp_path / "twin_ext_test.kit"
    kit_file.write_text(APP_KIT)
    cmd = [
        sys.executable,
        str(HOST),
        "--kit",
        str(kit_file),
        "--exts",
        str(exts),
        "--scenario",
        scenario,
        "--args",
        json.dumps(args or {}),
    ]
    if enable:
        cmd.append("--enable")
    for key, value in (settings or {}).items():
        cmd += ["--setting", f"{key}={value}"]
    env = dict(os.environ, OMNI_KIT_ACCEPT_EULA="YES", OMNI_KIT_ALLOW_ROOT="1", PYTHONUNBUFFERED="1")
    # Kit must find twin_ext through the linked extension folder, not through the test process's path.
    env.pop("PYTHONPATH", None)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=str(tmp_path))
    result_lines = [line for line in proc.stdout.splitlines() if line.startswith("KIT_RESULT ")]
    if proc.returncode != 0 or not result_lines:
        raise AssertionError(
            f"Kit scenario {scenario!r} failed (exit {proc.returncode})\n--- stdout ---\n{proc.stdout[-6000:]}"
            f"\n--- stderr ---\n{proc.stderr[-6000:]}"
        )
    result = json.loads(result_lines[-1][len("KIT_RESULT ") :])
    result["_stdout"] = proc.stdout
    return result
