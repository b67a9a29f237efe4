# SPDX-License-Identifier: Apache-2.0
"""Examples in the docs work against what ships: a user who copies one gets what the page says."""

from __future__ import annotations

import re

from conftest import REPO

from twin_ext.telemetry import decode


def _json_blocks(page: str) -> list[str]:
    return re.findall(r"```json\n(.*?)\n```", (REPO / "docs" / page).read_text(encoding="utf-8"), flags=re.S)


def test_the_joint_state_example_in_telemetry_md_is_accepted_by_the_shipped_robot(panda):
    """docs/telemetry.md's JSON joint state decodes against the shipped Panda (names, lengths, version)."""
    (example,) = _json_blocks("telemetry.md")[:1]
    message = decode(example.encode(), model=panda)
    assert list(message.names) == list(panda.dof_names)
    assert message.seq == 41 and message.robot_id == "panda"
