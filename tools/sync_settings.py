# SPDX-License-Identifier: Apache-2.0
"""Write the ``[settings]`` block of extension.toml from the settings dataclasses (the single source of truth).

    .venv/bin/python tools/sync_settings.py          # rewrite the generated block
    .venv/bin/python tools/sync_settings.py --check  # exit 1 if extension.toml is out of date (tests do this)

Each key gets its default and, as a comment, the first sentence of the field's docstring. The block sits
between the ``# >>> generated settings`` and ``# <<< generated settings`` markers.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import math
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

BEGIN = "# >>> generated settings (tools/sync_settings.py; edit the dataclasses, not this block)"
END = "# <<< generated settings"


def field_docs(cls) -> dict[str, str]:
    """``{field: docstring}`` from the string literal that follows each field in the class body."""
    tree = ast.parse(inspect.getsource(cls))
    body = tree.body[0].body
    docs = {}
    for node, nxt in zip(body, body[1:], strict=False):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            if isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant) and isinstance(nxt.value.value, str):
                docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, float):
        return ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, (tuple, list)):  # list settings (TOML arrays; the dataclass keeps a tuple)
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return repr(value)


def render() -> str:
    from twin_ext.kit.settings import kit_sections

    lines = [BEGIN]
    for section, cls in kit_sections().items():
        lines.append("")
        lines.append(f"# [{section}] {(inspect.getdoc(cls) or '').splitlines()[0]}")
        docs = field_docs(cls)
        for f in dataclasses.fields(cls):
            doc = docs.get(f.name, "")
            first = doc.split(". ")[0].rstrip(".") + "." if doc else ""
            if first:
                lines.append(f"# {f.name}: {first}")
            lines.append(f'exts."twin_ext".{section}.{f.name} = {toml_value(f.default)}')
    lines.append(END)
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check; exit 1 when out of date")
    args = parser.parse_args(argv)
    path = REPO / "extension.toml"
    text = path.read_text()
    if BEGIN not in text or END not in text:
        print(f"{path}: the generated-settings markers are missing", file=sys.stderr)
        return 1
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    new = head + render() + tail
    if args.check:
        if new != text:
            print(
                "extension.toml settings are out of date: run .venv/bin/python tools/sync_settings.py", file=sys.stderr
            )
            return 1
        return 0
    path.write_text(new)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
