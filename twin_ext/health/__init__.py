# SPDX-License-Identifier: Apache-2.0
"""Robot health: does the robot still behave like its model? Residuals, identification, events, forecasts.

    monitor = HealthMonitor(robot, HealthSettings())
    events = monitor.observe(t_s, q, qd, tau)      # measured joint states in time order, [N] and [N, ndof]
    monitor.summary().to_dict()                    # per joint: external torque, friction ratio, forecast

The momentum observer, the identification of friction, bias and payload, the detectors and their false-alarm
budget, and the wear forecast are described in docs/health.md; settings (``[health]``) in docs/SETTINGS.md.
"""

from .. import lazy_exports

_EXPORTS = {
    "BatchedHealthMonitor": "._batched_monitor",
    "EVENT_KINDS": "._events",
    "HealthEvent": "._events",
    "HealthMonitor": "._monitor",
    "HealthSummary": "._monitor",
    "JointHealth": "._monitor",
    "HealthSettings": "._settings",
    "MomentumObserver": "._observer",
    "RecursiveLeastSquares": "._identify",
    "ModelIdentifier": "._identify",
    "FrictionEstimate": "._identify",
    "PayloadEstimate": "._identify",
    "WearTrend": "._trend",
    "Forecast": "._trend",
    "cycle_period": "._trend",
    "exceedance_threshold": "._thresholds",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
