# SPDX-License-Identifier: Apache-2.0
"""CPU rollout kernels that advance several worlds per thread in SIMD vectors (issue 17).

The shape-specialised kernel (`specialized`) is straight-line scalar code per world; Clang does not
vectorise it across worlds (its SLP vectoriser finds almost nothing in it, measured: a 4-world
statement-by-statement interleaving of it ran 1.3-2x *slower*, spilling registers). This module writes the
same algorithm as native C++ in which every per-world quantity is a Clang vector of ``lanes`` worlds
(``ext_vector_type``: AVX-512 / AVX2 / SSE2 registers, whatever ``-march=native`` finds): kinematics, bias
forces, composite inertias, the mass matrix and its tree-sparse ``L^T D L`` solve, the sine/cosine, the drives
and their clamps, limit springs, verdicts (branches become selects; ``fmin`` / ``fmax`` as Warp's ``min`` /
``max``) and the integration. Only the command gathers, ``tanh`` of dry friction (worlds with friction only),
recording and the write-back go world by world. Results equal the scalar kernel's to rounding (the vector code
fuses multiply-adds in other places).

The kernel is a Warp kernel whose body is one ``@wp.func_native`` call (C++ the generator writes), with the
signature of `kernel_args` (``ROLLOUT_ARGS``; it ignores the scratch arrays), launched over
``ceil(nworld / lanes)`` threads (`worlds_per_thread`). Thread ``t`` runs worlds ``t * lanes ..``; lanes past
the last world repeat it and write nothing. A world that stops being finite freezes (its state, verdicts and
records stop changing) while the others in its vector go on, as the scalar kernel stops it. CPU and float64
only; other devices and float32 use `specialized`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import threading
from collections.abc import Sequence

from . import _kernel_args as kernel_args
from ._kernels import cache_dir, init_warp

__all__ = ["generate_source", "get_lanes_kernel", "worlds_per_thread", "DEFAULT_LANES"]

_GENERATOR_VERSION = "2"
DEFAULT_LANES = 8
"""Worlds per thread: one AVX-512 register of float64 (two AVX2 ones); measured best of 4, 8 and 16."""
_lock = threading.Lock()
_loaded: dict[str, object] = {}


def worlds_per_thread(kernel) -> int:
    """How many worlds one thread of ``kernel`` advances (1 for the scalar kernels)."""
    return int(getattr(getattr(kernel, "func", None), "twin_ext_worlds_per_thread", 1))


def _ancestors(parent: Sequence[int], b: int) -> list[int]:
    out, j = [], parent[b]
    while j >= 0:
        out.append(j)
        j = parent[j]
    return out


_PRELUDE = r"""
typedef double V __attribute__((ext_vector_type(LANES)));
typedef decltype(V{} < V{}) VM;  // the comparison mask: 64-bit integer lanes
struct V3 { V c[3]; };
struct M3 { V c[3][3]; };
auto sel = [&](VM m, V a, V b) -> V { return (V)((((VM)a) & m) | (((VM)b) & ~m)); };
auto splat = [&](double x) -> V { V r = x; return r; };
auto seli = [&](VM m, VM a, VM b) -> VM { return (a & m) | (b & ~m); };
auto spli = [&](long long x) -> VM { VM r = x; return r; };
auto vabs = [&](V x) -> V { VM bits = 0x7fffffffffffffffLL; return (V)(((VM)x) & bits); };
// Warp's min / max / clamp are fmin / fmax (a NaN operand yields the other one): so are these
auto vmin = [&](V a, V b) -> V { return __builtin_elementwise_min(a, b); };
auto vmax = [&](V a, V b) -> V { return __builtin_elementwise_max(a, b); };
auto add = [&](const V3& a, const V3& b) -> V3 { return V3{{a.c[0] + b.c[0], a.c[1] + b.c[1], a.c[2] + b.c[2]}}; };
auto sub = [&](const V3& a, const V3& b) -> V3 { return V3{{a.c[0] - b.c[0], a.c[1] - b.c[1], a.c[2] - b.c[2]}}; };
auto scl = [&](V s, const V3& a) -> V3 { return V3{{s * a.c[0], s * a.c[1], s * a.c[2]}}; };
auto dot = [&](const V3& a, const V3& b) -> V { return a.c[0] * b.c[0] + a.c[1] * b.c[1] + a.c[2] * b.c[2]; };
auto cross = [&](const V3& a, const V3& b) -> V3 {
    return V3{{a.c[1] * b.c[2] - a.c[2] * b.c[1], a.c[2] * b.c[0] - a.c[0] * b.c[2], a.c[0] * b.c[1] - a.c[1] * b.c[0]}};
};
auto mv = [&](const M3& m, const V3& a) -> V3 {
    V3 r;
    for (int i = 0; i < 3; ++i) r.c[i] = m.c[i][0] * a.c[0] + m.c[i][1] * a.c[1] + m.c[i][2] * a.c[2];
    return r;
};
auto mvc = [&](const M3& m, const wp::vec_t<3, double>& a) -> V3 {
    V3 r;
    for (int i = 0; i < 3; ++i) r.c[i] = m.c[i][0] * a.c[0] + m.c[i][1] * a.c[1] + m.c[i][2] * a.c[2];
    return r;
};
auto mm = [&](const M3& a, const M3& b) -> M3 {
    M3 r;
    for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 3; ++j) r.c[i][j] = a.c[i][0] * b.c[0][j] + a.c[i][1] * b.c[1][j] + a.c[i][2] * b.c[2][j];
    return r;
};
auto mmc = [&](const M3& a, const wp::mat_t<3, 3, double>& b) -> M3 {
    M3 r;
    for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 3; ++j)
            r.c[i][j] = a.c[i][0] * b.data[0][j] + a.c[i][1] * b.data[1][j] + a.c[i][2] * b.data[2][j];
    return r;
};
auto madd = [&](const M3& a, const M3& b) -> M3 {
    M3 r;
    for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 3; ++j) r.c[i][j] = a.c[i][j] + b.c[i][j];
    return r;
};
auto cm3 = [&](const wp::mat_t<3, 3, double>& m) -> M3 {
    M3 r;
    for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 3; ++j) r.c[i][j] = splat(m.data[i][j]);
    return r;
};
auto cv3 = [&](const wp::vec_t<3, double>& a) -> V3 { return V3{{splat(a.c[0]), splat(a.c[1]), splat(a.c[2])}}; };
auto rot_z = [&](const M3& r0, V c, V s) -> M3 {
    M3 r;
    for (int i = 0; i < 3; ++i) {
        r.c[i][0] = c * r0.c[i][0] + s * r0.c[i][1];
        r.c[i][1] = c * r0.c[i][1] - s * r0.c[i][0];
        r.c[i][2] = r0.c[i][2];
    }
    return r;
};
// the scalar kernels' sin_cos (Cody-Waite reduction by pi/2, fdlibm's polynomials), lane-wise; lanes with huge
// or non-finite angles go to libm, as there
auto sin_cos = [&](V x, V& s, V& c) {
    const double two_over_pi = 6.36619772367581382433e-01, pio2_head = 1.57079632673412561417e00,
                 pio2_tail = 6.07710050650619224932e-11;
    const double s1 = -1.66666666666666324348e-01, s2 = 8.33333333332248946124e-03, s3 = -1.98412698298579493134e-04,
                 s4 = 2.75573137070700676789e-06, s5 = -2.50507602534068634195e-08, s6 = 1.58969099521155010221e-10;
    const double c1 = 4.16666666666666019037e-02, c2 = -1.38888888888741095749e-03, c3 = 2.48015872894767294178e-05,
                 c4 = -2.75573143513906633035e-07, c5 = 2.08757232129817482790e-09, c6 = -1.13596475577881948265e-11;
    V y = x * two_over_pi + 0.5;
    V n;
    for (int l = 0; l < LANES; ++l) n[l] = wp::floor(y[l]);
    V r = (x - n * pio2_head) - n * pio2_tail;
    V z = r * r;
    V sr = r + r * z * (s1 + z * (s2 + z * (s3 + z * (s4 + z * (s5 + z * s6)))));
    V cr = 1.0 - 0.5 * z + z * z * (c1 + z * (c2 + z * (c3 + z * (c4 + z * (c5 + z * c6)))));
    VM quadrant = __builtin_convertvector(n, VM) & 3;
    s = sel(quadrant == 0, sr, sel(quadrant == 1, cr, sel(quadrant == 2, -sr, -cr)));
    c = sel(quadrant == 0, cr, sel(quadrant == 1, -sr, sel(quadrant == 2, -cr, sr)));
    for (int l = 0; l < LANES; ++l) {
        if (!(wp::abs(x[l]) < 1.0e5)) {
            s[l] = wp::sin(x[l]);
            c[l] = wp::cos(x[l]);
        }
    }
};
"""


def generate_source(parent: Sequence[int], joint_type: Sequence[int], lanes: int = DEFAULT_LANES) -> str:  # noqa: C901
    """Python module source (Warp kernel + its C++) of the ``lanes``-worlds-per-thread float64 rollout kernel
    for the tree ``parent [nb]`` with ``joint_type [nb]`` (1 revolute, 2 prismatic)."""
    nb = len(parent)
    parent = [int(p) for p in parent]
    revolute = [int(t) == 1 for t in joint_type]
    if any(p >= b for b, p in enumerate(parent)):
        raise ValueError("parent[b] must be < b (topological order)")
    if lanes < 1 or lanes & (lanes - 1):
        raise ValueError(f"lanes must be a power of two, got {lanes}")
    L = lanes  # noqa: N806
    c: list[str] = []
    e = c.append

    def lane_loop(*lines: str) -> None:
        e(f"for (int l = 0; l < {L}; ++l) {{")
        c.extend("    " + x for x in lines)
        e("}")

    e(_PRELUDE.replace("LANES", str(L)))
    e("const int nworld = q.shape[0];")
    e(f"const int w_first = t * {L};")
    e(f"const int nvalid = nworld - w_first < {L} ? nworld - w_first : {L};")
    e("if (nvalid <= 0) return;")
    e(f"int w_[{L}], ws[{L}], stream[{L}], latency[{L}], gravcomp[{L}], wbody[{L}], wbegin[{L}], wend[{L}], dv[{L}];")
    e(f"bool alive[{L}], won[{L}];")
    e(f"int kk[{L}], kc[{L}];")
    e("bool any_gravcomp = false, any_wrench = false;")
    e("V3 wpoint, wforce, wtorque;")
    lane_loop(
        "w_[l] = w_first + (l < nvalid ? l : nvalid - 1);",
        "ws[l] = wp::index(world_set, w_[l]);",
        "stream[l] = wp::index(world_stream, w_[l]);",
        "latency[l] = wp::index(set_latency, ws[l]);",
        "gravcomp[l] = wp::index(set_gravcomp, ws[l]);",
        "wbody[l] = wp::index(set_wrench_body, ws[l]);",
        "wbegin[l] = wp::index(set_wrench_begin, ws[l]);",
        "wend[l] = wp::index(set_wrench_end, ws[l]);",
        "dv[l] = wp::index(diverged, w_[l]);",
        "any_gravcomp = any_gravcomp || gravcomp[l] != 0;",
        "any_wrench = any_wrench || wbody[l] >= 0;",
        "for (int i = 0; i < 3; ++i) {",
        "    wpoint.c[i][l] = wp::index(set_wrench_point, ws[l]).c[i];",
        "    wforce.c[i][l] = wp::index(set_wrench_force, ws[l]).c[i];",
        "    wtorque.c[i][l] = wp::index(set_wrench_torque, ws[l]).c[i];",
        "}",
    )
    e("const V3 neg_g = cv3(-gravity);")
    e("const double h = dt, hh = dt * dt;")
    e("const int nstep_cmd = target_q.shape[1];")
    for b in range(nb):
        e(f"const auto PR_{b} = wp::index(parent_rot, {b});")
        e(f"const auto PP_{b} = wp::index(parent_pos, {b});")
        e(f"V MS_{b}, GM_{b}, KP_{b}, KD_{b}, DA_{b}, FR_{b}, q_{b}, qd_{b};")
        e(f"V3 HM_{b}, GH_{b};")
        e(f"M3 IO_{b};")
        e(f"const double AR_{b} = wp::index(armature, {b}), LO_{b} = wp::index(lower, {b}), "
          f"UP_{b} = wp::index(upper, {b}), VL_{b} = wp::index(vel_limit, {b}), "
          f"EL_{b} = wp::index(effort_limit, {b}), PT_{b} = wp::index(pos_tol, {b}), "
          f"VT_{b} = wp::index(vel_tol, {b});")  # fmt: skip
        e(f"VM fp_{b}, fv_{b}, fe_{b};  // verdict steps (int32 in memory)")
        e(f"V mt_{b}, mp_{b}, mv_{b}, me_{b}, tau_{b};")
        lane_loop(
            f"MS_{b}[l] = wp::index(set_mass, ws[l], {b});",
            f"GM_{b}[l] = wp::index(set_gc_mass, ws[l], {b});",
            f"KP_{b}[l] = wp::index(set_kp, ws[l], {b});",
            f"KD_{b}[l] = wp::index(set_kd, ws[l], {b});",
            f"DA_{b}[l] = wp::index(set_damping, ws[l], {b});",
            f"FR_{b}[l] = wp::index(set_friction, ws[l], {b});",
            f"q_{b}[l] = wp::index(q, w_[l], {b});",
            f"qd_{b}[l] = wp::index(qd, w_[l], {b});",
            "for (int i = 0; i < 3; ++i) {",
            f"    HM_{b}.c[i][l] = wp::index(set_moment, ws[l], {b}).c[i];",
            f"    GH_{b}.c[i][l] = wp::index(set_gc_moment, ws[l], {b}).c[i];",
            f"    for (int j = 0; j < 3; ++j) IO_{b}.c[i][j][l] = wp::index(set_inertia, ws[l], {b}).data[i][j];",
            "}",
            f"fp_{b}[l] = wp::index(first_pos, w_[l], {b});",
            f"fv_{b}[l] = wp::index(first_vel, w_[l], {b});",
            f"fe_{b}[l] = wp::index(first_eff, w_[l], {b});",
            f"mt_{b}[l] = wp::index(max_track, w_[l], {b});",
            f"mp_{b}[l] = wp::index(min_pos_margin, w_[l], {b});",
            f"mv_{b}[l] = wp::index(min_vel_margin, w_[l], {b});",
            f"me_{b}[l] = wp::index(min_eff_margin, w_[l], {b});",
            f"tau_{b}[l] = 0.0;",
        )

    e("for (int k = step_begin; k < step_end; ++k) {")
    e("bool any_alive = false;")
    lane_loop(
        "alive[l] = dv[l] < 0;",
        "any_alive = any_alive || alive[l];",
        "kk[l] = wp::min(wp::max(k - latency[l], 0), nstep_cmd - 1);",
        "kc[l] = wp::min(k, nstep_cmd - 1);",
        "won[l] = wbody[l] >= 0 && k >= wbegin[l] && k < wend[l];",
    )
    e("if (!any_alive) break;")
    e("VM alive_m;")
    lane_loop("alive_m[l] = alive[l] ? -1 : 0;")

    # ---- forward sweep (vector) ----
    for b in range(nb):
        p = parent[b]
        e(f"// body {b} (parent {p if p >= 0 else 'world'}, {'revolute' if revolute[b] else 'prismatic'})")
        if p >= 0:
            e(f"M3 R0_{b} = mmc(R_{p}, PR_{b});")
            e(f"V3 x_{b} = add(x_{p}, mvc(R_{p}, PP_{b}));")
        else:
            e(f"M3 R0_{b} = cm3(PR_{b});")
            e(f"V3 x_{b} = cv3(PP_{b});")
        zero3 = "V3{{splat(0.0), splat(0.0), splat(0.0)}}"
        if revolute[b]:
            e(f"V sn_{b}, cs_{b};")
            e(f"sin_cos(q_{b}, sn_{b}, cs_{b});")
            e(f"M3 R_{b} = rot_z(R0_{b}, cs_{b}, sn_{b});")
            e(f"V3 sw_{b} = V3{{{{R_{b}.c[0][2], R_{b}.c[1][2], R_{b}.c[2][2]}}}};")
            e(f"V3 sv_{b} = cross(x_{b}, sw_{b});")
            e(f"V3 jw_{b} = scl(qd_{b}, sw_{b});")
            e(f"V3 jv_{b} = scl(qd_{b}, sv_{b});")
            if p >= 0:
                e(f"V3 vw_{b} = add(vw_{p}, jw_{b});")
                e(f"V3 vv_{b} = add(vv_{p}, jv_{b});")
                e(f"V3 aw_{b} = add(aw_{p}, cross(vw_{b}, jw_{b}));")
                e(f"V3 av_{b} = add(add(av_{p}, cross(vw_{b}, jv_{b})), cross(vv_{b}, jw_{b}));")
            else:
                e(f"V3 vw_{b} = jw_{b};")
                e(f"V3 vv_{b} = jv_{b};")
                e(f"V3 aw_{b} = {zero3};")
                e(f"V3 av_{b} = neg_g;")
        else:
            e(f"M3 R_{b} = R0_{b};")
            e(f"V3 sv_{b} = V3{{{{R_{b}.c[0][2], R_{b}.c[1][2], R_{b}.c[2][2]}}}};")
            e(f"x_{b} = add(x_{b}, scl(q_{b}, sv_{b}));")
            e(f"V3 jv_{b} = scl(qd_{b}, sv_{b});")
            e(f"V3 vw_{b} = {f'vw_{p}' if p >= 0 else zero3};")
            e(f"V3 vv_{b} = {f'add(vv_{p}, jv_{b})' if p >= 0 else f'jv_{b}'};")
            e(f"V3 aw_{b} = {f'aw_{p}' if p >= 0 else zero3};")
            e(f"V3 av_{b} = {f'add(av_{p}, cross(vw_{b}, jv_{b}))' if p >= 0 else 'neg_g'};")
        e(f"V3 hr_{b} = mv(R_{b}, HM_{b});")
        e(f"V3 hw_{b} = add(scl(MS_{b}, x_{b}), hr_{b});")
        e(f"M3 A_{b} = mm(R_{b}, IO_{b});")
        e(f"V3 mx_{b} = scl(MS_{b}, x_{b});")
        e(f"V d_{b} = dot(add(mx_{b}, scl(splat(2.0), hr_{b})), x_{b});")
        e(f"M3 ib_{b};")
        for i, j in ((0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2)):
            rot = (
                f"A_{b}.c[{i}][0] * R_{b}.c[{j}][0] + A_{b}.c[{i}][1] * R_{b}.c[{j}][1]"
                f" + A_{b}.c[{i}][2] * R_{b}.c[{j}][2]"
            )
            diag = f" + d_{b}" if i == j else ""
            e(
                f"ib_{b}.c[{i}][{j}] = {rot}{diag} - mx_{b}.c[{i}] * x_{b}.c[{j}] - x_{b}.c[{i}] * hr_{b}.c[{j}]"
                f" - hr_{b}.c[{i}] * x_{b}.c[{j}];"
            )
            if i != j:
                e(f"ib_{b}.c[{j}][{i}] = ib_{b}.c[{i}][{j}];")
        e(f"V3 lw_{b} = add(mv(ib_{b}, vw_{b}), cross(hw_{b}, vv_{b}));")
        e(f"V3 lv_{b} = sub(scl(MS_{b}, vv_{b}), cross(hw_{b}, vw_{b}));")
        e(
            f"V3 fn_{b} = add(add(add(mv(ib_{b}, aw_{b}), cross(hw_{b}, av_{b})), cross(vw_{b}, lw_{b})),"
            f" cross(vv_{b}, lv_{b}));"
        )
        e(f"V3 ff_{b} = add(sub(scl(MS_{b}, av_{b}), cross(hw_{b}, aw_{b})), cross(vw_{b}, lv_{b}));")
        e("if (any_wrench) {")
        e("    V on = splat(0.0);")
        e("    bool any_on = false;")
        e(f"    for (int l = 0; l < {L}; ++l) if (won[l] && wbody[l] == {b}) {{ on[l] = 1.0; any_on = true; }}")
        e("    if (any_on) {")
        e(f"        V3 pt = add(x_{b}, mv(R_{b}, wpoint));")
        e(f"        fn_{b} = sub(fn_{b}, scl(on, add(wtorque, cross(pt, wforce))));")
        e(f"        ff_{b} = sub(ff_{b}, scl(on, wforce));")
        e("    }")
        e("}")
        e(f"V cm_{b} = MS_{b};")
        e(f"V3 ch_{b} = hw_{b};")
        e(f"M3 ci_{b} = ib_{b};")

    # ---- backward sweep (vector) ----
    for b in range(nb - 1, -1, -1):
        p = parent[b]
        if revolute[b]:
            e(f"V C_{b} = dot(sw_{b}, fn_{b}) + dot(sv_{b}, ff_{b});")
        else:
            e(f"V C_{b} = dot(sv_{b}, ff_{b});")
        if p >= 0:
            e(f"fn_{p} = add(fn_{p}, fn_{b});")
            e(f"ff_{p} = add(ff_{p}, ff_{b});")
            e(f"cm_{p} = cm_{p} + cm_{b};")
            e(f"ch_{p} = add(ch_{p}, ch_{b});")
            e(f"ci_{p} = madd(ci_{p}, ci_{b});")
        if revolute[b]:
            e(f"V3 Fw_{b} = add(mv(ci_{b}, sw_{b}), cross(ch_{b}, sv_{b}));")
            e(f"V3 Fv_{b} = sub(scl(cm_{b}, sv_{b}), cross(ch_{b}, sw_{b}));")
            e(f"V H_{b}_{b} = dot(sw_{b}, Fw_{b}) + dot(sv_{b}, Fv_{b}) + AR_{b};")
        else:
            e(f"V3 Fw_{b} = cross(ch_{b}, sv_{b});")
            e(f"V3 Fv_{b} = scl(cm_{b}, sv_{b});")
            e(f"V H_{b}_{b} = dot(sv_{b}, Fv_{b}) + AR_{b};")
        for j in _ancestors(parent, b):
            if revolute[j]:
                e(f"V H_{b}_{j} = dot(sw_{j}, Fw_{b}) + dot(sv_{j}, Fv_{b});")
            else:
                e(f"V H_{b}_{j} = dot(sv_{j}, Fv_{b});")

    # ---- gravity torque of the controller's model (vector, when any world's controller compensates) ----
    for b in range(nb):
        e(f"V G_{b} = splat(0.0);")
    e("if (any_gravcomp) {")
    for b in range(nb):
        e(f"    V gm_{b} = GM_{b};")
        e(f"    V3 gh_{b} = add(scl(GM_{b}, x_{b}), mv(R_{b}, GH_{b}));")
    for b in range(nb - 1, -1, -1):
        p = parent[b]
        if p >= 0:
            e(f"    gm_{p} = gm_{p} + gm_{b};")
            e(f"    gh_{p} = add(gh_{p}, gh_{b});")
        if revolute[b]:
            e(f"    G_{b} = dot(sw_{b}, cross(gh_{b}, neg_g)) + dot(sv_{b}, scl(gm_{b}, neg_g));")
        else:
            e(f"    G_{b} = dot(sv_{b}, scl(gm_{b}, neg_g));")
    e("}")

    # ---- joint forces and verdicts (vector; branches become selects, in the scalar kernel's order) ----
    e(f"const char *tq_row[{L}], *tc_row[{L}], *tv_row[{L}];")
    e("bool any_latency = false, any_friction = false;")
    lane_loop(
        "tq_row[l] = (const char*)&wp::index(target_q, stream[l], kk[l], 0);",
        "tc_row[l] = (const char*)&wp::index(target_q, stream[l], kc[l], 0);",
        "tv_row[l] = use_target_qd != 0 ? (const char*)&wp::index(target_qd, stream[l], kk[l], 0) : nullptr;",
        "any_latency = any_latency || latency[l] != 0;",
    )
    e("const int tq_stride = target_q.strides[2], tv_stride = target_qd.strides[2];")
    e("VM latency_m, gravcomp_m;")
    lane_loop("latency_m[l] = latency[l] != 0 ? -1 : 0;", "gravcomp_m[l] = gravcomp[l] != 0 ? -1 : 0;")
    e("const VM saturated_damping_m = drive_implicit_saturated != 0 ? (alive_m | ~alive_m) : (alive_m & ~alive_m);")
    for b in range(nb):
        e(f"// dof {b}: drive, damping, friction, limit; verdicts at the start of the step")
        e(f"V qt_{b}, qdt_{b} = splat(0.0);")
        lane_loop(f"qt_{b}[l] = *(const double*)(tq_row[l] + {b} * tq_stride);")
        e("if (use_target_qd != 0) {")
        lane_loop(f"qdt_{b}[l] = *(const double*)(tv_row[l] + {b} * tv_stride);")
        e("}")
        e(f"V u_{b} = KP_{b} * (qt_{b} - q_{b}) + KD_{b} * (qdt_{b} - qd_{b});")
        e(f"V mg_{b} = EL_{b} - vabs(u_{b});")
        e(f"V dd_{b} = sel((mg_{b} > 0.0) | saturated_damping_m, DA_{b} + KD_{b}, DA_{b});")
        e(f"V tau_new_{b} = vmin(vmax(splat(-EL_{b}), u_{b}), splat(EL_{b}));")
        e("if (any_gravcomp) {")
        e(f"    V u2 = tau_new_{b} + G_{b};")
        e(f"    mg_{b} = sel(gravcomp_m, vmin(mg_{b}, EL_{b} - vabs(u2)), mg_{b});")
        e(f"    tau_new_{b} = sel(gravcomp_m, vmin(vmax(splat(-EL_{b}), u2), splat(EL_{b})), tau_new_{b});")
        e("}")
        e(f"V f_{b} = tau_new_{b} - DA_{b} * qd_{b} - C_{b};")
        e(f"VM fr_m_{b} = FR_{b} > 0.0;")
        e("{")
        e("    bool any = false;")
        e(f"    for (int l = 0; l < {L}; ++l) any = any || fr_m_{b}[l] != 0;")
        e("    if (any) {")
        e("        V th = splat(0.0);")
        e(f"        for (int l = 0; l < {L}; ++l) if (fr_m_{b}[l] != 0) th[l] = wp::tanh(qd_{b}[l] / friction_eps);")
        e(f"        f_{b} = sel(fr_m_{b}, f_{b} - FR_{b} * th, f_{b});")
        e(f"        dd_{b} = sel(fr_m_{b}, dd_{b} + FR_{b} / friction_eps * (1.0 - th * th), dd_{b});")
        e("    }")
        e("}")
        e(f"V kq_{b} = splat(0.0);")
        e("if (limit_active != 0) {")
        e(f"    V kl = H_{b}_{b} * limit_omega * limit_omega;")
        e(f"    V bl = H_{b}_{b} * 2.0 * limit_omega;")
        e(f"    V fl = -kl * (q_{b} - LO_{b}) - bl * qd_{b};")
        e(f"    VM ml = (q_{b} < LO_{b}) & (fl > 0.0);")
        e(f"    f_{b} = sel(ml, f_{b} + fl - h * kl * qd_{b}, f_{b});")
        e(f"    dd_{b} = sel(ml, dd_{b} + bl, dd_{b});")
        e(f"    kq_{b} = sel(ml, kl, kq_{b});")
        e(f"    V fu = -kl * (q_{b} - UP_{b}) - bl * qd_{b};")
        e(f"    VM mu = (q_{b} > UP_{b}) & (fu < 0.0);")
        e(f"    f_{b} = sel(mu, f_{b} + fu - h * kl * qd_{b}, f_{b});")
        e(f"    dd_{b} = sel(mu, dd_{b} + bl, dd_{b});")
        e(f"    kq_{b} = sel(mu, kl, kq_{b});")
        e("}")
        e(f"H_{b}_{b} = H_{b}_{b} + h * dd_{b} + hh * kq_{b};")
        e(f"tau_{b} = sel(alive_m, tau_new_{b}, tau_{b});")
        e(f"V pm_{b} = vmin(q_{b} - LO_{b}, UP_{b} - q_{b});")
        e(f"V vm_{b} = VL_{b} - vabs(qd_{b});")
        e(f"mp_{b} = sel(alive_m, vmin(mp_{b}, pm_{b}), mp_{b});")
        e(f"mv_{b} = sel(alive_m, vmin(mv_{b}, vm_{b}), mv_{b});")
        e(f"me_{b} = sel(alive_m, vmin(me_{b}, mg_{b}), me_{b});")
        e(f"V qc_{b} = qt_{b};")
        e("if (any_latency) {")
        e(f"    V late = qt_{b};")
        lane_loop(f"late[l] = *(const double*)(tc_row[l] + {b} * tq_stride);")
        e(f"    qc_{b} = sel(latency_m, late, qt_{b});")
        e("}")
        e(f"mt_{b} = sel(alive_m, vmax(mt_{b}, vabs(qc_{b} - q_{b})), mt_{b});")
        e(
            f"VM viol_{b} = ((q_{b} < LO_{b} - PT_{b}) & (vabs(qt_{b} - LO_{b}) > PT_{b}))"
            f" | ((q_{b} > UP_{b} + PT_{b}) & (vabs(qt_{b} - UP_{b}) > PT_{b}));"
        )
        e(f"fp_{b} = seli(alive_m & (fp_{b} < 0) & viol_{b}, spli(k), fp_{b});")
        e(f"fv_{b} = seli(alive_m & (vm_{b} < -VT_{b}) & (fv_{b} < 0), spli(k), fv_{b});")
        # effort: confirmed after eff_min_steps saturated steps in a row (fe = -(start + 2) while shorter)
        e("{")
        e(f"    VM started = seli(fe_{b} == -1, spli(-(k + 2)), fe_{b});")
        e("    VM confirmed = seli((k + started + 3) >= eff_min_steps, -started - 2, started);")
        e(f"    VM next = seli(mg_{b} < 0.0, confirmed, spli(-1));")
        e(f"    fe_{b} = seli(alive_m & (fe_{b} < 0), next, fe_{b});")
        e("}")

    # ---- L^T D L with the tree's sparsity, solves (vector) ----
    for kf in range(nb - 1, -1, -1):
        for i in _ancestors(parent, kf):
            e(f"V a_{kf}_{i} = H_{kf}_{i} / H_{kf}_{kf};")
            for j in [i] + _ancestors(parent, i):
                e(f"H_{i}_{j} = H_{i}_{j} - a_{kf}_{i} * H_{kf}_{j};")
            e(f"H_{kf}_{i} = a_{kf}_{i};")
    for kf in range(nb - 1, -1, -1):
        for i in _ancestors(parent, kf):
            e(f"f_{i} = f_{i} - H_{kf}_{i} * f_{kf};")
    for b in range(nb):
        e(f"f_{b} = f_{b} / H_{b}_{b};")
        for i in _ancestors(parent, b):
            e(f"f_{b} = f_{b} - H_{b}_{i} * f_{i};")

    # ---- integrate (frozen worlds keep their state), check, record ----
    e("VM finite = alive_m | ~alive_m;")
    for b in range(nb):
        e(f"V qdn_{b} = qd_{b} + h * f_{b};")
        e(f"V qn_{b} = q_{b} + h * qdn_{b};")
        e(f"finite = finite & (qn_{b} - qn_{b} == 0.0) & (qdn_{b} - qdn_{b} == 0.0);")
        e(f"qd_{b} = sel(alive_m, qdn_{b}, qd_{b});")
        e(f"q_{b} = sel(alive_m, qn_{b}, q_{b});")
    e("const bool record = record_every > 0 && (k + 1) % record_every == 0;")
    e("const int r = record ? (k + 1) / record_every - 1 : 0;")
    rec = []
    for b in range(nb):
        rec.append(f"        wp::index(out_q, w_[l], r, {b}) = q_{b}[l];")
        rec.append(f"        wp::index(out_qd, w_[l], r, {b}) = qd_{b}[l];")
        rec.append(f"        wp::index(out_tau, w_[l], r, {b}) = tau_{b}[l];")
    lane_loop(
        "if (!alive[l]) continue;",
        "if (finite[l] == 0) dv[l] = k;",
        "if (record && l < nvalid) {",
        *rec,
        "}",
    )
    e("}")  # time loop

    # ---- final state verdicts and write-back ----
    fin = ["if (l >= nvalid) continue;", "if (dv[l] < 0) {",
           "    const int klast = wp::min(wp::max(step_end - latency[l], 0), nstep_cmd - 1);"]  # fmt: skip
    for b in range(nb):
        fin += [
            f"    const double pe_{b} = wp::min(q_{b}[l] - LO_{b}, UP_{b} - q_{b}[l]);",
            f"    const double ve_{b} = VL_{b} - wp::abs(qd_{b}[l]);",
            f"    mp_{b}[l] = wp::min(mp_{b}[l], pe_{b});",
            f"    mv_{b}[l] = wp::min(mv_{b}[l], ve_{b});",
            f"    if (fp_{b}[l] < 0 && limit_violated(q_{b}[l], LO_{b}, UP_{b}, PT_{b}, "
            f"wp::index(target_q, stream[l], klast, {b}))) fp_{b}[l] = step_end;",
            f"    if (ve_{b} < -VT_{b} && fv_{b}[l] < 0) fv_{b}[l] = step_end;",
        ]
    fin.append("}")
    for b in range(nb):
        fin += [
            f"wp::index(q, w_[l], {b}) = q_{b}[l];",
            f"wp::index(qd, w_[l], {b}) = qd_{b}[l];",
            f"wp::index(first_pos, w_[l], {b}) = fp_{b}[l];",
            f"wp::index(first_vel, w_[l], {b}) = fv_{b}[l];",
            f"wp::index(first_eff, w_[l], {b}) = fe_{b}[l];",
            f"wp::index(max_track, w_[l], {b}) = mt_{b}[l];",
            f"wp::index(min_pos_margin, w_[l], {b}) = mp_{b}[l];",
            f"wp::index(min_vel_margin, w_[l], {b}) = mv_{b}[l];",
            f"wp::index(min_eff_margin, w_[l], {b}) = me_{b}[l];",
        ]
    fin.append("wp::index(diverged, w_[l]) = dv[l];")
    lane_loop(*fin)

    snippet = "\n".join(c)
    limit_fn = (
        "auto limit_violated = [](double qv, double lo, double up, double tol, double qt) -> bool {\n"
        "    return (qv < lo - tol && wp::abs(qt - lo) > tol) || (qv > up + tol && wp::abs(qt - up) > tol);\n"
        "};\n"
    )
    snippet = snippet.replace("const int nworld", limit_fn + "const int nworld", 1)
    args = [a for a in kernel_args.ROLLOUT_ARGS if a.group != kernel_args.SCRATCH]
    out = [
        f"# Generated by twin_ext.whatif._lanes (version {_GENERATOR_VERSION}) -- do not edit.",
        f"# tree: parent = {parent}, joint_type = {[int(t) for t in joint_type]}, lanes = {L}, float64",
        "import warp as wp",
        "",
        "from twin_ext.whatif import _kernel_args, _kernels",
        "",
        'wp.set_module_options({"cpu_compiler_flags": _kernels.cpu_compiler_flags()})  # fused multiply-adds',
        "",
        '_T = {a.name: _kernel_args.warp_type(a, "float64") for a in _kernel_args.ROLLOUT_ARGS}',
        "",
        f"SNIPPET = {snippet!r}",
        "",
        "",
        "@wp.func_native(SNIPPET)",
        "def lanes_rollout(t: int, " + ", ".join(f'{a.name}: _T["{a.name}"]' for a in args) + "):",
        "    ...",
        "",
        "",
        "@wp.kernel(enable_backward=False)",
        '@_kernel_args.signature("float64")',
        "def rollout():  # the arguments: twin_ext.whatif._kernel_args.ROLLOUT_ARGS",
        "    lanes_rollout(wp.tid(), " + ", ".join(a.name for a in args) + ")",
        "",
        "",
        f"rollout.func.twin_ext_worlds_per_thread = {L}",
    ]
    return "\n".join(out) + "\n"


def get_lanes_kernel(parent: Sequence[int], joint_type: Sequence[int], lanes: int = DEFAULT_LANES):
    """The ``lanes``-worlds-per-thread float64 CPU rollout kernel for this tree shape (generated and imported on
    first use; launch it over ``ceil(nworld / worlds_per_thread(kernel))`` threads)."""
    text = f"{_GENERATOR_VERSION}|{lanes}|{list(map(int, parent))}|{list(map(int, joint_type))}"
    name = f"twin_ext_whatif_lanes_{len(parent)}_{hashlib.sha1(text.encode()).hexdigest()[:12]}"
    with _lock:
        kernel = _loaded.get(name)
        if kernel is not None:
            return kernel
        init_warp()
        folder = cache_dir().parent / "generated"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{name}.py"
        source = generate_source(parent, joint_type, lanes)
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
