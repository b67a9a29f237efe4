# SPDX-License-Identifier: Apache-2.0
"""Rigid-transform helpers for the robot model (NumPy, float64).

Conventions used across twin_ext:
- quaternions are ``(w, x, y, z)`` (USD's ``GfQuat`` real-first order), unit length;
- homogeneous transforms are ``[..., 4, 4]`` matrices acting on column vectors, so a point ``p``
  in frame B is ``X_AB @ [p, 1]`` in frame A, and ``X_AC = X_AB @ X_BC``.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "quat_to_matrix",
    "matrix_to_quat",
    "make_transform",
    "invert_transform",
    "axis_rotation",
]


def quat_to_matrix(quat: np.ndarray) -> np.ndarray:
    """Rotation matrices from unit quaternions.

    Args:
        quat: ``[..., 4]`` quaternions ``(w, x, y, z)``; normalised here.

    Returns:
        ``[..., 3, 3]`` rotation matrices.
    """
    q = np.asarray(quat, dtype=np.float64)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    w, x, y, z = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    rot = np.empty(q.shape[:-1] + (3, 3))
    rot[..., 0, 0] = 1 - 2 * (y * y + z * z)
    rot[..., 0, 1] = 2 * (x * y - w * z)
    rot[..., 0, 2] = 2 * (x * z + w * y)
    rot[..., 1, 0] = 2 * (x * y + w * z)
    rot[..., 1, 1] = 1 - 2 * (x * x + z * z)
    rot[..., 1, 2] = 2 * (y * z - w * x)
    rot[..., 2, 0] = 2 * (x * z - w * y)
    rot[..., 2, 1] = 2 * (y * z + w * x)
    rot[..., 2, 2] = 1 - 2 * (x * x + y * y)
    return rot


def matrix_to_quat(rot: np.ndarray) -> np.ndarray:
    """Unit quaternions ``(w, x, y, z)`` with ``w >= 0`` from ``[..., 3, 3]`` rotation matrices."""
    r = np.asarray(rot, dtype=np.float64)
    flat = r.reshape(-1, 3, 3)
    out = np.empty((flat.shape[0], 4))
    for i, m in enumerate(flat):
        # Shepperd's method: pick the largest diagonal term for numerical stability.
        trace = m[0, 0] + m[1, 1] + m[2, 2]
        if trace > 0:
            s = 2.0 * np.sqrt(trace + 1.0)
            out[i] = (0.25 * s, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s)
        elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
            s = 2.0 * np.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2])
            out[i] = ((m[2, 1] - m[1, 2]) / s, 0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s)
        elif m[1, 1] > m[2, 2]:
            s = 2.0 * np.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2])
            out[i] = ((m[0, 2] - m[2, 0]) / s, (m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s)
        else:
            s = 2.0 * np.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1])
            out[i] = ((m[1, 0] - m[0, 1]) / s, (m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s)
    out *= np.where(out[:, :1] < 0, -1.0, 1.0)
    out /= np.linalg.norm(out, axis=-1, keepdims=True)
    return out.reshape(r.shape[:-2] + (4,))


def make_transform(position: np.ndarray, quat: np.ndarray) -> np.ndarray:
    """``[..., 4, 4]`` transforms from ``position: [..., 3]`` (m) and ``quat: [..., 4]`` (w, x, y, z)."""
    pos = np.asarray(position, dtype=np.float64)
    rot = quat_to_matrix(quat)
    out = np.zeros(np.broadcast_shapes(pos.shape[:-1], rot.shape[:-2]) + (4, 4))
    out[..., :3, :3] = rot
    out[..., :3, 3] = pos
    out[..., 3, 3] = 1.0
    return out


def invert_transform(xform: np.ndarray) -> np.ndarray:
    """Inverse of rigid ``[..., 4, 4]`` transforms (rotation transposed, translation rotated back)."""
    x = np.asarray(xform, dtype=np.float64)
    out = np.zeros_like(x)
    rot_t = np.swapaxes(x[..., :3, :3], -1, -2)
    out[..., :3, :3] = rot_t
    out[..., :3, 3] = -np.einsum("...ij,...j->...i", rot_t, x[..., :3, 3])
    out[..., 3, 3] = 1.0
    return out


def axis_rotation(axis: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """Rotations about a fixed unit ``axis: [3]`` by ``angle: [...]`` rad, as ``[..., 3, 3]`` (Rodrigues)."""
    a = np.asarray(axis, dtype=np.float64)
    theta = np.asarray(angle, dtype=np.float64)[..., None, None]
    k = np.array([[0.0, -a[2], a[1]], [a[2], 0.0, -a[0]], [-a[1], a[0], 0.0]])
    return np.eye(3) + np.sin(theta) * k + (1.0 - np.cos(theta)) * (k @ k)
