# SPDX-License-Identifier: Apache-2.0
"""The wheel is a working installed product: built from this tree, installed into a fresh venv outside it,
``twin-ext info``, ``demo`` and ``replay`` run from an unrelated folder on the shipped files inside the wheel.

The fresh venv gets the wheel with ``--no-deps`` and, after its own site-packages, a ``.pth`` line naming the
repository venv's site-packages: numpy, usd-core, warp, mujoco, paho, mcap, amqtt and matplotlib resolve from
there (offline, nothing downloaded), ``twin_ext`` only from the installed wheel (the repository venv holds an
editable finder, but a plain ``.pth`` path line never runs the ``.pth`` files of the folder it names). A probe in
the fresh venv records, at exit of every Python process there (CLI, emulated robot, what-if workers), which
``twin_ext`` it ran.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHIPPED = ("config", "usd", "data")
NOT_IN_WHEEL = ("data/wheels",)  # Kit's offline paho-mqtt wheel; pip installs paho-mqtt as a dependency

# Written into the fresh venv's site-packages (never the repository): at exit, each process there leaves
# {argv, the twin_ext it imported} in $TWIN_EXT_WHEEL_PROBE/<pid>.json.
_PROBE = """import atexit, json, os, sys


def _record():
    module = sys.modules.get("twin_ext")
    path = os.path.join(os.environ["TWIN_EXT_WHEEL_PROBE"], f"{os.getpid()}.json")
    with open(path, "w") as fh:
        json.dump({"argv": sys.argv, "twin_ext": getattr(module, "__file__", None)}, fh)


if os.environ.get("TWIN_EXT_WHEEL_PROBE"):
    atexit.register(_record)
"""


def _source_files(folder: Path) -> set[str]:
    """Files under ``folder``, relative to the repository, without hidden files and byte code."""
    return {
        p.relative_to(REPO).as_posix()
        for p in folder.rglob("*")
        if p.is_file()
        and "__pycache__" not in p.parts
        and p.suffix != ".pyc"
        and not any(part.startswith(".") for part in p.relative_to(REPO).parts)
    }


def _source_packages() -> set[str]:
    return {
        ".".join(p.parent.relative_to(REPO).parts)
        for p in (REPO / "twin_ext").rglob("__init__.py")
        if "__pycache__" not in p.parts
    }


def test_pyproject_lists_every_twin_ext_package_and_maps_the_shipped_folders():
    """pyproject's explicit package list is every twin_ext package on disk plus config/, usd/, data/ mapped into _shipped."""
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    shipped = {f"twin_ext._shipped.{name}" for name in SHIPPED}
    assert set(setuptools["packages"]) == _source_packages() | shipped
    assert setuptools["package-dir"] == {f"twin_ext._shipped.{name}": name for name in SHIPPED}
    assert all(setuptools["package-data"][package] == ["**/*"] for package in shipped)


@dataclass(frozen=True)
class Installed:
    wheel: Path
    source_files: frozenset[str]  # what the tree held when the wheel was built
    venv: Path
    python: Path
    cli: Path
    site: Path  # the fresh venv's site-packages
    probe: Path
    env: dict

    def run(self, *args: str, cwd: Path, timeout: float) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(a) for a in args], capture_output=True, text=True, timeout=timeout, cwd=cwd, env=self.env
        )

    def processes(self) -> list[dict]:
        """What the probe recorded so far, one entry per exited Python process of the fresh venv."""
        return [json.loads(p.read_text()) for p in sorted(self.probe.glob("*.json"))]


def _check(proc: subprocess.CompletedProcess, what: str) -> None:
    assert proc.returncode == 0, f"{what}: exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"


def _inside(path: str | Path, folder: Path) -> bool:
    return Path(path).resolve().is_relative_to(folder.resolve())


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Installed:
    """The wheel built from this tree and installed (no deps) into a fresh venv in a temp folder."""
    root = tmp_path_factory.mktemp("wheel_install")
    assert not _inside(root, REPO)
    source_files = frozenset(f for name in SHIPPED for f in _source_files(REPO / name)) | _source_files(
        REPO / "twin_ext"
    )
    base_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    base_env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"

    # Build: setuptools' build/ and egg-info go to the temp folder (DIST_EXTRA_CONFIG), so the build never
    # writes into the tree and never packs stale files from an old build/lib.
    (root / "setup.cfg").write_text(f"[build]\nbuild_base = {root / 'build'}\n[egg_info]\negg_base = {root}\n")
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "-q", "-w", str(root / "dist")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=root,
        env={**base_env, "DIST_EXTRA_CONFIG": str(root / "setup.cfg")},
    )
    _check(build, "pip wheel")
    (wheel,) = (root / "dist").glob("twin_ext-*.whl")

    venv = root / "venv"
    _check(
        subprocess.run(
            [sys.executable, "-m", "venv", "--without-pip", str(venv)], capture_output=True, text=True, timeout=120
        ),
        "venv",
    )
    python = venv / "bin" / "python"
    _check(
        subprocess.run(
            [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", str(wheel)],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=root,
            env=base_env,
        ),
        "pip install",
    )
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout.strip()
    )
    deps = dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib"))  # the repository venv's
    (site / "_twin_ext_wheel_probe.py").write_text(_PROBE)
    (site / "zz_twin_ext_wheel_test.pth").write_text("".join(f"{p}\n" for p in deps) + "import _twin_ext_wheel_probe\n")

    probe = root / "probe"
    probe.mkdir()
    env = {
        **base_env,
        "PATH": f"{venv / 'bin'}{os.pathsep}{base_env.get('PATH', '')}",
        "TWIN_EXT_CACHE_DIR": os.environ.get("TWIN_EXT_CACHE_DIR") or str(REPO / ".cache"),  # Warp compiles once
        "TWIN_EXT_WHEEL_PROBE": str(probe),
    }
    return Installed(wheel, source_files, venv, python, venv / "bin" / "twin-ext", site, probe, env)


@pytest.fixture(scope="module")
def demo(installed, tmp_path_factory):
    """``twin-ext demo --duration 5`` run once in an empty folder outside the repository."""
    cwd = tmp_path_factory.mktemp("demo_cwd")
    proc = installed.run(installed.cli, "demo", "--duration", "5", cwd=cwd, timeout=300)
    return cwd, proc


@pytest.mark.slow
def test_the_wheel_holds_the_package_and_the_shipped_files_and_nothing_else(installed):
    """The wheel has every module of twin_ext and every file of config/, usd/, data/ (not data/wheels/) under twin_ext/_shipped/, nothing else."""
    names = set(zipfile.ZipFile(installed.wheel).namelist())
    dist_info = {n for n in names if n.split("/")[0].endswith(".dist-info")}
    assert {n.split("/")[0] for n in names - dist_info} == {"twin_ext"}  # no tests/, tools/, .venv, .cache, out/
    assert not [n for n in names if "__pycache__" in n or n.endswith((".pyc", ".whl"))]
    expected = {
        f if f.startswith("twin_ext/") else f"twin_ext/_shipped/{f}"
        for f in installed.source_files
        if not f.startswith(NOT_IN_WHEEL)
    }
    assert sorted(expected - names) == []
    assert not [n for n in names if n.startswith("twin_ext/_shipped/") and n not in expected]
    assert installed.wheel.stat().st_size < 20e6, installed.wheel.stat().st_size


@pytest.mark.slow
def test_the_fresh_venv_imports_twin_ext_from_the_wheel_not_the_repository(installed, tmp_path):
    """In the fresh venv twin_ext, its shipped root and the console script are the installed ones; the repository is not on sys.path."""
    code = "import json, sys, twin_ext, twin_ext._paths as p; print(json.dumps([twin_ext.__file__, str(p.shipped_root()), sys.path]))"
    proc = installed.run(installed.python, "-c", code, cwd=tmp_path, timeout=60)
    _check(proc, "import")
    module, root, path = json.loads(proc.stdout)
    assert Path(module) == installed.site / "twin_ext" / "__init__.py"
    assert Path(root) == installed.site / "twin_ext" / "_shipped"
    # the repository's venv supplies the third-party packages, after the fresh venv; the tree itself is absent
    assert path.index(str(installed.site)) < path.index(sysconfig.get_paths()["purelib"]), path
    assert not [p for p in path if p and Path(p).resolve() in (REPO, REPO / "twin_ext")], path
    assert _inside(installed.cli, installed.venv) and installed.cli.is_file()


@pytest.mark.slow
def test_installed_info_describes_the_shipped_panda(installed, tmp_path):
    """`twin-ext info` from an unrelated folder loads the Panda USD inside the wheel and prints its nine joints."""
    proc = installed.run(installed.cli, "info", cwd=tmp_path, timeout=120)
    _check(proc, "twin-ext info")
    shipped_usd = installed.site / "twin_ext" / "_shipped" / "usd" / "franka_panda" / "panda.usda"
    assert f"robot 'panda' from {shipped_usd}" in proc.stdout
    for joint in [f"joint{i}" for i in range(1, 8)] + ["finger_joint1", "finger_joint2"]:
        assert f"    {joint} " in proc.stdout, joint


@pytest.mark.slow
def test_installed_demo_runs_end_to_end_in_an_unrelated_folder(installed, demo):
    """`twin-ext demo --duration 5` exits 0, writes out/demo/ in its cwd, and its emulated robot runs the installed package."""
    cwd, proc = demo
    _check(proc, "twin-ext demo")
    assert "Traceback" not in proc.stderr
    for name in ("twin_motion.usda", "report.html", "whatif.json", "telemetry.mcap"):
        assert (cwd / "out" / "demo" / name).is_file(), name
    assert "What-if" in (cwd / "out" / "demo" / "report.html").read_text()
    assert json.loads((cwd / "out" / "demo" / "whatif.json").read_text())["variants"]
    processes = installed.processes()
    emulators = [p for p in processes if p["argv"][0].endswith(os.path.join("twin_ext", "emulator", "__main__.py"))]
    assert emulators and all(_inside(p["argv"][0], installed.site) for p in emulators), processes
    assert all(_inside(p["twin_ext"], installed.site) for p in processes if p["twin_ext"]), processes


@pytest.mark.slow
def test_installed_demo_writes_only_into_its_cwd(installed, demo):
    """The demo's plant truth lands in <cwd>/out/demo/ and nothing is written into the installed package."""
    cwd, proc = demo
    _check(proc, "twin-ext demo")
    from_wheel = set(zipfile.ZipFile(installed.wheel).namelist())
    package = installed.site / "twin_ext"
    written = [
        p.relative_to(installed.site).as_posix()
        for p in package.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.relative_to(installed.site).as_posix() not in from_wheel
    ]
    assert written == []
    assert (cwd / "out" / "demo" / "truth.mcap").is_file()


@pytest.mark.slow
def test_installed_replay_of_the_shipped_recording_writes_its_report(installed, tmp_path):
    """`twin-ext replay` of the recording inside the installed package exits 0 and writes its report with the plant's truth."""
    recording = installed.site / "twin_ext" / "_shipped" / "data" / "recordings" / "panda_pick_place_standard.mcap"
    assert recording.is_file()
    proc = installed.run(installed.cli, "replay", recording, cwd=tmp_path, timeout=300)
    _check(proc, "twin-ext replay")
    for name in ("twin_motion.usda", "report.html", "whatif.json"):
        assert (tmp_path / "out" / "replay" / name).is_file(), name
    assert "against the plant" in proc.stdout  # the truth channel of the shipped recording was read
