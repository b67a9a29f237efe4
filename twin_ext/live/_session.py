# SPDX-License-Identifier: Apache-2.0
"""`TwinSession`: a live twin assembled from configuration — robot, MQTT link, estimator, sinks, what-if.

The Kit extension, the demo and the replay job build their twin here, so a setting means the same thing
everywhere. Construction validates everything first (config sections, robot USD, broker URL)
and raises one `SessionError` naming the problem and the fix; nothing is started until `start`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from .. import TwinExtError
from ..config import ConfigError
from ..estimation import TwinSnapshot
from ..health import HealthMonitor
from ..robot import RobotModel, RobotModelError
from ..sinks import Sink
from ..telemetry import MqttLink, TelemetryIngest
from ..whatif import WhatIfEngine, WhatIfService
from ._config import TwinConfig, load_config
from ._health_service import HealthService
from ._remote_whatif import RemoteWhatIf
from ._twin import LiveTwin

__all__ = ["SessionError", "TwinSession"]


class SessionError(TwinExtError, RuntimeError):
    """The twin cannot be assembled from its configuration; the message names the problem and the fix."""


class TwinSession:
    """One configured live twin.

    Args:
        config: the parsed `TwinConfig` (from config/twin.toml, or Kit's ``/exts/twin_ext`` settings).
        base_dir: folder relative paths in the config resolve against (default: the extension folder).
        sinks: extra sinks (e.g. Kit's stage mirror or articulation driver).
        with_whatif: create the what-if engine (its workers start warming up at once).
        now_ns: the twin clock, int ns.

    Raises:
        SessionError: bad configuration or robot.
    """

    def __init__(
        self,
        config: TwinConfig,
        *,
        base_dir: Path | None = None,
        sinks: Iterable[Sink] = (),
        with_whatif: bool = True,
        now_ns: Callable[[], int] = time.monotonic_ns,
        model: RobotModel | None = None,
    ) -> None:
        self.config = config
        if model is None:
            try:
                model = config.robot.load_model(base_dir)  # the USD plus [robot] drives / balance_inertia
            except RobotModelError as exc:
                raise SessionError(f"robot: {exc}") from None
        self.model: RobotModel = model
        s = config
        self.ingest = TelemetryIngest.from_settings(s.telemetry, s.clock, model=model, now_ns=now_ns)
        self.link = MqttLink(self.ingest, s.broker, now_ns=now_ns)
        self.whatif_engine = None
        service = None
        if with_whatif:
            self.whatif_engine = WhatIfEngine(model, settings=s.whatif)
            service = WhatIfService(self.whatif_engine)
        self.twin = LiveTwin(
            model,
            self.ingest,
            link=self.link,
            estimator_settings=s.estimator,
            sinks=sinks,
            settings=s.twin,
            whatif=service,
            now_ns=now_ns,
            control=s.control,
        )
        self.health: HealthService | None = None
        if s.health.enabled:
            try:
                monitor = HealthMonitor(model, s.health, robot_id=s.telemetry.robot_id)
            except ValueError as exc:  # e.g. [health] joints that are not the robot's
                raise SessionError(f"health: {exc}") from None
            self.health = HealthService(
                monitor,
                link=self.link,
                topics=self.ingest.topics,
                recorder=self.ingest.recorder,
                now_ns=now_ns,
                realtime=self.twin.realtime,
            )
            self.twin.sample_listeners.append(self.health.on_sample)
            self.twin.services.append(self.health)
        self.remote = None
        if service is not None and s.twin.serve_whatif:
            self.remote = RemoteWhatIf(self.twin, self.link, settings=s.remote_whatif)
            self.twin.services.append(self.remote)
        self._started = False

    @classmethod
    def from_file(cls, path: str | Path | None = None, **kwargs: Any) -> TwinSession:
        """A session from a TOML config file (default config/twin.toml)."""
        try:
            config = load_config(path)
        except ConfigError as exc:
            raise SessionError(str(exc)) from None
        return cls(config, **kwargs)

    # ---- lifecycle -------------------------------------------------------------------------------------
    def start(self) -> None:
        """Connect (in the background; a dead broker is reported in `status`, never raised)."""
        if not self._started:
            if self.remote is not None:
                self.remote.open()
            self.twin.start()
            self._started = True

    def stop(self) -> None:
        """Stop the link, what-if workers of this session, sinks and the recorder (idempotent)."""
        if self.remote is not None:
            self.remote.close()  # cancels a running remote request, so stopping never waits for it
        self.twin.stop()
        self.ingest.close()
        if self.whatif_engine is not None:
            self.whatif_engine.close()
        self._started = False

    @property
    def running(self) -> bool:
        return self._started

    # ---- the live twin ------------------------------------------------------------------------------------
    def tick(self, now_ns: int | None = None) -> TwinSnapshot:
        """One display step (see `LiveTwin.tick`)."""
        return self.twin.tick(now_ns)

    def status(self):
        """`TwinStatus` for dashboards and panels."""
        return self.twin.status()

    def ask_whatif(self, request: Any):
        """Run a what-if on the current snapshot; returns a Future of a `WhatIfReport`."""
        return self.twin.ask_whatif(request)

    def add_sink(self, sink: Sink) -> None:
        """Attach a sink to the running twin (e.g. the Kit stage mirror once a stage is open)."""
        self.twin.sinks.append(sink)

    def remove_sink(self, sink: Sink) -> None:
        if sink in self.twin.sinks:
            self.twin.sinks.remove(sink)
