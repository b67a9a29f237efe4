# SPDX-License-Identifier: Apache-2.0
"""What-if engine: Warp batched forward rollouts of the robot, scenarios and verdicts.

    engine = WhatIfEngine(load_robot(default_robot_path()))    # workers warm up meanwhile
    report = engine.run(load_scenario("pick_place_payload"))
    print(report.summary())

Dynamics (CRBA + tree-sparse LTDL in one Warp kernel per precision, the time loop inside), the integrator
and the verdict rules are documented in docs/whatif.md; settings (``[whatif]``) in docs/SETTINGS.md.
Warp is imported only when an engine runs.
"""

from .. import lazy_exports

_EXPORTS = {
    "Clearance": "._clearance",
    "ClearanceChecker": "._clearance",
    "RequestLimits": "._budget",
    "RequestPlan": "._budget",
    "WhatIfBudgetError": "._budget",
    "plan_request": "._budget",
    "ConfinedFiles": "._confined",
    "FileNotAllowed": "._confined",
    "Dynamics": "._engine",
    "Rollout": "._engine",
    "WhatIfEngine": "._engine",
    "WhatIfError": "._errors",
    "WorkerError": "._errors",
    "BaseState": "._scenario",
    "Scenario": "._scenario",
    "TargetStream": "._scenario",
    "TrajectoryCommand": "._scenario",
    "load_scenario": "._scenario",
    "run_scenario": "._scenario",
    "WhatIfService": "._service",
    "WhatIfSettings": "._settings",
    "Payload": "._variants",
    "Perturbation": "._variants",
    "Variant": "._variants",
    "KindSummary": "._verdict",
    "VariantVerdict": "._verdict",
    "Violation": "._verdict",
    "WhatIfReport": "._verdict",
    "wilson_interval": "._verdict",
    "align_to_snapshot": "._align",
    "shutdown_workers": "._pool",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
