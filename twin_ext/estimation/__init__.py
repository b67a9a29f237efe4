# SPDX-License-Identifier: Apache-2.0
"""State estimation: a per-joint Kalman filter with latency compensation, gating and health -> `TwinSnapshot`.

est = TwinEstimator(robot, EstimatorSettings())
est.observe(msg.names, msg.position, msg.velocity, sample_ns=clock.to_twin_ns(msg.stamp_ns), arrival_ns=t)
snap = est.snapshot(now_ns)      # TwinSnapshot predicted to now, with covariance and health
"""

from .. import lazy_exports

_EXPORTS = {
    "EstimatorStats": "._estimator",
    "ObserveResult": "._estimator",
    "TwinEstimator": "._estimator",
    "shown_prediction": "._estimator",
    "JointKalmanFilter": "._kalman",
    "build_kalman_kernel": "._kalman_kernel",
    "EstimatorSettings": "._settings",
    "Health": "._snapshot",
    "TwinSnapshot": "._snapshot",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
