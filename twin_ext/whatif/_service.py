# SPDX-License-Identifier: Apache-2.0
"""`WhatIfService`: the live twin's entry point -- answer a what-if request on a twin snapshot."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..estimation import TwinSnapshot
from ._engine import WhatIfEngine
from ._errors import WhatIfError
from ._scenario import Scenario, load_scenario
from ._verdict import WhatIfReport

__all__ = ["WhatIfService"]


class WhatIfService:
    """Evaluates what-if requests against snapshots of the twin (``LiveTwin(..., whatif=WhatIfService(engine))``).

    Args:
        engine: the `WhatIfEngine` of the twin's robot.
    """

    def __init__(self, engine: WhatIfEngine) -> None:
        self.engine = engine

    def evaluate(
        self,
        snapshot: TwinSnapshot | None,
        request: Scenario | Mapping[str, Any] | str | Path,
        *,
        cancel: threading.Event | None = None,
        progress: Callable[[float], None] | None = None,
    ) -> WhatIfReport:
        """Run ``request`` from ``snapshot`` (its mean, covariance and health).

        Args:
            snapshot: the twin's state when asked; a stale or lost snapshot makes every verdict ``unknown``
                (never ``pass``). None: use the scenario's own base state.
            request: a `Scenario`, a mapping with the scenario schema (e.g. a JSON ``whatif/request``
                payload), or a scenario name / TOML path. These are trusted local inputs (paths are read as
                given); requests from the network go through `twin_ext.live.RemoteWhatIf`, which reads files
                only from its allowed folders.
            cancel: set it to stop the rollouts early (the report then says so in its warnings).
            progress: called with the fraction of the rollouts done (0..1).

        Raises:
            WhatIfError: the request is malformed (the message names the part and the fix).
        """
        if isinstance(request, Scenario):
            scenario = request
        elif isinstance(request, Mapping):
            scenario = Scenario.from_mapping(request, source="what-if request")
        elif isinstance(request, (str, Path)):
            scenario = load_scenario(request)
        else:
            raise WhatIfError(
                f"a what-if request must be a Scenario, a mapping or a scenario name, got {type(request).__name__}"
            )
        return self.engine.run(scenario, base=snapshot, progress=progress, cancel=cancel)
