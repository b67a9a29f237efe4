# SPDX-License-Identifier: Apache-2.0
"""Faults in the emulator (friction wear, collisions, payload, encoder glitches, torque bias): profiles are
validated strictly, each fault does to the plant or to the published samples what it says -- checked against
independent oracles (MuJoCo models with the payload welded on, Jacobians, the friction law) with stated
tolerances -- and its ground truth (offline `Simulation.faults`, live MCAP `truth/faults`) carries it."""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pytest

mujoco = pytest.importorskip("mujoco")

from twin_ext._paths import default_robot_mjcf  # noqa: E402
from twin_ext.emulator import (  # noqa: E402
    FAULTS_JSON_SCHEMA,
    FAULTS_TOPIC,
    EmulatedRobot,
    EmulatorError,
    EmulatorSettings,
    FaultProfile,
    ImpairmentError,
    ImpairmentProfile,
    MujocoPlant,
    fault_records,
)
from twin_ext.robot import JointTrajectory  # noqa: E402
from twin_ext.telemetry import decode  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FAULTS_DIR = ROOT / "config" / "faults"
NAMES = ("joint1", "joint2", "joint3", "joint4", "joint5", "joint6", "joint7", "finger_joint1", "finger_joint2")
HOLD_POSE = np.array([0.0, 0.3, 0.0, -1.8, 0.0, 2.1, 0.785, 0.04, 0.04])  # arm stretched forward, TCP down


def _robot(faults: dict | None = None, *, program: JointTrajectory | None = None, **profile) -> EmulatedRobot:
    fp = FaultProfile.from_mapping(faults) if faults else FaultProfile()
    settings = EmulatorSettings(loop=program is None)
    return EmulatedRobot(settings, profile=ImpairmentProfile(faults=fp, **profile), program=program)


def _hold(duration_s: float) -> JointTrajectory:
    return JointTrajectory(NAMES, [0.0, duration_s], [HOLD_POSE, HOLD_POSE])


# ---- profiles ---------------------------------------------------------------------------------------
def test_shipped_fault_profiles_parse_round_trip_and_run():
    """Every config/faults/*.toml loads, maps back to itself, names its faults, and its joints/bodies exist."""
    files = sorted(FAULTS_DIR.glob("*.toml"))
    assert {f.name for f in files} >= {
        "wear_joint4.toml", "collision_joint2.toml", "payload_2kg.toml", "sensor_faults.toml", "demo_mild.toml",
    }  # fmt: skip
    for f in files:
        p = ImpairmentProfile.from_toml(f)
        assert not p.faults.is_empty and p.faults.entries(), f
        assert ImpairmentProfile.from_mapping(p.to_mapping()) == p
        EmulatedRobot(profile=p).simulate(0.01)  # joint and body names resolve on the plant
    demo = ImpairmentProfile.from_toml(FAULTS_DIR / "demo_mild.toml")
    standard = ImpairmentProfile.from_toml(ROOT / "config" / "impairments" / "standard.toml")
    assert demo.replace(faults=FaultProfile(), description=standard.description) == standard  # + mild faults only
    assert [kind for kind in ("wear", "collision") if getattr(demo.faults, kind)] == ["wear", "collision"]


def test_a_profile_without_faults_maps_as_before():
    """A profile without faults has no 'faults' key in its mapping (recorded configs stay as they were)."""
    p = ImpairmentProfile.from_toml(ROOT / "config" / "impairments" / "standard.toml")
    assert "faults" not in p.to_mapping() and p.faults.is_empty


def test_every_fault_key_is_documented_in_settings_md():
    """Each [faults] key and each key of each fault kind has a row in docs/SETTINGS.md 'Faults'."""
    text = (ROOT / "docs" / "SETTINGS.md").read_text(encoding="utf-8")
    section = text.split("## Faults", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `([a-z_\[\]\.]+)` \|", section, flags=re.M))
    expected = {"damping", "frictionloss"} | {
        f"{kind}[].{key}" for kind in FaultProfile.keys()[2:] for key in FaultProfile.kind_keys(kind)
    }
    assert expected <= documented, sorted(expected - documented)


@pytest.mark.parametrize(
    ("faults", "match"),
    [
        (
            {"wear": [{"joint": "joint4", "rate_per_hr": 1.0}]},
            r"faults\.wear\[0\]: unknown key 'rate_per_hr' \(did you mean 'rate_per_hour'\?\)",
        ),
        ({"wears": []}, r"faults: unknown key 'wears' \(did you mean 'wear'\?\)"),
        ({"wear": [{"joint": "joint4"}]}, r"faults\.wear\[0\] needs key\(s\) \['rate_per_hour'\]"),
        ({"wear": [{"joint": "joint4", "rate_per_hour": -1.0}]}, r"faults\.wear\[0\]\.rate_per_hour must be > 0"),
        (
            {"wear": [{"joint": "joint4", "rate_per_hour": 1.0, "max_scale": 0.5}]},
            r"faults\.wear\[0\]\.max_scale must be >= 1",
        ),
        ({"wear": [{"joint": "joint4", "rate_per_hour": 1.0}] * 2}, r"overlap on joint4; one wear ramp per joint"),
        ({"wear": {"joint": "joint4"}}, r"faults\.wear must be a list of tables like \[\[faults\.wear\]\]"),
        ({"frictionloss": {"joint4": -0.5}}, r"faults\.frictionloss\.joint4 must be a finite number >= 0 N·m"),
        ({"frictionloss": [0.5]}, r"faults\.frictionloss must be a table of joint = value"),
        ({"collision": [{"at_s": 1.0, "duration_s": 0.1}]}, r"faults\.collision\[0\]: give either joint and torque"),
        (
            {"collision": [{"at_s": 1.0, "duration_s": 0.1, "joint": "joint2", "body": "link3", "torque": 1.0}]},
            "give either joint and torque",
        ),
        (
            {"collision": [{"at_s": 1.0, "duration_s": 0.0, "joint": "joint2", "torque": 1.0}]},
            r"faults\.collision\[0\]\.duration_s must be > 0 s",
        ),
        (
            {"collision": [{"at_s": 1.0, "duration_s": 0.1, "body": "link3", "force": [1.0, 2.0]}]},
            r"faults\.collision\[0\]\.force must be a list of 3 numbers",
        ),
        (
            {"collision": [{"at_s": 1.0, "duration_s": 0.1, "joint": "joint2", "torque": 1.0, "shape": "sine"}]},
            r"shape must be one of \['rectangular', 'half_sine'\]",
        ),
        (
            {"collision": [{"at_s": 1.0, "duration_s": 0.1, "joint": "joint2", "torque": "5"}]},
            r"faults\.collision\[0\]\.torque must be a number",
        ),
        ({"payload": [{"at_s": 1.0, "mass": 0.0}]}, r"faults\.payload\[0\]\.mass must be > 0 kg"),
        ({"payload": [{"at_s": 1.0, "mass": 1.0, "inertia": [1.0, 0.1, 0.1]}]}, r"is not a rigid body's"),
        (
            {"payload": [{"at_s": 1.0, "mass": 1.0, "duration_s": 5.0}, {"at_s": 2.0, "mass": 1.0}]},
            r"faults\.payload\[0\] .* overlap",
        ),
        (
            {"encoder_jump": [{"joint": "joint3", "at_s": 1.0, "jump": 0.0}]},
            r"faults\.encoder_jump\[0\]\.jump is 0 rad",
        ),
        (
            {"encoder_stuck": [{"joint": "joint3", "at_s": -1.0, "duration_s": 1.0}]},
            r"faults\.encoder_stuck\[0\]\.at_s must be >= 0 s",
        ),
        (
            {"torque_bias": [{"joint": "", "at_s": 1.0, "bias": 1.0}]},
            r"faults\.torque_bias\[0\]\.joint must name a joint",
        ),
        (
            {
                "torque_bias": [
                    {"joint": "joint2", "at_s": 1.0, "bias": 1.0, "name": "x"},
                    {"joint": "joint3", "at_s": 1.0, "bias": 1.0, "name": "x"},
                ]
            },
            r"name 'x' is also the id of faults\.torque_bias\[0\]",
        ),
    ],
)
def test_bad_fault_profiles_are_refused_naming_the_key(faults, match):
    """Unknown keys (with 'did you mean'), missing keys, wrong types, impossible values and overlaps are refused
    with an ImpairmentError naming the file and the key."""
    with pytest.raises(ImpairmentError, match=match) as info:
        ImpairmentProfile.from_mapping({"faults": faults}, source="p.toml")
    assert str(info.value).startswith("p.toml: faults")


def test_faults_naming_joints_or_bodies_the_robot_lacks_are_refused_naming_the_key():
    """A joint or body that is not in the plant is an EmulatorError naming the key and listing the valid names."""
    with pytest.raises(
        EmulatorError, match=r"faults\.wear\[0\]\.joint = 'joint9' is not a joint of the robot; joints: \['joint1'"
    ):
        _robot({"wear": [{"joint": "joint9", "rate_per_hour": 1.0}]}).simulate(0.01)
    with pytest.raises(EmulatorError, match=r"faults\.collision\[0\]\.body = 'link9'.*bodies: \['link0', 'link1'"):
        _robot({"collision": [{"body": "link9", "at_s": 0.0, "duration_s": 0.1, "force": [1.0, 0.0, 0.0]}]}).simulate(
            0.01
        )


# ---- collisions ------------------------------------------------------------------------------------
def test_a_joint_collision_moves_the_struck_joint_at_its_time_and_not_before():
    """A 20 N·m, 50 ms torque on joint2 at 1.0 s: the plant is bit-identical to an unfaulted run up to the
    step it starts, then joint2 is pushed (> 1 mrad within 50 ms) and its drive torque answers (servo against
    the load: > 15 N·m of the 20 N·m by the end of the pulse); the truth says exactly when and how much."""
    clean = _robot().simulate(1.5, seed=1)
    hit = _robot({"collision": [{"joint": "joint2", "torque": 20.0, "at_s": 1.0, "duration_s": 0.05}]}).simulate(
        1.5, seed=1
    )
    start = 1000  # the plant step at 1.0 s; its state row is the last one the load has not touched
    assert np.array_equal(hit.truth.q[: start + 1], clean.truth.q[: start + 1])
    # The torque reported for step `start` is the one acting over it (implicit servo damping at the step's end
    # velocity, MujocoPlant.step), which already answers the load: identical only before it.
    assert np.array_equal(hit.truth.tau[:start], clean.truth.tau[:start])
    dq = hit.truth.q[:, 1] - clean.truth.q[:, 1]
    assert dq[start + 50] > 1e-3 and np.abs(dq[start + 1]) > 0
    dtau = hit.truth.tau[:, 1] - clean.truth.tau[:, 1]
    assert dtau[start + 49] < -15.0  # the servo pushes back
    ext = hit.faults.external_torque
    assert np.flatnonzero(ext[:, 1]).tolist() == list(range(start, start + 50))
    assert np.all(ext[start : start + 50, 1] == 20.0) and not np.any(ext[:, [0, *range(2, 9)]])
    (event,) = hit.faults.faults
    assert (event.kind, event.joint, event.magnitude, event.unit) == ("collision", "joint2", 20.0, "N·m")
    assert (event.start_ns, event.end_ns) == (1_000_000_000, 1_050_000_000)
    assert hit.faults.active(event.id).sum() == 50


def test_a_link_collision_reaches_the_joints_as_jacobian_transpose_times_the_force():
    """A half-sine 30/-50 N force on link7 at 10 cm along its z axis: the recorded joint torques equal
    J(p)^T F computed independently (a fresh MuJoCo model at the truth pose, Jacobian at the point) within
    1e-4 relative (the point is placed with the link's pose 1 ms old), and the arm deviates only after it starts."""
    force, point = np.array([30.0, 0.0, -50.0]), np.array([0.0, 0.0, 0.1])
    faults = {"collision": [{"body": "link7", "at_s": 0.5, "duration_s": 0.1, "force": force.tolist(),
                             "point": point.tolist(), "shape": "half_sine"}]}  # fmt: skip
    hit = _robot(faults).simulate(0.8, seed=2)
    clean = _robot().simulate(0.8, seed=2)
    assert np.array_equal(hit.truth.q[:501], clean.truth.q[:501]) and not np.array_equal(
        hit.truth.q[600], clean.truth.q[600]
    )
    model = mujoco.MjModel.from_xml_path(str(default_robot_mjcf()))
    data = mujoco.MjData(model)
    body = model.body("link7").id
    for row in range(505, 600, 10):
        data.qpos[:] = hit.truth.q[row]
        mujoco.mj_kinematics(model, data)
        mujoco.mj_comPos(model, data)
        p = data.xpos[body] + data.xmat[body].reshape(3, 3) @ point
        jacp = np.zeros((3, model.nv))
        mujoco.mj_jac(model, data, jacp, None, p, body)
        expected = jacp.T @ (force * np.sin(np.pi * (row - 500) / 100))
        got = hit.faults.external_torque[row]
        assert np.abs(got - expected).max() <= 1e-4 * np.abs(expected).max(), (row, got, expected)
    assert not np.any(hit.faults.external_torque[:500]) and not np.any(hit.faults.external_torque[600:])


# ---- payload ---------------------------------------------------------------------------------------
def test_a_runtime_payload_equals_a_welded_one_after_set_const():
    """MujocoPlant.set_payload (runtime body_mass/ipos/inertia + mj_setConst) gives the mass matrix and bias
    forces of a model compiled with the payload welded on the hand (to 1e-12), and the payload gets no gravity
    compensation (the robot does not know it); without mj_setConst MuJoCo would be off (checked, to keep the reason)."""
    mass, com, inertia = 2.0, [0.02, -0.01, 0.1], [0.004, 0.003, 0.002]
    q = np.array([0.3, -0.4, 0.2, -2.0, 0.1, 1.7, 0.6, 0.03, 0.03])

    def dynamics(model):
        data = mujoco.MjData(model)
        data.qpos[:], data.qvel[:] = q, 0.2
        mujoco.mj_forward(model, data)
        full = np.zeros((model.nv, model.nv))
        mujoco.mj_fullM(model, data, full)
        return full, data.qfrc_bias.copy(), data.qfrc_gravcomp.copy()

    spec = mujoco.MjSpec.from_file(str(default_robot_mjcf()))
    welded = spec.body("hand").add_body(name="load")
    welded.mass, welded.ipos, welded.inertia, welded.explicitinertial = mass, com, inertia, True
    oracle_m, oracle_bias, _ = dynamics(spec.compile())
    plant = MujocoPlant()
    _, _, gravcomp_without = dynamics(plant.model)
    plant.add_payload_body("hand")
    plant.set_payload(mass, np.array(com), np.array(inertia))
    full, bias, gravcomp = dynamics(plant.model)
    assert np.abs(full - oracle_m).max() < 1e-12 and np.abs(bias - oracle_bias).max() < 1e-12
    assert np.allclose(gravcomp, gravcomp_without, rtol=0, atol=1e-9)  # the arm's own, rounding aside
    stale = MujocoPlant()
    stale.add_payload_body("hand")
    b = stale.payload_body
    stale.model.body_mass[b], stale.model.body_ipos[b], stale.model.body_inertia[b] = mass, com, inertia
    full, bias, _ = dynamics(stale.model)
    assert np.abs(full - oracle_m).max() > 0.05 and np.abs(bias - oracle_bias).max() > 0.1  # why it calls mj_setConst


def test_a_payload_raises_the_holding_torque_by_m_g_lever():
    """A 2 kg payload at 10 cm along the hand's z, attached at 1 s to an arm holding a stretched pose: once
    settled the drive torques equal the gravity torques of a MuJoCo model with the payload welded on, at the
    settled pose (to 1e-3 N·m), and their rise equals m·g·lever (the payload's weight about each joint axis)
    within 2 % + 0.05 N·m (the rest is the arm's own sag of ~3 mrad under the unknown load)."""
    mass, com = 2.0, [0.0, 0.0, 0.1]
    sim = _robot({"payload": [{"at_s": 1.0, "mass": mass, "com": com}]}, program=_hold(4.0)).simulate(4.0)
    before, after = sim.truth.tau[900:1000].mean(0), sim.truth.tau[3800:4000].mean(0)
    assert np.ptp(sim.truth.tau[3800:4000, :7], axis=0).max() < 1e-6  # settled
    q_after = sim.truth.q[3999]
    spec = mujoco.MjSpec.from_file(str(default_robot_mjcf()))
    load = spec.body("hand").add_body(name="load")
    load.mass, load.ipos, load.inertia, load.explicitinertial = mass, com, [0.0, 0.0, 0.0], True
    model = spec.compile()
    data = mujoco.MjData(model)
    data.qpos[:] = q_after
    mujoco.mj_forward(model, data)
    assert np.abs(after[:7] - data.qfrc_bias[:7]).max() < 1e-3  # static: drive torque = gravity torque
    hand = model.body("hand").id
    c = data.xpos[hand] + data.xmat[hand].reshape(3, 3) @ np.array(com)
    weight = np.array([0.0, 0.0, -9.81 * mass])
    lever = np.array([
        -np.dot(data.xaxis[model.joint(n).id], np.cross(c - data.xanchor[model.joint(n).id], weight)) for n in NAMES[:7]
    ])  # fmt: skip
    rise = after[:7] - before[:7]
    assert abs(lever[1]) > 10.0 and abs(lever[3]) > 8.0  # the shoulder and the elbow carry it
    assert np.all(np.abs(rise - lever) <= 0.02 * np.abs(lever) + 0.05), (rise, lever)
    assert sim.faults.payload_mass[999] == 0.0 and sim.faults.payload_mass[1000] == mass
    assert sim.faults.payload_com[2000].tolist() == com and sim.faults.payload_body == "hand"


# ---- friction wear ---------------------------------------------------------------------------------
def test_friction_wear_grows_the_dissipated_torque_as_configured():
    """Wear on joint4 (base dry friction 1 N·m, damping 1 N·m·s/rad) at 720/h from 1 s: the plant's friction
    torque is -s(t)·(b·qd + f·sign qd) while the joint moves (|qd| > 0.05 rad/s; to 1e-9 N·m), and the drive
    torque -- what the robot's torque sensor sees -- rises against an unworn run by (s(t) - 1)·(b·qd +
    f·sign qd), with an RMS residual < 2 % of that rise (servo dynamics); nothing changes before 1 s."""
    base = {"frictionloss": {"joint4": 1.0}}
    worn_faults = {**base, "wear": [{"joint": "joint4", "at_s": 1.0, "rate_per_hour": 720.0}]}
    unworn, worn = _robot(base).simulate(6.0, seed=3), _robot(worn_faults).simulate(6.0, seed=3)
    ft, j = worn.faults, 3
    t_s = np.arange(len(worn.truth)) * 1e-3
    s = np.where(t_s < 1.0, 1.0, 1.0 + 720.0 * (t_s - 1.0) / 3600.0)
    assert np.allclose(ft.friction_scale[:, j], s, rtol=0, atol=1e-12) and ft.friction_scale[-1, j] > 1.99
    assert np.allclose(ft.damping[:, j], s) and np.allclose(ft.frictionloss[:, j], s)
    qd = worn.truth.qd[:, j]
    moving = np.abs(qd) > 0.05
    law = -s * (1.0 * qd + 1.0 * np.sign(qd))
    assert np.abs(ft.friction_torque[moving, j] - law[moving]).max() < 1e-9
    assert np.array_equal(worn.truth.tau[:1001], unworn.truth.tau[:1001])
    rise = worn.truth.tau[:, j] - unworn.truth.tau[:, j]
    expected = (s - 1.0) * (qd + np.sign(qd))
    window = moving & (t_s > 1.0)
    rms = np.sqrt(np.mean(expected[window] ** 2))
    assert rms > 0.3  # the wear is visible
    assert np.sqrt(np.mean((rise - expected)[window] ** 2)) < 0.02 * rms


# ---- sensor faults ---------------------------------------------------------------------------------
def test_encoder_glitches_and_torque_bias_change_only_the_published_samples():
    """On a noise-free link: an encoder jump moves exactly one published position by its size, a stuck encoder
    repeats its first reading for its window, a torque bias shifts every published effort from its start --
    while the plant's truth is bit-identical to an unfaulted run; the truth lists each sample's error."""
    faults = {
        "encoder_jump": [{"joint": "joint3", "at_s": 0.3, "jump": 0.02}],
        "encoder_stuck": [{"joint": "joint6", "at_s": 0.5, "duration_s": 0.2}],
        "torque_bias": [{"joint": "joint2", "at_s": 0.8, "bias": 1.5}],
    }
    clean, faulty = _robot().simulate(1.2, seed=4), _robot(faults).simulate(1.2, seed=4)
    for key in ("q", "qd", "tau"):
        assert np.array_equal(getattr(faulty.truth, key), getattr(clean.truth, key))
    published = [decode(d.payload) for d in faulty.joint_state_deliveries]
    pos = np.array([m.position for m in published])
    eff = np.array([m.effort for m in published])
    truth_rows = faulty.samples.step
    t_s = faulty.samples.host_ns / 1e9
    dpos = pos - faulty.truth.q[truth_rows]
    deff = eff - faulty.truth.tau[truth_rows]
    jump = np.flatnonzero(dpos[:, 2])
    assert jump.tolist() == [60] and dpos[60, 2] == pytest.approx(0.02, abs=1e-15)  # the sample at 0.3 s
    stuck = (t_s >= 0.5) & (t_s < 0.7)
    assert (
        np.all(pos[stuck, 5] == pos[np.flatnonzero(stuck)[0], 5])
        and np.ptp(faulty.truth.q[truth_rows[stuck], 5]) > 1e-3
    )
    assert np.all(dpos[~stuck, 5] == 0.0) and np.all(dpos[:, [0, 1, 3, 4, 6, 7, 8]] == 0.0)
    assert np.allclose(deff[t_s >= 0.8, 1], 1.5, atol=1e-12, rtol=0) and np.all(deff[t_s < 0.8] == 0.0)
    assert np.all(deff[:, [0, *range(2, 9)]] == 0.0)
    ft = faulty.faults
    assert np.allclose(ft.position_error, dpos, atol=1e-15, rtol=0) and np.allclose(
        ft.effort_error, deff, atol=1e-12, rtol=0
    )
    by_kind = {f.kind: f for f in ft.faults}
    assert (
        by_kind["encoder_jump"].detail["seq"] == published[60].seq and by_kind["encoder_jump"].start_ns == 300_000_000
    )
    assert by_kind["encoder_stuck"].detail["value"] == pos[stuck][0, 5]
    assert (by_kind["torque_bias"].start_ns, by_kind["torque_bias"].end_ns, by_kind["torque_bias"].unit) == (
        800_000_000,
        None,
        "N·m",
    )


# ---- ground truth ----------------------------------------------------------------------------------
def _check_schema(record: dict) -> None:
    props = FAULTS_JSON_SCHEMA["properties"]
    assert set(record) == set(props) and set(FAULTS_JSON_SCHEMA["required"]) <= set(record)
    if record["fault"] is not None:
        fault_schema = props["fault"]["oneOf"][1]
        assert set(fault_schema["required"]) <= set(record["fault"])
        assert record["fault"]["kind"] in fault_schema["properties"]["kind"]["enum"]


def test_the_truth_records_carry_every_fault_with_its_times():
    """fault_records of a run with one fault of each kind: every fault has a start record at its start time
    (and an end record at its end, if it ends) with kind, place, magnitude and unit; state records come every
    10 ms with the plant's friction scale, loads and payload; every record fits the registered JSON schema."""
    faults = {
        "frictionloss": {"joint4": 0.5},
        "wear": [{"joint": "joint4", "at_s": 0.2, "rate_per_hour": 3600.0, "name": "elbow"}],
        "collision": [{"joint": "joint2", "at_s": 0.3, "duration_s": 0.05, "torque": 10.0},
                      {"body": "link5", "at_s": 0.4, "duration_s": 0.02, "force": [0.0, 20.0, 0.0]}],
        "payload": [{"at_s": 0.5, "mass": 1.0, "com": [0.0, 0.0, 0.05], "duration_s": 0.2}],
        "encoder_jump": [{"joint": "joint1", "at_s": 0.61, "jump": -0.01}],
        "encoder_stuck": [{"joint": "joint3", "at_s": 0.62, "duration_s": 0.1}],
        "torque_bias": [{"joint": "joint5", "at_s": 0.7, "bias": 0.3}],
    }  # fmt: skip
    sim = _robot(faults).simulate(1.0, seed=5)
    records = list(fault_records(sim.faults, sim.truth))
    for _, rec in records:
        _check_schema(rec)
    assert [t for t, _ in records] == sorted(t for t, _ in records)
    starts = {r["fault"]["id"]: r for _, r in records if r["event"] == "start"}
    ends = {r["fault"]["id"]: r for _, r in records if r["event"] == "end"}
    expected = {  # id: (kind, joint, body, magnitude, unit, start_s, end_s)
        "elbow": ("wear", "joint4", "", 3600.0, "1/h", 0.2, None),
        "collision[0]": ("collision", "joint2", "", 10.0, "N·m", 0.3, 0.35),
        "collision[1]": ("collision", "", "link5", 20.0, "N", 0.4, 0.42),
        "payload[0]": ("payload", "", "hand", 1.0, "kg", 0.5, 0.7),
        "encoder_jump[0]": ("encoder_jump", "joint1", "", -0.01, "rad", 0.61, 0.61),
        "encoder_stuck[0]": ("encoder_stuck", "joint3", "", 0.1, "s", 0.62, 0.72),
        "torque_bias[0]": ("torque_bias", "joint5", "", 0.3, "N·m", 0.7, None),
    }
    assert set(starts) == set(expected) == {f.id for f in sim.faults.faults}
    for ident, (kind, joint, body, magnitude, unit, start_s, end_s) in expected.items():
        f = starts[ident]["fault"]
        assert (f["kind"], f["joint"], f["body"], f["magnitude"], f["unit"]) == (kind, joint, body, magnitude, unit)
        assert f["start_s"] == pytest.approx(start_s, abs=1e-12) and starts[ident]["t_s"] == pytest.approx(
            start_s, abs=1e-12
        )
        assert ident in starts[ident]["active"]
        if end_s is None:
            assert f["end_s"] is None and ident not in ends
        else:
            assert f["end_s"] == pytest.approx(end_s, abs=1e-12) and ends[ident]["t_s"] == pytest.approx(
                end_s, abs=1e-12
            )
    states = [r for _, r in records if r["event"] == "state"]
    assert len(states) == 100 and np.allclose(np.diff([r["t_s"] for r in states]), 0.01)
    at = {round(r["t_s"], 3): r for r in states}
    assert at[0.1]["friction_scale"][3] == 1.0 and at[0.8]["friction_scale"][3] == pytest.approx(1.6)
    assert at[0.8]["frictionloss"][3] == pytest.approx(0.8) and at[0.8]["damping"][3] == pytest.approx(1.6)
    assert (
        at[0.32]["external_torque"][1] == 10.0
        and at[0.6]["payload"]["mass"] == 1.0
        and at[0.8]["payload"]["mass"] == 0.0
    )
    assert at[0.8]["active"] == ["elbow", "torque_bias[0]"]


def test_faults_keep_simulate_deterministic_and_cheap():
    """simulate() with faults is deterministic for a seed (same deliveries, truth and fault truth), keeps the
    impairment schedule of the seed (same losses and arrival times as without faults), and the demo profile's
    faults cost < 25 % extra CPU over the standard profile (the best of 3 interleaved 5 s runs each)."""
    demo = EmulatedRobot(profile=ImpairmentProfile.from_toml(FAULTS_DIR / "demo_mild.toml"))
    standard = EmulatedRobot(profile=ImpairmentProfile.from_toml(ROOT / "config" / "impairments" / "standard.toml"))
    a, b = demo.simulate(14.0, seed=9), demo.simulate(14.0, seed=9)
    assert a.deliveries == b.deliveries and np.array_equal(a.truth.q, b.truth.q)
    assert np.array_equal(a.faults.friction_torque, b.faults.friction_torque) and a.faults.faults == b.faults.faults
    c = standard.simulate(14.0, seed=9)
    assert np.array_equal(a.samples.copies, c.samples.copies) and np.array_equal(
        a.samples.first_arrival_ns, c.samples.first_arrival_ns
    )
    assert np.any(a.faults.external_torque[12000:12050, 1]) and a.faults.friction_scale[-1, 3] > 1.2
    cost = {"demo": [], "standard": []}
    for _ in range(3):
        for name, robot in (("standard", standard), ("demo", demo)):
            t = time.process_time()
            robot.simulate(5.0, seed=1)
            cost[name].append(time.process_time() - t)
    extra = min(cost["demo"]) / min(cost["standard"]) - 1.0
    print(
        f"simulate 5 s: standard {min(cost['standard']):.3f} s, demo_mild {min(cost['demo']):.3f} s CPU (+{extra:.0%})"
    )
    assert extra < 0.25


@pytest.mark.broker
def test_a_live_truth_recording_has_the_fault_channel(tmp_path):
    """Live with --truth, a profile with faults also records truth/faults: state records every 10 ms, a start
    and an end record of a collision at its time, with the schema registered; truth/joint_states is unchanged."""
    from mosquitto import Mosquitto, require_mosquitto  # tests/mosquitto.py

    from twin_ext.telemetry import McapReplay

    require_mosquitto()
    broker = Mosquitto(tmp_path / "mosquitto", persistence=False, extra_conf="set_tcp_nodelay true").start()
    try:
        robot = _robot({"collision": [{"joint": "joint2", "at_s": 0.4, "duration_s": 0.05, "torque": 15.0, "name": "bump"}],
                        "torque_bias": [{"joint": "joint5", "at_s": 0.2, "bias": 0.5}]})  # fmt: skip
        path = tmp_path / "truth.mcap"
        summary = robot.run(broker.url, duration_s=1.0, truth=path)
    finally:
        broker.stop()
    replay = McapReplay(path)
    assert replay.topics()[FAULTS_TOPIC] >= 90 and summary.truth_records == replay.topics()["truth/joint_states"]
    records = [rec for _, rec in replay.read_json(FAULTS_TOPIC)]
    for rec in records:
        _check_schema(rec)
    events = {(r["event"], r["fault"]["id"]): r for r in records if r["event"] != "state"}
    assert set(events) == {("start", "bump"), ("end", "bump"), ("start", "torque_bias[0]")}
    assert events[("start", "bump")]["t_s"] == pytest.approx(0.4, abs=1e-9)
    assert events[("end", "bump")]["t_s"] == pytest.approx(0.45, abs=1e-9)
    loaded = [r for r in records if r["event"] == "state" and 0.4 <= r["t_s"] < 0.45]
    assert loaded and all(r["external_torque"][1] == 15.0 and "bump" in r["active"] for r in loaded)
    states = [r["t_s"] for r in records if r["event"] == "state"]
    assert np.allclose(np.diff(states), 0.01, atol=1e-3)
