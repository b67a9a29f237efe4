# SPDX-License-Identifier: Apache-2.0
"""Big what-if sweeps: a grid of variants (thousands) over one scenario, split into batches of variants.

A sweep is the product of a few parameter lists (``speed_scale``, ``payload_kg``, ``latency``, gain and friction
scales). Each batch of ``batch`` consecutive variants is one task: a pool worker or Ray actor runs it on its
warm what-if engine (`WhatIfEngine.run` on the scenario with that slice of the variants) and returns the
variants' verdicts; the driver merges them back in sweep order. Every variant's verdict depends only on its own
Monte-Carlo worlds (the same seed draws the same initial states for every variant, common random numbers), and
every batch simulates the whole sweep's duration (that of its slowest variant, fixed before splitting), so the
merged verdicts equal those of the whole sweep run in one process — `verdicts_sha256` says so in one figure.

This module is pure (no Warp): the grid, the batches, the merge and the metrics the checks judge.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "DEFAULT_BATCH",
    "GRID_KEYS",
    "batch_count",
    "grid_size",
    "merge_verdicts",
    "sweep_variants",
    "variant_rows",
    "verdicts_digest",
]

GRID_KEYS = {
    "speed_scale": "the command runs this many times as fast (> 0)",
    "payload_kg": "a part of this mass, kg, on payload_link at payload_com (0 = none)",
    "latency": "command latency, s (>= 0)",
    "kp_scale": "drive stiffness multiplier on every joint (>= 0)",
    "kd_scale": "drive damping multiplier on every joint (>= 0)",
    "damping_scale": "viscous damping multiplier on every joint (>= 0)",
    "friction_scale": "Coulomb friction multiplier on every joint (>= 0)",
}
"""The parameters a sweep's ``[sweep.grid]`` may list, in the order they are combined and named."""

DEFAULT_BATCH = 250
"""Variants per task by default: a few seconds of one core for a short Panda scenario with a few samples."""


def grid_size(grid: Mapping[str, Sequence[float]]) -> int:
    """Number of variants of ``grid`` (``{key: [values]}``): the product of the list lengths."""
    return math.prod(len(grid[k]) for k in GRID_KEYS if k in grid) if grid else 0


def batch_count(params: Mapping[str, Any]) -> int:
    """Tasks a sweep job (its ``params``: ``grid``, ``batch``) is split into."""
    return max(1, -(-grid_size(params["grid"]) // int(params["batch"])))


def _fmt(x: float) -> str:
    return f"{x:g}"


def sweep_variants(params: Mapping[str, Any], start: int = 0, stop: int | None = None) -> list:
    """The variants ``start:stop`` of a sweep, in sweep order (the last grid key varies fastest).

    Args:
        params: ``grid`` ``{key of GRID_KEYS: [values]}``, ``payload_link`` (link name), ``payload_com`` ``[3]`` m
            in the link frame.

    Returns:
        ``[Variant]`` named ``"speed_scale=1.2 payload_kg=0.5 ..."`` (the keys the grid lists).
    """
    from ..whatif import Payload, Variant

    grid = params["grid"]
    keys = [k for k in GRID_KEYS if k in grid]
    combos = itertools.islice(itertools.product(*(grid[k] for k in keys)), start, stop)
    link, com = str(params.get("payload_link", "hand")), tuple(float(x) for x in params.get("payload_com", (0, 0, 0)))
    out = []
    for values in combos:
        kw: dict[str, Any] = {}
        for key, value in zip(keys, values, strict=True):
            if key == "payload_kg":
                if value > 0:
                    kw["payloads"] = (Payload(link, float(value), com=com),)
            else:
                kw[key] = float(value)
        name = " ".join(f"{k}={_fmt(v)}" for k, v in zip(keys, values, strict=True)) or "nominal"
        out.append(Variant(name, **kw))
    return out


def merge_verdicts(parts: Sequence[Mapping[str, Any]], batches: int) -> list[dict[str, Any]]:
    """The variant verdicts of a sweep's ``batches`` batches (``[{"index": i, "variants": [VariantVerdict.to_dict()]}]``,
    in any order) in sweep order.

    Raises:
        ValueError: a batch is missing or given twice.
    """
    by_index: dict[int, Mapping[str, Any]] = {}
    for part in parts:
        if part["index"] in by_index:
            raise ValueError(f"sweep batch {part['index']} was returned twice")
        by_index[part["index"]] = part
    missing = sorted(set(range(batches)) - set(by_index))
    if missing:
        raise ValueError(f"sweep batches {missing} of {batches} are missing")
    return [v for i in range(batches) for v in by_index[i]["variants"]]


def verdicts_digest(verdicts: Sequence[Mapping[str, Any]]) -> str:
    """SHA-256 of the verdicts' canonical JSON: equal exactly when every figure of every verdict is equal."""
    return hashlib.sha256(json.dumps(list(verdicts), sort_keys=True, allow_nan=True).encode()).hexdigest()


def _contact_kind(v: Mapping[str, Any], kind: str) -> dict[str, Any] | None:
    summary = (v.get("by_kind") or {}).get(kind) or {}
    if not summary.get("samples"):
        return None
    obstacles = sorted(
        {
            x["obstacle"]
            for x in (*v.get("nominal", ()), *v.get("worst", ()))
            if x.get("kind") == kind and "obstacle" in x
        }
    )
    return {"samples": summary["samples"], "links": list(summary.get("joints", [])), "obstacles": obstacles}


def variant_rows(verdicts: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The per-variant figures a job keeps (`VariantVerdict.to_dict` dicts in): name, status, p_violation; with a
    scene also ``closest`` (distance_m, link, obstacle, time) and ``collision``/``clearance`` (samples, links,
    first obstacles) when those kinds occurred."""
    rows = []
    for v in verdicts:
        row: dict[str, Any] = {"name": v["name"], "status": v["status"], "p_violation": v["p_violation"]}
        closest = v.get("clearance") or {}
        if closest:
            row["closest"] = {k: closest.get(k) for k in ("distance_m", "link", "obstacle", "time")}
            for kind in ("collision", "clearance"):
                found = _contact_kind(v, kind)
                if found:
                    row[kind] = found
        rows.append(row)
    return rows
