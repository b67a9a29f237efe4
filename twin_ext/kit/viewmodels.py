# SPDX-License-Identifier: Apache-2.0
"""View-models of the panels: everything the windows show and do, in plain Python (tested without Kit).

The omni.ui code (`twin_ext.kit.panels`) only copies these values into widgets and forwards clicks; all
formatting, validation and state lives here. Both view-models talk to a `KitTwinController`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._paths import scenarios_dir as default_scenarios_dir
from ..robot import JointTrajectory, JointType, TrajectoryError
from ..whatif import (
    Payload,
    Perturbation,
    Scenario,
    TargetStream,
    TrajectoryCommand,
    Variant,
    WhatIfError,
    align_to_snapshot,
    load_scenario,
)
from .command_viewmodel import candidate_move_to

__all__ = [
    "HealthRow",
    "JointRow",
    "TelemetryView",
    "TelemetryPanelViewModel",
    "VerdictRow",
    "WhatIfForm",
    "WhatIfPanelViewModel",
]

_HEALTH_LEVEL = {"ok": 0, "stale": 1, "lost": 2}


def _num(value: float, fmt: str, unit: str = "") -> str:
    return "—" if value is None or not math.isfinite(value) else f"{value:{fmt}}{unit}"


# ---- telemetry panel ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class JointRow:
    """One row of the joint table (text ready for labels; ``bar`` in [0, 1] along the limits, NaN if none)."""

    name: str
    measured: str
    estimated: str
    sigma: str
    velocity: str
    bar: float
    near_limit: bool
    too_fast: bool


@dataclass(frozen=True)
class HealthRow:
    """One joint's health as the panel shows it (text ready for labels).

    ``state`` is "ok" or the kind of the joint's last unresolved event; ``level`` 0 ok (green), 1 attention
    (yellow: an event, or an external torque above half the threshold).
    """

    name: str
    state: str
    level: int
    external_torque: str
    friction: str
    bias: str
    forecast: str


@dataclass(frozen=True)
class TelemetryView:
    """The whole telemetry panel at one instant."""

    running: bool
    connection: str
    connection_ok: bool
    robot: str
    health: str
    health_level: int
    """0 ok (green), 1 stale (yellow), 2 lost (red)."""
    rate: str
    latency: str
    clock_offset: str
    clock_drift: str
    clock_note: str
    rejects: tuple[tuple[str, int], ...]
    estimator: str
    errors: tuple[str, ...]
    joints: tuple[JointRow, ...]
    drive: str
    health_state: str = "—"
    """"ok", "attention: ..." (the newest event), or "—" when the twin runs without health monitoring."""
    health_rows: tuple[HealthRow, ...] = ()
    health_events: tuple[str, ...] = ()
    """The newest health events, newest last (one line each)."""
    payload: str = ""
    """The identified payload ("1.49 ± 0.02 kg on the hand"), or "" while it is not identifiable."""


class TelemetryPanelViewModel:
    """State and actions of the telemetry panel.

    Args:
        controller: the `KitTwinController`.
        near_limit_fraction: a joint within this fraction of its range from a limit is flagged.
    """

    def __init__(self, controller: Any, *, near_limit_fraction: float = 0.03) -> None:
        self.controller = controller
        self.near_limit_fraction = near_limit_fraction

    def view(self) -> TelemetryView:
        """What the panel shows now (safe to call every UI refresh)."""
        status = self.controller.status()
        if status is None:
            error = self.controller.error
            return TelemetryView(
                running=False,
                connection="not running" if not error else "error",
                connection_ok=False,
                robot="—",
                health="—",
                health_level=2,
                rate="—",
                latency="—",
                clock_offset="—",
                clock_drift="—",
                clock_note="",
                rejects=(),
                estimator="—",
                errors=(error,) if error else (),
                joints=(),
                drive=self.controller.drive_description,
            )
        model = self.controller.model
        joints = []
        for j, r in enumerate(status.joints):
            revolute = model.dof_type[j] == JointType.REVOLUTE
            scale, unit, vunit = (180.0 / math.pi, "°", "°/s") if revolute else (1000.0, " mm", " mm/s")
            span = r.upper - r.lower
            bar = (r.estimated_q - r.lower) / span if math.isfinite(span) and span > 0 else math.nan
            near = math.isfinite(bar) and (bar < self.near_limit_fraction or bar > 1 - self.near_limit_fraction)
            too_fast = math.isfinite(r.velocity_limit) and abs(r.estimated_qd) > r.velocity_limit
            joints.append(
                JointRow(
                    name=r.name,
                    measured=_num(r.measured_q * scale, ".2f", unit),
                    estimated=_num(r.estimated_q * scale, ".2f", unit),
                    sigma=_num(r.std_q * scale, ".3f", unit),
                    velocity=_num(r.estimated_qd * scale, ".1f", vunit),
                    bar=float(np.clip(bar, 0.0, 1.0)) if math.isfinite(bar) else math.nan,
                    near_limit=near,
                    too_fast=too_fast,
                )
            )
        health = status.health.value
        online = {True: "online", False: "offline", None: "unknown"}[status.robot_online]
        return TelemetryView(
            running=True,
            connection="connected" if status.link_connected else "disconnected",
            connection_ok=status.link_connected,
            robot=f"{status.robot_id or '(any)'} — {online}",
            health=f"{health} (last sample {_num(status.snapshot.age_s * 1e3, '.0f', ' ms')} ago)",
            health_level=_HEALTH_LEVEL[health],
            rate=f"{status.msg_rate_hz:.1f} msg/s (accepted {status.accepted})",
            latency=_num(status.latency_ms, ".2f", " ms"),
            clock_offset=_num(status.clock_offset_ms, ".2f", " ms"),
            clock_drift=status.clock_drift_text,
            clock_note="" if status.clock_ready else "clock sync converging",
            rejects=tuple(sorted(status.rejected_by_reason.items())),
            estimator=f"fused late {status.fused_late}, too late {status.estimator_late}, gated {status.estimator_gated}, jumps {status.clock_jumps}, "
            f"restarts {status.restarts}" + (f"\n{status.noise_note}" if status.noise_note else ""),
            errors=tuple(status.errors[-5:]),
            joints=tuple(joints),
            drive=self.controller.drive_description,
            **self._health(),
        )

    def _health(self) -> dict[str, Any]:
        summary = self.controller.health_summary()
        if summary is None:
            return {}
        rows = []
        for j in summary.joints:
            f = j.friction
            friction = (
                f"{f.ratio:.2f} ± {f.ratio_ci:.2f} x nominal" if f.identifiable and math.isfinite(f.ratio) else f.note
            )
            rows.append(
                HealthRow(
                    name=j.name,
                    state=j.state,
                    level=0 if j.state == "ok" and abs(j.z) < 0.5 * j.threshold else 1,
                    external_torque=_num(j.external_torque, "+.2f", " N·m"),
                    friction=friction or "—",
                    bias=_num(f.bias, "+.2f", " N·m") if f.identifiable else "—",
                    forecast=j.forecast.message if j.forecast is not None else "",
                )
            )
        events = tuple(f"{summary.t_s - e.t_s:6.1f} s ago  {e.kind}: {e.message}" for e in summary.events[-5:])
        newest = summary.events[-1] if summary.events else None
        state = summary.state if newest is None or summary.state == "ok" else f"attention: {newest.message}"
        p = summary.payload
        payload = (
            f"{p.mass:.2f} ± {p.mass_ci:.2f} kg on the {p.link}" if p.identifiable and abs(p.mass) > p.mass_ci else ""
        )
        return {"health_state": state, "health_rows": tuple(rows), "health_events": events, "payload": payload}

    # actions
    def start(self) -> None:
        self.controller.start()

    def stop(self) -> None:
        self.controller.stop()

    def restart(self) -> None:
        self.controller.restart()


# ---- what-if panel -----------------------------------------------------------------------------------------
@dataclass
class WhatIfForm:
    """The editable fields of the what-if panel (SI units; angles rad)."""

    preset: str = ""
    """Scenario preset name (config/scenarios/<name>.toml); its command is the candidate command."""
    command_source: str = "preset"
    """"preset" (the preset's command), "file" (`command_file`, a JointTrajectory TOML) or "hold" (hold the
    current target / position)."""
    command_file: str = ""
    align_to_state: bool = True
    """Start the command where the robot is in it now (nearest state), not at its beginning."""
    speed_scale: float = 1.0
    payload_mass: float = 0.0
    """kg, 0 = none."""
    payload_link: str = ""
    """"" = the last link."""
    payload_com: tuple[float, float, float] = (0.0, 0.0, 0.1)
    kp_scale: float = 1.0
    kd_scale: float = 1.0
    friction_scale: float = 1.0
    damping_scale: float = 1.0
    latency_s: float = 0.0
    push_force_n: tuple[float, float, float] = (0.0, 0.0, 0.0)
    push_link: str = ""
    push_start_s: float = 0.5
    push_duration_s: float = 0.2
    horizon_s: float = 3.0
    samples: int = 32


@dataclass(frozen=True)
class VerdictRow:
    """One variant's answer, as shown in the results table."""

    variant: str
    status: str
    p_violation: str
    ci: str
    first_violation: str
    time_to_violation: str
    clearance: str = "—"
    """Closest approach to the scene or another link ("12.3 mm hand to /Cell/Fixture"); "—" without a scene."""


@dataclass
class _Run:
    future: Any
    scenario: Any
    report: Any = None
    error: str | None = None
    snapshot: Any = None


class WhatIfPanelViewModel:
    """State and actions of the what-if panel: pick/edit a scenario, run it on the twin's snapshot, read the
    verdicts, and scrub a ghost of the predicted motion.

    Args:
        controller: the `KitTwinController`.
        scenarios_dir: folder of preset scenario TOML files.
        commands: the `CommandPanelViewModel` behind "send to robot" (None: the panel has no command controls).
            When a run finishes, its candidate command becomes the proposal (`candidate_move_to`).
    """

    BASELINE = "as programmed"
    EDITED = "as edited"

    def __init__(self, controller: Any, *, scenarios_dir: str | Path | None = None, commands: Any = None) -> None:
        self.controller = controller
        self.commands = commands
        self.scenarios_dir = Path(scenarios_dir) if scenarios_dir else default_scenarios_dir()
        self.form = WhatIfForm(preset=self.presets[0] if self.presets else "")
        self._run: _Run | None = None
        self.state = "idle"
        """"idle", "running", "done" or "error"."""
        self.message = ""
        self.rows: tuple[VerdictRow, ...] = ()
        self.ghost_variant: str = ""
        self.ghost_frames: np.ndarray | None = None
        """``[T, ndof]`` predicted positions of the ghost's variant (its mean-state sample), rad|m."""
        self.ghost_times: np.ndarray | None = None
        self.contact: dict | None = None
        """The ghost variant's predicted first contact (``first_contact`` of its clearance), or None."""
        self.scrub = 0.0
        """Ghost position along the prediction, in [0, 1]."""

    @property
    def presets(self) -> list[str]:
        """Names of the scenario files in `scenarios_dir`."""
        return sorted(p.stem for p in self.scenarios_dir.glob("*.toml")) if self.scenarios_dir.is_dir() else []

    # ---- building the question ---------------------------------------------------------------------
    def build_scenario(self, snapshot: Any = None):
        """The `Scenario` the form describes: the candidate command, a baseline variant and the edited one.

        Raises:
            WhatIfError: a field the engine cannot use (message names it and the fix).
        """
        f = self.form
        model = self.controller.model
        if f.command_source == "hold":
            q = np.asarray(
                snapshot.target
                if snapshot is not None and snapshot.target is not None
                else (snapshot.q if snapshot is not None else model.drive_target),
                dtype=np.float64,
            )
            command = TargetStream(tuple(model.dof_names), q[None, :], dt=f.horizon_s)
            base_name = "hold here"
        else:
            if f.command_source == "file":
                try:
                    program = JointTrajectory.from_toml(f.command_file)
                except TrajectoryError as exc:
                    raise WhatIfError(f"command file: {exc}") from None
                base_name = Path(f.command_file).stem
            elif f.command_source == "preset":
                if not f.preset:
                    raise WhatIfError(f"no scenario presets in {self.scenarios_dir}; choose a command file instead")
                preset = load_scenario(self.scenarios_dir / f"{f.preset}.toml")
                if not isinstance(preset.command, TrajectoryCommand):
                    raise WhatIfError(f"preset {f.preset!r} has no trajectory command; choose a command file")
                program = preset.command.trajectory
                base_name = f.preset
            else:
                raise WhatIfError(f"command source {f.command_source!r} must be 'preset', 'file' or 'hold'")
            command = TrajectoryCommand(program)
        last_link = model.link_names[-1]
        payloads = ()
        if f.payload_mass > 0:
            payloads = (
                Payload(link=f.payload_link or last_link, mass=float(f.payload_mass), com=tuple(f.payload_com)),
            )
        push = None
        if any(abs(x) > 0 for x in f.push_force_n):
            push = Perturbation(
                link=f.push_link or last_link,
                force=tuple(f.push_force_n),
                start=float(f.push_start_s),
                duration=float(f.push_duration_s),
            )
        edited = Variant(
            name=self.EDITED,
            speed_scale=float(f.speed_scale),
            payloads=payloads,
            kp_scale=float(f.kp_scale),
            kd_scale=float(f.kd_scale),
            friction_scale=float(f.friction_scale),
            damping_scale=float(f.damping_scale),
            latency=float(f.latency_s),
            perturbation=push,
        )
        if not (isinstance(f.samples, int) and 1 <= f.samples <= 4096):
            raise WhatIfError(f"samples must be an integer in [1, 4096], got {f.samples!r}")
        if not (math.isfinite(f.horizon_s) and 0 < f.horizon_s <= 120):
            raise WhatIfError(f"horizon must be in (0, 120] s, got {f.horizon_s!r}")
        scenario = Scenario(
            name=f"{base_name}: what-if",
            command=command,
            variants=(Variant(name=self.BASELINE), edited),
            samples=f.samples,
            duration=float(f.horizon_s),
        )
        if f.align_to_state and snapshot is not None:
            scenario, _ = align_to_snapshot(scenario, snapshot)
        return scenario

    # ---- running -----------------------------------------------------------------------------------------
    def run(self) -> None:
        """Ask the twin (non-blocking). Errors in the form set ``state = "error"`` with the message."""
        if self.state == "running":
            return
        try:
            snapshot = self.controller.latest_snapshot()
            scenario = self.build_scenario(snapshot)
            future = self.controller.ask_whatif(scenario)
        except Exception as exc:  # noqa: BLE001 - shown in the panel, never raised into the UI
            self.state, self.message = "error", str(exc)
            return
        self._run = _Run(future, scenario, snapshot=snapshot)
        if self.commands is not None:
            self.commands.propose(None, note="what-if running: its command is proposed when it finishes")
        self.state, self.message, self.rows = (
            "running",
            f"running {len(scenario.variants)} variants x {self.form.samples} samples …",
            (),
        )

    def poll(self) -> bool:
        """Collect a finished run (call from the UI refresh); True when the state changed."""
        run = self._run
        if run is None or self.state != "running" or not run.future.done():
            return False
        try:
            report = run.future.result()
        except Exception as exc:  # noqa: BLE001
            self.state, self.message = "error", f"what-if failed: {exc}"
            if self.commands is not None:
                self.commands.propose(None, note="the what-if failed: nothing proposed")
            return True
        run.report = report
        self._propose(run)
        self.rows = tuple(self._row(v) for v in report.variants)
        self.state = "done"
        self.message = (
            f"{report.status.upper()} — base state {report.base_health}, {report.horizon:.2f} s horizon, "
            f"{report.total_seconds * 1e3:.0f} ms"
        )
        self.select_ghost(self.EDITED)
        return True

    def _propose(self, run: _Run) -> None:
        """Offer the finished run's candidate command to "send to robot" (or say why there is none)."""
        if self.commands is None:
            return
        try:
            move = candidate_move_to(
                run.scenario,
                run.snapshot,
                speed_scale=float(self.form.speed_scale),
                min_duration_s=self.commands.min_duration_s(),
            )
        except (WhatIfError, TypeError, ValueError) as exc:
            self.commands.propose(None, note=f"nothing to send: {exc}")
            return
        self.commands.propose(move)

    def send_to_robot(self) -> bool:
        """Send the proposed command (pre-flight off the UI thread); False when not allowed now (see
        `CommandView.send_enabled`) or the panel has no command controls."""
        return self.commands.send() if self.commands is not None else False

    @property
    def report(self):
        """The last `WhatIfReport` (None before one finished)."""
        return self._run.report if self._run is not None else None

    @staticmethod
    def _row(v) -> VerdictRow:
        first = v.worst[0] if v.worst else None
        where = f" vs {first.obstacle}" if first is not None and first.obstacle else ""
        c = getattr(v, "clearance", None) or {}
        return VerdictRow(
            variant=v.name,
            status=v.status,
            p_violation=f"{v.p_violation:.2f} ({v.violations}/{v.samples})",
            ci=f"[{v.ci[0]:.2f}, {v.ci[1]:.2f}]",
            first_violation="—" if first is None else f"{first.joint}: {first.kind}{where} at {first.time:.3f} s",
            time_to_violation="—" if v.time_to_violation is None else f"{v.time_to_violation:.3f} s",
            clearance="—" if not c else f"{c['distance_m'] * 1e3:.1f} mm {c['link']} to {c['obstacle'] or '—'}",
        )

    # ---- ghost ---------------------------------------------------------------------------------------------
    def select_ghost(self, variant: str) -> None:
        """Show the predicted motion of ``variant`` (its mean-state sample) as the ghost."""
        report = self.report
        if report is None or report.rollout is None or report.world_variant is None:
            return
        names = [v.name for v in report.variants]
        if variant not in names:
            return
        worlds = np.flatnonzero(np.asarray(report.world_variant) == names.index(variant))
        if len(worlds) == 0:
            return
        rollout = report.rollout
        self.ghost_variant = variant
        self.ghost_frames = np.asarray(rollout.q[worlds[0]])
        self.ghost_times = np.asarray(rollout.t)
        self.set_scrub(self.scrub)
        contact = report.variants[names.index(variant)].clearance.get("first_contact")
        self.contact = contact
        mark = getattr(self.controller, "mark_ghost_contact", None)
        if mark is not None:
            label = f"{contact['link']} vs {contact['obstacle']} at {contact['time']:.3f} s" if contact else ""
            mark(contact["point"] if contact else None, label)

    def set_scrub(self, fraction: float) -> None:
        """Move the ghost to ``fraction`` in [0, 1] of the prediction."""
        self.scrub = float(np.clip(fraction, 0.0, 1.0))
        if self.ghost_frames is not None and len(self.ghost_frames):
            self.controller.show_ghost(self.ghost_q())

    def ghost_q(self) -> np.ndarray | None:
        """``[ndof]`` ghost joint positions at the scrub position, or None."""
        if self.ghost_frames is None or not len(self.ghost_frames):
            return None
        k = int(round(self.scrub * (len(self.ghost_frames) - 1)))
        return self.ghost_frames[k]

    @property
    def ghost_time(self) -> float | None:
        """Time of the ghost's pose after the start of the prediction, s."""
        if self.ghost_times is None or not len(self.ghost_times):
            return None
        return float(self.ghost_times[int(round(self.scrub * (len(self.ghost_times) - 1)))])

    def clear_ghost(self) -> None:
        self.ghost_frames = self.ghost_times = None
        self.ghost_variant = ""
        self.contact = None
        self.controller.clear_ghost()
        mark = getattr(self.controller, "mark_ghost_contact", None)
        if mark is not None:
            mark(None, "")
