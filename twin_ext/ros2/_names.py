# SPDX-License-Identifier: Apache-2.0
"""Matching a bag's joint names to the robot model's: exact, an explicit map, or one common driver prefix."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .. import TwinExtError

__all__ = ["Ros2BagError", "resolve_joint_names"]


class Ros2BagError(TwinExtError, ValueError):
    """A ROS 2 bag that cannot be replayed as this robot; the message names the topic or joints and the fix."""


def resolve_joint_names(
    bag_names: Sequence[str], model_names: Sequence[str], joint_map: Mapping[str, str] | None = None
) -> tuple[dict[str, str], list[str]]:
    """Map the joint names a bag publishes onto the model's.

    Order of rules: an entry of ``joint_map`` (bag name -> model name) wins; then a bag name equal to a model
    name; then, for the names still unmatched, one prefix common to all of them (``panda_`` turns
    ``panda_joint1`` into ``joint1``), used only when a single prefix explains the most names (ambiguous
    otherwise) and said in a warning. Bag joints the model does not have are ignored with a warning.

    Args:
        bag_names: ``[m]`` names in the bag's JointState messages.
        model_names: ``[n]`` the robot model's dof names.
        joint_map: explicit ``{bag name: model name}`` (setting ``joint_map`` of a suite or ``--joint-map``).

    Returns:
        ``({bag name: model name}, warnings)``.

    Raises:
        Ros2BagError: a model joint no bag name maps to, a map entry naming an unknown joint, or two bag
            names mapped onto one model joint.
    """
    model = list(model_names)
    model_set = set(model)
    joint_map = dict(joint_map or {})
    warnings: list[str] = []
    bad = sorted(v for v in joint_map.values() if v not in model_set)
    if bad:
        raise Ros2BagError(
            f"joint_map maps onto {bad}, which the robot model does not have (its joints: {model}); "
            "fix: map each bag name onto one of the model's joint names"
        )
    mapping: dict[str, str] = {b: joint_map[b] for b in bag_names if b in joint_map}
    for b in bag_names:
        if b not in mapping and b in model_set and b not in mapping.values():
            mapping[b] = b
    left_model = [m for m in model if m not in mapping.values()]
    left_bag = [b for b in bag_names if b not in mapping]
    if left_model and left_bag:
        prefix, matched = _best_prefix(left_bag, left_model)
        if matched:
            for b, m in matched.items():
                mapping[b] = m
            warnings.append(
                f"joint names matched by the prefix {prefix!r} ({', '.join(f'{b}->{m}' for b, m in matched.items())}); "
                "set joint_map to make it explicit"
            )
    seen: dict[str, str] = {}
    for b, m in mapping.items():
        if m in seen:
            raise Ros2BagError(
                f"bag joints {seen[m]!r} and {b!r} both map onto model joint {m!r}; fix: correct joint_map"
            )
        seen[m] = b
    missing = [m for m in model if m not in seen]
    if missing:
        raise Ros2BagError(
            f"the bag's joints {list(bag_names)} give no value for the model joints {missing}; fix: set joint_map "
            '(bag name -> model name), e.g. joint_map = {panda_joint1 = "joint1"}, or load the robot USD the bag '
            "was recorded from"
        )
    extra = [b for b in bag_names if b not in mapping]
    if extra:
        warnings.append(f"bag joints {extra} are not in the robot model: ignored")
    return mapping, warnings


def _best_prefix(bag_names: list[str], model_names: list[str]) -> tuple[str, dict[str, str]]:
    """The prefix that turns the most bag names into model names, with that matching; ``("", {})`` when none
    does or two prefixes tie (ambiguous)."""
    by_prefix: dict[str, dict[str, str]] = {}
    for b in bag_names:
        for m in model_names:
            if len(b) > len(m) and b.endswith(m):
                by_prefix.setdefault(b[: -len(m)], {})[b] = m
    if not by_prefix:
        return "", {}
    ranked = sorted(by_prefix.items(), key=lambda kv: -len(kv[1]))
    if len(ranked) > 1 and len(ranked[0][1]) == len(ranked[1][1]):
        return "", {}
    prefix, matched = ranked[0]
    if len(set(matched.values())) != len(matched):
        return "", {}
    return prefix, matched
