"""twin_ext — a live digital twin of a robot arm for NVIDIA Isaac Sim / Omniverse Kit.

The core (everything outside ``twin_ext.kit``) is plain Python: it imports no ``omni.*`` module and
runs headless. Heavy dependencies (pxr, warp, mujoco) are imported lazily by the modules that use them.

Public entry points:
    twin_ext.robot      load_robot(path) -> RobotModel (USD / UsdPhysics articulation)
    twin_ext.telemetry  messages, codecs, MQTT link, clock sync, MCAP record/replay
    twin_ext.estimation Kalman state estimator
    twin_ext.whatif     Warp batched rollouts, scenarios and verdicts
    twin_ext.twin       the live loop
"""

__version__ = "0.1.0"
