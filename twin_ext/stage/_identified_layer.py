# SPDX-License-Identifier: Apache-2.0
"""`write_identified_layer`: what the health monitor identified, as a non-destructive USD layer over the robot.

The layer sublayers the robot's own asset and only *overrides* attributes on its joint prims, so the asset
stays untouched and opening the layer instead of the asset gives the identified robot — to `load_robot` (and so
to the what-if engine) and to simulators that read the same attributes:

==========================  ==============================  ==============================================
quantity                    attribute (angular joints)      read by
==========================  ==============================  ==============================================
viscous damping             ``newton:damping`` (per degree)  Newton, twin_ext's loader (first choice)
                            ``mjc:damping`` (per radian)     MuJoCo tools (mujoco-usd-converter), the loader
Coulomb friction            ``newton:friction`` (N·m)        Newton, the loader (first choice)
                            ``mjc:frictionloss`` (N·m)       MuJoCo tools, the loader
==========================  ==============================  ==============================================

PhysX has no torque-valued joint friction (``physxJoint:jointFriction`` is a unitless coefficient), so PhysX in
Isaac Sim keeps its own joint friction; the layer's ``customData`` records the identified values and their
intervals for people and tools. Stage units are honoured (values are written in the asset's units).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

from ..robot import JointType, RobotModel

__all__ = ["write_identified_layer"]

_DEG = math.pi / 180.0


def write_identified_layer(
    model: RobotModel,
    friction: Mapping[str, tuple[float, float]],
    path: str | Path,
    *,
    note: str = "",
    intervals: Mapping[str, tuple[float, float]] | None = None,
) -> Path:
    """Write a ``.usda`` layer over ``model.source`` with identified joint friction.

    Args:
        model: the robot the identification ran on (its ``source`` asset is sublayered).
        friction: ``{joint name: (coulomb, viscous)}`` in N·m and N·m·s/rad (N and N·s/m for prismatic joints);
            joints not named keep the asset's values.
        path: the layer to write (folders are created). The sublayer path is written relative to it when possible.
        note: recorded in the layer's documentation string (e.g. when and from what it was identified).
        intervals: ``{joint name: (coulomb 95 % half-width, viscous 95 % half-width)}``, recorded in customData.

    Returns:
        the layer's path. ``load_robot(path)`` reads the identified values back.

    Raises:
        ValueError: a joint name the model does not have, or a negative or non-finite value.
    """
    from pxr import Sdf, Usd, UsdGeom, UsdPhysics

    unknown = sorted(set(friction) - set(model.dof_names))
    if unknown:
        raise ValueError(f"joints {unknown} are not joints of {model.name}: {list(model.dof_names)}")
    for name, (coulomb, viscous) in friction.items():
        if not (math.isfinite(coulomb) and math.isfinite(viscous) and coulomb >= 0 and viscous >= 0):
            raise ValueError(f"{name}: friction must be finite and >= 0, got coulomb {coulomb!r}, viscous {viscous!r}")
    path = Path(path).expanduser().resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    asset = Path(model.source).resolve()
    base = Usd.Stage.Open(str(asset))
    mpu = float(UsdGeom.GetStageMetersPerUnit(base)) or 1.0
    kpu = float(UsdPhysics.GetStageKilogramsPerUnit(base)) or 1.0
    layer = Sdf.Layer.CreateNew(str(path)) if not path.exists() else Sdf.Layer.FindOrOpen(str(path))
    layer.Clear()
    try:
        sub = str(asset.relative_to(path.parent)) if asset.is_relative_to(path.parent) else str(asset)
    except ValueError:
        sub = str(asset)
    layer.subLayerPaths.append(sub if sub.startswith((".", "/")) else "./" + sub)
    stage = Usd.Stage.Open(layer)
    # The layer is the stage people open: it must say the asset's units, or readers assume USD's defaults (cm).
    UsdGeom.SetStageMetersPerUnit(stage, mpu)
    UsdPhysics.SetStageKilogramsPerUnit(stage, kpu)
    UsdGeom.SetStageUpAxis(stage, UsdGeom.GetStageUpAxis(base))
    if base.GetDefaultPrim():
        stage.SetDefaultPrim(stage.GetPrimAtPath(base.GetDefaultPrim().GetPath()))
    record: dict[str, dict[str, float]] = {}
    for d, name in enumerate(model.dof_names):
        if name not in friction:
            continue
        coulomb, viscous = friction[name]
        angular = model.dof_type[d] == JointType.REVOLUTE
        force_scale = kpu * mpu * (mpu if angular else 1.0)  # asset units -> N·m or N
        per_position_newton = _DEG if angular else mpu  # newton:damping is per degree (angular) or per unit
        per_position_mjc = 1.0 if angular else mpu
        prim = stage.OverridePrim(model.dof_paths[d])
        for attr, value in (
            ("newton:damping", viscous * per_position_newton / force_scale),
            ("mjc:damping", viscous * per_position_mjc / force_scale),
            ("newton:friction", coulomb / force_scale),
            ("mjc:frictionloss", coulomb / force_scale),
        ):
            prim.CreateAttribute(attr, Sdf.ValueTypeNames.Float).Set(float(value))
        record[name] = {"coulomb": float(coulomb), "viscous": float(viscous)}
        if intervals and name in intervals:
            record[name].update({"coulomb_ci": float(intervals[name][0]), "viscous_ci": float(intervals[name][1])})
    layer.documentation = note or "twin_ext: joint friction identified by the health monitor"
    layer.customLayerData = {"twin_ext:identified_friction": record, "twin_ext:robot": model.name}
    layer.Save()
    return path
