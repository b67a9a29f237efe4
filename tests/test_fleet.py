# SPDX-License-Identifier: Apache-2.0
"""Fleet twins: many robots in one process over one MQTT connection, each isolated from the others' misbehaviour."""

from __future__ import annotations

import dataclasses
import re
import threading
import time
import tomllib
from pathlib import Path

import numpy as np
import pytest

from twin_ext.emulator import LightFleet
from twin_ext.fleet import FleetSession, FleetSettings, render_fleet_table, shard_of, sort_rows
from twin_ext.live import load_config
from twin_ext.robot import default_robot_path, load_robot

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def panda():
    return load_robot(default_robot_path())


def _config(url: str):
    config = load_config()
    return dataclasses.replace(config, broker=dataclasses.replace(config.broker, url=url))


def _publish(fleet: LightFleet, duration_s: float) -> tuple[threading.Thread, list]:
    out: list = []
    thread = threading.Thread(target=lambda: out.append(fleet.run(duration_s)), daemon=True)
    thread.start()
    return thread, out


@pytest.mark.parametrize("fusion_rate_hz", [0.0, 500.0], ids=["fused-at-tick", "fused-on-arrival"])
def test_fleet_discovers_robots_and_a_misbehaving_robot_never_disturbs_the_others(
    mosquitto_broker, panda, tmp_path, fusion_rate_hz
):
    """Six robots over one connection: garbage, a flood and a clock jump stay with their robot; the good ones are
    followed sample for sample (>= 95 % accepted, no rejections) and their estimates match their telemetry — fused
    at the display tick and fused on arrival (then every good robot has a committed fused state)."""
    from twin_ext.history import ParquetStore

    good = ["good-1", "good-2", "good-3"]
    bad = {"bad-garbage": "garbage", "bad-flood": "flood", "bad-clock": "clock_jump"}
    store = ParquetStore(tmp_path / "history")
    session = FleetSession(_config(mosquitto_broker.url), fleet=FleetSettings(max_rate_hz=500.0, fusion_rate_hz=fusion_rate_hz),
                           models={"franka_panda": panda}, history_store=store)  # fmt: skip
    session.run_in_background()
    assert session.link.wait_connected(10)
    publisher = LightFleet([*good, *bad], panda, mosquitto_broker.url, rate_hz=100.0, misbehave=bad,
                           flood_factor=20.0, clock_jump_s=30.0)  # fmt: skip
    thread, result = _publish(publisher, 4.0)
    assert session.wait_for_robots([*good, *bad], 10), (sorted(session.robots), session.refused)
    time.sleep(3.0)  # while they publish (4 s in all)
    rows = {r.robot_id: r for r in session.rows()}
    errors = {rid: (session.robots[rid].twin.latest_snapshot.q, session.robots[rid].ingest.latest) for rid in good}
    fused = {rid: session.robots[rid].fused for rid in good}
    thread.join(30)
    time.sleep(0.3)  # the last samples reach the twin and one tick takes them
    stats = {rid: session.robots[rid].ingest.stats for rid in session.robots}
    session.stop()
    published = 100.0 * result[0].seconds
    for rid in good:
        s = stats[rid]
        # The robot was discovered from its birth a few ms after it started publishing: up to ~20 samples early.
        assert s.accepted >= 0.95 * published - 20, (rid, s)
        assert s.rejected == 0 and s.clock_jumps == 0 and session.router.flood_dropped.get(rid, 0) == 0, (rid, s)
        assert rows[rid].health == "ok" and rows[rid].error == "", rows[rid]
        assert rows[rid].online is True
        q, latest = errors[rid]
        # The estimate at the last tick vs the newest measurement, up to one 33 ms tick + latency apart: joints move
        # at most 1.3 rad/s here, so they agree within 0.1 rad; a stalled or disturbed estimator is off by far more
        # (the trajectory spans ~1.6 rad).
        assert np.max(np.abs(q - np.asarray(latest.message.position))) < 0.1
        if fusion_rate_hz:  # the committed state right after a recent sample: on that sample's telemetry
            assert fused[rid] is not None and session.fusion_steps > 0
            assert np.max(np.abs(fused[rid].q - np.asarray(latest.message.position))) < 0.1
    assert stats["bad-garbage"].rejected > 0.3 * published
    assert session.router.flood_dropped.get("bad-flood", 0) > 0
    assert stats["bad-clock"].clock_jumps >= 1 or stats["bad-clock"].rejected > 0
    table = render_fleet_table(sort_rows(list(rows.values()), "rejected"))
    print(table)
    first = {line.split()[0] for line in table.splitlines()[2:4]}
    assert first == {"bad-garbage", "bad-flood"}  # most rejections first (a flood's budget lets garbage in too)
    # History: every robot's states were kept (decimated to ~10 Hz), in the embedded store.
    states = store.query("state", robot_id="good-2")
    assert 10 <= len(states) <= 60 and len(states[0]["q"]) == panda.ndof


def test_sharding_is_stable_and_splits_a_fleet_evenly():
    """shard_of is the same in every process (no salted hash) and spreads 1000 ids within 15 % of even."""
    ids = [f"robot-{i:04d}" for i in range(1000)]
    counts = np.bincount([shard_of(r, 4) for r in ids], minlength=4)
    assert counts.min() > 0.85 * 250 and counts.max() < 1.15 * 250
    assert [shard_of("panda-03", n) for n in (1, 2, 4)] == [0, shard_of("panda-03", 2), 3]


def test_fleet_settings_are_checked_and_documented():
    """[fleet] in config/twin.toml states the defaults, every key is in docs/SETTINGS.md, bad values name the fix."""
    with open(REPO / "config" / "twin.toml", "rb") as fh:
        raw = tomllib.load(fh)["fleet"]
    defaults = {f.name: f.default for f in dataclasses.fields(FleetSettings)}
    assert {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()} == defaults
    docs = (REPO / "docs" / "SETTINGS.md").read_text().split("\n## fleet\n", 1)[1].split("\n## ", 1)[0]
    for name in defaults:
        assert re.search(rf"^\| `{name}` \|", docs, flags=re.M), name
    with pytest.raises(Exception, match="shard_index must be in 0..shard_count-1"):
        FleetSettings.from_mapping({"shard_count": 2, "shard_index": 2})
    with pytest.raises(Exception, match="model_id=path"):
        FleetSettings.from_mapping({"models": ["franka_panda"]})


def test_two_shard_processes_split_a_fleet_on_one_broker(mosquitto_broker, panda, tmp_path):
    """Two twin processes (shard 0 and 1 of 2) against one Mosquitto: each mirrors exactly its robots by the
    stable hash, receives no other robot's joint states (it subscribes to its own robots only), and follows them."""
    import json
    import subprocess
    import sys

    ids = [f"arm-{i:02d}" for i in range(8)]
    outs = [tmp_path / f"shard{i}.json" for i in range(2)]
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                str(REPO / "tests" / "fleet_shard_process.py"),
                mosquitto_broker.url,
                "2",
                str(i),
                "9",
                str(outs[i]),
            ],
            cwd=REPO,
        )  # fmt: skip
        for i in range(2)
    ]
    try:
        end = time.monotonic() + 60
        while not all(Path(str(o) + ".ready").exists() for o in outs):
            assert time.monotonic() < end and all(p.poll() is None for p in procs), "a shard process did not start"
            time.sleep(0.05)
        # Births first (retained), data 1.5 s later: a sharded twin subscribes to a robot's telemetry once it has
        # seen its birth, so samples sent before that are not delivered to it (docs/fleet.md).
        stats = LightFleet(ids, panda, mosquitto_broker.url, rate_hz=50.0).run(3.0, start_at=time.monotonic() + 1.5)
        for p in procs:
            assert p.wait(60) == 0
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    docs = [json.loads(o.read_text()) for o in outs]
    for index, doc in enumerate(docs):
        mine = sorted(r for r in ids if shard_of(r, 2) == index)
        assert doc["robots"] == mine, (index, doc["robots"])
        # Only the other shard's retained births reach it (a birth per robot, and its re-publication by nobody).
        assert doc["foreign"] <= len(ids) - len(mine), doc
        assert "twin/v1/+/joint_states" not in doc["subscriptions"]
        for rid in mine:
            # QoS 0 on a shared 2-core machine: a twin process starved of CPU may lose a few; 90 % is "follows it".
            assert doc["accepted"][rid] >= 0.9 * 50.0 * stats.seconds, (rid, doc["stats"][rid])
    assert sorted(docs[0]["robots"] + docs[1]["robots"]) == ids


def test_fleet_command_writes_history_through_a_broker_restart(mosquitto_broker, panda, tmp_path):
    """`python -m twin_ext fleet run` with [history] on: robots emulated before and after a Mosquitto restart
    are all in the Parquet history, and `history query` reads them back as a table."""
    import subprocess
    import sys

    (tmp_path / "fleet.toml").write_text(
        f'[broker]\nurl = "{mosquitto_broker.url}"\nreconnect_min_s = 0.2\nreconnect_max_s = 1.0\n'
        f'[history]\nenabled = true\npath = "{tmp_path / "history"}"\nstate_every_s = 0.2\nflush_every_s = 0.2\n'
    )
    twin = subprocess.Popen([sys.executable, "-m", "twin_ext", "fleet", "run", "--config", str(tmp_path / "fleet.toml"),
                             "--seconds", "12"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        time.sleep(4.0)  # the twin process starts and connects
        LightFleet(["line-1", "line-2"], panda, mosquitto_broker.url, rate_hz=50.0).run(2.0)
        mosquitto_broker.restart()
        LightFleet(["line-1", "line-2"], panda, mosquitto_broker.url, rate_hz=50.0).run(3.0)
        out, err = twin.communicate(timeout=60)
    finally:
        if twin.poll() is None:
            twin.kill()
    assert twin.returncode == 0, err
    assert "line-1" in out and "dropped 0" in out, out[-2000:]
    from twin_ext.history import ParquetStore

    states = ParquetStore(tmp_path / "history").query("state", robot_id="line-1")
    t = np.array([r["t_ns"] for r in states]) * 1e-9
    assert len(states) >= 10 and (t[-1] - t[0]) > 3.0, len(states)  # kept across the restart
    cli = subprocess.run([sys.executable, "-m", "twin_ext", "history", "query", "--path", str(tmp_path / "history"),
                          "--robot", "line-2", "--since", "10m", "--what", "state"], cwd=REPO, capture_output=True,
                         text=True, timeout=60)  # fmt: skip
    assert cli.returncode == 0 and "line-2" in cli.stdout and "rows)" in cli.stdout, cli.stderr
