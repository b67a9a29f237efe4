"""Rollout kernels specialised to one tree shape: generated Warp source with the body loops unrolled.

The generic kernel (`kernels`) walks the tree with runtime loops and keeps per-body values in global
scratch arrays. For a given shape (the parent of every body and whether its joint is revolute or
prismatic) this module writes the *same* algorithm as straight-line Warp code: every body's pose,
velocity, force, composite inertia and every non-zero entry of the mass matrix and of its ``L^T D L``
factor is a local variable the compiler keeps in registers, the sparsity pattern of the tree is known
while generating (no ancestor loops), and the verdict accumulators live in registers across the time
loop. Robot *values* (frames, inertias, gains, limits, payloads) stay runtime arrays, so one kernel
serves every robot of that shape and every variant.

The source is written to ``<cache>/generated/<name>.py`` (named by a hash of the shape and precision)
and imported from there: Warp compiles it once into its kernel cache, and every later start -- in any
process -- loads it from the cache (the first launch after import costs milliseconds).

The kernel has the generic kernel's signature (it ignores the scratch arrays) and supports
``MODE_ROLLOUT`` only; accelerations (`MODE_EVALUATE`) use the generic kernel.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import threading
from collections.abc import Sequence

from .kernels import cache_dir, init_warp

__all__ = ["generate_source", "get_specialized_kernel", "shape_key"]

_GENERATOR_VERSION = "9"
_lock = threading.Lock()
_loaded: dict[str, object] = {}

_SIGNATURE = """
    parent: wp.array(dtype=wp.int32),
    parent_slot: wp.array(dtype=wp.int32),
    joint_type: wp.array(dtype=wp.int32),
    parent_rot: wp.array(dtype=mat33),
    parent_pos: wp.array(dtype=vec3),
    gravity: vec3,
    lower: wp.array(dtype=scalar),
    upper: wp.array(dtype=scalar),
    vel_limit: wp.array(dtype=scalar),
    effort_limit: wp.array(dtype=scalar),
    armature: wp.array(dtype=scalar),
    pos_tol: wp.array(dtype=scalar),
    vel_tol: wp.array(dtype=scalar),
    set_mass: wp.array2d(dtype=scalar),
    set_moment: wp.array2d(dtype=vec3),
    set_inertia: wp.array2d(dtype=mat33),
    set_kp: wp.array2d(dtype=scalar),
    set_kd: wp.array2d(dtype=scalar),
    set_damping: wp.array2d(dtype=scalar),
    set_friction: wp.array2d(dtype=scalar),
    set_latency: wp.array(dtype=wp.int32),
    set_gravcomp: wp.array(dtype=wp.int32),
    set_gc_mass: wp.array2d(dtype=scalar),
    set_gc_moment: wp.array2d(dtype=vec3),
    set_wrench_body: wp.array(dtype=wp.int32),
    set_wrench_point: wp.array(dtype=vec3),
    set_wrench_force: wp.array(dtype=vec3),
    set_wrench_torque: wp.array(dtype=vec3),
    set_wrench_begin: wp.array(dtype=wp.int32),
    set_wrench_end: wp.array(dtype=wp.int32),
    world_set: wp.array(dtype=wp.int32),
    world_stream: wp.array(dtype=wp.int32),
    q: wp.array2d(dtype=scalar),
    qd: wp.array2d(dtype=scalar),
    target_q: wp.array3d(dtype=scalar),
    target_qd: wp.array3d(dtype=scalar),
    use_target_qd: int,
    mode: int,
    dt: scalar,
    step_begin: int,
    step_end: int,
    record_every: int,
    friction_eps: scalar,
    limit_omega: scalar,
    limit_active: int,
    drive_implicit_saturated: int,
    eff_min_steps: int,
    out_q: wp.array3d(dtype=scalar),
    out_qd: wp.array3d(dtype=scalar),
    out_tau: wp.array3d(dtype=scalar),
    first_pos: wp.array2d(dtype=wp.int32),
    first_vel: wp.array2d(dtype=wp.int32),
    first_eff: wp.array2d(dtype=wp.int32),
    max_track: wp.array2d(dtype=scalar),
    min_pos_margin: wp.array2d(dtype=scalar),
    min_vel_margin: wp.array2d(dtype=scalar),
    min_eff_margin: wp.array2d(dtype=scalar),
    diverged: wp.array(dtype=wp.int32),
    eval_qdd: wp.array2d(dtype=scalar),
    eval_bias: wp.array2d(dtype=scalar),
    eval_mass: wp.array3d(dtype=scalar),
    s_rot: wp.array2d(dtype=mat33),
    s_pos: wp.array2d(dtype=vec3),
    s_axis: wp.array2d(dtype=vec3),
    s_mom: wp.array2d(dtype=vec3),
    s_vw: wp.array2d(dtype=vec3),
    s_vv: wp.array2d(dtype=vec3),
    s_aw: wp.array2d(dtype=vec3),
    s_av: wp.array2d(dtype=vec3),
    s_fn: wp.array2d(dtype=vec3),
    s_ff: wp.array2d(dtype=vec3),
    s_cm: wp.array2d(dtype=scalar),
    s_ch: wp.array2d(dtype=vec3),
    s_ci: wp.array2d(dtype=mat33),
    s_rhs: wp.array2d(dtype=scalar),
    s_tau: wp.array2d(dtype=scalar),
    s_gq: wp.array2d(dtype=scalar),
    s_gm: wp.array2d(dtype=scalar),
    s_gh: wp.array2d(dtype=vec3),
    s_h: wp.array3d(dtype=scalar),
"""


def shape_key(parent: Sequence[int], joint_type: Sequence[int], precision: str) -> str:
    """Stable name of the specialised kernel for this shape and precision."""
    text = f"{_GENERATOR_VERSION}|{precision}|{list(map(int, parent))}|{list(map(int, joint_type))}"
    return f"twin_ext_whatif_tree_{len(parent)}_{hashlib.sha1(text.encode()).hexdigest()[:12]}"


def _ancestors(parent: Sequence[int], b: int) -> list[int]:
    out, j = [], parent[b]
    while j >= 0:
        out.append(j)
        j = parent[j]
    return out


def generate_source(parent: Sequence[int], joint_type: Sequence[int], precision: str) -> str:  # noqa: C901
    """Warp source of the rollout kernel for the tree ``parent [nb]`` with ``joint_type [nb]`` (1 revolute,
    2 prismatic) in ``precision`` ("float32" | "float64")."""
    nb = len(parent)
    parent = [int(p) for p in parent]
    revolute = [int(t) == 1 for t in joint_type]
    if any(p >= b for b, p in enumerate(parent)):
        raise ValueError("parent[b] must be < b (topological order)")
    out: list[str] = []
    emit = out.append

    emit(f"# Generated by twin_ext.whatif.specialized (version {_GENERATOR_VERSION}) -- do not edit.")
    emit(f"# tree: parent = {parent}, joint_type = {[int(t) for t in joint_type]}, precision = {precision}")
    emit("import warp as wp")
    emit("")
    emit(f"scalar = wp.{precision}")
    emit("vec3 = wp.types.vector(3, scalar)")
    emit("mat33 = wp.types.matrix((3, 3), scalar)")
    emit("")
    emit("")
    emit("@wp.func")
    emit("def rot_z(r0: mat33, c: scalar, s: scalar):")
    emit("    return mat33(")
    emit("        c * r0[0, 0] + s * r0[0, 1], c * r0[0, 1] - s * r0[0, 0], r0[0, 2],")
    emit("        c * r0[1, 0] + s * r0[1, 1], c * r0[1, 1] - s * r0[1, 0], r0[1, 2],")
    emit("        c * r0[2, 0] + s * r0[2, 1], c * r0[2, 1] - s * r0[2, 0], r0[2, 2],")
    emit("    )")
    emit("")
    emit("")
    emit("@wp.func")
    emit("def limit_violated(qv: scalar, lo: scalar, up: scalar, tol: scalar, qt: scalar) -> int:")
    emit("    if qv < lo - tol and wp.abs(qt - lo) > tol:")
    emit("        return 1")
    emit("    if qv > up + tol and wp.abs(qt - up) > tol:")
    emit("        return 1")
    emit("    return 0")
    emit("")
    emit("")
    emit("@wp.kernel(enable_backward=False)")
    emit("def rollout(" + _SIGNATURE + "):")
    I1, I2, I3 = "    ", "        ", "            "  # noqa: N806
    body = []

    def k1(line: str) -> None:
        body.append(I1 + line)

    def k2(line: str) -> None:
        body.append(I2 + line)

    def k3(line: str) -> None:
        body.append(I3 + line)

    k1("w = wp.tid()")
    k1("ws = world_set[w]")
    k1("stream = world_stream[w]")
    k1("latency = set_latency[ws]")
    k1("gravcomp = set_gravcomp[ws]")
    k1("wbody = set_wrench_body[ws]")
    k1("wbegin = set_wrench_begin[ws]")
    k1("wend = set_wrench_end[ws]")
    k1("wpoint = set_wrench_point[ws]")
    k1("wforce = set_wrench_force[ws]")
    k1("wtorque = set_wrench_torque[ws]")
    k1("zero = scalar(0.0)")
    k1("one = scalar(1.0)")
    k1("two = scalar(2.0)")
    k1("eye3 = wp.identity(n=3, dtype=scalar)")
    k1("neg_g = -gravity")
    k1("h = dt")
    k1("hh = dt * dt")
    k1("nstep_cmd = target_q.shape[1]")
    k1("dv = diverged[w]")
    for b in range(nb):
        k1(f"PR_{b} = parent_rot[{b}]")
        k1(f"PP_{b} = parent_pos[{b}]")
        k1(f"MS_{b} = set_mass[ws, {b}]")
        k1(f"HM_{b} = set_moment[ws, {b}]")
        k1(f"IO_{b} = set_inertia[ws, {b}]")
        k1(f"GM_{b} = set_gc_mass[ws, {b}]")
        k1(f"GH_{b} = set_gc_moment[ws, {b}]")
        k1(f"KP_{b} = set_kp[ws, {b}]")
        k1(f"KD_{b} = set_kd[ws, {b}]")
        k1(f"DA_{b} = set_damping[ws, {b}]")
        k1(f"FR_{b} = set_friction[ws, {b}]")
        k1(f"AR_{b} = armature[{b}]")
        k1(f"LO_{b} = lower[{b}]")
        k1(f"UP_{b} = upper[{b}]")
        k1(f"VL_{b} = vel_limit[{b}]")
        k1(f"EL_{b} = effort_limit[{b}]")
        k1(f"PT_{b} = pos_tol[{b}]")
        k1(f"VT_{b} = vel_tol[{b}]")
        k1(f"q_{b} = q[w, {b}]")
        k1(f"qd_{b} = qd[w, {b}]")
        k1(f"fp_{b} = first_pos[w, {b}]")
        k1(f"fv_{b} = first_vel[w, {b}]")
        k1(f"fe_{b} = first_eff[w, {b}]")
        k1(f"mt_{b} = max_track[w, {b}]")
        k1(f"mp_{b} = min_pos_margin[w, {b}]")
        k1(f"mv_{b} = min_vel_margin[w, {b}]")
        k1(f"me_{b} = min_eff_margin[w, {b}]")
        k1(f"tau_{b} = scalar(0.0)")

    k1("for k in range(step_begin, step_end):")
    k2("if dv >= 0:")
    k3("break")
    k2("kk = wp.min(wp.max(k - latency, 0), nstep_cmd - 1)")
    k2("kc = wp.min(k, nstep_cmd - 1)")
    k2("won = wbody >= 0 and k >= wbegin and k < wend")

    # ---- forward sweep ----
    for b in range(nb):
        p = parent[b]
        k2(f"# body {b} (parent {p if p >= 0 else 'world'}, {'revolute' if revolute[b] else 'prismatic'})")
        if p >= 0:
            k2(f"R0_{b} = R_{p} * PR_{b}")
            k2(f"x_{b} = x_{p} + R_{p} * PP_{b}")
        else:
            k2(f"R0_{b} = PR_{b}")
            k2(f"x_{b} = PP_{b}")
        vwp, vvp, awp, avp = (f"vw_{p}", f"vv_{p}", f"aw_{p}", f"av_{p}") if p >= 0 else (None, None, None, "neg_g")
        if revolute[b]:
            k2(f"R_{b} = rot_z(R0_{b}, wp.cos(q_{b}), wp.sin(q_{b}))")
            k2(f"sw_{b} = vec3(R_{b}[0, 2], R_{b}[1, 2], R_{b}[2, 2])")
            k2(f"sv_{b} = wp.cross(x_{b}, sw_{b})")
            k2(f"jw_{b} = sw_{b} * qd_{b}")
            k2(f"jv_{b} = sv_{b} * qd_{b}")
            k2(f"vw_{b} = {vwp + ' + ' if vwp else ''}jw_{b}")
            k2(f"vv_{b} = {vvp + ' + ' if vvp else ''}jv_{b}")
            if p >= 0:
                k2(f"aw_{b} = {awp} + wp.cross(vw_{b}, jw_{b})")
                k2(f"av_{b} = {avp} + wp.cross(vw_{b}, jv_{b}) + wp.cross(vv_{b}, jw_{b})")
            else:  # the world is at rest: v = S qd, and v x (S qd) = 0
                k2(f"aw_{b} = vec3(zero, zero, zero)")
                k2(f"av_{b} = {avp}")
        else:
            k2(f"R_{b} = R0_{b}")
            k2(f"sv_{b} = vec3(R_{b}[0, 2], R_{b}[1, 2], R_{b}[2, 2])")
            k2(f"x_{b} = x_{b} + sv_{b} * q_{b}")
            k2(f"jv_{b} = sv_{b} * qd_{b}")
            k2(f"vw_{b} = {vwp if vwp else 'vec3(zero, zero, zero)'}")
            k2(f"vv_{b} = {vvp + ' + ' if vvp else ''}jv_{b}")
            k2(f"aw_{b} = {awp if awp else 'vec3(zero, zero, zero)'}")
            k2(f"av_{b} = {avp}" + (f" + wp.cross(vw_{b}, jv_{b})" if p >= 0 else ""))
        # inertia about the world origin
        k2(f"hr_{b} = R_{b} * HM_{b}")
        k2(f"hw_{b} = MS_{b} * x_{b} + hr_{b}")
        # Ibar = R I_o R^T + (m |x|^2 + 2 x.hr) 1 - m x x^T - x hr^T - hr x^T, written out for its symmetry
        k2(f"A_{b} = R_{b} * IO_{b}")
        k2(f"mx_{b} = MS_{b} * x_{b}")
        k2(f"d_{b} = wp.dot(mx_{b} + two * hr_{b}, x_{b})")
        for i, j in ((0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2)):
            rot = f"A_{b}[{i}, 0] * R_{b}[{j}, 0] + A_{b}[{i}, 1] * R_{b}[{j}, 1] + A_{b}[{i}, 2] * R_{b}[{j}, 2]"
            diag = f" + d_{b}" if i == j else ""
            k2(f"i{i}{j}_{b} = {rot}{diag} - mx_{b}[{i}] * x_{b}[{j}] - x_{b}[{i}] * hr_{b}[{j}] - hr_{b}[{i}] * x_{b}[{j}]")
        k2(f"ib_{b} = mat33(i00_{b}, i01_{b}, i02_{b}, i01_{b}, i11_{b}, i12_{b}, i02_{b}, i12_{b}, i22_{b})")
        k2(f"lw_{b} = ib_{b} * vw_{b} + wp.cross(hw_{b}, vv_{b})")
        k2(f"lv_{b} = MS_{b} * vv_{b} - wp.cross(hw_{b}, vw_{b})")
        k2(f"fn_{b} = ib_{b} * aw_{b} + wp.cross(hw_{b}, av_{b}) + wp.cross(vw_{b}, lw_{b}) + wp.cross(vv_{b}, lv_{b})")
        k2(f"ff_{b} = MS_{b} * av_{b} - wp.cross(hw_{b}, aw_{b}) + wp.cross(vw_{b}, lv_{b})")
        k2(f"if won and wbody == {b}:")
        k3(f"pt_{b} = x_{b} + R_{b} * wpoint")
        k3(f"fn_{b} = fn_{b} - (wtorque + wp.cross(pt_{b}, wforce))")
        k3(f"ff_{b} = ff_{b} - wforce")
        k2(f"cm_{b} = MS_{b}")
        k2(f"ch_{b} = hw_{b}")
        k2(f"ci_{b} = ib_{b}")
        k2(f"gm_{b} = GM_{b}")
        k2(f"gh_{b} = GM_{b} * x_{b} + R_{b} * GH_{b}")

    # ---- backward sweep: bias torque, composite inertia, mass matrix, gravity torque ----
    for b in range(nb - 1, -1, -1):
        p = parent[b]
        k2(f"# body {b}: composite inertia and mass-matrix column")
        if revolute[b]:
            k2(f"C_{b} = wp.dot(sw_{b}, fn_{b}) + wp.dot(sv_{b}, ff_{b})")
        else:
            k2(f"C_{b} = wp.dot(sv_{b}, ff_{b})")
        if p >= 0:
            k2(f"fn_{p} = fn_{p} + fn_{b}")
            k2(f"ff_{p} = ff_{p} + ff_{b}")
            k2(f"cm_{p} = cm_{p} + cm_{b}")
            k2(f"ch_{p} = ch_{p} + ch_{b}")
            k2(f"ci_{p} = ci_{p} + ci_{b}")
            k2(f"gm_{p} = gm_{p} + gm_{b}")
            k2(f"gh_{p} = gh_{p} + gh_{b}")
        if revolute[b]:
            k2(f"Fw_{b} = ci_{b} * sw_{b} + wp.cross(ch_{b}, sv_{b})")
            k2(f"Fv_{b} = cm_{b} * sv_{b} - wp.cross(ch_{b}, sw_{b})")
            k2(f"H_{b}_{b} = wp.dot(sw_{b}, Fw_{b}) + wp.dot(sv_{b}, Fv_{b}) + AR_{b}")
            k2(f"G_{b} = wp.dot(sw_{b}, wp.cross(gh_{b}, neg_g)) + wp.dot(sv_{b}, gm_{b} * neg_g)")
        else:
            k2(f"Fw_{b} = wp.cross(ch_{b}, sv_{b})")
            k2(f"Fv_{b} = cm_{b} * sv_{b}")
            k2(f"H_{b}_{b} = wp.dot(sv_{b}, Fv_{b}) + AR_{b}")
            k2(f"G_{b} = wp.dot(sv_{b}, gm_{b} * neg_g)")
        for j in _ancestors(parent, b):
            if revolute[j]:
                k2(f"H_{b}_{j} = wp.dot(sw_{j}, Fw_{b}) + wp.dot(sv_{j}, Fv_{b})")
            else:
                k2(f"H_{b}_{j} = wp.dot(sv_{j}, Fv_{b})")

    # ---- joint forces, implicit terms, verdicts ----
    for b in range(nb):
        k2(f"# dof {b}: drive, damping, friction, limit; verdicts at the start of the step")
        k2(f"qt_{b} = target_q[stream, kk, {b}]")
        k2(f"qdt_{b} = zero")
        k2("if use_target_qd != 0:")
        k3(f"qdt_{b} = target_qd[stream, kk, {b}]")
        k2(f"u_{b} = KP_{b} * (qt_{b} - q_{b}) + KD_{b} * (qdt_{b} - qd_{b})")
        k2(f"mg_{b} = EL_{b} - wp.abs(u_{b})")
        k2(f"dd_{b} = DA_{b}")
        k2(f"if mg_{b} > zero or drive_implicit_saturated != 0:")
        k3(f"dd_{b} = dd_{b} + KD_{b}")
        k2(f"tau_{b} = wp.clamp(u_{b}, -EL_{b}, EL_{b})")
        k2("if gravcomp != 0:")
        k3(f"u2_{b} = tau_{b} + G_{b}")
        k3(f"mg_{b} = wp.min(mg_{b}, EL_{b} - wp.abs(u2_{b}))")
        k3(f"tau_{b} = wp.clamp(u2_{b}, -EL_{b}, EL_{b})")
        k2(f"f_{b} = tau_{b} - DA_{b} * qd_{b} - C_{b}")
        k2(f"if FR_{b} > zero:")
        k3(f"th_{b} = wp.tanh(qd_{b} / friction_eps)")
        k3(f"f_{b} = f_{b} - FR_{b} * th_{b}")
        k3(f"dd_{b} = dd_{b} + FR_{b} / friction_eps * (one - th_{b} * th_{b})")
        k2(f"kq_{b} = zero")
        k2("if limit_active != 0:")
        k3(f"kl_{b} = H_{b}_{b} * limit_omega * limit_omega")
        k3(f"bl_{b} = H_{b}_{b} * two * limit_omega")
        k3(f"if q_{b} < LO_{b}:")
        k3(f"    fl_{b} = -kl_{b} * (q_{b} - LO_{b}) - bl_{b} * qd_{b}")
        k3(f"    if fl_{b} > zero:")
        k3(f"        f_{b} = f_{b} + fl_{b} - h * kl_{b} * qd_{b}")
        k3(f"        dd_{b} = dd_{b} + bl_{b}")
        k3(f"        kq_{b} = kl_{b}")
        k3(f"if q_{b} > UP_{b}:")
        k3(f"    fu_{b} = -kl_{b} * (q_{b} - UP_{b}) - bl_{b} * qd_{b}")
        k3(f"    if fu_{b} < zero:")
        k3(f"        f_{b} = f_{b} + fu_{b} - h * kl_{b} * qd_{b}")
        k3(f"        dd_{b} = dd_{b} + bl_{b}")
        k3(f"        kq_{b} = kl_{b}")
        k2(f"H_{b}_{b} = H_{b}_{b} + h * dd_{b} + hh * kq_{b}")
        k2(f"pm_{b} = wp.min(q_{b} - LO_{b}, UP_{b} - q_{b})")
        k2(f"vm_{b} = VL_{b} - wp.abs(qd_{b})")
        k2(f"mp_{b} = wp.min(mp_{b}, pm_{b})")
        k2(f"mv_{b} = wp.min(mv_{b}, vm_{b})")
        k2(f"me_{b} = wp.min(me_{b}, mg_{b})")
        k2(f"qc_{b} = qt_{b}")  # the command as sent: the drive's target unless it arrives late
        k2("if latency != 0:")
        k3(f"qc_{b} = target_q[stream, kc, {b}]")
        k2(f"mt_{b} = wp.max(mt_{b}, wp.abs(qc_{b} - q_{b}))")
        k2(f"if fp_{b} < 0 and limit_violated(q_{b}, LO_{b}, UP_{b}, PT_{b}, qt_{b}) != 0:")
        k3(f"fp_{b} = k")
        k2(f"if vm_{b} < -VT_{b} and fv_{b} < 0:")
        k3(f"fv_{b} = k")
        # effort: confirmed after eff_min_steps saturated steps in a row (fe = -(start + 2) while shorter)
        k2(f"if fe_{b} < 0:")
        k3(f"if mg_{b} < zero:")
        k3(f"    if fe_{b} == -1:")
        k3(f"        fe_{b} = -(k + 2)")
        k3(f"    if k + fe_{b} + 3 >= eff_min_steps:")
        k3(f"        fe_{b} = -fe_{b} - 2")
        k3("else:")
        k3(f"    fe_{b} = -1")

    # ---- L^T D L factorisation with the tree's sparsity, then the two triangular solves ----
    k2("# factorise (M + A + h D) = L^T D L in place (no fill-in outside the ancestor pattern)")
    for kf in range(nb - 1, -1, -1):
        for i in _ancestors(parent, kf):
            k2(f"a_{kf}_{i} = H_{kf}_{i} / H_{kf}_{kf}")
            for j in [i] + _ancestors(parent, i):
                k2(f"H_{i}_{j} = H_{i}_{j} - a_{kf}_{i} * H_{kf}_{j}")
            k2(f"H_{kf}_{i} = a_{kf}_{i}")
    k2("# solve")
    for kf in range(nb - 1, -1, -1):
        for i in _ancestors(parent, kf):
            k2(f"f_{i} = f_{i} - H_{kf}_{i} * f_{kf}")
    for b in range(nb):
        k2(f"f_{b} = f_{b} / H_{b}_{b}")
        for i in _ancestors(parent, b):
            k2(f"f_{b} = f_{b} - H_{b}_{i} * f_{i}")

    # ---- integrate, check, record ----
    for b in range(nb):
        k2(f"qd_{b} = qd_{b} + h * f_{b}")
        k2(f"q_{b} = q_{b} + h * qd_{b}")
    finite = " and ".join(f"wp.isfinite(q_{b}) and wp.isfinite(qd_{b})" for b in range(nb))
    k2(f"if not ({finite}):")
    k3("dv = k")
    k2("if record_every > 0:")
    k3("if (k + 1) % record_every == 0:")
    k3("    r = (k + 1) // record_every - 1")
    for b in range(nb):
        k3(f"    out_q[w, r, {b}] = q_{b}")
        k3(f"    out_qd[w, r, {b}] = qd_{b}")
        k3(f"    out_tau[w, r, {b}] = tau_{b}")

    # ---- final state verdicts and write-back ----
    k1("if dv < 0:")
    # the state after this launch is the state at the start of step step_end: judge it by that step's command
    body.append(I2 + "klast = wp.min(wp.max(step_end - latency, 0), nstep_cmd - 1)")
    for b in range(nb):
        body.append(I2 + f"pe_{b} = wp.min(q_{b} - LO_{b}, UP_{b} - q_{b})")
        body.append(I2 + f"ve_{b} = VL_{b} - wp.abs(qd_{b})")
        body.append(I2 + f"mp_{b} = wp.min(mp_{b}, pe_{b})")
        body.append(I2 + f"mv_{b} = wp.min(mv_{b}, ve_{b})")
        body.append(I2 + f"if fp_{b} < 0 and limit_violated(q_{b}, LO_{b}, UP_{b}, PT_{b}, target_q[stream, klast, {b}]) != 0:")
        body.append(I3 + f"fp_{b} = step_end")
        body.append(I2 + f"if ve_{b} < -VT_{b} and fv_{b} < 0:")
        body.append(I3 + f"fv_{b} = step_end")
    for b in range(nb):
        k1(f"q[w, {b}] = q_{b}")
        k1(f"qd[w, {b}] = qd_{b}")
        k1(f"first_pos[w, {b}] = fp_{b}")
        k1(f"first_vel[w, {b}] = fv_{b}")
        k1(f"first_eff[w, {b}] = fe_{b}")
        k1(f"max_track[w, {b}] = mt_{b}")
        k1(f"min_pos_margin[w, {b}] = mp_{b}")
        k1(f"min_vel_margin[w, {b}] = mv_{b}")
        k1(f"min_eff_margin[w, {b}] = me_{b}")
    k1("diverged[w] = dv")
    return "\n".join(out + body) + "\n"


def get_specialized_kernel(parent: Sequence[int], joint_type: Sequence[int], precision: str):
    """The specialised rollout kernel for this tree shape (generated and imported on first use)."""
    name = shape_key(parent, joint_type, precision)
    with _lock:
        kernel = _loaded.get(name)
        if kernel is not None:
            return kernel
        init_warp()
        folder = cache_dir().parent / "generated"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{name}.py"
        source = generate_source(parent, joint_type, precision)
        if not path.is_file() or path.read_text(encoding="utf-8") != source:
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(source, encoding="utf-8")
            os.replace(tmp, path)  # atomic: concurrent workers never see a half-written file
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # Warp resolves a kernel's globals through its module
        spec.loader.exec_module(module)
        kernel = module.rollout
        _loaded[name] = kernel
        return kernel


def _main() -> None:  # pragma: no cover - developer aid: print the Panda's generated kernel
    print(generate_source([-1, 0, 1, 2, 3, 4, 5, 6, 6], [1] * 7 + [2, 2], "float64"))


if __name__ == "__main__":  # pragma: no cover
    _main()
