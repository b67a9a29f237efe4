# SPDX-License-Identifier: Apache-2.0
"""Map the twin's joint order onto another joint order (e.g. an Isaac Sim articulation's ``dof_names``)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["DofMap"]


class DofMap:
    """Reorders ``[.., n_model]`` joint vectors into the target order.

    Args:
        model_names: the twin's ``dof_names``.
        target_names: the other side's names (e.g. ``Articulation.dof_names``).

    Raises:
        ValueError: a twin joint the target does not have (names both lists and the fix).
    """

    def __init__(self, model_names: Sequence[str], target_names: Sequence[str]) -> None:
        target = {n: i for i, n in enumerate(target_names)}
        missing = [n for n in model_names if n not in target]
        if missing:
            raise ValueError(
                f"the articulation on the stage has no joints {missing} (it has {list(target_names)}); fix: set "
                f"kit.robot_prim_path to the robot the twin mirrors, or load the matching robot USD"
            )
        self.model_names = tuple(model_names)
        self.target_names = tuple(target_names)
        self.target_indices = np.array([target[n] for n in model_names], dtype=np.int32)
        """``[n_model]`` index in the target order of each twin joint (the ``dof_indices`` to write)."""

    def __len__(self) -> int:
        return len(self.model_names)
