# SPDX-License-Identifier: Apache-2.0
"""Verdicts: per-variant pass / fail / unknown from the in-kernel per-world statistics.

Per world the kernel already reduced its whole time history to a few numbers (first violation steps,
max tracking error, min margins), so a verdict is plain NumPy over ``[nsample, ndof]`` arrays.

* ``unknown``: the base state is not trustworthy (the twin's snapshot is stale or lost) — the rollouts
  are still run and reported, but they never *pass*.
* ``fail``: the observed fraction of samples with any violation (position limit, speed limit, effort
  saturation, numerical divergence; with a scene: ``collision`` -- a link at or below 0 m from an obstacle or
  another link -- and ``clearance`` -- closer than ``min_clearance_m``) exceeds ``max_violation_probability``
  (default 0: any violation).
* ``pass``: otherwise.

P(violation) comes with a Wilson score interval at ``confidence`` (it behaves well for 0 or n successes,
unlike the normal approximation).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any

import numpy as np

__all__ = [
    "variant_verdicts",
    "KindSummary",
    "VariantVerdict",
    "WhatIfReport",
    "Violation",
    "wilson_interval",
    "STATUS_PASS",
    "STATUS_FAIL",
    "STATUS_UNKNOWN",
]

STATUS_PASS = "pass"
STATUS_FAIL = "fail"
STATUS_UNKNOWN = "unknown"
_KINDS = (
    ("position", "first_position_violation"),
    ("velocity", "first_velocity_violation"),
    ("effort", "first_effort_saturation"),
)


def wilson_interval(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval ``(low, high)`` for ``k`` successes in ``n`` trials at ``confidence``."""
    if n <= 0:
        return 0.0, 1.0
    z = NormalDist().inv_cdf(0.5 + confidence / 2.0)
    p = k / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class Violation:
    """The first violation of one kind in one sample: ``kind`` (position|velocity|effort|diverged|collision|
    clearance), ``joint`` (for collision and clearance: the link), ``time`` s after the start; for collision and
    clearance also the ``obstacle`` (prim path of the scene collider or of the other link) and the ``distance`` m
    at that time."""

    kind: str
    joint: str
    time: float
    obstacle: str = ""
    distance: float | None = None


@dataclass(frozen=True)
class KindSummary:
    """One kind of violation over a variant's samples: ``samples`` affected, the ``joints`` involved (most
    affected first), and the earliest ``first_time`` (s, None if never)."""

    samples: int
    joints: tuple[str, ...]
    first_time: float | None


@dataclass(frozen=True)
class VariantVerdict:
    """The answer for one variant over its Monte-Carlo samples.

    Attributes:
        name: variant name. status: "pass" | "fail" | "unknown". reason: one line explaining the status.
        samples: number of samples (worlds); sample 0 starts from the mean state.
        violations: samples with any violation.
        p_violation: ``violations / samples``. ci: Wilson interval on it at `confidence`.
        by_kind: per kind (position, velocity, effort, diverged): a `KindSummary`.
        time_to_violation: s, earliest violation over all samples (None: none).
        nominal: first violations of sample 0 (the mean initial state), earliest first.
        worst_sample: index of the sample with the earliest violation (or the smallest position margin).
        worst: first violations of the worst sample, earliest first.
        max_tracking_error: ``{joint: rad|m}``, max over samples.
        min_position_margin, min_velocity_margin, min_effort_margin: ``{joint: value}``, min over samples
            (negative = beyond the limit).
        command_outside_limits: joints whose command targets lie outside their limits (flagged, allowed).
        warnings: other remarks (e.g. the command itself exceeds a speed limit).
    """

    name: str
    status: str
    reason: str
    samples: int
    violations: int
    p_violation: float
    ci: tuple[float, float]
    confidence: float
    by_kind: dict[str, KindSummary]
    time_to_violation: float | None
    nominal: tuple[Violation, ...]
    worst_sample: int
    worst: tuple[Violation, ...]
    max_tracking_error: dict[str, float]
    min_position_margin: dict[str, float]
    min_velocity_margin: dict[str, float]
    min_effort_margin: dict[str, float]
    command_outside_limits: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    clearance: dict[str, Any] = field(default_factory=dict)
    """With a scene: the smallest distance over the samples -- ``{"distance_m", "link", "obstacle", "time",
    "sample", "excess_m"}`` (``excess_m``: how much smaller than the truth the link's sphere set may make it)."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (non-finite numbers become None)."""

        def clean(x):
            if isinstance(x, float):
                return x if math.isfinite(x) else None
            if isinstance(x, dict):
                return {k: clean(v) for k, v in x.items()}
            if isinstance(x, (list, tuple)):
                return [clean(v) for v in x]
            if isinstance(x, Violation):
                out = {"kind": x.kind, "joint": x.joint, "time": clean(x.time)}
                if x.obstacle:
                    out.update(link=x.joint, obstacle=x.obstacle, distance=clean(x.distance))
                return out
            if isinstance(x, KindSummary):
                return {"samples": x.samples, "joints": list(x.joints), "first_time": clean(x.first_time)}
            return x

        return {
            "name": self.name,
            "status": self.status,
            "reason": self.reason,
            "samples": self.samples,
            "violations": self.violations,
            "p_violation": clean(self.p_violation),
            "ci": clean(list(self.ci)),
            "confidence": self.confidence,
            "by_kind": clean(dict(self.by_kind)),
            "time_to_violation": clean(self.time_to_violation),
            "nominal": clean(list(self.nominal)),
            "worst_sample": self.worst_sample,
            "worst": clean(list(self.worst)),
            "max_tracking_error": clean(self.max_tracking_error),
            "min_position_margin": clean(self.min_position_margin),
            "min_velocity_margin": clean(self.min_velocity_margin),
            "min_effort_margin": clean(self.min_effort_margin),
            "command_outside_limits": list(self.command_outside_limits),
            "warnings": list(self.warnings),
            "clearance": clean(dict(self.clearance)),
        }


def _sample_violations(rollout, w: int, dof_names: Sequence[str], contacts=None) -> list[Violation]:
    out = list(contacts[w]) if contacts is not None else []
    for kind, attr in _KINDS:
        t = getattr(rollout, attr)[w]
        if np.any(~np.isnan(t)):
            j = int(np.nanargmin(t))
            out.append(Violation(kind, dof_names[j], float(t[j])))
    if not math.isnan(rollout.diverged_at[w]):
        out.append(Violation("diverged", "", float(rollout.diverged_at[w])))
    return sorted(out, key=lambda v: v.time)


def variant_verdicts(
    rollout,
    groups: np.ndarray,
    *,
    names: Sequence[str],
    trusted: bool,
    untrusted_reason: str,
    confidence: float,
    max_violation_probability: float,
    command_outside_limits: Sequence[Sequence[str]],
    warnings: Sequence[Sequence[str]],
    clearance=None,
) -> list[VariantVerdict]:
    """One `VariantVerdict` per row of ``groups`` (``[nvariant, nsample]`` world indices, sample 0 first), reduced
    for all variants at once (the per-world statistics already come reduced over time from the kernel).
    ``clearance``: the rollout's `Clearance` (adds the collision and clearance kinds), or None."""
    joints = rollout.dof_names
    nvar, n = groups.shape
    first_world = rollout.first_violation
    contact_kinds, contacts, closest = {}, None, None
    if clearance is not None:
        contact_kinds, contacts, closest = _contact_stats(clearance)
        for per_world in contact_kinds.values():
            t = per_world["time"]
            first_world = np.where(np.isnan(first_world) | (t < first_world), t, first_world)
    first = first_world[groups]  # [nvar, n] s, NaN = none
    div_at = rollout.diverged_at[groups]
    diverged = ~np.isnan(div_at)
    violated = ~np.isnan(first) | diverged
    k = violated.sum(axis=1)
    times = np.where(np.isnan(first), np.inf, first)
    times = np.where(diverged, np.minimum(times, div_at), times)
    worst_by_time = np.argmin(times, axis=1)
    worst_by_margin = np.argmin(rollout.min_position_margin[groups].min(axis=2), axis=1)
    kind_stats = {}
    for kind, attr in _KINDS:
        t = getattr(rollout, attr)[groups]  # [nvar, n, ndof]
        hit = ~np.isnan(t)
        with np.errstate(all="ignore"):
            earliest = np.nanmin(np.where(hit, t, np.inf).reshape(nvar, -1), axis=1)
        kind_stats[kind] = (hit.any(axis=2).sum(axis=1), hit.sum(axis=1), earliest)
    track = rollout.max_tracking_error[groups].max(axis=1)
    margins = {
        attr: getattr(rollout, attr)[groups].min(axis=1)
        for attr in ("min_position_margin", "min_velocity_margin", "min_effort_margin")
    }
    out = []
    for v in range(nvar):
        by_kind: dict[str, KindSummary] = {}
        for kind, (samples, per_joint, earliest) in kind_stats.items():
            if not samples[v]:
                by_kind[kind] = KindSummary(0, (), None)
                continue
            order = [j for j in np.argsort(-per_joint[v], kind="stable") if per_joint[v, j] > 0]
            by_kind[kind] = KindSummary(int(samples[v]), tuple(joints[j] for j in order), float(earliest[v]))
        ndiv = int(diverged[v].sum())
        by_kind["diverged"] = KindSummary(ndiv, (), float(np.nanmin(div_at[v])) if ndiv else None)
        for kind, per_world in contact_kinds.items():
            t = per_world["time"][groups[v]]
            hit = ~np.isnan(t)
            if not hit.any():
                by_kind[kind] = KindSummary(0, (), None)
                continue
            names_hit = [clearance.link_names[k] for k in per_world["link"][groups[v]][hit]]
            order = sorted(set(names_hit), key=lambda x: (-names_hit.count(x), x))
            by_kind[kind] = KindSummary(int(hit.sum()), tuple(order), float(np.nanmin(t)))
        kv = int(k[v])
        p = kv / n
        worst_local = int(worst_by_time[v]) if kv else int(worst_by_margin[v])
        ttv = float(times[v, worst_local]) if kv else None
        if not trusted:
            status, reason = STATUS_UNKNOWN, untrusted_reason
        elif ndiv:
            status, reason = STATUS_FAIL, f"{ndiv} of {n} samples diverged numerically (check dt and gains)"
        elif p > max_violation_probability:
            kinds = "; ".join(
                f"{kind}: {', '.join(ks.joints) or '-'} in {ks.samples}" for kind, ks in by_kind.items() if ks.samples
            )
            status, reason = STATUS_FAIL, f"{kv} of {n} samples violate a limit ({kinds}); first at {ttv:.3f} s"
        else:
            status = STATUS_PASS
            reason = (
                f"no limit violated in {n} samples"
                if kv == 0
                else (
                    f"{kv} of {n} samples violate a limit, within max_violation_probability {max_violation_probability:g}"
                )
            )
        w = groups[v]
        out.append(
            VariantVerdict(
                name=names[v],
                status=status,
                reason=reason,
                samples=n,
                violations=kv,
                p_violation=p,
                ci=wilson_interval(kv, n, confidence),
                confidence=confidence,
                by_kind=by_kind,
                time_to_violation=ttv,
                nominal=tuple(_sample_violations(rollout, int(w[0]), joints, contacts)) if violated[v, 0] else (),
                worst_sample=worst_local,
                worst=tuple(_sample_violations(rollout, int(w[worst_local]), joints, contacts)) if kv else (),
                max_tracking_error=dict(zip(joints, track[v].tolist(), strict=False)),
                min_position_margin=dict(zip(joints, margins["min_position_margin"][v].tolist(), strict=False)),
                min_velocity_margin=dict(zip(joints, margins["min_velocity_margin"][v].tolist(), strict=False)),
                min_effort_margin=dict(zip(joints, margins["min_effort_margin"][v].tolist(), strict=False)),
                command_outside_limits=tuple(command_outside_limits[v]),
                warnings=tuple(warnings[v]),
                clearance=_closest_of(closest, clearance, w) if clearance is not None else {},
            )
        )
    return out


def _contact_stats(clearance):
    """Per world: the first collision (<= 0 m) and clearance (< min_clearance) crossings, each sample's contact
    violations, and the closest approach over the run."""
    kinds = {
        "collision": clearance.first_below(0.0),
        "clearance": clearance.first_below(float(np.nextafter(clearance.min_clearance, -np.inf))),
    }
    nworld = clearance.distance.shape[0]
    contacts: list[list[Violation]] = [[] for _ in range(nworld)]
    for kind, per_world in kinds.items():
        for w in np.flatnonzero(~np.isnan(per_world["time"])):
            contacts[w].append(
                Violation(
                    kind,
                    clearance.link_names[per_world["link"][w]],
                    float(per_world["time"][w]),
                    clearance.obstacles[per_world["obstacle"][w]] if per_world["obstacle"][w] >= 0 else "",
                    float(per_world["distance"][w]),
                )
            )
    return kinds, contacts, clearance.minimum()


def _closest_of(closest, clearance, worlds) -> dict[str, Any]:
    """The closest approach among ``worlds`` (one variant's samples) as the `VariantVerdict.clearance` dict."""
    d = closest["distance"][worlds]
    if not len(d) or np.all(np.isnan(d)):
        return {}
    i = int(np.nanargmin(d))
    w = int(worlds[i])
    link, obstacle = int(closest["link"][w]), int(closest["obstacle"][w])
    return {
        "distance_m": float(d[i]),
        "link": clearance.link_names[link],
        "obstacle": clearance.obstacles[obstacle] if obstacle >= 0 else "",
        "time": float(closest["time"][w]),
        "sample": i,
        "excess_m": float(clearance.excess[link]),
        "min_clearance_m": float(clearance.min_clearance),
    }


@dataclass(frozen=True, eq=False)
class WhatIfReport:
    """All variants of one scenario run.

    Attributes:
        scenario: scenario name. robot: robot name.
        base_health: health of the base state ("ok", "stale", "lost", or "given").
        dt: s. steps: steps simulated. horizon: s (``steps * dt``).
        variants: one `VariantVerdict` per variant, in scenario order.
        compute_seconds: kernel wall time, s. total_seconds: request wall time including set-up, s.
        rollout: the underlying `Rollout` (recorded trajectories of every world), or None.
        world_variant: ``[nworld]`` variant index of each world of `rollout`.
        prismatic: names of the prismatic joints (their quantities are in m, m/s, N).
    """

    scenario: str
    robot: str
    base_health: str
    dt: float
    steps: int
    variants: tuple[VariantVerdict, ...]
    compute_seconds: float
    total_seconds: float
    rollout: Any = field(default=None, repr=False)
    world_variant: np.ndarray | None = field(default=None, repr=False)
    prismatic: tuple[str, ...] = ()
    clearance: Any = field(default=None, repr=False)
    """With a scene: the `Clearance` of every recorded state (distances per world, record and link), else None."""

    @property
    def status(self) -> str:
        """Overall: "unknown" if any variant is unknown, else "fail" if any fails, else "pass"."""
        statuses = {v.status for v in self.variants}
        if STATUS_UNKNOWN in statuses:
            return STATUS_UNKNOWN
        return STATUS_FAIL if STATUS_FAIL in statuses else STATUS_PASS

    @property
    def horizon(self) -> float:
        return self.steps * self.dt

    def variant(self, name: str) -> VariantVerdict:
        """The verdict of the variant named ``name``."""
        for v in self.variants:
            if v.name == name:
                return v
        raise KeyError(f"no variant {name!r}; variants are {[v.name for v in self.variants]}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (the format of the twin's ``whatif/result`` message)."""
        return {
            "schema": "twin_ext.whatif.report/1",
            "scenario": self.scenario,
            "robot": self.robot,
            "status": self.status,
            "base_health": self.base_health,
            "dt": self.dt,
            "steps": self.steps,
            "horizon": self.horizon,
            "compute_seconds": self.compute_seconds,
            "total_seconds": self.total_seconds,
            "variants": [v.to_dict() for v in self.variants],
        }

    def to_json(self, **kwargs) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    def to_svg(self) -> str:
        """A self-contained SVG chart: per variant, P(violation) as a bar with its confidence interval, coloured by
        status, and the time to the first violation on the horizon (no plotting library needed)."""
        from html import escape

        colours = {STATUS_PASS: "#2e7d32", STATUS_FAIL: "#c62828", STATUS_UNKNOWN: "#757575"}
        name_w, bar_w, time_w, row_h, top = 240, 260, 260, 26, 46
        width = name_w + bar_w + time_w + 40
        height = top + row_h * len(self.variants) + 30
        x_bar, x_time = name_w, name_w + bar_w + 30
        out = [
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
            'font-size="12">',
            f'<text x="8" y="18" font-size="14" font-weight="bold">{escape(self.scenario)} on {escape(self.robot)}: '
            f"{self.status.upper()}</text>",
            f'<text x="{x_bar}" y="{top - 8}">P(violation), {self.variants[0].confidence * 100 if self.variants else 95:g}% CI'
            "</text>",
            f'<text x="{x_time}" y="{top - 8}">first violation (0 .. {self.horizon:.2f} s)</text>',
        ]
        for i, v in enumerate(self.variants):
            y = top + i * row_h
            colour = colours.get(v.status, "#757575")
            out.append(f'<text x="8" y="{y + 16}">{escape(v.name[:36])}</text>')
            out.append(f'<rect x="{x_bar}" y="{y + 5}" width="{bar_w}" height="14" fill="#eeeeee"/>')
            out.append(
                f'<rect x="{x_bar}" y="{y + 5}" width="{bar_w * v.p_violation:.1f}" height="14" fill="{colour}"/>'
            )
            lo, hi = (x_bar + bar_w * c for c in v.ci)
            out.append(
                f'<line x1="{lo:.1f}" y1="{y + 12}" x2="{hi:.1f}" y2="{y + 12}" stroke="#000" stroke-width="1.5"/>'
            )
            out.append(f'<text x="{x_bar + bar_w + 4}" y="{y + 16}" font-size="10">{v.status}</text>')
            out.append(f'<line x1="{x_time}" y1="{y + 12}" x2="{x_time + time_w}" y2="{y + 12}" stroke="#bbbbbb"/>')
            if v.time_to_violation is not None and self.horizon > 0:
                xt = x_time + time_w * min(1.0, v.time_to_violation / self.horizon)
                label = f"{v.worst[0].kind} {v.worst[0].joint} {v.time_to_violation:.2f} s" if v.worst else ""
                out.append(f'<circle cx="{xt:.1f}" cy="{y + 12}" r="5" fill="{colour}"/>')
                out.append(
                    f'<text x="{min(xt + 8, x_time + time_w - 100):.1f}" y="{y + 9}" font-size="10">'
                    f"{escape(label)}</text>"
                )
        out.append("</svg>")
        return "\n".join(out) + "\n"

    def summary(self) -> str:
        """A readable multi-line summary: one line per variant, then what went wrong where."""
        width = min(40, max([len("variant")] + [len(v.name) for v in self.variants])) + 2
        lines = [
            f"what-if {self.scenario!r} on {self.robot}: {self.status.upper()}  (base state {self.base_health}; "
            f"{self.horizon:.2f} s at dt {self.dt * 1e3:g} ms; {sum(v.samples for v in self.variants)} rollouts in "
            f"{self.total_seconds * 1e3:.0f} ms)",
        ]
        unknown = [v for v in self.variants if v.status == STATUS_UNKNOWN]
        if unknown:
            lines.append(f"  {unknown[0].reason} (the rollouts are still reported)")
        conf = f"{self.variants[0].confidence * 100:g}% CI" if self.variants else "CI"
        lines.append(
            f"  {'variant':<{width}}{'status':<9}{'P(violation)':>16}  {conf:<15}first violation (worst sample)"
        )
        for v in self.variants:
            ci = f"[{v.ci[0]:.2f}, {v.ci[1]:.2f}]"
            first = "-"
            if v.worst:
                x = v.worst[0]
                first = f"{x.kind} {x.joint} at {x.time:.3f} s" if x.joint else f"{x.kind} at {x.time:.3f} s"
            status = v.status if v.status != STATUS_UNKNOWN else ("unknown*" if v.violations else "unknown")
            name = v.name if len(v.name) <= width - 2 else v.name[: width - 3] + "~"
            count = f"({v.violations}/{v.samples})"
            lines.append(f"  {name:<{width}}{status:<9}{v.p_violation:>6.2f} {count:>9}  {ci:<15}{first}")
        if any(v.status == STATUS_UNKNOWN and v.violations for v in self.variants):
            lines.append("  * the rollouts violate limits, but from an untrusted state the verdict stays unknown")
        units = {"position": ("rad", "m"), "velocity": ("rad/s", "m/s"), "effort": ("N·m", "N")}
        for v in self.variants:
            extra = []
            if v.violations:
                extra.append(
                    f"    {v.violations} of {v.samples} samples violate a limit; first at {v.time_to_violation:.3f} s"
                )
                margins = {
                    "position": v.min_position_margin,
                    "velocity": v.min_velocity_margin,
                    "effort": v.min_effort_margin,
                }
                for kind, ks in v.by_kind.items():
                    if not ks.samples:
                        continue
                    if kind == "diverged":
                        extra.append(f"    diverged numerically in {ks.samples} samples (check dt and gains)")
                        continue
                    if kind in ("collision", "clearance"):
                        x = next((c for c in v.worst if c.kind == kind), None)
                        where = f": {x.joint} vs {x.obstacle} at {x.distance * 1e3:.1f} mm" if x else ""
                        extra.append(f"    {kind} in {ks.samples} samples, from {ks.first_time:.3f} s{where}")
                        continue
                    worst = ", ".join(
                        f"{j} by {-margins[kind][j]:.4g} {units[kind][j in self.prismatic]}" for j in ks.joints[:4]
                    )
                    extra.append(
                        f"    {kind} limit exceeded in {ks.samples} samples, from {ks.first_time:.3f} s: {worst}"
                    )
                joint, err = max(v.max_tracking_error.items(), key=lambda kv: kv[1])
                extra.append(
                    f"    largest tracking error: {joint} {err:.4g} {units['position'][joint in self.prismatic]}"
                )
            if v.clearance:
                c = v.clearance
                extra.append(
                    f"    closest approach {c['distance_m'] * 1e3:.1f} mm: {c['link']} to {c['obstacle'] or '-'} at "
                    f"{c['time']:.3f} s (spheres overstate {c['link']} by <= {c['excess_m'] * 1e3:.0f} mm)"
                )
            if v.command_outside_limits:
                extra.append(f"    the command goes outside the limits of: {', '.join(v.command_outside_limits)}")
            for w in v.warnings:
                extra.append(f"    warning: {w}")
            if extra:
                lines.append(f"  {v.name}:")
                lines.extend(extra)
        return "\n".join(lines)
