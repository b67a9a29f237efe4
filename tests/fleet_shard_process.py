# SPDX-License-Identifier: Apache-2.0
"""One shard of a fleet twin in its own process, for tests: ``python fleet_shard_process.py URL COUNT INDEX SECONDS OUT``.

Runs a `FleetSession` (robots discovered from births, this shard only) for SECONDS and writes what it mirrored to
OUT (JSON): robot ids, accepted samples per robot, payloads of other shards' robots it still received.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time

from twin_ext.fleet import FleetSession, FleetSettings
from twin_ext.live import load_config


def main() -> None:
    url, count, index, seconds, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
    config = load_config()
    config = dataclasses.replace(config, broker=dataclasses.replace(config.broker, url=url))
    session = FleetSession(config, fleet=FleetSettings(shard_count=count, shard_index=index))
    session.run_in_background()
    session.link.wait_connected(10)
    with open(out + ".ready", "w") as fh:
        fh.write("1")
    time.sleep(seconds)
    doc = {
        "robots": sorted(session.robots),
        "accepted": {rid: r.ingest.stats.accepted for rid, r in session.robots.items()},
        "foreign": session.router.foreign,
        "stats": {rid: repr(r.ingest.stats) for rid, r in session.robots.items()},
        "subscriptions": list(session.router.topics.telemetry_subscriptions()),
    }
    session.stop()
    with open(out, "w") as fh:
        json.dump(doc, fh)


if __name__ == "__main__":
    main()
