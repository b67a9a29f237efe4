# SPDX-License-Identifier: Apache-2.0
"""`HistoryRecord`: one row of history, the same for every store."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from ._settings import HistoryError

__all__ = ["HISTORY_KINDS", "HistoryRecord", "check_kind"]

HISTORY_KINDS = ("state", "health", "params", "commands")
"""What the history keeps: ``state`` (estimated joint state, decimated), ``health`` (health events),
``params`` (identified parameters: friction, bias, payload, wear forecasts), ``commands`` (commands sent to
the robot and their acknowledgements)."""


@dataclass(frozen=True)
class HistoryRecord:
    """One row.

    Attributes:
        kind: one of `HISTORY_KINDS`.
        robot_id: the robot.
        t_ns: wall-clock time (Unix epoch), int ns: history is queried by people in wall-clock terms.
        label: a short tag to filter on: the estimate's health (``state``), the event kind (``health``),
            the command kind (``commands``), or "" (``params``).
        q, qd, std_q: ``[ndof]`` joint positions rad|m, velocities rad/s|m/s, one-sigma position uncertainty
            rad|m (``state`` only; empty tuples otherwise).
        doc: the JSON-able document (events, parameters, commands; extra values for ``state``).
    """

    kind: str
    robot_id: str
    t_ns: int
    label: str = ""
    q: tuple[float, ...] = ()
    qd: tuple[float, ...] = ()
    std_q: tuple[float, ...] = ()
    doc: dict[str, Any] = field(default_factory=dict)

    def doc_json(self) -> str:
        """``doc`` as compact JSON (non-finite numbers become null: JSON and PostgreSQL's jsonb have no NaN)."""
        return json.dumps(_finite(self.doc), separators=(",", ":"), allow_nan=False)

    def to_row(self) -> dict[str, Any]:
        """Plain dict (what queries return): ``kind, robot_id, t_ns, label, q, qd, std_q, doc``."""
        return {
            "kind": self.kind,
            "robot_id": self.robot_id,
            "t_ns": self.t_ns,
            "label": self.label,
            "q": list(self.q),
            "qd": list(self.qd),
            "std_q": list(self.std_q),
            "doc": self.doc,
        }


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return _finite(value.tolist())
    return value


def check_kind(kind: str) -> None:
    """Raise `HistoryError` naming the valid kinds unless ``kind`` is one of `HISTORY_KINDS` (every store's query)."""
    if kind not in HISTORY_KINDS:
        raise HistoryError(f"unknown history kind {kind!r}: use one of {list(HISTORY_KINDS)}")
