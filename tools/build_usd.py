# SPDX-License-Identifier: Apache-2.0
"""Build the shipped robot assets in usd/ from the MJCF sources in data/robots/, reproducibly.

Run with the conversion-tools environment (``make usd`` does this)::

    .venv-tools/bin/python tools/build_usd.py [--only franka_panda|ur5e] [--out usd]

Steps for each robot:
1. ``mujoco-usd-converter`` turns the MJCF into an atomic USD component (visual + collision geometry,
   UsdPhysics joints with limits, mass properties, MuJoCo actuators as ``MjcActuator`` prims). It does not
   author ``UsdPhysics.DriveAPI``, so PhysX in Isaac Sim would not drive the robot.
2. A separate layer, ``Payload/TwinPhysics.usda`` (the strongest sublayer of ``Payload/Contents.usda``), adds
   what Isaac Sim needs, derived from the MuJoCo actuators so MuJoCo stays the reference:
   - ``PhysicsDriveAPI:angular|linear`` on every actuated joint: stiffness and damping converted from
     MuJoCo's per-radian gains to UsdPhysics' per-degree units, ``maxForce`` from the force range, and the
     MJCF ``home`` keyframe as the default target;
   - for a fixed-tendon actuator (the Panda's gripper), one drive per coupled joint: with joints coupled by an
     equality constraint (so they move together), joint i feels ``c_i * F`` for tendon force ``F``, which is a
     per-joint servo with ``kp_i = c_i * kp * sum(c)``, ``kd_i = c_i * kv * sum(c)``, ``maxForce_i = c_i * Fmax``;
   - ``PhysxJointAPI`` ``physxJoint:maxJointVelocity`` from the manufacturer's datasheet (MJCF has none).
3. ``PROVENANCE.md`` next to the asset: sources, licenses, tool versions, what was authored.

This script needs ``mujoco_usd_converter`` (and its pxr); it is never imported by twin_ext at run time.
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class AssetSpec:
    name: str
    mjcf: str  # relative to the repo
    license: str
    velocity_limits: dict[str, float]  # joint name -> SI (rad/s or m/s)
    velocity_source: str
    notes: str = ""


PANDA_V = {f"joint{i}": 2.175 for i in range(1, 5)} | {f"joint{i}": 2.61 for i in range(5, 8)}
SPECS = {
    "franka_panda": AssetSpec(
        name="franka_panda",
        mjcf="data/robots/franka_emika_panda/panda_mesh.xml",
        license="Apache-2.0 (model: MuJoCo Menagerie, Google DeepMind; meshes: franka_ros)",
        velocity_limits=PANDA_V | {"finger_joint1": 0.2, "finger_joint2": 0.2},
        velocity_source="Franka Emika Panda datasheet / franka_description joint limits "
        "(2.175 rad/s joints 1-4, 2.61 rad/s joints 5-7, 0.2 m/s fingers)",
    ),
    "ur5e": AssetSpec(
        name="ur5e",
        mjcf="data/robots/universal_robots_ur5e/ur5e_nomesh.xml",
        license="BSD-3-Clause (Copyright 2018 ROS-Industrial Consortium; MuJoCo Menagerie)",
        velocity_limits={
            n: math.pi
            for n in (
                "shoulder_pan_joint",
                "shoulder_lift_joint",
                "elbow_joint",
                "wrist_1_joint",
                "wrist_2_joint",
                "wrist_3_joint",
            )
        },
        velocity_source="Universal Robots UR5e datasheet (180 deg/s on every joint)",
        notes="No visual meshes (the Menagerie OBJ meshes are not redistributed here); collision capsules only.",
    ),
    "kinova_gen3": AssetSpec(
        name="kinova_gen3",
        mjcf="data/robots/kinova_gen3/gen3_nomesh.xml",
        license="BSD-3-Clause (Copyright (c) 2018 Kinova inc.; MuJoCo Menagerie kinova_gen3)",
        velocity_limits={f"joint_{i}": 1.3963 for i in range(1, 5)} | {f"joint_{i}": 1.2218 for i in range(5, 8)},
        velocity_source="Kinova ros_kortex gen3 description (1.3963 rad/s joints 1-4, 1.2218 rad/s joints 5-7)",
        notes="No geometry (the Menagerie STL meshes are not redistributed here): a dynamics-only asset, "
        "used by the what-if benchmark as a third, 7-DoF arm.",
    ),
}


def convert(spec: AssetSpec, out_dir: Path) -> Path:
    from mujoco_usd_converter import Converter

    if out_dir.exists():
        shutil.rmtree(out_dir)
    asset = Converter(comment=f"twin_ext asset {spec.name}; see PROVENANCE.md").convert(
        str(REPO / spec.mjcf), str(out_dir)
    )
    return Path(asset.path)


def home_targets(spec: AssetSpec) -> dict[str, float]:
    """Joint name -> home position (rad|m) from the MJCF's ``home`` keyframe (zeros if none)."""
    import mujoco

    model = mujoco.MjModel.from_xml_path(str(REPO / spec.mjcf))
    key = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_KEY, "home")
    qpos = model.key_qpos[key] if key >= 0 else model.qpos0
    out = {}
    for j in range(model.njnt):
        if int(model.jnt_type[j]) in (int(mujoco.mjtJoint.mjJNT_HINGE), int(mujoco.mjtJoint.mjJNT_SLIDE)):
            out[mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_JOINT, j)] = float(qpos[model.jnt_qposadr[j]])
    return out


def author_twin_physics(spec: AssetSpec, asset: Path) -> list[str]:
    """Write Payload/TwinPhysics.usda with drives and velocity limits; returns a log of what was authored.

    The drive values come from twin_ext's own reader of the converted asset (which maps MuJoCo position
    servos, including the gripper's tendon servo, to per-joint gains), so the shipped DriveAPI and what
    `load_robot` reads from an unfinished conversion are the same numbers by construction.
    """
    from pxr import Sdf, Usd, UsdPhysics

    sys.path.insert(0, str(REPO))
    from twin_ext.robot import JointType, load_robot

    robot = load_robot(asset)
    homes = home_targets(spec)
    payload = asset.parent / "Payload"
    contents = Sdf.Layer.FindOrOpen(str(payload / "Contents.usda"))
    layer_path = payload / "TwinPhysics.usda"
    if layer_path.exists():
        layer_path.unlink()
    layer = Sdf.Layer.CreateNew(str(layer_path))
    layer.comment = (
        "twin_ext: drives and velocity limits for Isaac Sim/PhysX, derived from the MJCF (tools/build_usd.py)"
    )
    for key in ("defaultPrim", "metersPerUnit", "kilogramsPerUnit", "upAxis"):
        if contents.pseudoRoot.HasInfo(key):
            layer.pseudoRoot.SetInfo(key, contents.pseudoRoot.GetInfo(key))
    stage = Usd.Stage.Open(contents)
    stage.GetRootLayer().subLayerPaths.insert(0, "./TwinPhysics.usda")
    stage.SetEditTarget(Usd.EditTarget(layer))

    log: list[str] = []
    for d, name in enumerate(robot.dof_names):
        prim = stage.OverridePrim(robot.dof_paths[d])
        angular = robot.dof_type[d] == JointType.REVOLUTE
        # UsdPhysics angular quantities are per degree: N·m/deg = N·m/rad * pi/180.
        unit = math.pi / 180.0 if angular else 1.0
        if robot.has_drive[d]:
            api = UsdPhysics.DriveAPI.Apply(prim, "angular" if angular else "linear")
            target = homes.get(name, 0.0) / unit
            api.CreateTypeAttr("force")
            api.CreateStiffnessAttr(float(robot.kp[d] * unit))
            api.CreateDampingAttr(float(robot.kd[d] * unit))
            api.CreateMaxForceAttr(float(robot.effort_limit[d]))
            api.CreateTargetPositionAttr(float(target))
            log.append(
                f"{name}: DriveAPI:{'angular' if angular else 'linear'} kp={robot.kp[d]:g} kd={robot.kd[d]:g} "
                f"(SI per {'rad' if angular else 'm'}) maxForce={robot.effort_limit[d]:g} "
                f"target={target:g} {'deg' if angular else 'm'}"
            )
        if name in spec.velocity_limits:
            prim.AddAppliedSchema("PhysxJointAPI")
            value = math.degrees(spec.velocity_limits[name]) if angular else spec.velocity_limits[name]
            prim.CreateAttribute("physxJoint:maxJointVelocity", Sdf.ValueTypeNames.Float).Set(value)
            log.append(f"{name}: physxJoint:maxJointVelocity={value:.4f} {'deg/s' if angular else 'm/s'}")
    layer.Save()
    stage.GetRootLayer().Save()
    return log


def write_provenance(spec: AssetSpec, asset: Path, log: list[str]) -> None:
    import importlib.metadata as md

    text = (
        f"""# {spec.name} USD asset — provenance

Built by `tools/build_usd.py` (`make usd`); do not edit by hand.

| item | value |
|---|---|
| source | `{spec.mjcf}` (see `data/robots/PROVENANCE.md`) |
| license | {spec.license} |
| converter | mujoco-usd-converter {md.version("mujoco-usd-converter")} (MuJoCo {md.version("mujoco")}) |
| primary file | `{asset.name}` (atomic component; payload in `Payload/`) |
| authored by twin_ext | `Payload/TwinPhysics.usda` (strongest sublayer of `Payload/Contents.usda`) |
| velocity limits | {spec.velocity_source} |

{spec.notes}

Authored in TwinPhysics.usda:
"""
        + "\n".join(f"- {line}" for line in log)
        + "\n"
    )
    (asset.parent / "PROVENANCE.md").write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(SPECS), help="build one asset")
    parser.add_argument("--out", default=str(REPO / "usd"), help="output folder (default: usd/)")
    args = parser.parse_args(argv)
    for name in [args.only] if args.only else sorted(SPECS):
        spec = SPECS[name]
        asset = convert(spec, Path(args.out) / name)
        log = author_twin_physics(spec, asset)
        write_provenance(spec, asset, log)
        print(f"built {asset}")
        for line in log:
            print(f"  {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
