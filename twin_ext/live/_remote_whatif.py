# SPDX-License-Identifier: Apache-2.0
"""What-if over MQTT and the veto channel: ``<prefix>/<robot_id>/whatif/request`` -> ``.../whatif/result``.

A request (JSON, at most ``max_bytes``)::

    {"id": "job-42",                        # echoed in the result (optional)
     "name": "pick_place_payload",          # a shipped scenario (config/scenarios/<name>.toml), or
     "scenario": { ...scenario schema... }, # a whole scenario (docs/whatif.md)
     "align_to_state": true,                # start the trajectory command where the robot is now (default true)
     "veto_if_fail": false}                 # if the verdict is "fail", tell the robot to stop (needs commands)

is answered with ``{"id", "ok": true, "report": <WhatIfReport.to_dict()>, "veto": "..."}`` or
``{"id", "ok": false, "error": "<what is wrong and how to fix it>"}``. Requests are queued by the network
thread (bounded; the overflow is answered with an error) and run one at a time on the twin's what-if worker,
against the snapshot current when the request is taken. The veto is a `Stop` command on the robot's command
topic, sent only when ``[twin] commands_enabled`` is true; otherwise the result says why it was not sent.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from typing import Any

from ..config import check_keys
from ..telemetry import Stop
from ..whatif import Scenario, align_to_snapshot, load_scenario
from ._twin import CommandGateClosed

__all__ = ["RemoteWhatIf"]

_KEYS = ("id", "name", "scenario", "align_to_state", "veto_if_fail")


class RemoteWhatIf:
    """Serves what-if requests for a `LiveTwin` over its `MqttLink`.

    Args:
        twin: the live twin (its ``whatif`` service runs the requests).
        link: the `MqttLink` (must not be started yet: the request topic is subscribed on connect).
        max_queue: requests waiting at most; more are refused with an error result.
        max_bytes: largest request payload.
    """

    def __init__(self, twin: Any, link: Any, *, max_queue: int = 8, max_bytes: int = 65536) -> None:
        self.twin = twin
        self.link = link
        topics = twin.ingest.topics
        self.request_topic = topics.whatif_request
        self.result_topic = topics.whatif_result
        self.max_queue = max_queue
        self.max_bytes = max_bytes
        self._queue: deque[bytes] = deque()
        self._lock = threading.Lock()
        self._running: list[tuple[str, Any, bool]] = []
        self.served = 0
        self.refused = 0
        link.add_handler(self.request_topic, self._on_request)

    # network thread: enqueue only
    def _on_request(self, payload: bytes) -> None:
        with self._lock:
            if len(self._queue) >= self.max_queue:
                self.refused += 1
                overflow = True
            else:
                self._queue.append(payload)
                overflow = False
        if overflow:
            self._publish(
                {
                    "id": None,
                    "ok": False,
                    "error": f"too many what-if requests waiting (max {self.max_queue}); "
                    f"retry when earlier results arrived",
                }
            )

    # display thread
    def poll(self) -> None:
        """Start queued requests and publish finished results (called on every twin tick)."""
        with self._lock:
            pending = list(self._queue)
            self._queue.clear()
        for payload in pending:
            self._start(payload)
        still = []
        for request_id, future, veto in self._running:
            if future.done():
                self._finish(request_id, future, veto)
            else:
                still.append((request_id, future, veto))
        self._running = still

    def _start(self, payload: bytes) -> None:
        request_id = None
        try:
            if len(payload) > self.max_bytes:
                raise ValueError(f"request is {len(payload)} bytes, more than {self.max_bytes}")
            doc = json.loads(payload.decode("utf-8"), parse_constant=_refuse)
            if not isinstance(doc, dict):
                raise ValueError("request must be a JSON object")
            request_id = doc.get("id")
            check_keys(doc, _KEYS, where="what-if request:", error=ValueError)
            if ("name" in doc) == ("scenario" in doc):
                raise ValueError('give exactly one of "name" (a shipped scenario) or "scenario" (a scenario object)')
            scenario = self._scenario(doc)
            future = self.twin.ask_whatif(scenario)
        except Exception as exc:  # noqa: BLE001 - every bad request gets an answer, never a crash
            self.refused += 1
            self._publish({"id": request_id, "ok": False, "error": str(exc)})
            return
        self._running.append((request_id, future, bool(doc.get("veto_if_fail", False))))

    def _scenario(self, doc: dict):
        if "name" in doc:
            if not isinstance(doc["name"], str) or "/" in doc["name"] or "\\" in doc["name"]:
                raise ValueError("name must be the name of a shipped scenario (no paths)")
            scenario = load_scenario(doc["name"])
        else:
            if not isinstance(doc["scenario"], dict):
                raise ValueError("scenario must be a JSON object with the scenario schema (docs/whatif.md)")
            scenario = Scenario.from_mapping(doc["scenario"], source="whatif/request")
        snapshot = self.twin.latest_snapshot
        if doc.get("align_to_state", True) and snapshot is not None:
            scenario, _ = align_to_snapshot(scenario, snapshot)
        return scenario

    def _finish(self, request_id: Any, future: Any, veto: bool) -> None:
        try:
            report = future.result()
        except Exception as exc:  # noqa: BLE001
            self._publish({"id": request_id, "ok": False, "error": f"what-if failed: {exc}"})
            return
        result = {"id": request_id, "ok": True, "report": report.to_dict()}
        if veto:
            result["veto"] = self._veto(report)
        self.served += 1
        self._publish(result)

    def _veto(self, report: Any) -> str:
        if report.status != "fail":
            return f"not needed: verdict {report.status}"
        try:
            self.twin.send_command(Stop())
        except CommandGateClosed as exc:
            return f"not sent: {exc}"
        return "stop sent to the robot"

    def _publish(self, obj: dict) -> None:
        self.link.publish(self.result_topic, json.dumps(obj, separators=(",", ":")).encode("utf-8"), qos=1)


def _refuse(token: str):
    raise ValueError(f"{token} is not valid JSON")
