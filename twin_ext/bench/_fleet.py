# SPDX-License-Identifier: Apache-2.0
"""Fleet benchmark: robots x rate one twin process sustains with estimation and health, against raw paho.

    python -m twin_ext.bench fleet [--json] [--quick] [--seconds S] [--robots 50,100] [--rate 200]
                                   [--health-every S] [--per-robot-estimation] [--per-robot-health]
                                   [--fusion-rate HZ] [--health-yield-ms MS]

Set-up: its own Mosquitto on a free 127.0.0.1 port; emulated robots are `twin_ext.emulator.LightFleet`
publishers (precomputed Panda trajectories with model-consistent efforts, binary codec, QoS 0, written as raw PUBLISH
packets on a paho connection so the load generator takes ~0.1 core per 10k msg/s, not half a core) in separate
processes, half the robots each. Per configuration a fresh twin process runs `FleetSession` (health on, history
off, the shipped Panda for every robot, robots discovered from their births); after a 2 s warm-up it measures:

* ``accepted_msg_s``: joint states accepted by the robots' ingests per second (what the twin keeps up with);
  ``offered_msg_s``: what the publishers achieved; sustained = accepted >= 95 % of offered;
* ``p99_added_ms``: 99th percentile over all robots of receive (the arrival time stamped on paho's network thread:
  the socket read that brought the packet)
  -> in the state: the fused estimate committed and readable (`FleetRobot.fused`), wall clock taken after the commit
  of the fusion step (fusion on arrival, ``[fleet] fusion_rate_hz``) or display tick that took the sample, ms;
* ``mb_per_robot``: resident memory of the twin process with the robots minus before them (after the process-wide
  Warp runtime and Kalman kernel are loaded, ~145 MB once per process), per robot, MB;
* ``tick_p99_ms``: fleet tick time (all robots estimated, their share of health judged), ms.

``cpu_cost`` (in-process, payloads fed to the router in time order, no network): ingest per message; fusion on
arrival per message (``fusion_us_per_msg``: the steps at ``fusion_rate_hz``, batched as the session runs them, and
robot by robot on the same payloads); the display tick's estimation step per robot and tick; health per judgement
and samples per judgement, batched as the session judges (``[fleet] batched_health``) and robot by robot on the same
payloads. ``--per-robot-estimation`` runs the twins with batching off (A/B under the same load), ``--per-robot-health``
the twins' health robot by robot,
``--health-every`` sets their ``[fleet] health_every_s``, ``--fusion-rate`` their ``[fleet] fusion_rate_hz``
(0: fuse at the display tick only, the behaviour before fusion on arrival), ``--health-yield-ms`` their
``[fleet] health_yield_ms``.

Anchor, same run, same publishers: a raw paho subscriber process that only counts (no decoding): the ceiling of
a Python MQTT consumer on this machine. Scaling: the largest fleet with 1 and with 2 twin processes (2 shards).
Goals (issue 15): >= 100 robots x 200 Hz per process, p99 added < 5 ms, < 5 MB per robot.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

GOALS = {"robots": 100, "rate_hz": 200.0, "p99_added_ms": 5.0, "mb_per_robot": 5.0}
WARMUP_S = 2.0


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def _publisher(ids: list[str], url: str, rate_hz: float, seconds: float, start_at, out) -> None:
    from ..emulator import LightFleet
    from ..robot import default_robot_path, load_robot

    fleet = LightFleet(ids, load_robot(default_robot_path()), url, rate_hz=rate_hz)
    stats = fleet.run(seconds, start_at=start_at, forget=True)
    out.put(("publisher", {"published": stats.published, "seconds": stats.seconds, "behind_s": stats.behind_s}))


def _raw_subscriber(url: str, seconds: float, start_at, ready, out) -> None:
    import paho.mqtt.client as mqtt

    from ..config import parse_broker_url

    address = parse_broker_url(url)
    count = [0, 0.0]

    window = (0.0, 0.0)

    def on_message(client, userdata, message):
        if window[0] <= time.monotonic() < window[1]:  # noqa: B023 - the window is set once publishing starts
            count[0] += 1

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"raw-{os.getpid()}")
    client.on_message = on_message
    client.connect(address.host, address.port)
    client.subscribe("twin/v1/+/joint_states", qos=0)
    client.loop_start()
    ready.set()
    while start_at.value == 0.0:
        time.sleep(0.01)
    window = (start_at.value + WARMUP_S, start_at.value + seconds - 0.5)
    time.sleep(max(0.0, window[1] + 0.2 - time.monotonic()))
    client.loop_stop()
    out.put(("twin", {"accepted": count[0], "window_s": window[1] - window[0]}))


def _twin(
    url: str, seconds: float, shard_count: int, shard_index: int, expected: int, start_at, ready, out, fleet_args=None
) -> None:
    import dataclasses

    import numpy as np

    from ..estimation import build_kalman_kernel
    from ..fleet import FleetSession, FleetSettings
    from ..live import load_config
    from ..robot import default_robot_path, load_robot

    model = load_robot(default_robot_path())
    config = load_config()
    config = dataclasses.replace(config, broker=dataclasses.replace(config.broker, url=url))
    fleet = FleetSettings(shard_count=shard_count, shard_index=shard_index, **(fleet_args or {}))
    session = FleetSession(config, fleet=fleet, models={"franka_panda": model})
    build_kalman_kernel(timeout_s=None)  # the process's one Warp runtime and kernel: not a cost per robot
    rss0 = _rss_mb()
    session.run_in_background()
    session.link.wait_connected(10)
    ready.set()
    while start_at.value == 0.0 or time.monotonic() < start_at.value + WARMUP_S:
        time.sleep(0.05)
    counts0 = {rid: r.ingest.stats.accepted for rid, r in session.robots.items()}
    for r in session.robots.values():
        r.latencies_ns.clear()
    session.tick_seconds.clear()
    t0 = time.monotonic()
    end = start_at.value + seconds - 0.5
    lat: list[np.ndarray] = []
    while time.monotonic() < end:
        time.sleep(0.25)
        for r in list(session.robots.values()):  # collect before the per-robot rings overwrite
            if r.latencies_ns:
                lat.append(np.fromiter(r.latencies_ns, dtype=np.int64))
                r.latencies_ns.clear()
    elapsed = time.monotonic() - t0
    rss1 = _rss_mb()
    robots = dict(session.robots)
    accepted = sum(r.ingest.stats.accepted - counts0.get(rid, 0) for rid, r in robots.items())
    thinned = sum(getattr(r.twin, "_thinned", 0) for r in robots.values())
    dropped = sum(r.ingest.stats.states_dropped for r in robots.values())
    ticks = np.asarray(session.tick_seconds) * 1e3
    all_lat = np.concatenate(lat) * 1e-6 if lat else np.zeros(0)
    session.stop()
    out.put(("twin", {
        "robots": len(robots), "accepted": accepted, "window_s": elapsed,
        "p50_added_ms": float(np.percentile(all_lat, 50)) if all_lat.size else None,
        "p99_added_ms": float(np.percentile(all_lat, 99)) if all_lat.size else None,
        "tick_p50_ms": float(np.percentile(ticks, 50)) if ticks.size else None,
        "tick_p99_ms": float(np.percentile(ticks, 99)) if ticks.size else None,
        "mb_per_robot": (rss1 - rss0) / max(len(robots), 1), "rss_mb": rss1,
        "thinned": thinned, "states_dropped": dropped, "expected_robots": expected,
    }))  # fmt: skip


def _cpu_seconds(call, *args) -> float:
    """CPU time of ``call(*args)`` in this process, s."""
    t0 = time.process_time()
    call(*args)
    return time.process_time() - t0


def _judge_every_robot(session) -> None:
    """Judge every robot's health now, the session's way: in groups of ``health_batch``, or one by one."""
    group = list(session.robots.values())
    size = session.fleet.health_batch if session.fleet.batched_health else 1
    for k in range(0, len(group), size):
        session.judge_health_now(group[k : k + size])


def _cost_breakdown(robots: int = 20, rate_hz: float = 200.0, seconds: float = 3.0, fleet_args=None) -> dict[str, Any]:
    """CPU time of each stage, in this process and without a network (payloads fed straight to the router in time
    order, the robots' phases spread), so the figures hold on a busy machine: per message (route + ingest; fusion
    on arrival: the steps at ``fusion_rate_hz``), per robot per display tick (its estimation step), each batched
    across robots as the session runs it and one robot after another on the same payloads, and per robot per health
    judgement; and the robots x rate one core could carry from them."""

    from ..emulator import LightFleet
    from ..fleet import FleetSession, FleetSettings
    from ..live import load_config
    from ..robot import default_robot_path, load_robot

    model = load_robot(default_robot_path())
    ids = [f"cost-{i:03d}" for i in range(robots)]
    fleet = FleetSettings(robots=tuple(ids), max_rate_hz=1e9, **(fleet_args or {}))
    session = FleetSession(load_config(), fleet=fleet, models={"franka_panda": model})
    single = FleetSession(
        load_config(),
        fleet=dataclasses.replace(fleet, batched_estimation=False, batched_health=False),
        models={"franka_panda": model},
    )
    payloads = LightFleet(ids, model, "mqtt://127.0.0.1:1", rate_hz=rate_hz)
    tick_ns = int(1e9 / fleet.display_rate_hz)
    period_ns = int(1e9 / rate_hz)
    step_ns = int(1e9 / fleet.fusion_rate_hz) if fleet.fusion_rate_hz > 0 else 0
    ingest_s = estimate_s = single_s = health_s = fusion_s = single_fusion_s = single_health_s = 0.0
    messages = robot_ticks = judged = health_samples = steps = single_health_samples = 0
    base = time.monotonic_ns()
    ticks = int(seconds * fleet.display_rate_hz)
    # Samples in time order, the robots' phases spread over a period (as independent robots are); fusion steps at
    # [fleet] fusion_rate_hz between the display ticks, as the network thread runs them.
    arrivals = sorted(
        (base + r * period_ns // robots + j * period_ns, r, j)
        for r in range(robots)
        for j in range(int(seconds * rate_hz))
    )
    next_step = base + step_ns if step_ns else None
    tick = 0
    for stamp, r, j in arrivals:
        while tick < ticks and base + (tick + 1) * tick_ns <= stamp:
            now = base + (tick + 1) * tick_ns
            estimate_s += _cpu_seconds(session.advance, now + 10**6)
            single_s += _cpu_seconds(single.advance, now + 10**6)
            robot_ticks += robots
            tick += 1
            if tick % int(fleet.display_rate_hz * fleet.health_every_s) == 0:
                before = sum(r.health.monitor.samples for r in session.robots.values() if r.health is not None)
                # the session's way (batched in groups of health_batch) and robot by robot, order alternating
                for target in (session, single) if (tick // 30) % 2 else (single, session):
                    spent = _cpu_seconds(_judge_every_robot, target)
                    if target is session:
                        health_s += spent
                    else:
                        single_health_s += spent
                judged += robots
                health_samples += sum(r.health.monitor.samples for r in session.robots.values() if r.health is not None)
                health_samples -= before
                single_health_samples = sum(r.health.monitor.samples for r in single.robots.values() if r.health)
        if tick >= ticks:
            break
        while next_step is not None and next_step <= stamp:
            fusion_s += _cpu_seconds(session.fuse_arrivals, next_step + 10**6)
            single_fusion_s += _cpu_seconds(single.fuse_arrivals, next_step + 10**6)
            steps += 1
            next_step += step_ns
        rid = ids[r]
        payload = payloads.payload(rid, j, stamp, j)
        topic = f"twin/v1/{rid}/joint_states"
        ingest_s += _cpu_seconds(session.router.on_payload, topic, payload, stamp + 10**6)
        single.router.on_payload(topic, payload, stamp + 10**6)
        messages += 1
    per_msg_us = ingest_s / max(messages, 1) * 1e6
    per_tick_ms = estimate_s / max(robot_ticks, 1) * 1e3
    fusion_us = fusion_s / max(messages, 1) * 1e6
    single_fusion_us = single_fusion_s / max(messages, 1) * 1e6
    single_ms = single_s / max(robot_ticks, 1) * 1e3
    per_health_ms = health_s / max(judged, 1) * 1e3
    single_health_ms = single_health_s / max(judged, 1) * 1e3
    core_s_per_robot = rate_hz * per_msg_us * 1e-6 + fleet.display_rate_hz * per_tick_ms * 1e-3
    core_s_per_robot += per_health_ms * 1e-3 / fleet.health_every_s + rate_hz * fusion_us * 1e-6
    return {
        "robots": robots, "rate_hz": rate_hz, "display_rate_hz": fleet.display_rate_hz,
        "ingest_us_per_msg": round(per_msg_us, 1), "estimate_ms_per_robot_tick": round(per_tick_ms, 4),
        "per_robot_estimate_ms_per_robot_tick": round(single_ms, 4),
        "batched_speedup": round(single_ms / max(per_tick_ms, 1e-9), 1),
        "fusion_rate_hz": fleet.fusion_rate_hz, "fusion_us_per_msg": round(fusion_us, 1),
        "per_robot_fusion_us_per_msg": round(single_fusion_us, 1), "fusion_steps": steps,
        "fused_per_msg": round(sum(r.twin.estimator.stats.fused for r in session.robots.values()) / max(messages, 1), 3),
        "batched_samples": session.batched_samples, "batched_snapshots": session.batched_snapshots,
        "health_ms_per_robot_judgement": round(per_health_ms, 2),
        "per_robot_health_ms_per_robot_judgement": round(single_health_ms, 2),
        "health_batched_speedup": round(single_health_ms / max(per_health_ms, 1e-9), 1),
        "batched_health": fleet.batched_health, "health_batch": fleet.health_batch,
        "health_samples_per_judgement": round(health_samples / max(judged, 1), 1),
        # the robot-by-robot twin's tick budget may judge fewer samples (its cost per sample is higher)
        "per_robot_health_samples_per_judgement": round(single_health_samples / max(judged, 1), 1),
        "health_every_s": fleet.health_every_s,
        "core_share_per_robot": round(core_s_per_robot, 4),
        "robots_per_core_at_rate": round(1.0 / core_s_per_robot, 1),
    }  # fmt: skip


def _run(
    kind: str, url: str, robots: int, rate_hz: float, seconds: float, processes: int, fleet_args=None
) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    start_at = ctx.Value("d", 0.0)  # time.monotonic() at which the publishers start (shared by the processes)
    readies = []
    twins = []
    for index in range(processes):
        ready = ctx.Event()
        readies.append(ready)
        if kind == "raw":
            p = ctx.Process(target=_raw_subscriber, args=(url, seconds, start_at, ready, out), daemon=True)
        else:
            p = ctx.Process(
                target=_twin,
                args=(url, seconds, processes, index, robots, start_at, ready, out, fleet_args),
                daemon=True,
            )
        p.start()
        twins.append(p)
    for ready in readies:
        ready.wait(60)
    # Ids new to this run: the broker keeps earlier runs' retained births, which would add their robots.
    tag = f"{kind[0]}{robots}x{processes}-{os.getpid() % 1000}-{int(time.monotonic() * 10) % 100000}"
    ids = [f"bench-{tag}-{i:04d}" for i in range(robots)]
    pubs = []
    begin = time.monotonic() + 6.0  # the publishers' processes start, load the model, connect and announce first
    for half in (ids[: len(ids) // 2], ids[len(ids) // 2 :]):
        p = ctx.Process(target=_publisher, args=(half, url, rate_hz, seconds, begin, out), daemon=True)
        p.start()
        pubs.append(p)
    start_at.value = begin
    results = [out.get(timeout=seconds + 120) for _ in range(len(pubs) + len(twins))]
    for p in pubs + twins:
        p.join(30)
    published = sum(r["published"] for k, r in results if k == "publisher")
    pub_seconds = max(r["seconds"] for k, r in results if k == "publisher")
    twin = [r for k, r in results if k == "twin"]
    accepted_s = sum(r["accepted"] / r["window_s"] for r in twin)
    offered_s = published / pub_seconds
    doc: dict[str, Any] = {
        "kind": kind, "robots": robots, "rate_hz": rate_hz, "processes": processes,
        "offered_msg_s": round(offered_s), "accepted_msg_s": round(accepted_s),
        "sustained": accepted_s >= 0.95 * robots * rate_hz,
        "publisher_behind_s": max(r["behind_s"] for k, r in results if k == "publisher"),
    }  # fmt: skip
    if kind == "twin":
        doc["robots_seen"] = sum(r["robots"] for r in twin)
        for key in ("p50_added_ms", "p99_added_ms", "tick_p50_ms", "tick_p99_ms", "mb_per_robot"):
            values = [r[key] for r in twin if r[key] is not None]
            doc[key] = round(max(values), 3) if values else None
        doc["thinned"] = sum(r["thinned"] for r in twin)
        doc["states_dropped"] = sum(r["states_dropped"] for r in twin)
    return doc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m twin_ext.bench fleet", description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument("--quick", action="store_true", help="short runs of small fleets (tests)")
    parser.add_argument("--seconds", type=float, default=8.0, help="length of each run incl. 2 s warm-up")
    parser.add_argument("--robots", default="25,50,100", help="fleet sizes for one process (comma-separated)")
    parser.add_argument("--rate", type=float, default=200.0, help="joint states per second per robot, Hz")
    parser.add_argument(
        "--health-every", type=float, default=0.0, help="[fleet] health_every_s of the twins, s (0 = the default)"
    )
    parser.add_argument(
        "--per-robot-estimation", action="store_true", help="[fleet] batched_estimation = false in the twins (A/B)"
    )
    parser.add_argument(
        "--per-robot-health", action="store_true", help="[fleet] batched_health = false in the twins (A/B)"
    )
    parser.add_argument(
        "--fusion-rate", type=float, default=None, help="[fleet] fusion_rate_hz of the twins, Hz (0 = at the tick only)"
    )
    parser.add_argument(
        "--health-yield-ms", type=float, default=None, help="[fleet] health_yield_ms of the twins, ms (0 = never yield)"
    )
    args = parser.parse_args(argv)
    from ._telemetry import _Broker, _find_mosquitto

    binary = _find_mosquitto()
    if binary is None:
        print("error: mosquitto is not installed: `apt-get install -y mosquitto`", file=sys.stderr)
        return 2
    sizes = [int(x) for x in args.robots.split(",") if x.strip()]
    seconds = args.seconds
    if args.quick:
        sizes, seconds = [5], 4.0
    started = time.perf_counter()
    fleet_args: dict[str, Any] = {"health_every_s": args.health_every} if args.health_every else {}
    if args.per_robot_estimation:
        fleet_args["batched_estimation"] = False
    if args.per_robot_health:
        fleet_args["batched_health"] = False
    if args.fusion_rate is not None:
        fleet_args["fusion_rate_hz"] = args.fusion_rate
    if args.health_yield_ms is not None:
        fleet_args["health_yield_ms"] = args.health_yield_ms
    cost = _cost_breakdown(
        robots=5 if args.quick else 20, rate_hz=args.rate, seconds=1.5 if args.quick else 3.0, fleet_args=fleet_args
    )
    runs = []
    with tempfile.TemporaryDirectory(prefix="twin_ext_bench_fleet_") as tmp:
        broker = _Broker(binary, Path(tmp), max_inflight=100, nodelay=True)
        url = f"mqtt://127.0.0.1:{broker.port}"
        try:
            largest = max(sizes)
            runs.append(_run("raw", url, largest, args.rate, seconds, 1))
            for n in sizes:
                runs.append(_run("twin", url, n, args.rate, seconds, 1, fleet_args))
                if not args.json:
                    print(f"  {n} robots x {args.rate:g} Hz, 1 process: done ({time.perf_counter() - started:.0f} s)",
                          file=sys.stderr)  # fmt: skip
            runs.append(_run("twin", url, largest, args.rate, seconds, 2, fleet_args))
        finally:
            broker.stop()
    raw = runs[0]
    one = [r for r in runs if r["kind"] == "twin" and r["processes"] == 1]
    best = max((r for r in one if r["sustained"]), key=lambda r: r["robots"], default=None)
    doc = {
        "benchmark": "fleet",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load_1min": os.getloadavg()[0]},
        "goals": GOALS,
        "fleet_settings": fleet_args,
        "anchor": {"what": "raw paho subscriber, counting only, same publishers", **raw},
        "cpu_cost": cost,
        "runs": runs,
        "largest_sustained_1_process": None if best is None else {"robots": best["robots"], "rate_hz": best["rate_hz"]},
        "ratio_accepted_vs_raw_paho": round(one[-1]["accepted_msg_s"] / max(raw["accepted_msg_s"], 1), 3),
        "seconds": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(doc, indent=2) if args.json else _format(doc))
    return 0


def _format(doc: dict) -> str:
    raw = doc["anchor"]
    lines = [
        f"fleet benchmark ({doc['machine']['cpus']} cpus, load {doc['machine']['load_1min']:.1f}; goals: "
        f">= {GOALS['robots']} robots x {GOALS['rate_hz']:g} Hz per process, p99 added < {GOALS['p99_added_ms']} ms, "
        f"< {GOALS['mb_per_robot']} MB/robot)",
        f"anchor raw paho (count only): offered {raw['offered_msg_s']} msg/s, received {raw['accepted_msg_s']} msg/s",
        "cpu cost (in-process, no network): {ingest_us_per_msg} µs/msg ingest, {fusion_us_per_msg} µs/msg fusion on "
        "arrival at {fusion_rate_hz:g} Hz (robot by robot: {per_robot_fusion_us_per_msg}), {estimate_ms_per_robot_tick} ms per robot "
        "per tick (estimation {mode} at {display_rate_hz:g} Hz; robot by robot: "
        "{per_robot_estimate_ms_per_robot_tick} ms, {batched_speedup}x), {health_ms_per_robot_judgement} ms per health "
        "judgement (robot by robot: {per_robot_health_ms_per_robot_judgement} ms, {health_batched_speedup}x) of "
        "{health_samples_per_judgement} samples (every {health_every_s:g} s) -> {robots_per_core_at_rate} robots per core at {rate_hz:g} Hz".format(
            **doc["cpu_cost"],
            mode="batched across robots"
            if (doc.get("fleet_settings") or {}).get("batched_estimation", True)
            else "robot by robot (--per-robot-estimation)",
        ),
        f"{'robots':>6} {'Hz':>5} {'proc':>4} {'offered':>8} {'accepted':>8} {'sust.':>5} {'p50+ms':>7} {'p99+ms':>7} "
        f"{'tick p99':>8} {'MB/robot':>8} {'thinned':>8}",
    ]
    for r in doc["runs"]:
        if r["kind"] != "twin":
            continue
        lines.append(
            f"{r['robots']:>6} {r['rate_hz']:>5g} {r['processes']:>4} {r['offered_msg_s']:>8} {r['accepted_msg_s']:>8} "
            f"{'yes' if r['sustained'] else 'NO':>5} {r['p50_added_ms']!s:>7} {r['p99_added_ms']!s:>7} "
            f"{r['tick_p99_ms']!s:>8} {r['mb_per_robot']!s:>8} {r['thinned']:>8}"
        )
    lines.append(f"largest sustained in 1 process: {doc['largest_sustained_1_process']}; "
                 f"accepted / raw paho (largest, 1 process): {doc['ratio_accepted_vs_raw_paho']}")  # fmt: skip
    return "\n".join(lines)
