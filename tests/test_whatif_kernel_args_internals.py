# SPDX-License-Identifier: Apache-2.0
"""Internals of the rollout kernel's one argument declaration (twin_ext.whatif._kernel_args): both kernels take
exactly the declared arguments, launches are built by name and refuse a missing or misnamed one, and neither
kernel depends on how the source text is laid out."""

from __future__ import annotations

import ast
import importlib.util
import inspect
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from twin_ext.whatif import _compute, _kernel_args, _kernels, _specialized

REPO = Path(__file__).resolve().parents[1]
PRECISIONS = ("float32", "float64")
SHAPE = ([-1, 0, 1, 1], [1, 1, 2, 1])  # a small branchy tree with a prismatic joint: cheap to generate
_KIND = {"int32": ((), "int32"), "scalar": ((), None), "vec3": ((3,), None), "mat33": ((3, 3), None)}


def _describe(warp_type) -> tuple[int, str, tuple[int, ...]]:
    """(array ndim or 0, scalar type name, element shape) of a Warp argument type, read off Warp's own type."""
    ndim = getattr(warp_type, "ndim", 0)
    dtype = warp_type.dtype if ndim else warp_type
    return ndim, getattr(dtype, "_wp_scalar_type_", dtype).__name__, tuple(getattr(dtype, "_shape_", ()))


def _declared(precision: str) -> list[tuple[str, tuple[int, str, tuple[int, ...]]]]:
    out = []
    for arg in _kernel_args.ROLLOUT_ARGS:
        shape, scalar = _KIND[arg.kind]
        out.append((arg.name, (arg.ndim, scalar or precision, shape)))
    return out


def _warp_signature(kernel) -> list[tuple[str, tuple[int, str, tuple[int, ...]]]]:
    return [(a.label, _describe(a.type)) for a in kernel.adj.args]


@pytest.mark.parametrize("precision", PRECISIONS)
def test_both_kernels_take_exactly_the_declared_arguments_in_order(precision):
    """The generic and the specialised kernel, as Warp parsed them, have the declared names, kinds and
    dimensionalities, in declaration order."""
    declared = _declared(precision)
    generic = _kernels.get_kernels(precision)
    specialised = _specialized.get_specialized_kernel(*SHAPE, precision)
    assert _warp_signature(generic) == declared
    assert _warp_signature(specialised) == declared
    assert list(inspect.signature(generic.func).parameters) == [name for name, _ in declared]


def test_a_launch_missing_an_argument_or_with_a_misnamed_one_is_refused_naming_them():
    """Launch inputs are looked up by name: a missing argument and an unknown name are both reported by name."""
    values = {name: object() for name in _kernel_args.BY_NAME}
    assert len(_kernel_args.launch_inputs(values)) == len(_kernel_args.ROLLOUT_ARGS)
    values["qq"] = values.pop("q")
    with pytest.raises(_kernel_args.KernelArgumentError, match=r"missing \['q'\].*unknown \['qq'\]"):
        _kernel_args.launch_inputs(values)
    del values["qq"]
    with pytest.raises(_kernel_args.KernelArgumentError, match=r"missing \['q'\]"):
        _kernel_args.launch_inputs(values)


def test_a_launch_puts_each_value_in_its_declared_slot_whatever_the_order_of_the_mapping():
    """The inputs list follows the declaration, not the order in which the caller built its mapping."""
    names = list(_kernel_args.BY_NAME)
    shuffled = {name: name.upper() for name in reversed(names)}
    assert _kernel_args.launch_inputs(shuffled) == [name.upper() for name in names]


def test_the_executor_refuses_a_request_without_an_array_or_with_the_wrong_dtype_naming_it():
    """A request array that is absent, or whose dtype is not the declared kind's, fails before any launch with
    an error naming the array."""
    executor = _compute.Executor("cpu")
    executor.set_model("tiny", "float64", _compute._tiny_model())
    options = _compute.RunOptions("float64", _kernels.MODE_ROLLOUT, 1e-3, 2, 1, False, 0.01, 50.0, True, True, 2)
    request = _compute._tiny_request("float64")
    del request["target_qd"]
    with pytest.raises(_kernel_args.KernelArgumentError, match="target_qd"):
        executor.run("tiny", request, options, 0, 1)
    request = _compute._tiny_request("float64")
    request["world_set"] = request["world_set"].astype(np.float64)
    with pytest.raises(_kernel_args.KernelArgumentError, match="world_set is float64.*int32"):
        executor.run("tiny", request, options, 0, 1)
    model = _compute._tiny_model()
    del model["armature"]
    with pytest.raises(_kernel_args.KernelArgumentError, match="armature"):
        executor.set_model("tiny2", "float64", model)


@pytest.mark.parametrize("precision", PRECISIONS)
def test_the_scratch_estimate_is_what_the_executor_allocates_per_world(precision):
    """scratch_bytes_per_world (the memory budget's figure) equals the bytes of the scratch arrays the executor
    allocates for one world, both derived from the declaration."""
    wp = _kernels.init_warp()
    nb = 5
    scratch = _compute.Executor("cpu")._get_scratch(wp, precision, 1, nb)
    assert list(scratch) == list(_kernel_args.names(_kernel_args.SCRATCH))
    assert sum(a.numpy().nbytes for a in scratch.values()) == _compute.scratch_bytes_per_world(nb, precision)


def test_the_generated_kernel_source_reads_no_other_source_text(monkeypatch):
    """Generating the specialised kernel never reads source text (the old generator copied the signature and
    helpers out of the generic kernel's source with regexes): with inspect unable to read any source the
    generated text is the same."""
    expected = _specialized.generate_source(*SHAPE, "float64")

    def no_source(*args, **kwargs):
        raise OSError("source text is not available")

    for name in ("getsource", "getsourcelines", "findsource", "getfile", "getsourcefile"):
        monkeypatch.setattr(inspect, name, no_source)
    assert _specialized.generate_source(*SHAPE, "float64") == expected


def _ruff() -> str | None:
    found = Path(sys.executable).with_name("ruff")
    return str(found) if found.is_file() else shutil.which("ruff")


def test_reflowing_the_kernel_sources_changes_neither_kernel(tmp_path, monkeypatch):
    """After ruff reformats copies of _kernels.py and _specialized.py at a narrow line length (reflowing
    signatures, calls and comments), the generic kernel built from the copy still takes exactly the declared
    arguments and the copy of the generator writes the same kernel source."""
    ruff = _ruff()
    if ruff is None:
        pytest.skip("ruff is not installed")
    package = REPO / "twin_ext" / "whatif"
    copies = {}
    for stem in ("_kernels", "_specialized"):
        original = (package / f"{stem}.py").read_text(encoding="utf-8")
        path = tmp_path / f"{stem}.py"
        path.write_text(original, encoding="utf-8")
        subprocess.run([ruff, "format", "--no-cache", "--line-length", "50", str(path)], check=True, cwd=tmp_path)
        assert path.read_text(encoding="utf-8") != original  # the copy really was reflowed
        name = f"twin_ext.whatif.{stem}_reflowed"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        monkeypatch.setitem(sys.modules, name, module)
        spec.loader.exec_module(module)
        copies[stem] = module
    kernel = copies["_kernels"]._build(_kernels.init_warp(), "float64")
    assert _warp_signature(kernel) == _declared("float64")
    assert copies["_specialized"].generate_source(*SHAPE, "float64") == _specialized.generate_source(*SHAPE, "float64")


def test_nothing_in_the_package_imports_warps_private_modules():
    """No module of twin_ext imports warp._src (or any other private Warp module) or reaches into it."""
    bad = []
    for path in sorted((REPO / "twin_ext").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Attribute) and node.attr == "_src":
                names = ["warp._src"] if getattr(node.value, "id", "") in ("wp", "warp") else []
            for name in names:
                parts = name.split(".")
                if parts[0] == "warp" and any(p.startswith("_") for p in parts[1:]):
                    bad.append(f"{path.relative_to(REPO)}:{node.lineno} {name}")
    assert bad == []


_INIT_SNIPPET = """
import json, sys
import warp as wp
if sys.argv[1] == "host":
    wp.config.kernel_cache_dir = sys.argv[2]
    wp.config.log_level = wp.LOG_ERROR
    wp.init()
from twin_ext.whatif._kernels import cache_dir, init_warp
init_warp()
print(json.dumps({"cache": wp.config.kernel_cache_dir, "ours": str(cache_dir()), "log_level": wp.config.log_level,
                  "error": wp.LOG_ERROR, "warning": wp.LOG_WARNING}))
"""


def _init_in_subprocess(tmp_path: Path, *args: str) -> dict:
    env = {**os.environ, "TWIN_EXT_CACHE_DIR": str(tmp_path / "twin"), "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-c", _INIT_SNIPPET, *args], capture_output=True, text=True, timeout=120, env=env, cwd=REPO
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_init_warp_configures_warp_only_when_nobody_initialised_it(tmp_path):
    """In a fresh process init_warp puts Warp's kernel cache under TWIN_EXT_CACHE_DIR and quietens it; when the
    host (Kit's omni.warp.core) initialised Warp first, its cache folder and log level are left as they were."""
    fresh = _init_in_subprocess(tmp_path, "fresh")
    assert fresh["cache"].startswith(fresh["ours"])
    assert fresh["log_level"] == fresh["warning"]
    host_cache = tmp_path / "host"
    hosted = _init_in_subprocess(tmp_path, "host", str(host_cache))
    assert hosted["cache"].startswith(str(host_cache)) and not hosted["cache"].startswith(hosted["ours"])
    assert hosted["log_level"] == hosted["error"]
