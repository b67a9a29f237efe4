# SPDX-License-Identifier: Apache-2.0
"""What the fleet views show: one `FleetRow` per robot, sortable, as a terminal table (and JSON for the web page).

Pure functions of a session's state: the terminal dashboard, the Kit ``Fleet`` window's view-model and the web
page all read these rows, so they agree.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["SORT_KEYS", "FleetRow", "fleet_rows", "render_fleet_table", "sort_rows"]

_HEALTH_ORDER = {"lost": 0, "stale": 1, "ok": 2}
_ROBOT_HEALTH_ORDER = {"fault": 0, "warning": 1, "degraded": 1, "ok": 2}


@dataclass(frozen=True)
class FleetRow:
    """One robot as the fleet views show it (plain values; NaN where not known yet).

    Attributes:
        robot_id: the robot.
        health: the estimate's health, ``ok``/``stale``/``lost``.
        robot_health: the health monitor's state of the robot (``ok``, ``warning``, ``fault``...) or "".
        online: the robot's own status (True, False, None = not announced).
        rate_hz: accepted joint states per second, Hz.
        latency_ms: network latency estimated by the clock sync, ms.
        added_p99_ms: 99th percentile of receive -> state inside the twin over recent ticks, ms.
        last_event: kind and message of the newest health event, or "".
        wear: largest identified friction / nominal over the joints (NaN: not identifiable yet).
        accepted, rejected, flood_dropped, clock_jumps: counters since the robot was added.
        model: where its model came from.
        error: the newest error of this robot's twin, or "".
    """

    robot_id: str
    health: str
    robot_health: str
    online: bool | None
    rate_hz: float
    latency_ms: float
    added_p99_ms: float
    last_event: str
    wear: float
    accepted: int
    rejected: int
    flood_dropped: int
    clock_jumps: int
    model: str
    error: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-able (NaN becomes None)."""
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in asdict(self).items()}


SORT_KEYS = ("robot_id", "health", "robot_health", "rate_hz", "latency_ms", "added_p99_ms", "wear", "rejected",
             "last_event")  # fmt: skip
"""Columns the views sort by (worst first for health, largest first for numbers)."""


def fleet_rows(session: Any) -> list[FleetRow]:
    """A `FleetRow` per robot of ``session`` (a `FleetSession`), by robot id."""
    rows = []
    for robot_id, robot in sorted(session.robots.items()):
        try:
            status = robot.twin.status()
        except Exception as exc:  # noqa: BLE001 - a broken robot still gets its row, saying why
            rows.append(FleetRow(robot_id, "lost", "", None, math.nan, math.nan, math.nan, "", math.nan, 0, 0, 0, 0,
                                 robot.model_note, f"status failed: {exc!r}"))  # fmt: skip
            continue
        summary = robot.health.summary if robot.health is not None else None
        event = robot.last_event or {}
        errors = status.errors
        rows.append(
            FleetRow(
                robot_id=robot_id,
                health=status.health.value,
                robot_health=str(getattr(summary, "state", "") or ""),
                online=status.robot_online,
                rate_hz=float(status.msg_rate_hz),
                latency_ms=float(status.latency_ms),
                added_p99_ms=robot.p99_latency_ms(),
                last_event=f"{event.get('kind', '')}: {event.get('message', '')}" if event else "",
                wear=robot.wear(),
                accepted=int(status.accepted),
                rejected=int(status.rejected),
                flood_dropped=int(session.router.flood_dropped.get(robot_id, 0)),
                clock_jumps=int(status.clock_jumps),
                model=robot.model_note,
                error=robot.error or (errors[-1] if errors else ""),
            )
        )
    return rows


def sort_rows(rows: list[FleetRow], key: str = "health", *, descending: bool | None = None) -> list[FleetRow]:
    """Rows sorted by ``key`` (one of `SORT_KEYS`): worst health first, largest numbers first, names A-Z; NaN last.

    Raises:
        ValueError: an unknown key, naming the valid ones.
    """
    if key not in SORT_KEYS:
        raise ValueError(f"cannot sort the fleet by {key!r}: use one of {list(SORT_KEYS)}")
    if key == "health":
        return sorted(rows, key=lambda r: (_HEALTH_ORDER.get(r.health, 0), r.robot_id), reverse=bool(descending))
    if key == "robot_health":
        return sorted(rows, key=lambda r: (_ROBOT_HEALTH_ORDER.get(r.robot_health, 3), r.robot_id),
                      reverse=bool(descending))  # fmt: skip
    if key in ("robot_id", "last_event"):
        return sorted(rows, key=lambda r: (getattr(r, key), r.robot_id), reverse=bool(descending))
    known = [r for r in rows if math.isfinite(float(getattr(r, key)))]
    unknown = [r for r in rows if not math.isfinite(float(getattr(r, key)))]
    desc = True if descending is None else descending
    return sorted(known, key=lambda r: (getattr(r, key), r.robot_id), reverse=desc) + unknown


def _num(v: float, fmt: str) -> str:
    return "—" if not math.isfinite(v) else format(v, fmt)


def render_fleet_table(rows: list[FleetRow], *, title: str = "fleet", width: int = 160) -> str:
    """The terminal fleet list: one line per robot (health, robot health, rate, latencies, wear, last event)."""
    counts = {h: sum(r.health == h for r in rows) for h in ("ok", "stale", "lost")}
    head = f"{title}: {len(rows)} robots | ok {counts['ok']} | stale {counts['stale']} | lost {counts['lost']}"
    lines = [head, f"{'robot':<16} {'health':<6} {'robot':<9} {'msg/s':>7} {'lat ms':>7} {'p99+ ms':>8} "
             f"{'wear':>5} {'rejected':>8} {'flood':>6}  last event / error"]  # fmt: skip
    for r in rows:
        tail = r.error if r.error and r.health != "ok" else r.last_event
        line = (
            f"{r.robot_id:<16.16} {r.health:<6} {r.robot_health or '—':<9.9} {_num(r.rate_hz, '7.1f'):>7} "
            f"{_num(r.latency_ms, '7.2f'):>7} {_num(r.added_p99_ms, '8.2f'):>8} {_num(r.wear, '5.2f'):>5} "
            f"{r.rejected:>8} {r.flood_dropped:>6}  {tail}"
        )
        lines.append(line[:width])
    return "\n".join(lines)
