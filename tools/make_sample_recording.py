# SPDX-License-Identifier: Apache-2.0
"""Make the shipped sample recording: one emulated pick-and-place cycle under the standard profile.

    .venv/bin/python tools/make_sample_recording.py            # -> data/recordings/panda_pick_place_standard.mcap

The emulator runs offline (deterministic for the seed), its deliveries go through a real
`TelemetryIngest` with an `McapRecorder` attached -- exactly what a live twin would record, including
the rejected duplicates and late samples with their reasons -- and the plant's ground truth is
recorded beside the telemetry on ``truth/joint_states``. A single ``emulator/config`` message holds
the profile, settings and seed that made the file. Everything is written in log-time order; log
times are the (simulated) host clock, starting at ``--start-ns``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT_OUT = ROOT / "data" / "recordings" / "panda_pick_place_standard.mcap"
DEFAULT_PROFILE = ROOT / "config" / "impairments" / "standard.toml"
CONFIG_TOPIC = "emulator/config"
MAX_BYTES = 3 * 2**20


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"output MCAP (default {DEFAULT_OUT.relative_to(ROOT)})"
    )
    p.add_argument("--impairments", type=Path, default=DEFAULT_PROFILE, help="impairment profile (default: standard)")
    p.add_argument("--duration", type=float, default=10.3, help="seconds of robot time (default: one 10.3 s cycle)")
    p.add_argument("--seed", type=int, default=0, help="impairment seed (default 0)")
    p.add_argument(
        "--codec", choices=("json", "binary"), default="binary", help="wire codec the robot uses (default binary)"
    )
    p.add_argument("--truth-rate", type=float, default=200.0, help="ground-truth records per second (default 200)")
    p.add_argument("--start-ns", type=int, default=1_000_000_000, help="host clock at the first step, ns")
    args = p.parse_args(argv)

    from twin_ext.emulator import (
        TRUTH_JSON_SCHEMA,
        TRUTH_SCHEMA,
        TRUTH_TOPIC,
        EmulatedRobot,
        EmulatorSettings,
        ImpairmentProfile,
        truth_records,
    )
    from twin_ext.telemetry import McapRecorder, TelemetryIngest, TelemetrySettings

    profile = ImpairmentProfile.from_toml(args.impairments)
    settings = EmulatorSettings(codec=args.codec)
    sim = EmulatedRobot(settings, profile=profile).simulate(args.duration, seed=args.seed, start_ns=args.start_ns)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".mcap.tmp")
    clock = {"now": args.start_ns}
    with McapRecorder(tmp, background=False) as recorder:
        ingest = TelemetryIngest(
            settings=TelemetrySettings(robot_id=settings.robot_id, state_buffer=1),
            recorder=recorder,
            now_ns=lambda: clock["now"],
        )
        config = {
            "profile_file": str(
                args.impairments.relative_to(ROOT) if args.impairments.is_relative_to(ROOT) else args.impairments
            ),
            "profile": profile.to_mapping(),
            "settings": dataclasses.asdict(settings),
            "seed": sim.seed,
            "duration_s": args.duration,
            "start_ns": sim.start_ns,
            "end_ns": sim.end_ns,
            "channel_stats": sim.channel,
        }
        recorder.record_json(CONFIG_TOPIC, config, sim.start_ns, "twin_ext.emulator.Config")
        truth = iter(truth_records(sim.truth, rate_hz=args.truth_rate))
        pending = next(truth, None)
        for d in sim.deliveries:
            while pending is not None and pending[0] <= d.arrival_ns:
                recorder.record_json(TRUTH_TOPIC, pending[1], pending[0], TRUTH_SCHEMA, schema=TRUTH_JSON_SCHEMA)
                pending = next(truth, None)
            clock["now"] = d.arrival_ns
            ingest.on_payload(d.topic, d.payload, d.arrival_ns)
        while pending is not None:
            recorder.record_json(TRUTH_TOPIC, pending[1], pending[0], TRUTH_SCHEMA, schema=TRUTH_JSON_SCHEMA)
            pending = next(truth, None)
        stats = ingest.stats
    tmp.replace(args.out)
    size = args.out.stat().st_size
    print(
        f"{args.out}: {size / 2**20:.2f} MiB, {args.duration:g} s; {len(sim.samples)} samples, "
        f"{len(sim.joint_state_deliveries)} delivered, {stats.accepted} accepted, {stats.duplicates} duplicates, "
        f"{stats.out_of_order} late; truth at {args.truth_rate:g} Hz"
    )
    if size > MAX_BYTES:
        print(f"warning: {size} bytes is over the 3 MiB budget for shipped recordings", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
