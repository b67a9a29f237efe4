# SPDX-License-Identifier: Apache-2.0
"""The audit trail in reports: read ``twin/command_log`` from a recording and summarise it as report rows."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from ..telemetry import McapReplay
from ._audit import COMMAND_LOG_TOPIC

__all__ = ["command_log_rows", "read_command_log"]


def read_command_log(path: str | Path) -> list[dict[str, Any]]:
    """The audit entries recorded on ``twin/command_log`` of an MCAP recording, in log order ([] if none)."""
    replay = McapReplay(path)
    if not replay.topics().get(COMMAND_LOG_TOPIC):
        return []
    return [entry for _, entry in replay.read_json(COMMAND_LOG_TOPIC)]


def command_log_rows(entries: list[dict[str, Any]], *, last: int = 20) -> list[tuple[str, str]]:
    """``(label, text)`` rows for a report: the totals, then one row per command (the last ``last``): its type, who
    asked, the pre-flight verdict and every acknowledged state in order."""
    if not entries:
        return []
    events = Counter(e.get("event", "") for e in entries)
    refused = Counter(e.get("check", "") for e in entries if e.get("event") == "refused")
    ends = Counter()
    commands: dict[str, dict[str, Any]] = {}
    for e in entries:
        cid = e.get("id", "")
        if e.get("event") in ("sent", "refused"):
            commands[cid or f"(refused {len(commands)})"] = {
                "entry": e,
                "states": [e.get("state", "refused") if e.get("event") == "sent" else "refused"],
            }
        elif e.get("event") in ("ack", "timeout") and cid in commands:
            state = e.get("state", "")
            reason = e.get("reason", "")
            commands[cid]["states"].append(f"{state} ({reason})" if reason else state)
    for c in commands.values():
        ends[c["states"][-1].split(" ")[0]] += 1
    refusals = ", ".join(f"{k} {v}" for k, v in sorted(refused.items())) or "none"
    rows = [
        (
            "commands",
            f"{events['sent']} sent, {events['refused']} refused ({refusals}); {events['ack']} acks, "
            f"{events['timeout']} timeouts; ended: " + ", ".join(f"{k} {v}" for k, v in sorted(ends.items())),
        )
    ]
    for cid, c in list(commands.items())[-last:]:
        e = c["entry"]
        verdict = e.get("verdict") or {}
        kind = (e.get("command") or {}).get("type", "?")
        why = e.get("check", "") and f"refused: {e.get('check')}: {e.get('message', '')}"
        if not why:
            p = verdict.get("p_violation")
            why = f"what-if {verdict.get('whatif_status')}, P {p:.3f}" if verdict.get("simulated") else "not simulated"
        rows.append((f"command {cid}", f"{kind} by {e.get('requester', '?')}: {why}; {' -> '.join(c['states'])}"))
    return rows


def command_lines(gate: tuple[str, str], recent: list[dict[str, Any]], *, last: int = 3) -> tuple[str, ...]:
    """Dashboard lines: the gate (``LiveTwin.gate_state()``) and the last ``last`` commands
    (``tracker.recent()``: type, who asked, state and reason)."""
    state, why = gate
    lines = [f"commands: {state}" + (f" ({why})" if why else "")]
    for c in recent[-last:]:
        reason = f" ({c['reason']})" if c.get("reason") else ""
        lines.append(f"  {c['id']} {c['type']} by {c['requester']}: {c['state']}{reason}")
    return tuple(lines)
