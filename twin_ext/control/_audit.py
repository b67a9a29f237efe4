# SPDX-License-Identifier: Apache-2.0
"""`CommandLog`: the audit trail of the command channel — every command, its pre-flight verdict, who asked,
every acknowledgement and timeout — to the log, to MCAP (topic `COMMAND_LOG_TOPIC`) and to memory."""

from __future__ import annotations

import logging
import threading
from collections import deque
from typing import Any

__all__ = ["COMMAND_LOG_SCHEMA", "COMMAND_LOG_TOPIC", "CommandLog"]

COMMAND_LOG_TOPIC = "twin/command_log"
"""MCAP channel of the audit entries (JSON, schema `COMMAND_LOG_SCHEMA`)."""
COMMAND_LOG_SCHEMA = "twin_ext.command_log/1"

_log = logging.getLogger("twin_ext.control")


class CommandLog:
    """Audit entries: ``{"t_ns", "event", "id", ...}`` with ``event`` one of ``sent`` (with the command, the verdict
    and the requester), ``refused`` (with the failing check), ``ack`` (state, reason), ``timeout`` and ``resent``.

    Args:
        recorder: an `McapRecorder` (``record_json``) or None.
        keep: entries kept in memory for views and reports.
    """

    def __init__(self, recorder: Any = None, *, keep: int = 500) -> None:
        self.recorder = recorder
        self._entries: deque[dict[str, Any]] = deque(maxlen=keep)
        self._lock = threading.Lock()
        self.record_errors = 0

    def record(self, t_ns: int, event: str, command_id: str, **fields: Any) -> dict[str, Any]:
        """Add one entry (also logged at INFO, refusals and failures at WARNING) and return it."""
        entry = {"t_ns": int(t_ns), "event": event, "id": command_id, **fields}
        with self._lock:
            self._entries.append(entry)
        level = (
            logging.WARNING
            if event in ("refused", "timeout") or fields.get("state") in ("rejected", "failed")
            else logging.INFO
        )
        _log.log(level, "command %s %s %s", command_id or "-", event, _brief(fields))
        if self.recorder is not None:
            try:
                self.recorder.record_json(COMMAND_LOG_TOPIC, entry, int(t_ns), COMMAND_LOG_SCHEMA)
            except Exception:  # noqa: BLE001 - the audit must never stop a command (e.g. a Stop)
                self.record_errors += 1
        return entry

    def entries(self) -> list[dict[str, Any]]:
        """The entries kept, oldest first."""
        with self._lock:
            return list(self._entries)


def _brief(fields: dict[str, Any]) -> str:
    keep = ("type", "requester", "state", "reason", "check", "message")
    return " ".join(f"{k}={fields[k]!r}" for k in keep if fields.get(k))
