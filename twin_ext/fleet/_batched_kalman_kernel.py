# SPDX-License-Identifier: Apache-2.0
"""`FleetFusionKernel`: `FleetKalman.predict_update_each` in one Warp CPU kernel launch (``kalman_backend = "warp"``).

A fusion step of a fleet predicts every waiting robot's joints by their own ``dt`` and updates them with their
positions and velocities: written out in NumPy that is ~100 calls of ~1 µs each whatever the fleet's size, more
than the rest of a step with ~10 robots in it (fusion on arrival runs hundreds of steps a second). Here one thread
per joint does the same operations in the same order as `twin_ext.fleet._batched_kalman` (`_predicted`, then
`FleetKalman._update_every_joint_soa`): the constant-acceleration predict with the white-jerk Q, the noise
adaptation, the chi-square gate (a gated joint keeps its predicted state), the Joseph-form update. Results equal
the NumPy path to rounding (tests/test_fleet_batched_kalman_internals.py).

Built once per process on a background thread (`start_warm_up`; ~2 s with a cold kernel cache, then cached in
``$TWIN_EXT_CACHE_DIR/warp``); until it is ready, or without Warp or a compiler, the fleet fuses with NumPy.
"""

# No `from __future__ import annotations`: Warp reads the kernel's annotations.
import numpy as np

from ..warp_runtime import BackgroundKernel

__all__ = ["FleetFusionKernel", "build_fleet_kernel", "ready", "start_warm_up"]


def _build(wp):
    f64 = wp.float64

    @wp.kernel(enable_backward=False, module="unique")
    def predict_update(
        dts: wp.array(dtype=f64),
        qs: wp.array(dtype=f64),
        qds: wp.array(dtype=f64),
        jerk_psd: wp.array(dtype=f64),
        r_floor: wp.array(dtype=f64, ndim=2),
        gate_chi2: f64,
        adapt: f64,
        x: wp.array(dtype=f64, ndim=2),
        p: wp.array(dtype=f64, ndim=3),
        r: wp.array(dtype=f64, ndim=2),
        gated_out: wp.array(dtype=wp.int32),
    ):
        j = wp.tid()
        zero = f64(0.0)
        one = f64(1.0)
        dt = wp.max(dts[j], zero)
        psd = jerk_psd[j]
        # predict: x <- F x, P <- F P Fᵀ + Q (as `_predicted`: M = F P by rows, then M Fᵀ by columns, then Q)
        b = f64(0.5) * dt * dt
        x0 = x[j, 0] + dt * x[j, 1] + b * x[j, 2]
        x1 = x[j, 1] + dt * x[j, 2]
        x2 = x[j, 2]
        m00 = p[j, 0, 0] + dt * p[j, 1, 0] + b * p[j, 2, 0]
        m01 = p[j, 0, 1] + dt * p[j, 1, 1] + b * p[j, 2, 1]
        m02 = p[j, 0, 2] + dt * p[j, 1, 2] + b * p[j, 2, 2]
        m10 = p[j, 1, 0] + dt * p[j, 2, 0]
        m11 = p[j, 1, 1] + dt * p[j, 2, 1]
        m12 = p[j, 1, 2] + dt * p[j, 2, 2]
        m20 = p[j, 2, 0]
        m21 = p[j, 2, 1]
        m22 = p[j, 2, 2]
        d2 = dt * dt
        d3 = d2 * dt
        d4 = d3 * dt
        q01 = psd * (d4 / f64(8.0))
        q02 = psd * (d3 / f64(6.0))
        q12 = psd * (d2 / f64(2.0))
        p00 = m00 + dt * m01 + b * m02 + psd * (d4 * dt / f64(20.0))
        p01 = m01 + dt * m02 + q01
        p02 = m02 + q02
        p10 = m10 + dt * m11 + b * m12 + q01
        p11 = m11 + dt * m12 + psd * (d3 / f64(3.0))
        p12 = m12 + q12
        p20 = m20 + dt * m21 + b * m22 + q02
        p21 = m21 + dt * m22 + q12
        p22 = m22 + psd * dt
        # update with position and velocity (as `FleetKalman._update_every_joint_soa`)
        y0 = qs[j] - x0
        y1 = qds[j] - x1
        r0 = r[j, 0]
        r1 = r[j, 1]
        if adapt > zero:  # r <- max((1-a) r + a (min(y², 9 S) - H P Hᵀ), floor)
            r0 = wp.max((one - adapt) * r0 + adapt * (wp.min(y0 * y0, f64(9.0) * (p00 + r0)) - p00), r_floor[j, 0])
            r1 = wp.max((one - adapt) * r1 + adapt * (wp.min(y1 * y1, f64(9.0) * (p11 + r1)) - p11), r_floor[j, 1])
            r[j, 0] = r0
            r[j, 1] = r1
        s00 = p00 + r0
        s11 = p11 + r1
        inv_det = one / (s00 * s11 - p01 * p10)
        i00 = s11 * inv_det
        i01 = -p01 * inv_det
        i10 = -p10 * inv_det
        i11 = s00 * inv_det
        w0 = i00 * y0 + i01 * y1
        w1 = i10 * y0 + i11 * y1
        gated = 0
        if y0 * w0 + y1 * w1 > gate_chi2:  # gated: the joint keeps its predicted state
            gated = 1
        else:
            k00 = p00 * i00 + p01 * i10  # K = P Hᵀ S⁻¹, row i: (k_i0, k_i1)
            k01 = p00 * i01 + p01 * i11
            k10 = p10 * i00 + p11 * i10
            k11 = p10 * i01 + p11 * i11
            k20 = p20 * i00 + p21 * i10
            k21 = p20 * i01 + p21 * i11
            nx0 = x0 + p00 * w0 + p01 * w1
            nx1 = x1 + p10 * w0 + p11 * w1
            nx2 = x2 + p20 * w0 + p21 * w1
            x0 = nx0
            x1 = nx1
            x2 = nx2
            b00 = p00 - (k00 * p00 + k01 * p10)  # B = (I - K H) P
            b01 = p01 - (k00 * p01 + k01 * p11)
            b02 = p02 - (k00 * p02 + k01 * p12)
            b10 = p10 - (k10 * p00 + k11 * p10)
            b11 = p11 - (k10 * p01 + k11 * p11)
            b12 = p12 - (k10 * p02 + k11 * p12)
            b20 = p20 - (k20 * p00 + k21 * p10)
            b21 = p21 - (k20 * p01 + k21 * p11)
            b22 = p22 - (k20 * p02 + k21 * p12)
            c00 = k00 * r0 - b00  # C = K R - B Hᵀ;  P = B + C Kᵀ
            c01 = k01 * r1 - b01
            c10 = k10 * r0 - b10
            c11 = k11 * r1 - b11
            c20 = k20 * r0 - b20
            c21 = k21 * r1 - b21
            p00 = b00 + c00 * k00 + c01 * k01
            p01 = b01 + c00 * k10 + c01 * k11
            p02 = b02 + c00 * k20 + c01 * k21
            p10 = b10 + c10 * k00 + c11 * k01
            p11 = b11 + c10 * k10 + c11 * k11
            p12 = b12 + c10 * k20 + c11 * k21
            p20 = b20 + c20 * k00 + c21 * k01
            p21 = b21 + c20 * k10 + c21 * k11
            p22 = b22 + c20 * k20 + c21 * k21
        x[j, 0] = x0
        x[j, 1] = x1
        x[j, 2] = x2
        p[j, 0, 0] = p00
        p[j, 0, 1] = p01
        p[j, 0, 2] = p02
        p[j, 1, 0] = p10
        p[j, 1, 1] = p11
        p[j, 1, 2] = p12
        p[j, 2, 0] = p20
        p[j, 2, 1] = p21
        p[j, 2, 2] = p22
        gated_out[j] = gated

    # Compile (cold cache) and load now, in this thread, through `wp.launch` itself (as the estimator's kernel).
    def empty(*shape, dtype=f64):
        return wp.zeros(shape, dtype=dtype, device="cpu")

    wp.launch(
        predict_update,
        dim=1,
        inputs=[empty(1), empty(1), empty(1), empty(1), empty(1, 2), f64(16.0), f64(0.0)]
        + [empty(1, 3), empty(1, 3, 3), empty(1, 2), empty(1, dtype=wp.int32)],
        device="cpu",
    )
    return predict_update


_kernel = BackgroundKernel(_build, "twin_ext-fleet-kalman-kernel")


def start_warm_up() -> None:
    """Build the kernel on a background thread, once per process (later calls do nothing)."""
    _kernel.start()


def ready() -> bool:
    """The kernel is built and loaded (never waits)."""
    return _kernel.ready()


def build_fleet_kernel(timeout_s: float | None = None) -> bool:
    """Start building the kernel (`start_warm_up`) and wait for it at most ``timeout_s`` s (None: until done);
    True once it is ready."""
    return _kernel.wait(timeout_s)


class FleetFusionKernel:
    """Buffers and the recorded launch of the kernel for ``n`` joints (one per `FleetKalman`: not thread-safe)."""

    def __init__(self, n: int) -> None:
        if not ready():
            raise RuntimeError("the fleet's Kalman kernel is not built yet (start_warm_up / build_fleet_kernel)")
        wp = _kernel.wp
        self.n = n = int(n)
        buffers = {}
        for name, shape, dtype in (
            ("dt", (n,), wp.float64), ("q", (n,), wp.float64), ("qd", (n,), wp.float64),
            ("psd", (n,), wp.float64), ("floor", (n, 2), wp.float64), ("x", (n, 3), wp.float64),
            ("p", (n, 3, 3), wp.float64), ("r", (n, 2), wp.float64), ("gated", (n,), wp.int32),
        ):  # fmt: skip
            buffers[name] = wp.zeros(shape, dtype=dtype, device="cpu")
        self._buffers = buffers  # keeps the Warp arrays (and so the NumPy views below) alive
        self._np = {name: array.numpy() for name, array in buffers.items()}
        self._cmd = wp.launch(
            _kernel.kernel,
            dim=n,
            inputs=[buffers["dt"], buffers["q"], buffers["qd"], buffers["psd"], buffers["floor"], 16.0, 0.0]
            + [buffers["x"], buffers["p"], buffers["r"], buffers["gated"]],
            device="cpu",
            record_cmd=True,
        )
        self._cmd_key: tuple[float, float] | None = None

    def run(self, kf, dt: np.ndarray, q: np.ndarray, qd: np.ndarray) -> np.ndarray:
        """Predict ``kf`` (a `FleetKalman` of ``n`` joints) by ``dt: [n]`` s and update it with ``q``, ``qd``
        (``[n]``); its x, P, r become new arrays. Returns ``gated: [n]`` bool."""
        a = self._np
        a["dt"][...] = dt
        a["q"][...] = q
        a["qd"][...] = qd
        a["psd"][...] = kf.jerk_psd
        a["floor"][...] = kf.r_floor
        a["x"][...] = kf.x
        a["p"][...] = kf.P
        a["r"][...] = kf.r
        key = (float(kf.gate_chi2), float(kf.noise_adapt_rate))
        if key != self._cmd_key:
            self._cmd.set_param_at_index(5, key[0])
            self._cmd.set_param_at_index(6, key[1])
            self._cmd_key = key
        self._cmd.launch()
        kf.x, kf.P, kf.r = a["x"].copy(), a["p"].copy(), a["r"].copy()
        return a["gated"].astype(bool)
