# SPDX-License-Identifier: Apache-2.0
"""MQTT topic names of one robot (DESIGN.md §4): ``<prefix>/<robot_id>/<kind>``."""

from __future__ import annotations

from dataclasses import dataclass

from ._messages import check_robot_id

__all__ = ["Topics", "DEFAULT_PREFIX", "ANY_ROBOT"]

DEFAULT_PREFIX = "twin/v1"
"""Topic prefix of schema v1."""
ANY_ROBOT = "+"
"""Robot id that subscribes to every robot under the prefix (MQTT single-level wildcard)."""


@dataclass(frozen=True)
class Topics:
    """The topics of robot ``robot_id`` under ``prefix``.

    Attributes (all ``str``): ``joint_states`` (robot -> twin telemetry), ``birth`` (retained robot
    announcement), ``status`` (retained robot liveness, the robot's MQTT will), ``twin_status`` (the
    twin's own health, retained, the twin's will), ``whatif_request`` / ``whatif_result``,
    ``command`` (twin -> robot, disabled unless configured).

    ``robot_id="+"`` gives wildcard subscriptions that match every robot.
    """

    robot_id: str
    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        if self.robot_id != ANY_ROBOT:
            check_robot_id(self.robot_id)
        if (
            not self.prefix
            or self.prefix.startswith("/")
            or self.prefix.endswith("/")
            or any(c in self.prefix for c in "+#\0")
        ):
            raise ValueError(
                f"topic prefix {self.prefix!r} must be non-empty, without leading/trailing '/' or wildcards (e.g. 'twin/v1')"
            )

    def _topic(self, kind: str) -> str:
        return f"{self.prefix}/{self.robot_id}/{kind}"

    @property
    def joint_states(self) -> str:
        return self._topic("joint_states")

    @property
    def birth(self) -> str:
        return self._topic("birth")

    @property
    def status(self) -> str:
        return self._topic("status")

    @property
    def twin_status(self) -> str:
        return self._topic("twin/status")

    @property
    def health(self) -> str:
        """The twin's health summary of the robot (retained JSON, docs/health.md)."""
        return self._topic("health")

    @property
    def health_events(self) -> str:
        """Each health event as it is raised (JSON, QoS 1, docs/health.md)."""
        return self._topic("health/events")

    @property
    def whatif_request(self) -> str:
        return self._topic("whatif/request")

    @property
    def whatif_result(self) -> str:
        return self._topic("whatif/result")

    @property
    def command(self) -> str:
        return self._topic("command")

    @property
    def command_ack(self) -> str:
        """Robot -> twin: what became of each command id (received/rejected/started/done/failed; docs/control.md)."""
        return self._topic("command/ack")

    def telemetry_subscriptions(self) -> tuple[str, ...]:
        """The topics the twin subscribes to: joint states, birth, status."""
        return (self.joint_states, self.birth, self.status)

    def parse(self, topic: str) -> tuple[str, str] | None:
        """Split ``<prefix>/<robot_id>/<kind>`` into ``(robot_id, kind)``; None if it is not one of ours."""
        head = self.prefix + "/"
        if not topic.startswith(head):
            return None
        rest = topic[len(head) :]
        robot_id, sep, kind = rest.partition("/")
        if not sep or not robot_id or not kind:
            return None
        return robot_id, kind
