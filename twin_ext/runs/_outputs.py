# SPDX-License-Identifier: Apache-2.0
"""What a twin run leaves behind: the mirrored motion (.usda), the what-if result (.json) and an HTML report.

Shared by ``make demo`` (live) and ``python -m twin_ext replay`` (a recording, as a batch job).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["write_run_outputs", "whatif_rows"]


def whatif_rows(report: Any) -> list[dict[str, str]]:
    """One table row per variant of a `WhatIfReport`."""
    return [
        {
            "variant": v.name,
            "status": v.status,
            "P(violation)": f"{v.p_violation:.2f}",
            "95% CI": f"[{v.ci[0]:.2f}, {v.ci[1]:.2f}]",
            "time to violation": "-" if v.time_to_violation is None else f"{v.time_to_violation:.3f} s",
            "first violation": ", ".join(
                f"{x.kind} {x.joint}" + (f" vs {x.obstacle}" if x.obstacle else "") + f" @ {x.time:.3f} s"
                for x in v.worst[:2]
            )
            or "-",
            "clearance": _clearance_text(v.clearance),
        }
        for v in report.variants
    ]


def _clearance_text(c: dict) -> str:
    """``"12.3 mm hand to /Cell/Fixture"`` for a variant's closest approach ("-" without a scene)."""
    if not c:
        return "-"
    return f"{c['distance_m'] * 1e3:.1f} mm {c['link']} to {c['obstacle'] or '-'}"


def _whatif_scene_decorator(report: Any):
    """With a what-if scene: reference it beside the robot and mark the first predicted contact (the first
    colliding variant's worst sample) with a red sphere."""
    clearance = getattr(report, "clearance", None)
    if clearance is None or not clearance.scene:
        return None

    def decorate(stage, fps: float) -> None:
        from ..stage import mark_contact, reference_scene

        reference_scene(stage, clearance.scene, prim_path="/World/Scene")
        for v in report.variants:
            contact = v.clearance.get("first_contact")
            if contact:
                label = f"{v.name}: {contact['link']} vs {contact['obstacle']} at {contact['time']:.3f} s (what-if)"
                # always visible: the what-if's clock starts when it was asked, not with this recording
                mark_contact(stage, contact["point"], label=label)
                break

    return decorate


def write_run_outputs(
    out: Path,
    *,
    title: str,
    robot: Any,
    trace: Any,
    mirror: Any,
    status: Any = None,
    display_rate_hz: float = 60.0,
    truth_q: Any = None,
    whatif: Any = None,
    whatif_note: str = "",
    summary_rows: list[tuple[str, str]] | tuple = (),
    health: Any = None,
) -> list[str]:
    """Write ``twin_motion.usda``, ``whatif.json`` and ``report.html`` (+ PNGs) into ``out``.

    Args:
        trace: the run's `TraceSink`; mirror: its `MirrorSink` (animation kept).
        status: the final `TwinStatus` (telemetry and estimator rows), or None.
        truth_q: ``[T, ndof]`` plant positions at the trace's ticks (rad|m), or None without ground truth.
        whatif: a `WhatIfReport`, an exception (the request failed) or None.
        health: the run's `HealthService` (its events, identified model and figures go into the report and
            whatif.json), or None.

    Returns:
        Lines describing each output, for the console.
    """
    import numpy as np

    from ._fidelity import error_stats
    from ._health_report import health_outputs
    from ._report import ReportData, write_report

    lines: list[str] = []
    rows = list(summary_rows)
    arrays = trace.arrays()
    figures: list[tuple[str, Any]] = []
    tables: list[dict[str, Any]] = []
    health_doc = None
    if health is not None and health.monitor.samples:
        t0 = int(arrays["t_ns"][0]) if len(arrays["t_ns"]) else 0
        figures, tables, health_doc = health_outputs(health, t0)
        events = health_doc["events"]
        lines.append(
            f"robot health:     {health_doc['state']}, {len(health.monitor.events)} event(s)"
            + (f": {', '.join(sorted({e.kind for e in health.monitor.events}))}" if health.monitor.events else "")
        )
        rows.append(("robot health", f"{health_doc['state']}; events: {len(events)}"))
    motion = mirror.save_animation(out / "twin_motion.usda", decorate=_whatif_scene_decorator(whatif))
    if motion is not None:
        lines.append(f"mirrored motion:  {motion}  ({mirror.frames} frames; open with usdview or Isaac Sim)")
    whatifs = []
    if whatif is not None and not isinstance(whatif, Exception):
        doc = whatif.to_dict()
        if health_doc is not None:
            doc["health"] = health_doc  # the robot's health beside the verdicts: events and identified model
        (out / "whatif.json").write_text(json.dumps(doc, indent=2))
        whatifs.append(
            {
                "title": f"{whatif.scenario}{' (' + whatif_note + ')' if whatif_note else ''}",
                "rows": whatif_rows(whatif),
                "text": whatif.summary(),
            }
        )
        lines.append(f"what-if:          {out / 'whatif.json'}  (overall {whatif.status})")
    elif isinstance(whatif, Exception):
        whatifs.append({"title": "what-if", "text": f"failed: {whatif}"})
    if status is not None:
        rows += [
            ("telemetry accepted", str(status.accepted)),
            ("rejected by reason", json.dumps(dict(status.rejected_by_reason))),
            (
                "clock offset / drift / latency",
                f"{status.clock_offset_ms:.2f} ms / {status.clock_drift_ppm:.1f} ppm / {status.latency_ms:.2f} ms",
            ),
            (
                "estimator fused late / too late / gated",
                f"{status.fused_late} / {status.estimator_late} / {status.estimator_gated}",
            ),
            ("display rate", f"{status.display_rate_hz:.1f} Hz (target {display_rate_hz:g} Hz)"),
            ("errors", "; ".join(status.errors) or "none"),
        ]
    t_ns = arrays["t_ns"]
    if len(t_ns) > 1:
        gaps = np.diff(t_ns) * 1e-6
        worst = int(np.argmax(gaps))
        rows.append(
            (
                "longest display gap",
                f"{gaps[worst]:.1f} ms at {(t_ns[worst] - t_ns[0]) * 1e-9:.2f} s (median {np.median(gaps):.1f} ms)",
            )
        )
    if truth_q is not None and len(t_ns) > 0:
        scored = (t_ns - t_ns[0]) > 2e9  # skip the clock-sync and filter warm-up
        twin_err = error_stats(arrays["q"][scored] - truth_q[scored])
        hold_err = error_stats(arrays["measured_q"][scored] - truth_q[scored])
        rows += [
            ("twin error vs plant (RMS / p99)", f"{twin_err['rms'] * 1e3:.3f} / {twin_err['p99'] * 1e3:.3f} mrad"),
            ("last-sample-hold error (RMS / p99)", f"{hold_err['rms'] * 1e3:.3f} / {hold_err['p99'] * 1e3:.3f} mrad"),
        ]
        lines.append(
            f"fidelity:         twin RMS {twin_err['rms'] * 1e3:.3f} mrad vs last-sample-hold "
            f"{hold_err['rms'] * 1e3:.3f} mrad against the plant"
        )
    if len(t_ns):
        data = ReportData(
            title=title,
            joint_names=robot.dof_names,
            t=(t_ns - t_ns[0]) * 1e-9,
            estimated=arrays["q"],
            std=arrays["std_q"],
            measured=arrays["measured_q"],
            truth=truth_q,
            health=arrays["health"],
            summary=rows,
            whatifs=whatifs,
            figures_extra=figures,
            tables=tables,
        )
        lines.append(f"report:           {write_report(out / 'report.html', data)}  (+ PNG figures beside it)")
    return lines
