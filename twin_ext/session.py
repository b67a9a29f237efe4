"""`TwinSession`: a live twin assembled from configuration — robot, MQTT link, estimator, sinks, what-if.

The Kit extension and the headless ``python -m twin_ext run`` both build their twin here, so a setting means
the same thing everywhere. Construction validates everything first (config sections, robot USD, broker URL)
and raises one `SessionError` naming the problem and the fix; nothing is started until `start`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import ConfigError, TwinConfig, load_config
from .robot import RobotModel, RobotModelError, load_robot
from .sinks.base import Sink
from .state import TwinSnapshot

__all__ = ["SessionError", "SessionSettings", "TwinSession"]


class SessionError(RuntimeError):
    """The twin cannot be assembled from its configuration; the message names the problem and the fix."""


@dataclass(frozen=True)
class SessionSettings:
    """The parsed sections a session uses (see docs/SETTINGS.md)."""

    broker: Any
    telemetry: Any
    clock: Any
    estimator: Any
    twin: Any
    whatif: Any


def parse_sections(config: TwinConfig) -> SessionSettings:
    """Parse every section the live twin uses; any bad key or value raises `SessionError`."""
    from .estimation import EstimatorSettings
    from .telemetry import BrokerSettings, ClockSettings, TelemetrySettings
    from .twin import TwinSettings
    from .whatif import WhatIfSettings

    try:
        telemetry = dict(config.section("telemetry"))
        if not telemetry.get("robot_id"):
            telemetry["robot_id"] = config.robot.robot_id  # [robot] robot_id is where users set it
        return SessionSettings(
            broker=BrokerSettings.from_mapping(config.section("broker")),
            telemetry=TelemetrySettings.from_mapping(telemetry),
            clock=ClockSettings.from_mapping(config.section("clock")),
            estimator=EstimatorSettings.from_mapping(config.section("estimator")),
            twin=TwinSettings.from_mapping(config.section("twin")),
            whatif=WhatIfSettings.from_mapping(config.section("whatif")),
        )
    except (ConfigError, ValueError, TypeError) as exc:
        raise SessionError(f"configuration: {exc}") from None


class TwinSession:
    """One configured live twin.

    Args:
        config: the `TwinConfig` (from config/twin.toml, or Kit's ``/exts/twin_ext`` settings).
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
        self.settings = parse_sections(config)
        if model is None:
            try:
                model = load_robot(config.robot.resolved_usd(base_dir), prim_path=config.robot.prim_path or None)
            except RobotModelError as exc:
                raise SessionError(f"robot: {exc}") from None
        self.model: RobotModel = model
        from .telemetry import TelemetryIngest
        from .telemetry.mqtt_link import MqttLink
        from .twin import LiveTwin

        s = self.settings
        self.ingest = TelemetryIngest.from_settings(s.telemetry, s.clock, model=model, now_ns=now_ns)
        self.link = MqttLink(self.ingest, s.broker, now_ns=now_ns)
        self.whatif_engine = None
        service = None
        if with_whatif:
            from .whatif import WhatIfEngine, WhatIfService

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
        )
        self.remote = None
        if service is not None and s.twin.serve_whatif:
            from .remote import RemoteWhatIf

            self.remote = RemoteWhatIf(self.twin, self.link)
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
            self.twin.start()
            self._started = True

    def stop(self) -> None:
        """Stop the link, what-if workers of this session, sinks and the recorder (idempotent)."""
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
