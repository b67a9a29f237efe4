# SPDX-License-Identifier: Apache-2.0
"""``python -m twin_ext.bench control``: the command channel's latencies, each beside its anchor from the same run.

A real Mosquitto on loopback, the emulated Panda holding its home pose (``--accept-commands``, a clock without
offset or drift, so its acknowledgement stamps are this host's monotonic clock) and a live twin with commands on.

* **pre-flight of a 1 s move_to** (joint1 by 0.1 rad; warm: after two runs): bounds, health, clock and the what-if
  simulation (``[control] preflight_samples`` from the snapshot's covariance). Anchor: the same what-if scenario
  run directly on the engine (`WhatIfEngine.run`), i.e. what the simulation alone costs. Goal: p95 < 100 ms.
* **stop, twin -> robot**: from the call of `LiveTwin.send_command(Stop())` to the robot's control loop handling
  it (the stamp of its ``received`` ack). Anchor: a bare paho client publishing the same stop payload (QoS 1),
  measured the same way. Goal: p95 < 5 ms on loopback. The emulator's loop wakes at least every 2 ms, so up to
  ~2 ms of either figure is the robot's own polling.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ._telemetry import _Broker, _find_mosquitto

__all__ = ["main"]

GOALS = {"preflight_p95_ms": 100.0, "stop_p95_ms": 5.0}
_HOME = [0.0, -0.7854, 0.0, -2.3562, 0.0, 1.5708, 0.7854, 0.04, 0.04]
_JOINTS = ["joint1", "joint2", "joint3", "joint4", "joint5", "joint6", "joint7", "finger_joint1", "finger_joint2"]


def _pct(values: list[float]) -> dict[str, float]:
    a = np.asarray(values) * 1e3
    return {"median_ms": float(np.median(a)), "p95_ms": float(np.percentile(a, 95)), "n": len(values)}


def _wait(session, predicate, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        session.tick()
        if predicate():
            return True
        time.sleep(1 / 120)
    return False


def run(repeats: int = 30, stops: int = 200) -> dict:
    """Measure; returns the figures (seconds converted to ms)."""
    import paho.mqtt.client as mqtt

    from ..control import decode_ack, move_to_scenario
    from ..emulator import EmulatedRobot, EmulatorSettings, ImpairmentProfile
    from ..live import TwinConfig, TwinSession
    from ..telemetry import MoveTo, Stop, encode_command

    binary = _find_mosquitto()
    if binary is None:
        raise SystemExit("mosquitto is not installed (`apt-get install -y mosquitto`): this benchmark needs a broker")
    with tempfile.TemporaryDirectory(prefix="twin_ext-bench-control-") as tmp:
        folder = Path(tmp)
        program = folder / "hold.toml"
        rows = "\n".join(f"[[waypoint]]\nt = {t}\nq = {_HOME}\n" for t in (0.0, 10.0))
        program.write_text(f"joint_names = {json.dumps(_JOINTS)}\n{rows}")
        broker = _Broker(binary, folder, 100, True)
        url = f"mqtt://127.0.0.1:{broker.port}"
        robot = EmulatedRobot(
            EmulatorSettings(accept_commands=True, program=str(program)),
            profile=ImpairmentProfile(offset_ms=0.0, drift_ppm=0.0),
        )
        session = None
        anchor_client = None
        try:
            robot.start(url, seed=0, progress_every_s=0)
            config = {
                "broker": {"url": url, "client_id": "bench-control-twin"},
                "whatif": {"workers": 1},
                "twin": {"commands_enabled": True},
            }
            session = TwinSession(TwinConfig.from_mapping(config))
            session.start()
            twin = session.twin
            n = twin.model.ndof

            def settled():
                status = session.status()
                sd = np.sqrt(np.diag(status.snapshot.covariance)[n:]).max()
                return status.health.value == "ok" and status.clock_ready and sd < 0.05

            if not _wait(session, settled, 60):
                raise SystemExit(f"the twin did not become ok with a synced clock: {twin.errors}")
            move = MoveTo(("joint1",), (0.1,), 1.0)
            preflight, anchor = [], []
            for k in range(repeats + 2):
                _wait(session, settled, 10)
                snapshot = twin.latest_snapshot
                verdict = twin.commands.preflight.check(move, snapshot, clock_ready=True)
                scenario = move_to_scenario(
                    twin.model, snapshot, move, samples=twin.commands.settings.preflight_samples
                )
                t0 = time.perf_counter()
                session.whatif_engine.run(scenario, base=snapshot)
                direct = time.perf_counter() - t0
                if not verdict.allowed:
                    raise SystemExit(f"the benchmark's move_to was refused: {verdict.check}: {verdict.message}")
                if k >= 2:
                    preflight.append(verdict.seconds)
                    anchor.append(direct)
            # stop: ours through the twin, anchor through a bare paho client; both until the robot's 'received'
            acks: dict[str, int] = {}
            host, port = "127.0.0.1", broker.port
            anchor_client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-control-anchor")

            def on_ack(c, u, m):
                ack = decode_ack(m.payload)
                if ack.state == "received" and ack.stamp_ns is not None:
                    acks[ack.id] = ack.stamp_ns

            anchor_client.on_message = on_ack
            # Nagle off, as the twin's link and the emulator do: otherwise small messages wait ~40 ms for delayed ACKs
            anchor_client.on_socket_open = lambda c, u, sock: sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            anchor_client.connect(host, port)
            anchor_client.subscribe("twin/v1/panda/command/ack", qos=1)
            anchor_client.loop_start()
            time.sleep(0.3)
            ours, raw = [], []
            for k in range(stops):
                t_call = time.monotonic_ns()
                tracked = twin.send_command(Stop())
                ident = tracked.id
                deadline = time.monotonic() + 2
                while ident not in acks and time.monotonic() < deadline:
                    time.sleep(0.0002)
                if ident in acks:
                    ours.append((acks[ident] - t_call) * 1e-9)
                payload = encode_command(Stop(id=f"anchor-{k}"))
                t_call = time.monotonic_ns()
                anchor_client.publish("twin/v1/panda/command", payload, qos=1)
                deadline = time.monotonic() + 2
                while f"anchor-{k}" not in acks and time.monotonic() < deadline:
                    time.sleep(0.0002)
                if f"anchor-{k}" in acks:
                    raw.append((acks[f"anchor-{k}"] - t_call) * 1e-9)
                if k % 20 == 0:
                    session.tick()
        finally:
            if anchor_client is not None:
                anchor_client.loop_stop()
                anchor_client.disconnect()
            if session is not None:
                session.stop()
            robot.stop()
            broker.stop()
    out = {
        "preflight": _pct(preflight),
        "preflight_anchor_whatif": _pct(anchor),
        "stop": _pct(ours),
        "stop_anchor_paho": _pct(raw),
        "goals": GOALS,
    }
    out["preflight_ratio_p95"] = out["preflight"]["p95_ms"] / out["preflight_anchor_whatif"]["p95_ms"]
    out["stop_ratio_p95"] = out["stop"]["p95_ms"] / out["stop_anchor_paho"]["p95_ms"]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m twin_ext.bench control", description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=30, help="pre-flights measured (after 2 warm-up runs)")
    parser.add_argument("--stops", type=int, default=200, help="stops measured (ours and the anchor's each)")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    args = parser.parse_args(argv)
    result = run(args.repeats, args.stops)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    p, pa, s, sa = result["preflight"], result["preflight_anchor_whatif"], result["stop"], result["stop_anchor_paho"]
    print("control: the command channel (Mosquitto loopback, emulated Panda, live twin)")
    print(
        f"  pre-flight, 1 s move_to ({p['n']} warm): median {p['median_ms']:.1f} ms, p95 {p['p95_ms']:.1f} ms "
        f"(goal < {GOALS['preflight_p95_ms']:g} ms)"
    )
    print(
        f"    anchor: the same what-if on the engine alone: median {pa['median_ms']:.1f} ms, p95 {pa['p95_ms']:.1f} ms"
        f"  -> ratio ours/anchor (p95) {result['preflight_ratio_p95']:.2f}"
    )
    print(
        f"  stop, twin -> robot handled ({s['n']}): median {s['median_ms']:.2f} ms, p95 {s['p95_ms']:.2f} ms "
        f"(goal < {GOALS['stop_p95_ms']:g} ms)"
    )
    print(
        f"    anchor: bare paho publish, same path: median {sa['median_ms']:.2f} ms, p95 {sa['p95_ms']:.2f} ms"
        f"  -> ratio ours/anchor (p95) {result['stop_ratio_p95']:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
