"""Where twin state goes: a USD kinematic mirror (pxr), recorders; the Isaac articulation sink lives in kit/."""

from .usd_mirror import UsdKinematicMirror

__all__ = ["UsdKinematicMirror"]
