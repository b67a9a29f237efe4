# SPDX-License-Identifier: Apache-2.0
"""``python -m twin_ext.emulator``: run the emulated Panda against an MQTT broker.

Only the standard library is imported before the arguments are parsed, so ``--help`` is instant.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
import threading
from collections.abc import Iterator

from .. import TwinExtError

DESCRIPTION = """\
Emulated robot: a MuJoCo Franka Panda running a pick-and-place program with its own PD servos,
publishing joint telemetry over MQTT (twin/v1/<robot-id>/joint_states, retained birth, retained
status with an 'offline' last will) through a network impairment profile (latency, jitter, bursty
loss, duplicates, reordering, clock offset and drift, encoder noise, pauses)."""

EPILOG = """\
examples:
  python -m twin_ext.emulator --broker mqtt://127.0.0.1:1883 --duration 20
  python -m twin_ext.emulator --embedded-broker --impairments config/impairments/standard.toml
  python -m twin_ext.emulator --broker mqtt://127.0.0.1:1883 --codec binary --truth out/truth.mcap \\
      --accept-commands

Settings (defaults in config/twin.toml [emulator]) and impairment keys are documented in
docs/SETTINGS.md; design and outputs in docs/emulator.md. Stop with Ctrl-C: the robot publishes
'offline' and disconnects cleanly."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m twin_ext.emulator",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--broker",
        metavar="URL",
        help="MQTT broker, mqtt://[user[:password]@]host[:port] (default mqtt://127.0.0.1:1883)",
    )
    where.add_argument(
        "--embedded-broker",
        action="store_true",
        help="start an in-process broker on a free 127.0.0.1 port and publish there",
    )
    p.add_argument("--robot-id", help="robot id, the topic level after the prefix (default panda)")
    p.add_argument(
        "--rate", type=float, metavar="HZ", help="telemetry rate in Hz (default: the profile's rate_hz, 200)"
    )
    p.add_argument("--impairments", metavar="TOML", help="impairment profile (default: none; see config/impairments/)")
    p.add_argument("--duration", type=float, metavar="S", help="seconds to run (default: until Ctrl-C)")
    p.add_argument("--codec", choices=("json", "binary"), help="joint-state payload codec (default json)")
    p.add_argument(
        "--qos", type=int, choices=(0, 1, 2), help="MQTT QoS of joint states (default 0; birth/status use 1)"
    )
    p.add_argument("--truth", metavar="MCAP", help="record ground truth (channel truth/joint_states) to this MCAP file")
    p.add_argument(
        "--accept-commands",
        action="store_true",
        help="obey the command topic (speed override, stop, resume, move_to); off by default",
    )
    p.add_argument(
        "--publish-reference",
        action="store_true",
        help="also send the controller's targets as reference_position/_velocity in joint states (docs/telemetry.md)",
    )
    p.add_argument("--seed", type=int, help="impairment seed (default: the profile's seed)")
    p.add_argument(
        "--program",
        metavar="TOML",
        help="motion program, a JointTrajectory TOML (default data/scenarios/pick_place.toml)",
    )
    p.add_argument("--config", metavar="TOML", help="read [emulator] settings from this file (e.g. config/twin.toml)")
    p.add_argument(
        "--log-level",
        default="info",
        choices=("debug", "info", "warning", "error"),
        help="console log level (default info)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Our messages at the requested level; third-party chatter (amqtt, transitions, paho) only from warnings up.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)-7s %(message)s", stream=sys.stderr)
    logging.getLogger("twin_ext").setLevel(args.log_level.upper())
    log = logging.getLogger("twin_ext.emulator")
    stop = _SignalStop(log)
    try:
        with stop.installed():
            return _run(args, log, stop)
    except KeyboardInterrupt:
        log.info("interrupted")
        return 0
    except (TwinExtError, OSError) as exc:  # the CLI reports known errors as one line, never a traceback
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace, log: logging.Logger, stop: _SignalStop) -> int:
    from ..config import ConfigError, load_toml
    from ._impairments import ImpairmentProfile
    from ._records import EmulatorError
    from ._robot import EmulatedRobot
    from ._settings import EmulatorSettings

    settings = EmulatorSettings()
    if args.config:
        doc = load_toml(args.config, what="--config file")
        try:
            settings = EmulatorSettings.from_mapping(doc.get("emulator", {}))
        except ConfigError as exc:
            raise ConfigError(f"{args.config}: {exc}") from None
    overrides = {
        "robot_id": args.robot_id,
        "codec": args.codec,
        "qos": args.qos,
        "program": args.program,
        "accept_commands": True if args.accept_commands else None,
        "publish_reference": True if args.publish_reference else None,
    }
    settings = settings.replace(**{k: v for k, v in overrides.items() if v is not None})
    profile = ImpairmentProfile.from_toml(args.impairments) if args.impairments else ImpairmentProfile()
    if args.rate is not None:
        profile = profile.replace(rate_hz=args.rate)
    if args.duration is not None and not args.duration > 0:
        raise EmulatorError(f"--duration must be > 0 s, got {args.duration:g}")
    robot = EmulatedRobot(settings, profile=profile)

    broker = None
    url = args.broker or "mqtt://127.0.0.1:1883"
    if args.embedded_broker:
        from ..telemetry import EmbeddedBroker

        broker = EmbeddedBroker()
        url = broker.start()
        log.info("embedded MQTT broker at %s (connect your twin there)", url)
    if not settings.accept_commands:
        log.info(
            "commands are ignored (start with --accept-commands to obey %s/%s/command)",
            settings.topic_prefix,
            settings.robot_id,
        )
    try:
        if stop.requested.is_set():  # Ctrl-C while starting up: nothing was announced yet
            log.info("interrupted")
            return 0
        # The run loop lives in the robot's thread; this (main) thread only waits, so a signal never lands
        # inside the loop's queue or MQTT-client locks (see _SignalStop).
        stop.robot = robot
        robot.start(url, duration_s=args.duration, seed=args.seed, truth=args.truth, timeout_s=_START_TIMEOUT_S)
        while robot.running and not stop.requested.is_set():
            stop.requested.wait(0.1)
        summary = robot.stop(timeout_s=_STOP_TIMEOUT_S)
    finally:
        if broker is not None:
            broker.stop()
    log.info(
        "done: %.1f s, %d samples, %d messages published, %d lost, %d duplicated, %d publish errors, "
        "%d boots, commands %d accepted / %d rejected%s",
        summary.duration_s,
        summary.samples,
        summary.published,
        summary.lost,
        summary.duplicated,
        summary.publish_errors,
        summary.boots,
        summary.commands_accepted,
        summary.commands_rejected,
        f", {summary.truth_records} truth records in {args.truth}" if args.truth else "",
    )
    return 0


_START_TIMEOUT_S = 60.0  # load MuJoCo, check the program, connect: seconds on a loaded machine, never a minute
_STOP_TIMEOUT_S = 60.0  # publish 'offline' (<= 2 s) and drain the truth writer


class _SignalStop:
    """Ctrl-C and SIGTERM become a stop request; a second one aborts at once (KeyboardInterrupt).

    Why not let KeyboardInterrupt fly: an exception raised between a lock's acquire and the ``with`` block
    that releases it (in a queue, the MQTT client, the truth recorder) leaves the lock held, and the clean-up
    that follows (publishing 'offline', closing the truth file) then waits on it for ever. So the first
    signal only sets `requested` (and asks the robot to stop, once there is one); the main thread, which
    only waits while the robot's own thread runs, then stops the run cleanly.
    """

    def __init__(self, log: logging.Logger) -> None:
        self.log = log
        self.requested = threading.Event()
        self.robot = None

    def __call__(self, signum: int, _frame: object) -> None:
        if self.requested.is_set():
            raise KeyboardInterrupt
        self.requested.set()
        self.log.info("%s: stopping (publishing 'offline'; press Ctrl-C again to abort)", signal.Signals(signum).name)
        if self.robot is not None:
            self.robot.request_stop()

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        """Handle SIGINT/SIGTERM while inside (main thread only; elsewhere Python's defaults stay)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


if __name__ == "__main__":
    raise SystemExit(main())
