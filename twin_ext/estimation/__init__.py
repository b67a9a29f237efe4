"""State estimation: a per-joint Kalman filter with latency compensation, gating and health.

>>> est = TwinEstimator(robot, EstimatorSettings())
>>> est.observe(msg.names, msg.position, msg.velocity, sample_ns=clock.to_twin_ns(msg.stamp_ns), arrival_ns=t)
>>> snap = est.snapshot(now_ns)      # TwinSnapshot predicted to now, with covariance and health
"""

from .estimator import EstimatorStats, ObserveResult, TwinEstimator
from .kalman import JointKalmanFilter
from .settings import EstimatorSettings

__all__ = ["EstimatorSettings", "EstimatorStats", "JointKalmanFilter", "ObserveResult", "TwinEstimator"]
