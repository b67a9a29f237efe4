# SPDX-License-Identifier: Apache-2.0
"""Which process mirrors which robot: a stable hash of the robot id modulo a static shard count.

BLAKE2b of the UTF-8 id (not Python's ``hash``, which is salted per process): every process, on every machine
and Python version, computes the same shard for the same robot, so shards need no coordinator.

    >>> shard_of("panda-03", 4), shard_of("panda-03", 4) == shard_of("panda-03", 4)
    (3, True)
"""

from __future__ import annotations

import hashlib

__all__ = ["in_shard", "shard_of"]


def shard_of(robot_id: str, shard_count: int) -> int:
    """The shard (``0 .. shard_count-1``) that owns ``robot_id``."""
    if shard_count < 1:
        raise ValueError(f"shard_count must be >= 1, got {shard_count}")
    digest = hashlib.blake2b(robot_id.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % shard_count


def in_shard(robot_id: str, shard_count: int, shard_index: int) -> bool:
    """Whether shard ``shard_index`` of ``shard_count`` owns ``robot_id``."""
    return shard_of(robot_id, shard_count) == shard_index
