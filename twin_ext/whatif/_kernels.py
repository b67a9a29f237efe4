# SPDX-License-Identifier: Apache-2.0
"""The generic Warp kernel: batched forward dynamics of fixed-base trees with the time loop inside.

One kernel per floating-point precision (`get_kernels`) serves every robot (rollouts use the faster
shape-specialised version of the same algorithm from `specialized` by default; accelerations use this
one). Each thread is one world and steps it from ``step_begin`` to ``step_end`` (a rollout chunk) with

1. **Kinematics and bias forces** (one forward sweep over bodies, world frame): body poses, motion
   subspaces ``S_b = (z_b, p_b x z_b)`` (revolute) or ``(0, z_b)`` (prismatic), spatial velocities and
   velocity-product accelerations, body forces ``f_b = I_b a_b + v_b x* I_b v_b`` with gravity entering
   as a base acceleration ``-g`` (recursive Newton-Euler with ``qdd = 0``), minus any external wrench.
2. **Mass matrix** (one backward sweep): bias torques ``C_b = S_b . f_b``, composite inertias
   (CRBA), ``M[b, j] = S_j . (I^c_b S_b)`` for every ancestor ``j`` of ``b``, and the gravity torque ``g(q)``
   for the controller's gravity compensation (the composite mass and first moment of the subtree *as the
   controller models it* -- without payloads it was not told about -- times ``-g``).
3. **Joint forces**: position drives ``clamp(kp (q_t - q) + kd (qd_t - qd)) [+ g(q), clamped again]``,
   viscous damping, smooth Coulomb friction ``-F tanh(qd / eps)``, one-sided joint-limit springs.
4. **Semi-implicit Euler like MuJoCo's ``implicitfast``**: ``(M + A + h D) qdd = tau - C`` with armature
   ``A`` and ``D`` the velocity derivative of the joint forces (damping, drive ``kd``, friction slope,
   limit damper; plus ``h^2 K`` of a limit spring), solved by the tree-sparse ``L^T D L`` factorisation
   (no fill-in across branches), then ``qd += h qdd``, ``q += h qd``.
5. **Verdicts** per world and dof, updated every step: first step of a position-limit violation (beyond
   the limit by more than its tolerance, unless the drive is commanded to hold exactly that limit: a
   gripper resting on its stop), of a velocity-limit violation and of effort saturation lasting at least
   ``eff_min_steps`` steps (the step the saturation began), max tracking error, min margins, and the step
   where the state stopped being finite.

Spatial vectors are (angular, linear) pairs about the world origin, kept as two ``vec3`` arrays.
Scratch lives in global arrays indexed by world (``[nworld, nb + 1, ...]``; slot ``nb`` stands for the world,
so root bodies need no special case), so robot sizes are runtime data: one compiled kernel serves every
robot.

The kernel's arguments are declared once, in `kernel_args` (``ROLLOUT_ARGS``): the kernel body below is
written without a parameter list and gets its signature from there, as does the shape-specialised kernel
(`specialized`). The two share the ``@wp.func`` helpers of `shared_funcs`.

Warp is imported lazily (`get_kernels`) and initialised with the kernel cache in
``$TWIN_EXT_CACHE_DIR/warp`` (default ``~/.cache/twin_ext/warp``) and ``enable_backward = False``. Both
kernels' modules compile with fused multiply-adds allowed across statements (`cpu_compiler_flags`).
"""

# The kernel body reads its arguments by name; they are declared in _kernel_args, not here:
# ruff: noqa: F821
# No `from __future__ import annotations`: Warp reads kernel annotations that name closure types.
import threading
from dataclasses import dataclass

from ..warp_runtime import init_warp
from ..warp_runtime import kernel_cache_dir as cache_dir
from . import _kernel_args as kernel_args

__all__ = [
    "cache_dir",
    "init_warp",
    "cpu_compiler_flags",
    "get_kernels",
    "shared_funcs",
    "SharedFuncs",
    "MODE_ROLLOUT",
    "MODE_EVALUATE",
]

MODE_ROLLOUT = 0
"""Integrate ``step_begin..step_end`` and accumulate verdicts."""
MODE_EVALUATE = 1
"""Evaluate ``qdd`` (explicit, no implicit terms), ``M`` and ``C`` at the given state once; no integration."""

_lock = threading.Lock()
_kernels: dict[str, object] = {}
_funcs: dict[str, "SharedFuncs"] = {}


def cpu_compiler_flags() -> str:
    """CPU compiler flags of both rollout kernels' modules: Warp's global flags plus ``-ffp-contract=fast``.

    Warp's generated C++ puts every operation in its own statement, so Clang's default contraction (within one
    expression) never forms a fused multiply-add; allowing it across statements fuses the dot products and
    matrix products that are most of the kernel (measured 13-17 % faster on the Panda, results moved by one
    rounding, ~2e-16 rad). Nothing else of fast-math: ``isfinite`` must keep working (divergence detection).
    """
    wp = init_warp()
    return f"{wp.config.cpu_compiler_flags or '-march=native'} -ffp-contract=fast".strip()


def get_kernels(precision: str):
    """The rollout kernel for ``precision`` (``"float32"`` or ``"float64"``), built on first use."""
    if precision not in ("float32", "float64"):
        raise ValueError(f"precision must be 'float32' or 'float64', got {precision!r}")
    with _lock:
        kernel = _kernels.get(precision)
    if kernel is None:
        wp = init_warp()
        kernel = _build(wp, precision)
        with _lock:
            _kernels[precision] = kernel
    return kernel


@dataclass(frozen=True)
class SharedFuncs:
    """The ``@wp.func`` helpers both rollout kernels call (`shared_funcs`)."""

    rot_z: object
    limit_violated: object
    sin_cos: object


def shared_funcs(precision: str) -> SharedFuncs:
    """The Warp functions shared by the generic kernel and the generated specialised ones, for ``precision``
    (defined once here; the generated modules import them)."""
    if precision not in ("float32", "float64"):
        raise ValueError(f"precision must be 'float32' or 'float64', got {precision!r}")
    wp = init_warp()
    with _lock:
        funcs = _funcs.get(precision)
        if funcs is None:
            funcs = _funcs[precision] = _make_shared_funcs(wp, precision)
    return funcs


def _make_shared_funcs(wp, precision: str) -> SharedFuncs:
    types = kernel_args.dtypes(precision)
    scalar, mat33 = types[kernel_args.SCALAR], types[kernel_args.MAT33]

    @wp.func
    def rot_z(r0: mat33, c: scalar, s: scalar):
        # r0 @ Rz(q): only the first two columns change.
        return mat33(
            c * r0[0, 0] + s * r0[0, 1], c * r0[0, 1] - s * r0[0, 0], r0[0, 2],
            c * r0[1, 0] + s * r0[1, 1], c * r0[1, 1] - s * r0[1, 0], r0[1, 2],
            c * r0[2, 0] + s * r0[2, 1], c * r0[2, 1] - s * r0[2, 0], r0[2, 2],
        )  # fmt: skip

    @wp.func
    def limit_violated(qv: scalar, lo: scalar, up: scalar, tol: scalar, qt: scalar) -> int:
        # beyond a limit by more than tol, unless the drive is being told to hold that very limit (a gripper
        # commanded fully open rests on its stop: contact, not a violation)
        if qv < lo - tol and wp.abs(qt - lo) > tol:
            return 1
        if qv > up + tol and wp.abs(qt - up) > tol:
            return 1
        return 0

    if precision == "float64":
        # sin and cos of one angle in one go, inlined: Cody-Waite reduction by pi/2 (pi/2 split in a 33-bit
        # head, exact times any |n| < 2^20, and a tail) and fdlibm's minimax polynomials on [-pi/4, pi/4],
        # within one rounding (2.3e-16) of libm. Inlined, it is cheaper than the libm ``sincos`` call Clang makes
        # of the pair (one per revolute joint per step; measured 3-11 % of a Panda rollout). Huge or non-finite
        # angles (a diverging world) go to libm, which keeps its NaN semantics.
        two_over_pi = scalar(6.36619772367581382433e-01)
        pio2_head = scalar(1.57079632673412561417e00)
        pio2_tail = scalar(6.07710050650619224932e-11)
        s1, s2, s3 = (
            scalar(-1.66666666666666324348e-01),
            scalar(8.33333333332248946124e-03),
            scalar(-1.98412698298579493134e-04),
        )
        s4, s5, s6 = (
            scalar(2.75573137070700676789e-06),
            scalar(-2.50507602534068634195e-08),
            scalar(1.58969099521155010221e-10),
        )
        c1, c2, c3 = (
            scalar(4.16666666666666019037e-02),
            scalar(-1.38888888888741095749e-03),
            scalar(2.48015872894767294178e-05),
        )
        c4, c5, c6 = (
            scalar(-2.75573143513906633035e-07),
            scalar(2.08757232129817482790e-09),
            scalar(-1.13596475577881948265e-11),
        )
        limit = scalar(1.0e5)

        @wp.func
        def sin_cos(x: scalar):
            if not (wp.abs(x) < limit):
                return wp.sin(x), wp.cos(x)
            n = wp.floor(x * two_over_pi + scalar(0.5))
            r = (x - n * pio2_head) - n * pio2_tail
            z = r * r
            sr = r + r * z * (s1 + z * (s2 + z * (s3 + z * (s4 + z * (s5 + z * s6)))))
            cr = scalar(1.0) - scalar(0.5) * z + z * z * (c1 + z * (c2 + z * (c3 + z * (c4 + z * (c5 + z * c6)))))
            quadrant = int(n) & 3
            if quadrant == 0:
                return sr, cr
            if quadrant == 1:
                return cr, -sr
            if quadrant == 2:
                return -sr, -cr
            return -cr, sr

    else:

        @wp.func
        def sin_cos(x: scalar):
            # float32: libm's sinf/cosf are already cheap
            return wp.sin(x), wp.cos(x)

    return SharedFuncs(rot_z=rot_z, limit_violated=limit_violated, sin_cos=sin_cos)


def _build(wp, precision: str):  # noqa: C901 - one kernel on purpose (compile time is per kernel)
    types = kernel_args.dtypes(precision)
    scalar, vec3, mat33 = types[kernel_args.SCALAR], types[kernel_args.VEC3], types[kernel_args.MAT33]
    shared = shared_funcs(precision)
    rot_z = shared.rot_z
    limit_violated = shared.limit_violated
    sin_cos = shared.sin_cos

    @wp.func
    def inertia_ang(ibar: mat33, h: vec3, w: vec3, v: vec3):
        # Angular part of the spatial inertia (m, h, Ibar about the origin) times the motion (w, v).
        return ibar * w + wp.cross(h, v)

    @wp.func
    def inertia_lin(m: scalar, h: vec3, w: vec3, v: vec3):
        return m * v - wp.cross(h, w)

    @wp.kernel(enable_backward=False, module="unique", module_options={"cpu_compiler_flags": cpu_compiler_flags()})
    @kernel_args.signature(precision)
    def rollout():  # the arguments: kernel_args.ROLLOUT_ARGS, in its groups model, sets, worlds, streams, ...
        w = wp.tid()
        nb = parent.shape[0]
        ws = world_set[w]
        stream = world_stream[w]
        latency = set_latency[ws]
        gravcomp = set_gravcomp[ws]
        wbody = set_wrench_body[ws]
        zero = scalar(0.0)
        one = scalar(1.0)
        z3 = vec3(zero, zero, zero)
        neg_g = -gravity
        h = dt
        if mode == MODE_EVAL_CONST:
            h = zero
        nstep_cmd = target_q.shape[1]
        # the world as the parent slot nb of root bodies
        s_rot[w, nb] = wp.identity(n=3, dtype=scalar)
        s_pos[w, nb] = z3
        s_vw[w, nb] = z3
        s_vv[w, nb] = z3
        s_aw[w, nb] = z3
        s_av[w, nb] = neg_g

        for k in range(step_begin, step_end):
            if diverged[w] >= 0:
                return
            kk = wp.min(wp.max(k - latency, 0), nstep_cmd - 1)  # delayed command sample
            kc = wp.min(k, nstep_cmd - 1)  # the command as sent (tracking reference)
            wrench_on = int(0)  # noqa: UP018 - int(): a variable the kernel may change, not a constant
            if wbody >= 0 and k >= set_wrench_begin[ws] and k < set_wrench_end[ws]:
                wrench_on = 1

            # ---- 1. forward sweep: kinematics, velocities, bias forces ----
            for b in range(nb):
                p = parent_slot[b]  # slot nb is the world: identity pose, at rest, accelerating at -g
                rp = s_rot[w, p]
                pp = s_pos[w, p]
                vpw = s_vw[w, p]
                vpv = s_vv[w, p]
                apw = s_aw[w, p]
                apv = s_av[w, p]
                r0 = rp * parent_rot[b]
                pos = pp + rp * parent_pos[b]
                qb = q[w, b]
                qdb = qd[w, b]
                rot = r0
                sw = z3
                sv = z3
                if joint_type[b] == 1:
                    sn, cs = sin_cos(qb)
                    rot = rot_z(r0, cs, sn)
                    axis = vec3(rot[0, 2], rot[1, 2], rot[2, 2])
                    sw = axis
                    sv = wp.cross(pos, axis)
                else:
                    axis = vec3(rot[0, 2], rot[1, 2], rot[2, 2])
                    pos = pos + axis * qb
                    sv = axis
                jw = sw * qdb
                jv = sv * qdb
                vw = vpw + jw
                vv = vpv + jv
                # velocity-product acceleration v x (S qd)
                aw = apw + wp.cross(vw, jw)
                av = apv + wp.cross(vw, jv) + wp.cross(vv, jw)

                # body inertia about the world origin, world axes
                m = set_mass[ws, b]
                hr = rot * set_moment[ws, b]
                hw = m * pos + hr
                ibar = rot * set_inertia[ws, b] * wp.transpose(rot)
                pdot = wp.dot(pos, pos)
                ph = wp.dot(pos, hr)
                ibar = (
                    ibar
                    + (m * pdot + scalar(2.0) * ph) * wp.identity(n=3, dtype=scalar)
                    - m * wp.outer(pos, pos)
                    - wp.outer(pos, hr)
                    - wp.outer(hr, pos)
                )

                # f = I a + v x* (I v)
                lw = inertia_ang(ibar, hw, vw, vv)
                lv = inertia_lin(m, hw, vw, vv)
                fn = inertia_ang(ibar, hw, aw, av) + wp.cross(vw, lw) + wp.cross(vv, lv)
                ff = inertia_lin(m, hw, aw, av) + wp.cross(vw, lv)
                if wrench_on == 1 and b == wbody:
                    point = pos + rot * set_wrench_point[ws]
                    fext = set_wrench_force[ws]
                    fn = fn - (set_wrench_torque[ws] + wp.cross(point, fext))
                    ff = ff - fext

                s_rot[w, b] = rot
                s_pos[w, b] = pos
                s_axis[w, b] = sw
                s_mom[w, b] = sv
                s_vw[w, b] = vw
                s_vv[w, b] = vv
                s_aw[w, b] = aw
                s_av[w, b] = av
                s_fn[w, b] = fn
                s_ff[w, b] = ff
                s_cm[w, b] = m
                s_ch[w, b] = hw
                s_ci[w, b] = ibar
                # the controller's gravity model (payloads it was not told about are missing from it)
                gm = set_gc_mass[ws, b]
                s_gm[w, b] = gm
                s_gh[w, b] = gm * pos + rot * set_gc_moment[ws, b]

            # ---- 2. backward sweep: bias torques, composite inertias, mass matrix ----
            for i in range(nb):
                b = nb - 1 - i
                p = parent_slot[b]
                fn = s_fn[w, b]
                ff = s_ff[w, b]
                sw = s_axis[w, b]
                sv = s_mom[w, b]
                s_rhs[w, b] = -(wp.dot(sw, fn) + wp.dot(sv, ff))
                cm = s_cm[w, b]
                ch = s_ch[w, b]
                ci = s_ci[w, b]
                # gravity torque g(q) of the controller's model: the subtree's weight (complete here) times -g
                gm = s_gm[w, b]
                gh = s_gh[w, b]
                s_gq[w, b] = wp.dot(sw, wp.cross(gh, neg_g)) + wp.dot(sv, gm * neg_g)
                s_gm[w, p] = s_gm[w, p] + gm
                s_gh[w, p] = s_gh[w, p] + gh
                # accumulate into the parent (into the unused world slot for root bodies)
                s_fn[w, p] = s_fn[w, p] + fn
                s_ff[w, p] = s_ff[w, p] + ff
                s_cm[w, p] = s_cm[w, p] + cm
                s_ch[w, p] = s_ch[w, p] + ch
                s_ci[w, p] = s_ci[w, p] + ci
                fw = inertia_ang(ci, ch, sw, sv)
                fv = inertia_lin(cm, ch, sw, sv)
                s_h[w, b, b] = wp.dot(sw, fw) + wp.dot(sv, fv) + armature[b]
                j = parent[b]
                while j >= 0:
                    s_h[w, b, j] = wp.dot(s_axis[w, j], fw) + wp.dot(s_mom[w, j], fv)
                    j = parent[j]

            if mode == MODE_EVAL_CONST:
                for b in range(nb):
                    eval_bias[w, b] = -s_rhs[w, b]
                    for j in range(nb):
                        eval_mass[w, b, j] = zero
                for b in range(nb):
                    eval_mass[w, b, b] = s_h[w, b, b]
                    j = parent[b]
                    while j >= 0:
                        eval_mass[w, b, j] = s_h[w, b, j]
                        eval_mass[w, j, b] = s_h[w, b, j]
                        j = parent[j]

            # ---- 3. joint forces, implicit terms, verdicts at (q_k, qd_k) ----
            for b in range(nb):
                qb = q[w, b]
                qdb = qd[w, b]
                qt = target_q[stream, kk, b]
                qdt = zero
                if use_target_qd != 0:
                    qdt = target_qd[stream, kk, b]
                kp = set_kp[ws, b]
                kd = set_kd[ws, b]
                elim = effort_limit[b]
                u = kp * (qt - qb) + kd * (qdt - qdb)
                margin = elim - wp.abs(u)
                ddiag = set_damping[ws, b]
                # the servo's kd is implicit only while its own force is not clamped (MuJoCo 4 does the same)
                if margin > zero or drive_implicit_saturated != 0:
                    ddiag = ddiag + kd
                tau = wp.clamp(u, -elim, elim)
                if gravcomp != 0:
                    u2 = tau + s_gq[w, b]
                    margin = wp.min(margin, elim - wp.abs(u2))
                    tau = wp.clamp(u2, -elim, elim)
                force = tau - set_damping[ws, b] * qdb
                fr = set_friction[ws, b]
                if fr > zero:
                    th = wp.tanh(qdb / friction_eps)
                    force = force - fr * th
                    ddiag = ddiag + fr / friction_eps * (one - th * th)
                hdiag = s_h[w, b, b]
                kdiag = zero
                if limit_active != 0:
                    # one-sided critically damped spring-damper, stiffness from the joint's own inertia
                    kl = hdiag * limit_omega * limit_omega
                    bl = hdiag * scalar(2.0) * limit_omega
                    pen = zero
                    if qb < lower[b]:
                        pen = qb - lower[b]
                        fl = -kl * pen - bl * qdb
                        if fl > zero:
                            force = force + fl - h * kl * qdb
                            ddiag = ddiag + bl
                            kdiag = kl
                    if qb > upper[b]:
                        pen = qb - upper[b]
                        fl = -kl * pen - bl * qdb
                        if fl < zero:
                            force = force + fl - h * kl * qdb
                            ddiag = ddiag + bl
                            kdiag = kl
                s_rhs[w, b] = s_rhs[w, b] + force
                s_tau[w, b] = tau
                s_h[w, b, b] = hdiag + h * ddiag + h * h * kdiag

                if mode == MODE_ROLLOUT_CONST:
                    # verdicts on the state at the start of the step
                    pm = wp.min(qb - lower[b], upper[b] - qb)
                    vm = vel_limit[b] - wp.abs(qdb)
                    if pm < min_pos_margin[w, b]:
                        min_pos_margin[w, b] = pm
                    if vm < min_vel_margin[w, b]:
                        min_vel_margin[w, b] = vm
                    if margin < min_eff_margin[w, b]:
                        min_eff_margin[w, b] = margin
                    err = wp.abs(target_q[stream, kc, b] - qb)
                    if err > max_track[w, b]:
                        max_track[w, b] = err
                    if first_pos[w, b] < 0 and limit_violated(qb, lower[b], upper[b], pos_tol[b], qt) != 0:
                        first_pos[w, b] = k
                    if vm < -vel_tol[b] and first_vel[w, b] < 0:
                        first_vel[w, b] = k
                    # effort: a violation once the drive stays saturated for eff_min_steps steps; while a run
                    # is shorter, first_eff holds -(start + 2) (>= 0: confirmed at that start step; -1: none)
                    fe = first_eff[w, b]
                    if fe < 0:
                        if margin < zero:
                            if fe == -1:
                                fe = -(k + 2)
                            run_start = -fe - 2
                            if k - run_start + 1 >= eff_min_steps:
                                fe = run_start
                        else:
                            fe = -1
                        first_eff[w, b] = fe

            # ---- 4. solve (M + A + h D) qdd = rhs with the tree-sparse L^T D L factorisation ----
            for i in range(nb):
                kf = nb - 1 - i
                j = parent[kf]
                while j >= 0:
                    a = s_h[w, kf, j] / s_h[w, kf, kf]
                    anc = j
                    while anc >= 0:
                        s_h[w, j, anc] = s_h[w, j, anc] - a * s_h[w, kf, anc]
                        anc = parent[anc]
                    s_h[w, kf, j] = a
                    j = parent[j]
            for i in range(nb):
                kf = nb - 1 - i
                x = s_rhs[w, kf]
                j = parent[kf]
                while j >= 0:
                    s_rhs[w, j] = s_rhs[w, j] - s_h[w, kf, j] * x
                    j = parent[j]
            for b in range(nb):
                x = s_rhs[w, b] / s_h[w, b, b]
                j = parent[b]
                while j >= 0:
                    x = x - s_h[w, b, j] * s_rhs[w, j]
                    j = parent[j]
                s_rhs[w, b] = x

            if mode == MODE_EVAL_CONST:
                for b in range(nb):
                    eval_qdd[w, b] = s_rhs[w, b]
                return

            # ---- 5. integrate (semi-implicit Euler) and record ----
            finite = int(1)  # noqa: UP018 - (as above)
            for b in range(nb):
                vnew = qd[w, b] + h * s_rhs[w, b]
                qnew = q[w, b] + h * vnew
                if not (wp.isfinite(vnew) and wp.isfinite(qnew)):
                    finite = 0
                qd[w, b] = vnew
                q[w, b] = qnew
            if finite == 0:
                diverged[w] = k
            if record_every > 0:
                if (k + 1) % record_every == 0:
                    r = (k + 1) // record_every - 1
                    for b in range(nb):
                        out_q[w, r, b] = q[w, b]
                        out_qd[w, r, b] = qd[w, b]
                        out_tau[w, r, b] = s_tau[w, b]

        if mode == MODE_ROLLOUT_CONST and diverged[w] < 0:
            # verdicts on the final state
            # the state after this launch is the state at the start of step step_end: judge it against that
            # step's command, as the next launch (or the end of the rollout) would
            klast = wp.min(wp.max(step_end - latency, 0), nstep_cmd - 1)
            for b in range(nb):
                qb = q[w, b]
                pm = wp.min(qb - lower[b], upper[b] - qb)
                vm = vel_limit[b] - wp.abs(qd[w, b])
                if pm < min_pos_margin[w, b]:
                    min_pos_margin[w, b] = pm
                if vm < min_vel_margin[w, b]:
                    min_vel_margin[w, b] = vm
                qt = target_q[stream, klast, b]
                if first_pos[w, b] < 0 and limit_violated(qb, lower[b], upper[b], pos_tol[b], qt) != 0:
                    first_pos[w, b] = step_end
                if vm < -vel_tol[b] and first_vel[w, b] < 0:
                    first_vel[w, b] = step_end

    return rollout


MODE_ROLLOUT_CONST = MODE_ROLLOUT
MODE_EVAL_CONST = MODE_EVALUATE
