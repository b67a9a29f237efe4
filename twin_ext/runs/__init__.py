# SPDX-License-Identifier: Apache-2.0
"""Jobs built from the live twin: the headless live run, the demo, replay of recordings, fidelity evaluation,
reports, the dashboard."""

from .. import lazy_exports

_EXPORTS = {
    "add_demo_arguments": "._demo",
    "run_demo": "._demo",
    "add_replay_arguments": "._replay",
    "RecordingSource": "._recording_source",
    "load_recording": "._recording_source",
    "parse_joint_map": "._recording_source",
    "run_replay": "._replay",
    "add_run_arguments": "._live_run",
    "run_live": "._live_run",
    "add_fleet_arguments": "._fleet_run",
    "run_fleet": "._fleet_run",
    "FidelityResult": "._fidelity",
    "OfflineFeed": "._fidelity",
    "VirtualClock": "._fidelity",
    "error_stats": "._fidelity",
    "evaluate_fidelity": "._fidelity",
    "fusable_samples": "._fidelity",
    "TerminalDashboard": "._dashboard",
    "render_dashboard": "._dashboard",
    "health_lines": "._dashboard",
    "status_line": "._dashboard",
    "write_run_outputs": "._outputs",
    "ReportData": "._report",
    "write_report": "._report",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
