# SPDX-License-Identifier: Apache-2.0
"""``make demo`` / ``python -m twin_ext demo``: the main job, end to end, with zero set-up.

What runs (all in this process unless ``--broker`` points elsewhere):
1. an embedded MQTT broker (amqtt) on a free loopback port;
2. the emulated robot: a MuJoCo Franka Panda running its pick-and-place program, publishing impaired
   telemetry (``--impairments``, default the standard profile) and recording its ground truth;
3. the headless twin: MQTT link -> validation -> clock sync -> Kalman estimator -> snapshots -> a USD
   kinematic mirror, with a live terminal dashboard;
4. halfway through, one what-if on the twin's snapshot: "this program at speed x1.5 with a 3 kg part"; all
   along, what-if requests over MQTT are answered (``<prefix>/<robot_id>/whatif/request``, docs/whatif.md),
   also with ``--no-emulator`` against a real robot;
5. at the end, in ``--out`` (default ``out/demo/``): ``twin_motion.usda`` (the mirrored motion, opens in
   usdview / Isaac Sim), ``telemetry.mcap`` (every payload with its verdict, plus the plant's truth; opens in
   Foxglove), ``report.html`` (+ PNGs: measured vs estimated vs truth, errors, what-if verdicts) and
   ``whatif.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import sys
import threading
import time
from pathlib import Path

from .._paths import default_program_file, demo_scene_usd, impairments_dir, package_import_root, resolve_shipped

__all__ = ["add_demo_arguments", "run_demo"]

# The standard network plus two mild robot faults the health monitor should find (a friction wear ramp on
# joint 4, a small bump on joint 2): config/faults/demo_mild.toml.
DEFAULT_IMPAIRMENTS = impairments_dir().parent / "faults" / "demo_mild.toml"
DEFAULT_SCENARIO = "pick_place_payload"


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--duration", type=float, default=20.0, help="seconds to run (default 20)")
    parser.add_argument("--broker", help="use this broker instead of the embedded one, e.g. mqtt://127.0.0.1:1883")
    parser.add_argument("--robot", help="robot USD for the twin (default: the shipped Franka Panda)")
    parser.add_argument("--prim-path", help="articulation root when the USD holds several robots")
    parser.add_argument("--robot-id", default="panda", help="robot id in the MQTT topics (default panda)")
    parser.add_argument(
        "--impairments",
        default=str(DEFAULT_IMPAIRMENTS),
        help="impairment/fault profile TOML for the emulated robot (default config/faults/demo_mild.toml: the standard "
        "network plus mild wear on joint4 and a bump on joint2)",
    )
    parser.add_argument("--codec", choices=("json", "binary"), default="json", help="telemetry codec (default json)")
    parser.add_argument(
        "--no-emulator",
        action="store_true",
        help="do not start the emulated robot (use with --broker and a real robot)",
    )
    parser.add_argument(
        "--whatif-at",
        type=float,
        default=None,
        help="seconds into the run at which to ask the what-if (default: half the duration)",
    )
    parser.add_argument("--samples", type=int, default=32, help="Monte-Carlo samples per what-if variant (default 32)")
    parser.add_argument("--out", default="out/demo", help="output folder (default out/demo)")
    parser.add_argument("--seed", type=int, default=None, help="impairment seed (default: the profile's)")


class _Truth:
    """The plant's ground truth as recorded by the emulator process (channel ``truth/joint_states``)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def on(self, t_ns, dof_names):
        """Truth positions ``[T, ndof]`` at twin times ``t_ns: [T]`` (both processes use the host's monotonic
        clock), in model order; None when there is no truth."""
        import numpy as np

        from ..emulator import TRUTH_TOPIC
        from ..telemetry import McapReplay

        if not self.path.exists():
            return None
        try:
            rows = list(McapReplay(self.path).read_json(TRUTH_TOPIC))
        except Exception as exc:  # noqa: BLE001 - a truncated file (emulator killed): no truth, not a crash
            print(
                f"warning: the plant's truth recording {self.path} is unreadable ({exc}); the report has no "
                f"truth (see {self.path.with_name('emulator.log')})",
                file=sys.stderr,
            )
            return None
        if len(rows) < 2:
            return None
        names = list(rows[0][1]["names"])
        t = np.array([r[1]["host_ns"] for r in rows], dtype=np.float64)
        q = np.array([r[1]["position"] for r in rows])
        out = np.full((len(t_ns), len(dof_names)), np.nan)
        for j, name in enumerate(dof_names):
            if name in names:
                out[:, j] = np.interp(t_ns.astype(np.float64), t, q[:, names.index(name)], left=np.nan, right=np.nan)
        return out


class _EmulatorProcess:
    """The emulated robot in its own process, as a real robot would be: its 1 kHz plant loop never competes
    with the twin for the interpreter lock."""

    def __init__(self, url: str, args: argparse.Namespace, truth_path: Path) -> None:
        import subprocess

        cmd = [
            sys.executable,
            "-m",
            "twin_ext.emulator",
            "--broker",
            url,
            "--robot-id",
            args.robot_id,
            "--impairments",
            str(resolve_shipped(args.impairments, prefer_cwd=True)),
            "--codec",
            args.codec,
            "--duration",
            f"{args.duration + 5:g}",
            "--truth",
            str(truth_path.resolve()),
            "--log-level",
            "info",
        ]
        if args.seed is not None:
            cmd += ["--seed", str(args.seed)]
        self.log_path = truth_path.with_name("emulator.log")
        self._log = open(self.log_path, "w")
        # The emulator imports the same twin_ext as this process (a checkout, an editable or a wheel install),
        # and runs in the caller's folder so relative paths mean what the user meant.
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(package_import_root()), *filter(None, [env.get("PYTHONPATH")])])
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout_s: float = 30.0) -> str:
        """Ctrl-C the emulator (it publishes 'offline' and closes its truth file); kill if it hangs."""
        import subprocess

        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        return f"exit code {self.proc.returncode} (log {self.log_path})"


def _long_part():
    """A 0.3 m bar gripped along the hand's x axis (1 kg): on the demo cell's transfer move its end reaches the
    fixture post (usd/scenes/pick_place_cell.usda), which the program as written clears by ~7 cm."""
    from ..whatif import Payload, Variant

    return Variant(
        "long part (0.3 m bar)", payloads=(Payload("hand", 1.0, com=(0.0, 0.0, 0.095), size=(0.3, 0.03, 0.02)),)
    )


def _whatif_scenario(robot, snapshot, *, samples: int):
    """ "This program at x1.5 speed with a 3 kg part", from where the robot is in its program now through the
    end of the next cycle."""
    from ..whatif import TrajectoryCommand, align_to_snapshot, load_scenario

    scenario, phase = align_to_snapshot(load_scenario(DEFAULT_SCENARIO), snapshot)
    # The robot loops its program: ask about the rest of this cycle and the whole next one.
    two_cycles = TrajectoryCommand(scenario.command.trajectory.repeated(2), start=phase)
    keep = ("as programmed", "x1.5 speed", "3 kg part", "x1.5 speed + 3 kg part")
    variants = tuple(v for v in scenario.variants if v.name in keep) + (_long_part(),)
    return dataclasses.replace(
        scenario,
        name="this program at x1.5 speed with a 3 kg part",
        command=two_cycles,
        variants=variants,
        samples=samples,
    ), phase


def _check_robot_matches_emulator(robot) -> str | None:
    from ..robot import JointTrajectory

    names = set(JointTrajectory.from_toml(default_program_file()).joint_names)
    missing = sorted(names - set(robot.dof_names))
    if missing:
        return (
            f"the emulated robot publishes joints {sorted(names)}, but {robot.source} has "
            f"{list(robot.dof_names)} (missing {missing}); fix: use a Panda USD, or run with --no-emulator "
            f"--broker <url> against a robot that publishes this robot's joints"
        )
    return None


def run_demo(args: argparse.Namespace) -> int:
    from ..emulator import ImpairmentError, ImpairmentProfile
    from ..health import HealthMonitor, HealthSettings
    from ..live import HealthService, LiveTwin, RemoteWhatIf
    from ..robot import RobotModelError, default_robot_path, load_robot
    from ..sinks import MirrorSink, StateRecorderSink, TraceSink
    from ..stage import UsdKinematicMirror
    from ..telemetry import BrokerSettings, McapRecorder, MqttLink, TelemetryIngest, TelemetrySettings
    from ..whatif import WhatIfEngine, WhatIfService, WhatIfSettings
    from ._dashboard import TerminalDashboard, health_lines

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        robot = load_robot(args.robot or default_robot_path(), prim_path=args.prim_path)
    except RobotModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    (out / "robot_description.txt").write_text(robot.describe() + "\n")
    print(
        f"robot {robot.name!r}: {robot.ndof} dofs, {robot.nlink} links, {robot.total_mass:.2f} kg "
        f"(full description in {out / 'robot_description.txt'})"
    )
    try:
        ImpairmentProfile.from_toml(args.impairments)  # fail here, with the reason, not in the emulator process
    except ImpairmentError as exc:  # names the file and the key or value at fault
        print(f"error: {exc}", file=sys.stderr)
        return 2

    if not args.no_emulator:
        problem = _check_robot_matches_emulator(robot)
        if problem:
            print(f"error: {problem}", file=sys.stderr)
            return 2
    elif not args.broker:
        print("error: --no-emulator needs --broker <url> of a broker your robot publishes to", file=sys.stderr)
        return 2

    # The engine's worker process loads the Warp kernels while everything else starts. One worker: the other
    # core stays with the live loop (and the emulated robot), which must not stall during a what-if.
    # The demo cell (table + fixture, usd/scenes/) is the what-if's scene: verdicts include collision/clearance.
    engine = WhatIfEngine(robot, settings=WhatIfSettings(workers=1, scene=str(demo_scene_usd())))
    embedded = None
    if args.broker:
        url = args.broker
    else:
        from ..telemetry import EmbeddedBroker

        embedded = EmbeddedBroker()
        url = embedded.start()
    print(f"broker {url}{' (embedded)' if embedded else ''}")

    recorder = McapRecorder(out / "telemetry.mcap")
    truth_path = out / "truth.mcap"
    truth_path.unlink(missing_ok=True)
    truth = _Truth(truth_path)
    emulator = None
    ingest = TelemetryIngest(settings=TelemetrySettings(robot_id=args.robot_id), model=robot, recorder=recorder)
    link = MqttLink(ingest, BrokerSettings(url=url, client_id=f"twin_ext-demo-{os.getpid()}"))
    mirror = MirrorSink(UsdKinematicMirror.new_stage(robot, robot_prim_path=f"/World/{robot.name}"))
    trace = TraceSink(robot, latest_measurement=lambda: ingest.latest)
    state_log = StateRecorderSink(recorder, every=2)  # the estimate at 30 Hz beside the raw telemetry
    twin = LiveTwin(robot, ingest, link=link, sinks=[mirror, trace, state_log], whatif=WhatIfService(engine))
    # what-if over MQTT (whatif/request -> whatif/result), with or without the emulated robot, as `twin-ext run`
    remote = RemoteWhatIf(twin, link) if twin.settings.serve_whatif else None
    if remote is not None:
        twin.services.append(remote)
    health = HealthService(
        HealthMonitor(robot, HealthSettings(), robot_id=args.robot_id),
        link=link,
        topics=ingest.topics,
        recorder=recorder,
        realtime=twin.realtime,
    )
    twin.sample_listeners.append(health.on_sample)
    twin.services.append(health)
    dashboard = TerminalDashboard(robot, title=f"twin_ext demo — {robot.name} — {url}")
    stop = threading.Event()
    previous_handler = (
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        if threading.current_thread() is threading.main_thread()
        else None
    )

    whatif_at = args.duration / 2 if args.whatif_at is None else args.whatif_at
    whatif_future = None
    whatif_phase = None
    whatif_lines: tuple[str, ...] = (f"what-if: asked at {whatif_at:.1f} s",)
    report = None
    code = 0
    t0 = time.monotonic()
    try:
        twin.start()
        if not args.no_emulator:
            emulator = _EmulatorProcess(url, args, truth_path)
        period = 1.0 / twin.settings.display_rate_hz
        next_tick = time.monotonic()
        while not stop.is_set() and time.monotonic() - t0 < args.duration:
            if emulator is not None and not emulator.alive():
                raise RuntimeError(f"the emulated robot exited early: {emulator.stop()}")
            snapshot = twin.tick()
            elapsed = time.monotonic() - t0
            if whatif_future is None and elapsed >= whatif_at:
                scenario, whatif_phase = _whatif_scenario(robot, snapshot, samples=args.samples)
                whatif_future = twin.ask_whatif(scenario)
                whatif_lines = (
                    f"what-if asked at {elapsed:.1f} s (program phase {whatif_phase:.2f} s, twin health "
                    f"{snapshot.health.value}) — running {len(scenario.variants)} variants x {args.samples} samples ...",
                )
            if whatif_future is not None and report is None and whatif_future.done():
                try:
                    report = whatif_future.result()
                    whatif_lines = tuple(report.summary().splitlines()[: 2 + len(report.variants)])
                except Exception as exc:  # noqa: BLE001 - report the failure, keep the twin running
                    whatif_lines = (f"what-if failed: {exc}",)
                    report = exc
            if dashboard.due():
                dashboard.update(
                    twin.status(),
                    extra_lines=(
                        f"t = {elapsed:5.1f} / {args.duration:.0f} s",
                        *health_lines(health.summary),
                        *whatif_lines,
                    ),
                )
            next_tick += period
            delay = next_tick - time.monotonic()
            if delay > 0:
                stop.wait(delay)
            else:
                next_tick = time.monotonic()
        if whatif_future is not None and report is None:
            print("waiting for the what-if to finish ...", flush=True)
            try:
                report = whatif_future.result(timeout=twin.settings.whatif_timeout_s)
                whatif_lines = tuple(report.summary().splitlines()[: 2 + len(report.variants)])
            except Exception as exc:  # noqa: BLE001
                report = exc
                whatif_lines = (f"what-if failed: {exc}",)
        status = twin.status()
        health.poll()  # judge the last tick's samples before the final summary
        dashboard.update(status, extra_lines=(*health_lines(health.monitor.summary()), *whatif_lines), force=True)
    except Exception as exc:  # noqa: BLE001 - never end with a traceback: say what failed
        print(f"error: the demo stopped: {exc}", file=sys.stderr)
        code = 1
        status = None
    finally:
        summary = emulator.stop() if emulator is not None else None
        if remote is not None:
            remote.close()
        twin.stop()
        recorder.close()
        if embedded is not None:
            embedded.stop()
        engine.close()
        if previous_handler is not None:
            signal.signal(signal.SIGINT, previous_handler)

    outputs = _write_outputs(
        out, robot, twin, trace, mirror, truth, report, whatif_phase, status, summary, args, url, health
    )
    print()
    for line in outputs:
        print(line)
    return code


def _write_outputs(
    out: Path, robot, twin, trace, mirror, truth, report, whatif_phase, status, emu_summary, args, url, health=None
) -> list[str]:
    from ._outputs import write_run_outputs

    lines = [
        f"telemetry:        {out / 'telemetry.mcap'}  (every payload with its verdict + the twin's estimate on "
        f"twin/state; opens in Foxglove)"
    ]
    if truth.path.exists():
        lines.append(f"plant truth:      {truth.path}  (the emulator's ground truth, 1 kHz)")
    t_ns = trace.arrays()["t_ns"]
    rows = [
        ("robot", f"{robot.name} ({robot.source})"),
        ("broker", url),
        ("duration", f"{args.duration:.1f} s"),
        ("impairments", args.impairments),
    ]
    if emu_summary is not None:
        rows.append(("emulator", str(emu_summary)))
    return lines + write_run_outputs(
        out,
        title=f"twin_ext demo — {robot.name}",
        robot=robot,
        trace=trace,
        mirror=mirror,
        status=status,
        display_rate_hz=twin.settings.display_rate_hz,
        truth_q=truth.on(t_ns, robot.dof_names) if len(t_ns) else None,
        whatif=report,
        whatif_note=f"program phase {whatif_phase:.2f} s" if whatif_phase is not None else "",
        summary_rows=rows,
        health=health,
    )
