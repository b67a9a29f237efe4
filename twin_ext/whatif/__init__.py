"""What-if engine: Warp batched forward rollouts of the robot, scenarios and verdicts.

    >>> from twin_ext.robot import load_robot
    >>> from twin_ext.whatif import WhatIfEngine, load_scenario
    >>> engine = WhatIfEngine(load_robot("usd/franka_panda/panda.usda"))    # workers warm up meanwhile
    >>> report = engine.run(load_scenario("pick_place_payload"))
    >>> print(report.summary())

Dynamics (CRBA + tree-sparse LTDL in one Warp kernel per precision, the time loop inside), the integrator
and the verdict rules are documented in docs/whatif.md; settings (``[whatif]``) in docs/SETTINGS.md.
Warp is imported only when an engine runs.
"""

from .engine import Dynamics, Rollout, WhatIfEngine
from .errors import WhatIfError, WorkerError
from .scenario import BaseState, Scenario, TargetStream, TrajectoryCommand, load_scenario, run_scenario
from .service import WhatIfService
from .settings import WhatIfSettings
from .variants import Payload, Perturbation, Variant
from .verdict import KindSummary, VariantVerdict, Violation, WhatIfReport, wilson_interval


def shutdown_workers() -> None:
    """Stop the shared what-if worker processes of this process (they also stop at interpreter exit)."""
    from .pool import shutdown_pools

    shutdown_pools()


__all__ = [
    "BaseState",
    "Dynamics",
    "KindSummary",
    "Payload",
    "Perturbation",
    "Rollout",
    "Scenario",
    "TargetStream",
    "TrajectoryCommand",
    "Variant",
    "VariantVerdict",
    "Violation",
    "WhatIfEngine",
    "WhatIfError",
    "WhatIfReport",
    "WhatIfService",
    "WhatIfSettings",
    "WorkerError",
    "load_scenario",
    "run_scenario",
    "shutdown_workers",
    "wilson_interval",
]
