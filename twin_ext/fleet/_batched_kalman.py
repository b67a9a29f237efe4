# SPDX-License-Identifier: Apache-2.0
"""`FleetKalman`: the estimator's per-joint Kalman filter batched across the joints of MANY robots at once.

The per-robot `twin_ext.estimation.JointKalmanFilter` is already vectorised over one robot's joints, but each
call costs dozens of small NumPy operations (~0.25 ms for a 9-joint arm): 100 robots are 100 x that per tick.
Here the joints of all robots are one array (``n = robots x joints``); each robot's own time step becomes a
per-joint ``dt``, so one predict and one update serve the whole fleet. Same model, same Joseph-form update and
gate as `JointKalmanFilter` (it is a subclass: `update` is inherited); only prediction takes ``dt: [n]``.

Used by `FleetSession` (``[fleet] batched_estimation``, the default) through `twin_ext.fleet._batched_estimation`:
each tick gathers the robots' filters into one `FleetKalman`, fuses their newest samples and scatters the result
back. Tested against `JointKalmanFilter` robot by robot (tests/test_fleet_batched_kalman.py) and, end to end,
against per-robot estimators (tests/test_fleet_batched_estimation.py); cost in ``python -m twin_ext.bench fleet``
(``cpu_cost.estimate_ms_per_robot_tick`` vs ``per_robot_estimate_ms_per_robot_tick``).
"""

from __future__ import annotations

import numpy as np

from ..estimation import JointKalmanFilter

__all__ = ["FleetKalman"]


def _transitions(dt: np.ndarray) -> np.ndarray:
    """``[n, 3, 3]`` constant-acceleration transitions for ``dt: [n]`` s."""
    f = np.zeros((len(dt), 3, 3))
    f[:, 0, 0] = f[:, 1, 1] = f[:, 2, 2] = 1.0
    f[:, 0, 1] = f[:, 1, 2] = dt
    f[:, 0, 2] = 0.5 * dt * dt
    return f


def _process_noise(dt: np.ndarray, jerk_psd: np.ndarray) -> np.ndarray:
    """``[n, 3, 3]`` white-jerk process noise for ``dt: [n]`` s and ``jerk_psd: [n]``."""
    d2, d3, d4, d5 = dt**2, dt**3, dt**4, dt**5
    q = np.empty((len(dt), 3, 3))
    q[:, 0, 0], q[:, 0, 1], q[:, 0, 2] = d5 / 20, d4 / 8, d3 / 6
    q[:, 1, 0], q[:, 1, 1], q[:, 1, 2] = d4 / 8, d3 / 3, d2 / 2
    q[:, 2, 0], q[:, 2, 1], q[:, 2, 2] = d3 / 6, d2 / 2, dt
    return jerk_psd[:, None, None] * q


class FleetKalman(JointKalmanFilter):
    """Per-joint constant-acceleration filters of ``robots`` robots with ``joints`` joints each (row-major:
    robot ``r``'s joints are ``r*joints .. r*joints+joints-1``). Arguments as `JointKalmanFilter`, per joint."""

    def __init__(self, robots: int, joints: int, **kwargs) -> None:
        super().__init__(robots * joints, **kwargs)
        self.robots, self.joints = int(robots), int(joints)

    def per_joint(self, per_robot: np.ndarray) -> np.ndarray:
        """``[robots]`` values -> ``[n]`` (each robot's value for each of its joints)."""
        return np.repeat(np.asarray(per_robot, dtype=np.float64), self.joints)

    def predict_each(self, dt: np.ndarray) -> None:
        """Advance each joint by its own ``dt: [n]`` s (0 leaves a joint as it is; negative is treated as 0)."""
        dt = np.maximum(np.asarray(dt, dtype=np.float64), 0.0)
        f = _transitions(dt)
        self.x = (f @ self.x[:, :, None])[:, :, 0]
        self.P = f @ self.P @ f.transpose(0, 2, 1) + _process_noise(dt, self.jerk_psd)

    def predicted_each(self, dt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(x [n, 3], P [n, 3, 3])`` predicted ``dt: [n]`` s ahead, without changing the filter."""
        dt = np.maximum(np.asarray(dt, dtype=np.float64), 0.0)
        f = _transitions(dt)
        return (f @ self.x[:, :, None])[:, :, 0], f @ self.P @ f.transpose(0, 2, 1) + _process_noise(dt, self.jerk_psd)
