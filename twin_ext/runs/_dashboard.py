# SPDX-License-Identifier: Apache-2.0
"""A terminal dashboard of the live twin: link, clock, estimator health, the command gate with the last commands
and a per-joint table.

`render_dashboard` is a pure function of a `TwinStatus` (tested without a terminal); `TerminalDashboard`
redraws it in place on a TTY, or prints a compact line every few seconds when output is a log/pipe.
"""

from __future__ import annotations

import math
import sys
import time
from typing import Any, TextIO

import numpy as np

from ..control import command_lines
from ..live import TwinStatus
from ..robot import JointType

__all__ = ["health_lines", "render_dashboard", "status_line", "TerminalDashboard"]

_HEALTH_STYLE = {"ok": "\x1b[32m", "stale": "\x1b[33m", "lost": "\x1b[31m"}
_RESET = "\x1b[0m"


def _fmt(v: float, unit: str, width: int = 9, digits: int = 2) -> str:
    return f"{'—':>{width}}" if not math.isfinite(v) else f"{v:>{width}.{digits}f}{unit}"


def _bar(value: float, lower: float, upper: float, width: int = 21) -> str:
    """A limit bar: ``|····●····|`` with the position between the limits (``!`` at a limit)."""
    if not (math.isfinite(lower) and math.isfinite(upper)) or upper <= lower or not math.isfinite(value):
        return " " * (width + 2)
    frac = (value - lower) / (upper - lower)
    pos = int(round(min(max(frac, 0.0), 1.0) * (width - 1)))
    mark = "!" if frac <= 0.02 or frac >= 0.98 else "●"
    return "|" + "·" * pos + mark + "·" * (width - 1 - pos) + "|"


def render_dashboard(
    status: TwinStatus, *, model, title: str = "twin_ext", color: bool = False, extra_lines: tuple[str, ...] = ()
) -> str:
    """The dashboard as text (angles shown in degrees, prismatic joints in mm)."""
    health = status.health.value
    h = f"{_HEALTH_STYLE[health]}{health.upper()}{_RESET}" if color else health.upper()
    rejected = ", ".join(f"{k} {v}" for k, v in sorted(status.rejected_by_reason.items())) or "none"
    lines = [
        title,
        f"link {'connected' if status.link_connected else 'DOWN'} | robot "
        f"{ {True: 'online', False: 'OFFLINE', None: '?'}[status.robot_online] } "
        f"({status.robot_id or '?'}) | health {h} (last sample {status.snapshot.age_s * 1e3:.0f} ms ago)",
        f"telemetry {status.msg_rate_hz:6.1f} msg/s fused | accepted {status.accepted} | rejected: {rejected}",
        f"clock offset {_fmt(status.clock_offset_ms, ' ms', 8, 2)} | drift {status.clock_drift_text}"
        f" | latency {_fmt(status.latency_ms, ' ms', 6, 2)} | jumps {status.clock_jumps} | restarts {status.restarts}"
        f"{'' if status.clock_ready else ' (clock sync converging)'}",
        f"estimator: fused late {status.fused_late}, too late {status.estimator_late}, gated {status.estimator_gated}"
        f" | display {status.display_rate_hz:5.1f} Hz" + (f"\n  {status.noise_note}" if status.noise_note else ""),
        *_commands(status),
        "",
        f"{'joint':<15}{'measured':>11}{'estimated':>11}{'±1σ':>9}{'speed':>11}{'vmax':>8}  limits",
    ]
    for j, reading in zip(range(model.ndof), status.joints, strict=False):
        revolute = model.dof_type[j] == JointType.REVOLUTE
        scale, unit = (180.0 / math.pi, "°") if revolute else (1000.0, "mm")
        vscale, vunit = (180.0 / math.pi, "°/s") if revolute else (1000.0, "mm/s")
        lines.append(
            f"{reading.name:<15}{_fmt(reading.measured_q * scale, unit, 9)}{_fmt(reading.estimated_q * scale, unit, 9)}"
            f"{_fmt(reading.std_q * scale, unit, 7, 3)}{_fmt(reading.estimated_qd * vscale, vunit, 7, 1)}"
            f"{_fmt(reading.velocity_limit * vscale, '', 8, 0)}  {_bar(reading.estimated_q, reading.lower, reading.upper)}"
        )
    if status.errors:
        lines.append("")
        lines.append("errors (newest last):")
        lines.extend(f"  {e[:160]}" for e in status.errors[-3:])
    if extra_lines:
        lines.append("")
        lines.extend(extra_lines)
    return "\n".join(lines)


def _commands(status: TwinStatus) -> tuple[str, ...]:
    """The command gate (open / blocked / closed, and why) and the last commands with their states."""
    return command_lines((status.command_gate, status.command_gate_reason), list(status.commands))


def health_lines(summary: Any) -> tuple[str, ...]:
    """The robot's health as dashboard lines (a `twin_ext.health.HealthSummary`, or None: nothing to show).

    One line for the state and the payload, one per joint that needs attention (an event, a rising friction, a
    large external torque), and the newest events; a healthy robot is two lines."""
    if summary is None:
        return ()
    p = summary.payload
    payload = (
        f"payload {p.mass:.2f} ± {p.mass_ci:.2f} kg" if p.identifiable and abs(p.mass) > p.mass_ci else "no payload"
    )
    lines = [f"robot health: {summary.state.upper()} | {payload} | samples {summary.samples}"]
    for j in summary.joints:
        f = j.friction
        friction = f"friction {f.ratio:.2f}x nominal" if f.identifiable and math.isfinite(f.ratio) else f.note
        if j.state != "ok" or abs(j.z) > 0.5 * j.threshold or (f.identifiable and f.ratio > 1.1):
            lines.append(f"  {j.name:<9} {j.state:<18} ext {j.external_torque:+6.2f} N·m  {friction}")
        if j.forecast is not None and math.isfinite(j.forecast.hours):
            lines.append(f"  {j.forecast.message}")
    lines.extend(f"  event {summary.t_s - e.t_s:6.1f} s ago — {e.kind}: {e.message}" for e in summary.events[-3:])
    return tuple(lines)


def status_line(status: TwinStatus) -> str:
    """One compact line for logs."""
    diffs = np.abs([r.measured_q - r.estimated_q for r in status.joints])
    err = float(np.nanmax(diffs)) if np.any(np.isfinite(diffs)) else math.nan
    # The reasons matter more than the total: out_of_order/duplicate are the network's doing (expected under
    # jitter), anything else is the robot sending what the schema does not allow.
    reasons = ", ".join(f"{k} {v}" for k, v in sorted(status.rejected_by_reason.items(), key=lambda kv: -kv[1]))
    rejected = f"{status.rejected} ({reasons})" if reasons else f"{status.rejected}"
    last = status.commands[-1] if status.commands else None
    commands = f"commands {status.command_gate}" + (f", last {last['type']} {last['state']}" if last else "")
    return (
        f"[twin] {status.health.value} | {status.msg_rate_hz:.0f} msg/s | rejected {rejected} | "
        f"offset {status.clock_offset_ms:.1f} ms drift {status.clock_drift_text} latency "
        f"{status.latency_ms:.1f} ms | max |measured-estimated| {math.degrees(err):.2f}° | {commands}"
    )


class TerminalDashboard:
    """Redraws the dashboard in place (TTY) or prints a status line every ``log_every_s`` (not a TTY)."""

    def __init__(
        self,
        model,
        *,
        stream: TextIO | None = None,
        title: str = "twin_ext",
        log_every_s: float = 2.0,
        refresh_hz: float = 4.0,
    ) -> None:
        self.model = model
        self.stream = stream or sys.stdout
        self.title = title
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.period = 1.0 / refresh_hz if self.tty else log_every_s
        self._last = 0.0
        self._printed_extra: list[tuple[str, ...]] = []

    def due(self) -> bool:
        """Whether the next `update` would draw (so callers can skip building a status)."""
        return time.monotonic() - self._last >= self.period

    def update(self, status: TwinStatus, *, extra_lines: tuple[str, ...] = (), force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < self.period:
            return
        self._last = now
        if self.tty:
            text = render_dashboard(status, model=self.model, title=self.title, color=True, extra_lines=extra_lines)
            self.stream.write("\x1b[H\x1b[J" + text + "\n")
        else:
            self.stream.write(status_line(status) + "\n")
            # In a log, print only the paragraphs that changed since the last update (a progress line changes
            # every time; a what-if table is printed once, and whole again if anything in it changes; the command
            # gate with the last commands whenever the gate or a command's state changes).
            paragraphs = _paragraphs((*_commands(status), *extra_lines))
            for paragraph in paragraphs:
                if paragraph not in self._printed_extra:
                    self.stream.writelines(f"       {line}\n" for line in paragraph)
            self._printed_extra = paragraphs
        self.stream.flush()


def _paragraphs(lines: tuple[str, ...]) -> list[tuple[str, ...]]:
    """Split lines into paragraphs: a line that is not indented, with the indented lines that follow it."""
    out: list[list[str]] = []
    for line in lines:
        if out and line[:1].isspace():
            out[-1].append(line)
        else:
            out.append([line])
    return [tuple(p) for p in out]
