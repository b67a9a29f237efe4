# SPDX-License-Identifier: Apache-2.0
"""`TwinSnapshot`: the immutable twin state that flows to sinks and to the what-if engine.

Data flows one way — telemetry -> estimator -> snapshot -> sinks/what-if — and a snapshot is never
modified after it is made (its arrays are read-only), so any thread may hold one.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from ..robot import RobotModel

__all__ = ["Health", "TwinSnapshot"]


class Health(str, enum.Enum):
    """How much the twin's state can be trusted."""

    OK = "ok"
    """Fresh measurements are arriving; the estimate tracks the robot."""
    STALE = "stale"
    """No accepted measurement for longer than the staleness timeout; the state is a growing-uncertainty
    prediction."""
    LOST = "lost"
    """The robot or the broker is gone (disconnect, LWT offline) or no measurement ever arrived."""


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}
"""The dataclass field names of `TwinSnapshot` (and subclasses), per class: set on the first snapshot of each."""


@dataclass(frozen=True, eq=False)
class TwinSnapshot:
    """The estimated robot state at one instant of the twin's clock.

    Attributes:
        t_ns: twin-clock time the state refers to (display time), ns.
        q: ``[ndof]`` joint positions, rad|m, in ``model.dof_names`` order.
        qd: ``[ndof]`` joint velocities, rad/s | m/s.
        qdd: ``[ndof]`` joint accelerations, rad/s² | m/s² (zeros if the estimator does not track them).
        covariance: ``[2*ndof, 2*ndof]`` covariance of ``(q, qd)`` stacked as ``[q_0..q_n-1, qd_0..qd_n-1]``.
        health: `Health` of the estimate.
        model: the `RobotModel` the state belongs to.
        target: ``[ndof]`` last commanded joint target if known, else None, rad|m.
        age_s: seconds since the last accepted measurement (inf if none).
    """

    t_ns: int
    q: np.ndarray
    qd: np.ndarray
    qdd: np.ndarray
    covariance: np.ndarray
    health: Health
    model: RobotModel
    target: np.ndarray | None = None
    age_s: float = float("inf")

    def __post_init__(self) -> None:
        # Made for every robot on every display tick (a fleet makes thousands a second): plain attribute reads,
        # the field names taken once per class (`dataclasses.fields` costs more than the rest together).
        n = self.model.ndof
        vector, square = (n,), (2 * n, 2 * n)
        for name, arr, shape in (
            ("q", self.q, vector),
            ("qd", self.qd, vector),
            ("qdd", self.qdd, vector),
            ("covariance", self.covariance, square),
        ):
            if (arr.shape if isinstance(arr, np.ndarray) else np.shape(arr)) != shape:
                raise ValueError(f"TwinSnapshot.{name} must have shape {shape}; got {np.shape(arr)}")
        cls = type(self)
        names = _FIELD_NAMES.get(cls)
        if names is None:
            names = _FIELD_NAMES[cls] = tuple(f.name for f in fields(cls))
        for name in names:
            value = getattr(self, name)
            if isinstance(value, np.ndarray):
                value.setflags(write=False)

    @property
    def std_q(self) -> np.ndarray:
        """``[ndof]`` one-sigma position uncertainty, rad|m."""
        n = self.model.ndof
        return np.sqrt(np.clip(np.diag(self.covariance)[:n], 0.0, None))

    @property
    def trustworthy(self) -> bool:
        """True when the state may be used for a pass/fail verdict (health is OK)."""
        return self.health == Health.OK
