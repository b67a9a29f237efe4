# SPDX-License-Identifier: Apache-2.0
"""`CompiledFusion`: a run of full measurements fused by one Warp CPU kernel launch (``kalman_backend = "warp"``).

The same per-joint filter as `JointKalmanFilter` (predict with the constant-acceleration F and white-jerk Q, the
innovation-based noise adaptation, the chi-square gate, the Joseph-form update written as in
``_update_every_joint``) and the same gate-streak bookkeeping as `TwinEstimator._fuse` (a joint gated
``gate_reset_after`` times in a row restarts from the measurement; a joint not yet initialised starts from it),
for a run of ``m`` measurements that each carry every joint's position and velocity. One thread per joint loops
over the run (the joints are independent), so a re-filter of a display tick's late samples is one launch instead
of ~30 NumPy calls per sample. The same operations in the same order as the NumPy path: results equal it to
rounding (~1e-14 relative, tests/test_estimation_kalman_backend_internals.py).

Anything else (a message with a subset of the joints, position only, a step longer than ``stale_after_s``)
stays on the NumPy path; the caller splits a run there.

Warp is imported lazily and initialised by `twin_ext.warp_runtime.init_warp`, as for the what-if engine (kernel
cache in ``$TWIN_EXT_CACHE_DIR/warp``, no backward code), and the kernel is built once per process in a background
thread (`start_warm_up`): with a cold cache that costs ~1.9 s (CPU and wall, 2-core VM at load ~3.6), with a warm one ~0.3 s (importing Warp, loading the
cached binary). `TwinEstimator` waits for it at most ``_KERNEL_WAIT_S`` at construction
and fuses with NumPy until `ready`, so the display loop never waits for the compiler.
"""

# No `from __future__ import annotations`: Warp reads the kernel's annotations.
import numpy as np

from ..warp_runtime import BackgroundKernel

__all__ = ["CompiledFusion", "FLAG_FRESH", "FLAG_GATED", "FLAG_RESET", "ready", "start_warm_up", "build_kalman_kernel"]


def _build(wp):
    f64 = wp.float64

    @wp.kernel(enable_backward=False, module="unique")
    def fuse_run(
        m: int,
        dts: wp.array(dtype=f64),
        qs: wp.array(dtype=f64, ndim=2),
        qds: wp.array(dtype=f64, ndim=2),
        jerk_psd: wp.array(dtype=f64),
        r_floor: wp.array(dtype=f64, ndim=2),
        gate_chi2: f64,
        adapt: f64,
        init_var_qdd: f64,
        reset_after: int,
        x_in: wp.array(dtype=f64, ndim=2),
        p_in: wp.array(dtype=f64, ndim=3),
        r_in: wp.array(dtype=f64, ndim=2),
        init_in: wp.array(dtype=wp.int32),
        streak_in: wp.array(dtype=wp.int32),
        x_out: wp.array(dtype=f64, ndim=3),
        p_out: wp.array(dtype=f64, ndim=4),
        r_out: wp.array(dtype=f64, ndim=3),
        streak_out: wp.array(dtype=wp.int32, ndim=2),
        flags_out: wp.array(dtype=wp.int32, ndim=2),
    ):
        j = wp.tid()
        zero = f64(0.0)
        one = f64(1.0)
        x0 = x_in[j, 0]
        x1 = x_in[j, 1]
        x2 = x_in[j, 2]
        p00 = p_in[j, 0, 0]
        p01 = p_in[j, 0, 1]
        p02 = p_in[j, 0, 2]
        p10 = p_in[j, 1, 0]
        p11 = p_in[j, 1, 1]
        p12 = p_in[j, 1, 2]
        p20 = p_in[j, 2, 0]
        p21 = p_in[j, 2, 1]
        p22 = p_in[j, 2, 2]
        r0 = r_in[j, 0]
        r1 = r_in[j, 1]
        fl0 = r_floor[j, 0]
        fl1 = r_floor[j, 1]
        psd = jerk_psd[j]
        initialized = init_in[j]
        streak = streak_in[j]
        for i in range(m):
            dt = dts[i]
            if dt > zero:  # predict: x <- F x, P <- F P Fᵀ + Q (JointKalmanFilter.predict)
                h = f64(0.5) * dt * dt
                x0 = x0 + x1 * dt + x2 * h
                x1 = x1 + x2 * dt
                # A = F P (rows), then A Fᵀ
                a00 = p00 + dt * p10 + h * p20
                a01 = p01 + dt * p11 + h * p21
                a02 = p02 + dt * p12 + h * p22
                a10 = p10 + dt * p20
                a11 = p11 + dt * p21
                a12 = p12 + dt * p22
                d2 = dt * dt
                d3 = d2 * dt
                d4 = d3 * dt
                d5 = d4 * dt
                p00 = a00 + a01 * dt + a02 * h + psd * (d5 / f64(20.0))
                p01 = a01 + a02 * dt + psd * (d4 / f64(8.0))
                p02 = a02 + psd * (d3 / f64(6.0))
                p10 = a10 + a11 * dt + a12 * h + psd * (d4 / f64(8.0))
                p11 = a11 + a12 * dt + psd * (d3 / f64(3.0))
                p12 = a12 + psd * (d2 / f64(2.0))
                p20n = p20 + p21 * dt + p22 * h + psd * (d3 / f64(6.0))
                p21n = p21 + p22 * dt + psd * (d2 / f64(2.0))
                p22 = p22 + psd * dt
                p20 = p20n
                p21 = p21n
            q = qs[i, j]
            qd = qds[i, j]
            flags = 0
            restart = 0  # 1: start this joint from the measurement (below)
            if initialized == 0:  # JointKalmanFilter.initialize from position and velocity; no update
                restart = 1
                initialized = 1
                flags = 4
            else:
                y0 = q - x0
                y1 = qd - x1
                if adapt > zero:  # r <- max((1-a) r + a (min(y², 9 S) - H P Hᵀ), floor)
                    r0 = wp.max((one - adapt) * r0 + adapt * (wp.min(y0 * y0, f64(9.0) * (p00 + r0)) - p00), fl0)
                    r1 = wp.max((one - adapt) * r1 + adapt * (wp.min(y1 * y1, f64(9.0) * (p11 + r1)) - p11), fl1)
                s00 = p00 + r0
                s11 = p11 + r1
                s01 = p01
                s10 = p10
                inv_det = one / (s00 * s11 - s01 * s10)
                i00 = s11 * inv_det
                i01 = -s01 * inv_det
                i10 = -s10 * inv_det
                i11 = s00 * inv_det
                w0 = i00 * y0 + i01 * y1
                w1 = i10 * y0 + i11 * y1
                if y0 * w0 + y1 * w1 > gate_chi2:  # gated: the joint keeps its predicted state
                    flags = 1
                    streak = streak + 1
                    if streak >= reset_after:  # persistently rejected: restart from the data (with the new r)
                        restart = 1
                        streak = 0
                        flags = 3
                else:
                    streak = 0
                    # K = P Hᵀ S⁻¹ (rows of G = P[:, :2])
                    k00 = p00 * i00 + p01 * i10
                    k01 = p00 * i01 + p01 * i11
                    k10 = p10 * i00 + p11 * i10
                    k11 = p10 * i01 + p11 * i11
                    k20 = p20 * i00 + p21 * i10
                    k21 = p20 * i01 + p21 * i11
                    x0 = x0 + (p00 * w0 + p01 * w1)
                    x1 = x1 + (p10 * w0 + p11 * w1)
                    x2 = x2 + (p20 * w0 + p21 * w1)
                    # B = P - K P[:2, :]
                    b00 = p00 - (k00 * p00 + k01 * p10)
                    b01 = p01 - (k00 * p01 + k01 * p11)
                    b02 = p02 - (k00 * p02 + k01 * p12)
                    b10 = p10 - (k10 * p00 + k11 * p10)
                    b11 = p11 - (k10 * p01 + k11 * p11)
                    b12 = p12 - (k10 * p02 + k11 * p12)
                    b20 = p20 - (k20 * p00 + k21 * p10)
                    b21 = p21 - (k20 * p01 + k21 * p11)
                    b22 = p22 - (k20 * p02 + k21 * p12)
                    # C = K R - B[:, :2];  P = B + C Kᵀ
                    c00 = k00 * r0 - b00
                    c01 = k01 * r1 - b01
                    c10 = k10 * r0 - b10
                    c11 = k11 * r1 - b11
                    c20 = k20 * r0 - b20
                    c21 = k21 * r1 - b21
                    p00 = b00 + (c00 * k00 + c01 * k01)
                    p01 = b01 + (c00 * k10 + c01 * k11)
                    p02 = b02 + (c00 * k20 + c01 * k21)
                    p10 = b10 + (c10 * k00 + c11 * k01)
                    p11 = b11 + (c10 * k10 + c11 * k11)
                    p12 = b12 + (c10 * k20 + c11 * k21)
                    p20 = b20 + (c20 * k00 + c21 * k01)
                    p21 = b21 + (c20 * k10 + c21 * k11)
                    p22 = b22 + (c20 * k20 + c21 * k21)
            if restart == 1:  # the state JointKalmanFilter.initialize gives: measured q, qd; variances r, init_var_qdd
                x0 = q
                x1 = qd
                x2 = zero
                p00 = r0
                p01 = zero
                p02 = zero
                p10 = zero
                p11 = r1
                p12 = zero
                p20 = zero
                p21 = zero
                p22 = init_var_qdd
            x_out[i, j, 0] = x0
            x_out[i, j, 1] = x1
            x_out[i, j, 2] = x2
            p_out[i, j, 0, 0] = p00
            p_out[i, j, 0, 1] = p01
            p_out[i, j, 0, 2] = p02
            p_out[i, j, 1, 0] = p10
            p_out[i, j, 1, 1] = p11
            p_out[i, j, 1, 2] = p12
            p_out[i, j, 2, 0] = p20
            p_out[i, j, 2, 1] = p21
            p_out[i, j, 2, 2] = p22
            r_out[i, j, 0] = r0
            r_out[i, j, 1] = r1
            streak_out[i, j] = streak
            flags_out[i, j] = flags

    # Compile (cold cache) and load now, in this thread, not at the first real launch: an empty run (m = 0) through
    # `wp.launch` itself (``module.load`` alone builds for other launch options and the first launch compiled again).
    def empty(*shape, dtype=f64):
        return wp.zeros(shape, dtype=dtype, device="cpu")

    wp.launch(
        fuse_run,
        dim=1,
        inputs=[0, empty(1), empty(1, 1), empty(1, 1), empty(1), empty(1, 2), f64(1.0), f64(0.0), f64(1.0), 1]
        + [empty(1, 3), empty(1, 3, 3), empty(1, 2), empty(1, dtype=wp.int32), empty(1, dtype=wp.int32)]
        + [empty(1, 1, 3), empty(1, 1, 3, 3), empty(1, 1, 2), empty(1, 1, dtype=wp.int32), empty(1, 1, dtype=wp.int32)],
        device="cpu",
    )
    return fuse_run


_kernel = BackgroundKernel(_build, "twin_ext-kalman-kernel")


def start_warm_up() -> None:
    """Initialise Warp here (~0.35 s, in the caller's thread) and build the kernel in a daemon thread, once per
    process."""
    _kernel.start()


def ready() -> bool:
    """True once the kernel is built and loaded (`start_warm_up` first)."""
    return _kernel.ready()


def build_kalman_kernel(timeout_s: float | None = None) -> bool:
    """Build the ``kalman_backend = "warp"`` fusion kernel (once per process, in a background thread) and wait for it
    at most ``timeout_s`` s (None: until done). True if it is ready. A host may call it early (e.g. at startup with a
    small timeout) so estimators made later find it built; with a cold kernel cache it compiles (~1.9 s)."""
    return _kernel.wait(timeout_s)


class CompiledFusion:
    """Fuses runs of full measurements (every joint's position and velocity) for one filter of ``n`` joints.

    Buffers are kept per instance and grow to the longest run seen. Not thread-safe (one per estimator).
    """

    def __init__(self, n: int) -> None:
        if not ready():
            raise RuntimeError("the Kalman kernel is not built yet (start_warm_up / build_kalman_kernel)")
        self.n = int(n)
        self._wp = _kernel.wp
        self._kernel = _kernel.kernel
        self._capacity = 0
        wp = self._wp
        n = self.n
        self._x_in, self._np_x_in = self._buffer((n, 3), wp.float64)
        self._p_in, self._np_p_in = self._buffer((n, 3, 3), wp.float64)
        self._r_in, self._np_r_in = self._buffer((n, 2), wp.float64)
        self._init_in, self._np_init_in = self._buffer((n,), wp.int32)
        self._streak_in, self._np_streak_in = self._buffer((n,), wp.int32)
        self._psd, self._np_psd = self._buffer((n,), wp.float64)
        self._floor, self._np_floor = self._buffer((n, 2), wp.float64)
        self._psd_of = self._floor_of = None  # the filter arrays last copied into the kernel's inputs
        self._all_initialized = np.ones((1, n), dtype=bool)
        self._all_initialized.flags.writeable = False  # shared by every state it returns (they are copied on restore)
        self._grow(16)

    def __reduce__(self):
        # Scratch buffers only, no state: a copy (copy.deepcopy of an estimator) or an unpickled one gets new ones.
        return _new_fusion, (self.n,)

    def _buffer(self, shape, dtype):
        array = self._wp.zeros(shape, dtype=dtype, device="cpu")
        return array, array.numpy()

    def _grow(self, m: int) -> None:
        wp, n = self._wp, self.n
        cap = max(m, 2 * self._capacity)
        self._dts, self._np_dts = self._buffer((cap,), wp.float64)
        self._qs, self._np_qs = self._buffer((cap, n), wp.float64)
        self._qds, self._np_qds = self._buffer((cap, n), wp.float64)
        self._x_out, self._np_x_out = self._buffer((cap, n, 3), wp.float64)
        self._p_out, self._np_p_out = self._buffer((cap, n, 3, 3), wp.float64)
        self._r_out, self._np_r_out = self._buffer((cap, n, 2), wp.float64)
        self._streak_out, self._np_streak_out = self._buffer((cap, n), wp.int32)
        self._flags_out, self._np_flags_out = self._buffer((cap, n), wp.int32)
        self._capacity = cap
        self._cmd = None  # the recorded launch names the old buffers

    def run(self, kf, streak: np.ndarray, dts, qs, qds, *, reset_after: int):
        """Fuse ``m`` measurements into ``kf`` (a `JointKalmanFilter`, updated in place) and the gate ``streak: [n]``.

        Args:
            kf: the filter (its x, P, r, initialized are read and replaced).
            streak: ``[n]`` int, consecutive gate rejections per joint (updated in place).
            dts: ``[m]`` s, the step before each measurement (<= 0: no predict); each <= ``stale_after_s``.
            qs, qds: ``m`` arrays ``[n]`` of positions rad|m and velocities rad/s|m/s.
            reset_after: ``gate_reset_after`` (>= 1).

        Returns:
            ``(x [m, n, 3], P [m, n, 3, 3], r [m, n, 2], initialized [m, n] bool (read-only), streak [m, n] int64,
            flags [m, n] int32)``: the state after each measurement (new arrays) and, per measurement and joint,
            `FLAG_GATED` | `FLAG_RESET` | `FLAG_FRESH` bits.
        """
        m = len(dts)
        if m > self._capacity:
            self._grow(m)
        self._np_dts[:m] = dts
        self._np_qs[:m] = qs
        self._np_qds[:m] = qds
        self._np_x_in[...] = kf.x
        self._np_p_in[...] = kf.P
        self._np_r_in[...] = kf.r
        self._np_init_in[...] = kf.initialized
        self._np_streak_in[...] = streak
        if kf.jerk_psd is not self._psd_of or kf.r_floor is not self._floor_of:  # as JointKalmanFilter._step's cache
            self._np_psd[...] = self._psd_of = kf.jerk_psd
            self._np_floor[...] = self._floor_of = kf.r_floor
        cmd = self._cmd
        if cmd is None:
            cmd = self._cmd = self._wp.launch(
                self._kernel,
                dim=self.n,
                inputs=[
                    m,
                    self._dts,
                    self._qs,
                    self._qds,
                    self._psd,
                    self._floor,
                    float(kf.gate_chi2),
                    float(kf.noise_adapt_rate),
                    float(kf.init_sigma_qdd) ** 2,
                    int(reset_after),
                    self._x_in,
                    self._p_in,
                    self._r_in,
                    self._init_in,
                    self._streak_in,
                    self._x_out,
                    self._p_out,
                    self._r_out,
                    self._streak_out,
                    self._flags_out,
                ],
                device="cpu",
                record_cmd=True,
            )
            self._cmd_key = None
        key = (float(kf.gate_chi2), float(kf.noise_adapt_rate), float(kf.init_sigma_qdd), int(reset_after))
        if key != self._cmd_key:
            cmd.set_param_at_index(6, key[0])
            cmd.set_param_at_index(7, key[1])
            cmd.set_param_at_index(8, key[2] ** 2)
            cmd.set_param_at_index(9, key[3])
            self._cmd_key = key
        cmd.set_param_at_index(0, m)
        cmd.launch()
        x = self._np_x_out[:m].copy()
        P = self._np_p_out[:m].copy()
        r = self._np_r_out[:m].copy()
        streaks = self._np_streak_out[:m].astype(np.int64)
        flags = self._np_flags_out[:m].copy()
        if len(self._all_initialized) < m:
            self._all_initialized = np.ones((self._capacity, self.n), dtype=bool)
            self._all_initialized.flags.writeable = False
        initialized = self._all_initialized[:m]  # a full measurement initialises every joint it finds new
        kf.x, kf.P, kf.r = x[-1].copy(), P[-1].copy(), r[-1].copy()
        kf.initialized = np.ones(self.n, dtype=bool)
        streak[...] = streaks[-1]
        return x, P, r, initialized, streaks, flags


FLAG_GATED = 1
"""``flags`` bit: the joint's measurement was gated out."""
FLAG_RESET = 2
"""``flags`` bit: the joint restarted from the measurement after ``gate_reset_after`` rejections in a row."""
FLAG_FRESH = 4
"""``flags`` bit: the joint was not initialised and started from the measurement."""


def _new_fusion(n: int) -> CompiledFusion | None:
    """A `CompiledFusion` for ``n`` joints, or None where the kernel is not built (the estimator then makes one)."""
    return CompiledFusion(n) if ready() else None
