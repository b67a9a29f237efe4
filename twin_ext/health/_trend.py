# SPDX-License-Identifier: Apache-2.0
"""Wear trends and forecasts: friction / nominal per joint over long runs, energy per program cycle.

`WearTrend` keeps one point per joint every ``interval_s`` (in memory and, optionally, appended to a JSON-lines
file so the trend survives restarts), fits a straight line ``ratio(t) = a + b t`` by weighted least squares
(weights from each point's confidence interval) and forecasts when the line reaches the service limit, with an
interval from the slope's uncertainty: "joint 4 friction +38 %; reaches 2x nominal in ~41 h (30–60 h)".

`cycle_period` finds the period of a repeating program from the joint positions (autocorrelation), so the
energy a joint spends per cycle can be trended too: wear and misalignment show up as a rising energy per cycle.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict, deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["Forecast", "WearTrend", "cycle_period"]

_Z90 = 1.644854  # two-sided 90 % interval for the forecast's time range


@dataclass(frozen=True)
class Forecast:
    """When a joint's friction ratio reaches the service limit, by the fitted trend.

    Attributes:
        joint: name. ratio_now: fitted friction / nominal now (``ratio_now_sd`` its one-sigma uncertainty: a line
        through many points has no lag on a ramp and averages their noise). slope_per_hour: fitted change per hour.
        hours: expected time to the limit from now, h (inf when not rising); hours_low, hours_high: 90 % range.
        points: trend points used. limit: the service limit ratio. message: one sentence.
    """

    joint: str
    ratio_now: float
    ratio_now_sd: float
    slope_per_hour: float
    hours: float
    hours_low: float
    hours_high: float
    points: int
    limit: float
    message: str


class WearTrend:
    """Friction-ratio and energy-per-cycle history of a robot's joints, with forecasts.

    Args:
        joints: joint names. limit: service limit ratio (e.g. 2.0). path: JSON-lines file to append points to
            and to read earlier points from ("" = memory only). robot_id: recorded with each point.
        max_points: points kept per joint in memory.
    """

    def __init__(
        self, joints: tuple[str, ...], *, limit: float, path: str = "", robot_id: str = "", max_points: int = 10_000
    ) -> None:
        self.joints = tuple(joints)
        self.limit = float(limit)
        self.path = Path(path).expanduser() if path else None
        self.robot_id = robot_id
        self.points: dict[str, deque] = defaultdict(lambda: deque(maxlen=max_points))
        self.energy: dict[str, deque] = defaultdict(lambda: deque(maxlen=max_points))
        self.write_error = ""
        if self.path is not None and self.path.is_file():
            self._load()

    def _load(self) -> None:
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            self.write_error = f"cannot read the health history {self.path}: {exc.strerror or exc}"
            return
        for line in lines:
            try:
                rec = json.loads(line)
            except ValueError:
                continue  # a torn last line after a crash
            if rec.get("robot_id", "") != self.robot_id or rec.get("joint") not in self.joints:
                continue
            if rec.get("ratio") is not None:
                self.points[rec["joint"]].append((float(rec["t_h"]), float(rec["ratio"]), float(rec["ratio_ci"])))
            if rec.get("energy_per_cycle_j") is not None:
                self.energy[rec["joint"]].append((float(rec["t_h"]), float(rec["energy_per_cycle_j"])))

    def add(
        self, t_h: float, joint: str, ratio: float, ratio_ci: float, energy_per_cycle_j: float | None = None
    ) -> None:
        """Add a point at ``t_h`` hours (a clock that keeps running across restarts: Unix time / 3600)."""
        if math.isfinite(ratio) and math.isfinite(ratio_ci):
            self.points[joint].append((t_h, ratio, max(ratio_ci, 1e-6)))
        if energy_per_cycle_j is not None and math.isfinite(energy_per_cycle_j):
            self.energy[joint].append((t_h, energy_per_cycle_j))
        if self.path is not None:
            rec = {
                "robot_id": self.robot_id,
                "joint": joint,
                "t_h": t_h,
                "ratio": ratio if math.isfinite(ratio) else None,
                "ratio_ci": ratio_ci if math.isfinite(ratio_ci) else None,
                "energy_per_cycle_j": energy_per_cycle_j,
            }
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with open(self.path, "a", encoding="utf-8") as fh:
                    fh.write(json.dumps(rec, separators=(",", ":")) + "\n")
                self.write_error = ""
            except OSError as exc:  # the trend goes on in memory; the summary says why the file is not written
                self.write_error = f"cannot write the health history {self.path}: {exc.strerror or exc}"

    def forecast(self, joint: str, now_h: float) -> Forecast | None:
        """The fitted trend of ``joint`` and when it reaches the limit; None with fewer than 3 points."""
        pts = list(self.points.get(joint, ()))
        if len(pts) < 3:
            return None
        t = np.array([p[0] for p in pts])
        y = np.array([p[1] for p in pts])
        w = 1.0 / np.array([p[2] for p in pts]) ** 2
        tc = t - now_h
        a_mat = np.stack([np.ones_like(tc), tc], axis=1)
        info = a_mat.T @ (a_mat * w[:, None])
        try:
            cov = np.linalg.inv(info)
        except np.linalg.LinAlgError:
            return None
        coef = cov @ (a_mat.T @ (w * y))
        resid = y - a_mat @ coef
        dof = max(len(y) - 2, 1)
        # Scatter beyond the points' own intervals widens the fit's uncertainty (never narrows it).
        scale = max(float((w * resid**2).sum()) / dof, 1.0)
        cov = cov * scale
        now, slope = float(coef[0]), float(coef[1])
        slope_sd = math.sqrt(max(cov[1, 1], 0.0))
        rise = self.limit - now

        def hours(s: float) -> float:
            return rise / s if s > 0 else math.inf

        if rise <= 0:
            h = lo = hi = 0.0
        else:
            h = hours(slope)
            lo = hours(slope + _Z90 * slope_sd)
            hi = hours(slope - _Z90 * slope_sd)
        pct = (now - 1.0) * 100.0
        if rise <= 0:
            msg = f"{joint} friction {pct:+.0f} %: at or beyond the service limit of {self.limit:g}x nominal"
        elif math.isinf(h):
            msg = f"{joint} friction {pct:+.0f} %: not rising"
        else:
            msg = (
                f"{joint} friction {pct:+.0f} %; reaches the service limit of {self.limit:g}x nominal in ~{h:.0f} h "
                f"({lo:.0f}–{'∞' if math.isinf(hi) else f'{hi:.0f}'} h)"
            )
        now_sd = math.sqrt(max(cov[0, 0], 0.0))
        return Forecast(joint, now, now_sd, slope, h, lo, hi, len(pts), self.limit, msg)


def cycle_period(t_s: np.ndarray, q: np.ndarray, *, min_s: float = 1.0, max_s: float = 120.0) -> float | None:
    """The period of a repeating motion, s, from joint positions ``q [T, J]`` sampled at ``t_s [T]`` (about
    uniform); None when no clear repetition (peak autocorrelation below 0.9) is found within [min_s, max_s]."""
    if len(t_s) < 32:
        return None
    dt = float(np.median(np.diff(t_s)))
    if not dt > 0:
        return None
    x = q - q.mean(axis=0)
    energy = float((x * x).sum())
    if energy <= 0:
        return None
    lo, hi = int(math.ceil(min_s / dt)), min(int(max_s / dt), len(t_s) // 2)
    best, best_lag = 0.0, None
    for lag in range(lo, hi + 1):
        a, b = x[lag:], x[:-lag]
        c = float((a * b).sum()) / math.sqrt(float((a * a).sum()) * float((b * b).sum()) + 1e-300)
        if c > best + 1e-9:
            best, best_lag = c, lag
        elif best_lag is not None and best > 0.9 and c < best - 0.05:
            break  # past the first strong peak
    return best_lag * dt if best_lag is not None and best > 0.9 else None
