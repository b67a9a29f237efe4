# SPDX-License-Identifier: Apache-2.0
"""``python -m twin_ext replay RECORDING.mcap``: run the twin over a recording, as a headless batch job.

The recorded payloads go into the twin's real pipeline at their recorded arrival times on a virtual clock
(as fast as the machine allows, exactly reproducible); the twin ticks at its display rate over the recorded
span; optionally a what-if is asked at a given time. Outputs (``--out``): the mirrored motion
(``twin_motion.usda``), ``whatif.json`` and ``report.html`` — with the plant's truth when the recording carries
the emulator's ``truth/joint_states`` channel (the shipped ``data/recordings/*.mcap`` do).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["add_replay_arguments", "run_replay"]


def add_replay_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "recording",
        help="an MCAP recording: twin_ext telemetry channels, or a rosbag2 MCAP of sensor_msgs/msg/JointState",
    )
    parser.add_argument("--robot", help="robot USD (default: the shipped Franka Panda)")
    parser.add_argument("--robot-id", default="", help="robot to follow (default: the first heard from)")
    parser.add_argument(
        "--config", help="a twin TOML config for the estimator/clock/twin sections and [telemetry] ros2_joint_map"
    )
    parser.add_argument(
        "--whatif", default="pick_place_payload", help="scenario asked during the replay (name or TOML; 'none' to skip)"
    )
    parser.add_argument("--whatif-at", type=float, default=None, help="s into the recording (default: the middle)")
    parser.add_argument("--samples", type=int, default=16, help="Monte-Carlo samples per variant (default 16)")
    parser.add_argument("--out", default="out/replay", help="output folder (default out/replay)")
    parser.add_argument(
        "--joint-map",
        action="append",
        default=[],
        metavar="BAG=MODEL",
        help="ROS 2 bags: map a bag joint name onto a model joint (repeatable), e.g. panda_joint1=joint1",
    )
    parser.add_argument("--ros2-topic", default="", help="ROS 2 bags: the JointState topic (default /joint_states)")
    parser.add_argument(
        "--export-ros2",
        default="",
        metavar="FILE.mcap",
        help="also write the twin's estimate as a ROS 2 bag (sensor_msgs/msg/JointState on /twin/joint_states)",
    )


def run_replay(args: argparse.Namespace) -> int:
    import numpy as np

    from .. import TwinExtError
    from ..live import LiveTwin, TwinConfig, load_config
    from ..robot import default_robot_path, load_robot
    from ..sinks import MirrorSink, TraceSink
    from ..stage import UsdKinematicMirror
    from ..telemetry import TelemetryIngest
    from ._fidelity import VirtualClock
    from ._outputs import write_run_outputs
    from ._recording_source import load_recording, parse_joint_map

    path = Path(args.recording)
    if not path.is_file():
        print(f"error: recording not found: {path}", file=sys.stderr)
        return 2
    try:
        robot = load_robot(args.robot or default_robot_path())
        config = load_config(args.config) if args.config else TwinConfig()
        settings = config
    except TwinExtError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        # [telemetry] ros2_joint_map of --config, then --joint-map entries (they win for the same bag name)
        joint_map = {**parse_joint_map(config.telemetry.ros2_joint_map), **parse_joint_map(args.joint_map)}
        source = load_recording(
            path, robot.dof_names, robot_id=args.robot_id, joint_map=joint_map, ros2_topic=args.ros2_topic
        )
    except TwinExtError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    payloads, truth_rows = source.payloads, source.truth_rows
    for warning in source.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start, end = payloads[0][2], payloads[-1][2]
    clock = VirtualClock(start)
    from dataclasses import replace

    ingest = TelemetryIngest(
        settings=replace(settings.telemetry, robot_id=args.robot_id),
        clock_settings=settings.clock,
        model=robot,
        now_ns=clock,
    )
    mirror = MirrorSink(UsdKinematicMirror.new_stage(robot, robot_prim_path=f"/World/{robot.name}"), live=False)
    trace = TraceSink(robot, latest_measurement=lambda: ingest.latest)
    twin = LiveTwin(
        robot,
        ingest,
        estimator_settings=settings.estimator,
        settings=settings.twin,
        sinks=[mirror, trace],
        now_ns=clock,
    )
    period = int(1e9 / settings.twin.display_rate_hz)
    whatif_at = start + int(((end - start) / 2e9 if args.whatif_at is None else args.whatif_at) * 1e9)
    report, note = None, ""
    k = 0
    print(f"replaying {len(payloads)} payloads ({(end - start) * 1e-9:.1f} s) from {path}")
    for t in range(start + period, end + period, period):
        while k < len(payloads) and payloads[k][2] <= t:
            topic, payload, log_time = payloads[k]
            clock.set(log_time)
            ingest.on_payload(topic, payload, log_time)
            k += 1
        clock.set(t)
        snapshot = twin.tick(t)
        if report is None and args.whatif != "none" and t >= whatif_at:
            report, note = _ask(robot, snapshot, args, settings)
    status = twin.status()
    truth_q = None
    if truth_rows:
        t_ns = trace.arrays()["t_ns"].astype(np.float64)
        names = list(truth_rows[0]["names"])
        t_truth = np.array([r["host_ns"] for r in truth_rows], dtype=np.float64)
        q_truth = np.array([r["position"] for r in truth_rows])
        truth_q = np.full((len(t_ns), robot.ndof), np.nan)
        for j, name in enumerate(robot.dof_names):
            if name in names:
                truth_q[:, j] = np.interp(t_ns, t_truth, q_truth[:, names.index(name)], left=np.nan, right=np.nan)
    from ..control import command_log_rows, read_command_log

    try:
        command_rows = command_log_rows(read_command_log(path)) if path.suffix == ".mcap" else []
    except TwinExtError as exc:
        command_rows = [("commands", f"the command log could not be read: {exc}")]
    lines = write_run_outputs(
        out,
        title=f"twin_ext replay — {path.name}",
        robot=robot,
        trace=trace,
        mirror=mirror,
        status=status,
        display_rate_hz=settings.twin.display_rate_hz,
        truth_q=truth_q,
        whatif=report,
        whatif_note=note,
        summary_rows=[("recording", str(path)), ("robot", f"{robot.name} ({robot.source})"), *command_rows],
    )
    for line in lines:
        print(line)
    for label, text in command_rows:  # the audit trail of the command channel, if the recording has one
        print(f"{label + ':':<18}{text}")
    if args.export_ros2:
        from ..ros2 import TWIN_JOINT_STATES_TOPIC, write_joint_state_bag

        arrays = trace.arrays()
        count = write_joint_state_bag(args.export_ros2, arrays["t_ns"], robot.dof_names, arrays["q"], arrays.get("qd"))
        print(f"ROS 2 bag:        {args.export_ros2}  ({count} JointState messages on {TWIN_JOINT_STATES_TOPIC})")
    return 0


def _ask(robot, snapshot, args, settings):
    """Run the what-if synchronously on ``snapshot`` (batch job: nothing else waits)."""
    from dataclasses import replace

    from ..whatif import WhatIfEngine, align_to_snapshot, load_scenario

    try:
        scenario, phase = align_to_snapshot(load_scenario(args.whatif), snapshot)
        scenario = replace(scenario, samples=args.samples)
        with WhatIfEngine(robot, settings=settings.whatif) as engine:
            report = engine.run(scenario, base=snapshot)
        return report, f"asked at the twin's state; program phase {phase:.2f} s" if phase is not None else ""
    except Exception as exc:  # noqa: BLE001 - reported in the outputs
        return exc, ""
