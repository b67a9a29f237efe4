# SPDX-License-Identifier: Apache-2.0
"""`MirrorSink`: the live twin on a USD stage, and its motion saved as an animated ``.usda``."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..estimation import TwinSnapshot
from ..stage import UsdKinematicMirror

__all__ = ["MirrorSink"]


class MirrorSink:
    """Writes each snapshot's joint positions into a `UsdKinematicMirror` and keeps them for an animation.

    Args:
        mirror: the mirror (an in-memory stage for headless runs, Kit's stage inside Kit).
        live: write every snapshot as the stage's current pose (what a viewer shows).
        keep_animation: remember poses for `save_animation`, at most one per ``1 / animation_fps`` s.
        animation_fps: time-code rate of the saved animation.
        max_frames: cap on remembered poses (memory bound: 9 dofs x 8 B x frames).
    """

    name = "usd_mirror"

    def __init__(
        self,
        mirror: UsdKinematicMirror,
        *,
        live: bool = True,
        keep_animation: bool = True,
        animation_fps: float = 30.0,
        max_frames: int = 30 * 60 * 10,
    ) -> None:
        self.mirror = mirror
        self.live = live
        self.keep_animation = keep_animation
        self.animation_fps = float(animation_fps)
        self.max_frames = int(max_frames)
        self._times: list[int] = []
        self._q: list[np.ndarray] = []

    def on_snapshot(self, snapshot: TwinSnapshot) -> None:
        if self.live:
            self.mirror.write(snapshot.q)
        if self.keep_animation and len(self._times) < self.max_frames:
            if not self._times or snapshot.t_ns - self._times[-1] >= 1e9 / self.animation_fps * 0.999:
                self._times.append(snapshot.t_ns)
                self._q.append(np.array(snapshot.q))

    @property
    def frames(self) -> int:
        """Poses remembered for the animation."""
        return len(self._times)

    def save_animation(self, path: str | os.PathLike, *, decorate=None) -> Path | None:
        """Write the remembered motion as time samples into a ``.usda`` (None if nothing was recorded).

        ``decorate(stage, fps)``, when given, adds to the stage before it is saved (e.g. the what-if scene and its
        first-contact marker)."""
        if not self._times:
            return None
        times = (np.array(self._times, dtype=np.int64) - self._times[0]) * 1e-9
        anim = UsdKinematicMirror.new_stage(self.mirror.model, robot_prim_path=self.mirror.robot_prim_path)
        anim.write_animation(times, np.array(self._q), fps=self.animation_fps)
        if decorate is not None:
            decorate(anim.stage, self.animation_fps)
        return anim.save(path)

    def close(self) -> None:
        pass
