# SPDX-License-Identifier: Apache-2.0
"""The house rules, checked on the source: no import cycles, one-way layers, a pure core, public names only.

The import graph is built from the source with ``ast`` and counts every import statement: module level,
inside functions, under ``TYPE_CHECKING``, and the names a package exports lazily (its ``_EXPORTS``
table). Layers and rules are documented in docs/design.md.
"""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "twin_ext"

# Lowest layer first. A package may import packages of lower layers only; packages in one layer are peers and
# do not import each other. (docs/design.md has the picture.)
LAYERS = [
    ["twin_ext"],  # version, TwinExtError, lazy_exports: imports nothing of its own
    ["twin_ext._paths"],
    ["twin_ext.config", "twin_ext.warp_runtime"],  # settings; Warp initialised once per process
    ["twin_ext.robot", "twin_ext.telemetry", "twin_ext.collision"],
    ["twin_ext.estimation", "twin_ext.ros2"],
    ["twin_ext.whatif", "twin_ext.stage", "twin_ext.health"],
    ["twin_ext.sinks", "twin_ext.history"],
    ["twin_ext.control"],  # pre-flight, leases, acks, audit of commands: uses whatif, below live
    ["twin_ext.live", "twin_ext.emulator"],
    ["twin_ext.fleet"],  # many robots per process: composes live's per-robot parts
    ["twin_ext.runs"],
    ["twin_ext.batch"],
    ["twin_ext.bench"],
    ["twin_ext.cli"],
    ["twin_ext.__main__"],
    ["twin_ext.kit"],
]
ROOT_MODULES = {"__init__.py", "__main__.py", "cli.py", "_paths.py"}


def _module_name(path: Path) -> tuple[str, bool]:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    is_package = parts[-1] == "__init__"
    if is_package:
        parts = parts[:-1]
    return ".".join(parts), is_package


def _modules() -> dict[str, tuple[Path, bool]]:
    return {name: (path, is_pkg) for path in PACKAGE.rglob("*.py") for name, is_pkg in [_module_name(path)]}


MODULES = _modules()


def _resolve(importer: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = importer.split(".") if is_package else importer.split(".")[:-1]
    if node.level > 1:
        base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _owner(dotted: str) -> str | None:
    """The module of ours that ``dotted`` (a module or a name in one) lives in."""
    while dotted and dotted not in MODULES:
        dotted = dotted.rpartition(".")[0]
    return dotted or None


def _imports(name: str) -> list[tuple[str, str, list[str], int]]:
    """Every import of ``name``: ``(target module, how it was written, names, line)`` for twin_ext targets and
    top-level names of third-party modules."""
    path, is_package = MODULES[name]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.append((alias.name, alias.name, [], node.lineno))
        elif isinstance(node, ast.ImportFrom):
            module = _resolve(name, is_package, node)
            for alias in node.names:
                found.append((f"{module}.{alias.name}", module, [alias.name], node.lineno))
        elif isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "_EXPORTS" for t in node.targets):
            if isinstance(node.value, ast.Dict):  # lazy exports: {"Name": "._module"}
                for key, value in zip(node.value.keys, node.value.values, strict=True):
                    target = f"{name}.{value.value.lstrip('.')}"
                    found.append((f"{target}.{key.value}", target, [key.value], node.lineno))
    return found


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for name in MODULES:
        for target, _, _, _ in _imports(name):
            owner = _owner(target) if target.startswith("twin_ext") else None
            if owner and owner != name:
                graph[name].add(owner)
    return graph


def _package(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else parts[0]


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(set(MODULES) | set(graph)):
        if v not in index:
            visit(v)
    return found


def test_the_import_graph_has_no_cycles_counting_function_local_imports():
    """No module reaches itself through imports, whether they sit at module level, inside functions or under
    TYPE_CHECKING (a hidden cycle breaks as soon as someone moves an import to the top)."""
    graph = _graph()
    assert sum(len(v) for v in graph.values()) > 200  # the graph really was built from the source
    assert _cycles(graph) == []


def test_a_cycle_is_found_when_there_is_one():
    """The cycle finder itself: two modules importing each other are reported (guards the test above)."""
    assert _cycles({"twin_ext.a": {"twin_ext.b"}, "twin_ext.b": {"twin_ext.a"}} | {m: set() for m in MODULES}) == [
        ["twin_ext.a", "twin_ext.b"]
    ]


def test_the_core_never_imports_the_kit_skin_or_kit_only_modules():
    """Nothing outside twin_ext/kit/ imports twin_ext.kit, omni.*, carb or isaacsim: the core runs in plain Python."""
    bad = []
    for name in MODULES:
        if name.startswith("twin_ext.kit"):
            continue
        for target, written, _, line in _imports(name):
            if target.startswith("twin_ext.kit") or target.split(".")[0] in ("omni", "carb", "isaacsim"):
                bad.append(f"{MODULES[name][0].relative_to(REPO)}:{line} imports {written or target}")
    assert bad == []


def test_packages_import_only_from_lower_layers():
    """Data flows one way: a package imports only packages of lower layers (LAYERS), never a peer or a higher one."""
    layer_of = {pkg: i for i, layer in enumerate(LAYERS) for pkg in layer}
    assert set(map(_package, MODULES)) <= set(layer_of), "a package is missing from LAYERS"
    bad = []
    for module, targets in _graph().items():
        for target in targets:
            a, b = _package(module), _package(target)
            if a != b and layer_of[b] >= layer_of[a]:
                bad.append(f"{module} -> {target}")
    assert bad == []


def test_other_packages_are_used_through_their_public_names_only():
    """Across packages, imports name the package and a name in its __all__ (``from ..telemetry import MqttLink``),
    never one of its private modules; inside a package, modules import their siblings, never their own
    package (so a package's lazy table is the only way in)."""
    bad = []
    for name in MODULES:
        mine = _package(name)
        for _target, written, names, line in _imports(name):
            if not written.startswith("twin_ext") or not names or written == "twin_ext":
                continue
            where = f"{MODULES[name][0].relative_to(REPO)}:{line}"
            theirs = _package(written)
            if theirs == mine:
                entry_point = name.endswith(".__main__") or ".tests" in name  # may use their package's API
                submodule = all(f"{written}.{n}" in MODULES for n in names)  # `from . import _kernels`
                if written == mine and name != mine and not (MODULES[name][1] or entry_point or submodule):
                    bad.append(f"{where}: imports its own package {written} (import the sibling module)")
                continue
            if theirs == "twin_ext._paths":
                continue
            if written != theirs:
                bad.append(f"{where}: imports the private module {written}")
                continue
            public = getattr(importlib.import_module(theirs), "__all__", ())
            bad += [f"{where}: {theirs}.{n} is not public" for n in names if n not in public]
    assert bad == []


def test_tests_that_import_private_modules_say_so_in_their_names():
    """A test module that imports ``twin_ext.<package>._module`` tests internals and says so in its file name."""
    bad = []
    for path in sorted((REPO / "tests").glob("test_*.py")):
        if "internals" in path.stem or path.stem.startswith("test_kit"):
            continue  # Kit-skin tests import the skin's modules by design (the skin has no public API)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            modules = []
            if isinstance(node, ast.ImportFrom) and node.module:
                modules = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                modules = [a.name for a in node.names]
            for module in modules:
                parts = module.split(".")
                if parts[0] == "twin_ext" and any(p.startswith("_") and not p.startswith("__") for p in parts[1:3]):
                    if module.startswith("twin_ext._paths"):
                        continue
                    bad.append(f"{path.name}:{node.lineno} imports {module}")
    assert bad == []


def test_the_package_root_holds_only_the_entry_points_and_the_paths_module():
    """twin_ext/ itself keeps __init__, __main__, cli and _paths; everything else lives in a package of its layer."""
    assert {p.name for p in PACKAGE.glob("*.py")} == ROOT_MODULES


@pytest.mark.parametrize("package", sorted({_package(m) for m in MODULES if MODULES[m][1] and m != "twin_ext"}))
def test_every_package_lists_public_names_that_resolve(package):
    """Each package's __init__ has __all__, and every name in it can be imported from the package."""
    if package == "twin_ext.kit":
        pytest.skip("the Kit skin exports its extension class only inside Kit")
    module = importlib.import_module(package)
    assert module.__doc__, f"{package} has no docstring"
    public = getattr(module, "__all__", None)
    assert public, f"{package} has no __all__"
    missing = [name for name in public if not hasattr(module, name)]
    assert missing == []


def test_help_loads_no_heavy_dependency():
    """``python -m twin_ext --help`` imports none of warp, pxr, mujoco, paho, mcap, amqtt or matplotlib."""
    code = (
        "import sys, runpy; sys.argv = ['twin_ext', '--help']\n"
        "try:\n    runpy.run_module('twin_ext', run_name='__main__')\nexcept SystemExit:\n    pass\n"
        "heavy = ('warp', 'pxr', 'mujoco', 'paho', 'mcap', 'amqtt', 'matplotlib')\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & set(heavy)))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"
