# SPDX-License-Identifier: Apache-2.0
"""The health part of a run's report: residual and friction-trend figures, the events and what was identified."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["health_outputs"]


def health_outputs(service: Any, t0_ns: int) -> tuple[list[tuple[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    """``(figures, tables, json_block)`` for a `HealthService` of a run that started at ``t0_ns`` (twin clock).

    Figures: the observer's external torque per joint over time with the events marked, and friction / nominal per
    joint. Tables: the events and the identified parameters. ``json_block``: the same for whatif.json.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    trace = service.trace()
    summary = service.monitor.summary()
    joints = trace["joints"]
    events = trace["events"]
    figures: list[tuple[str, Any]] = []
    shift = 0.0
    if len(trace["t_ns"]):
        t = (trace["t_ns"] - t0_ns) * 1e-9
        # Events are timed on the robot's clock; place them on the run's axis by the monitor's last sample.
        shift = float(t[-1]) - summary.t_s
        fig, ax = plt.subplots(figsize=(10, 3.2))
        for k, name in enumerate(joints):
            ax.plot(t, trace["external_torque"][:, k], lw=0.8, label=name)
        for e in events:
            ax.axvline(e.t_s + shift, color="tab:red", lw=0.8, alpha=0.6)
            ax.text(e.t_s + shift, 1.0, f" {e.kind}", transform=ax.get_xaxis_transform(), fontsize=7,
                    rotation=90, va="top", color="tab:red")  # fmt: skip
        ax.set_ylabel("external torque [N·m]")
        ax.set_xlabel("time [s]")
        ax.legend(fontsize=7, ncol=len(joints), loc="lower left")
        ax.set_title("Momentum observer: what the model does not explain, per joint (events in red)", fontsize=10)
        figures.append(("health_residuals", fig))
    if len(trace["friction_t_ns"]):
        tf = (trace["friction_t_ns"] - t0_ns) * 1e-9
        fig, ax = plt.subplots(figsize=(10, 2.8))
        for k, name in enumerate(joints):
            ax.plot(tf, trace["friction_ratio"][:, k], lw=0.9, label=name)
        s = service.monitor.settings
        ax.axhline(s.wear_alarm_ratio, color="tab:orange", lw=0.8, ls="--", label="alarm level")
        ax.axhline(s.service_limit_ratio, color="tab:red", lw=0.8, ls="--", label="service limit")
        finite = trace["friction_ratio"][np.isfinite(trace["friction_ratio"])]
        if finite.size:
            ax.set_ylim(0.0, max(float(np.percentile(finite, 99)) * 1.2, s.service_limit_ratio * 1.1))
        ax.set_ylabel("friction / nominal")
        ax.set_xlabel("time [s]")
        ax.legend(fontsize=7, ncol=5)
        ax.set_title("Identified friction against the model's, per joint", fontsize=10)
        figures.append(("health_friction", fig))

    def num(x: float, fmt: str) -> str:
        return "-" if x is None or not math.isfinite(x) else format(x, fmt)

    event_rows = [
        {
            "t [s]": f"{e.t_s + shift:.2f}",
            "kind": e.kind,
            "joints": ", ".join(e.joints) or "robot",
            "magnitude": f"{e.magnitude:.3g} {e.unit}",
            "confidence": f"{e.confidence:.2f}",
            "message": e.message,
        }
        for e in events
    ]
    ident_rows = [
        {
            "joint": j.name,
            "state": j.state,
            "Coulomb [N·m]": f"{num(j.friction.coulomb, '.3f')} ± {num(j.friction.coulomb_ci, '.3f')}",
            "viscous [N·m·s/rad]": f"{num(j.friction.viscous, '.3f')} ± {num(j.friction.viscous_ci, '.3f')}",
            "friction / nominal": f"{num(j.friction.ratio, '.2f')} at {num(j.friction.reference_speed, '.2f')} rad/s",
            "bias [N·m]": f"{num(j.friction.bias, '+.3f')} ± {num(j.friction.bias_ci, '.3f')}",
            "note": j.friction.note,
        }
        for j in summary.joints
    ]
    p = summary.payload
    payload = (
        f"payload on the {p.link}: {p.mass:.3f} ± {p.mass_ci:.3f} kg at {tuple(round(c, 3) for c in p.com)} m"
        if p.identifiable
        else p.note
    )
    tables = [
        {"title": f"Health events ({len(events)})", "rows": event_rows, "text": "" if events else "none"},
        {"title": "Identified model", "rows": ident_rows, "text": payload},
    ]
    return figures, tables, summary.to_dict()
