# SPDX-License-Identifier: Apache-2.0
"""Safe twin -> robot control: pre-flight (bounds, health, what-if simulation), leases, acknowledgements, audit.

    gate = CommandGate(Preflight(model, settings, evaluate=service.evaluate), now_ns=time.monotonic_ns)
    tracked = gate.send(MoveTo(("joint1",), (0.3,), 1.0), snapshot=snap, publish=send, clock=clock)
    gate.poll()                                   # acks and timeouts; tracked.state -> received ... done

`twin_ext.live.LiveTwin.send_command` uses it; the contract a robot adapter implements (acks, leases,
idempotent ids) is in docs/control.md, settings (``[control]``) in docs/SETTINGS.md.
"""

from .. import lazy_exports

_EXPORTS = {
    "ACK_STATES": "._acks",
    "END_STATES": "._acks",
    "AckError": "._acks",
    "CommandAck": "._acks",
    "decode_ack": "._acks",
    "encode_ack": "._acks",
    "COMMAND_LOG_SCHEMA": "._audit",
    "COMMAND_LOG_TOPIC": "._audit",
    "CommandLog": "._audit",
    "CommandGate": "._gate",
    "PREFLIGHT_CHECKS": "._preflight",
    "CommandRefused": "._preflight",
    "Preflight": "._preflight",
    "PreflightVerdict": "._preflight",
    "move_to_scenario": "._preflight",
    "command_lines": "._report",
    "command_log_rows": "._report",
    "read_command_log": "._report",
    "MIN_KEY_BYTES": "._signing",
    "RequestAuthenticator": "._signing",
    "Unauthorised": "._signing",
    "load_key": "._signing",
    "sign_request": "._signing",
    "ControlSettings": "._settings",
    "CommandTracker": "._tracker",
    "TrackedCommand": "._tracker",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
