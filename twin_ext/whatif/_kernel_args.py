# SPDX-License-Identifier: Apache-2.0
"""The rollout kernel's arguments, declared once (`ROLLOUT_ARGS`); everything that names them derives from it.

Each argument is a `KernelArg`: its name, its kind (``int32``, or ``scalar`` / ``vec3`` / ``mat33`` in the
request's precision), its array axes (none: a single value) and its group, in kernel order:

=========  =========================================================  =====================================
group      what                                                       who provides it
=========  =========================================================  =====================================
model      the robot: per-dof arrays ``[nb]`` and gravity             `Executor.set_model`, once per worker
sets       the request's parameter sets ``[nset, ...]``               the request
worlds     each world's set, command stream and state ``[nworld]``    the request, sliced per worker
streams    command streams ``[nstream, nstep, nb]``                   the request
options    scalar options of one launch                               `Executor.run`, per chunk of steps
outputs    per-world results ``[nworld, ...]``                        the request, sliced per worker
scratch    the generic kernel's per-world scratch ``[nworld, ...]``   `Executor`, kept warm
=========  =========================================================  =====================================

Derived from it: the Warp signature of both kernels (`signature` attaches it to a kernel body written
without parameters, the way newton's kernel factories close over types), the compute layer's tables (per
model / per request / per world arrays, Warp dtypes, scratch shapes, what is copied back) and the launch's
argument list, built by name (`launch_inputs`). Axes name sizes: ``dof`` (nb), ``slot`` (nb + 1: the bodies
and the world), ``set``, ``world``, ``stream``, ``step`` (command samples), ``record`` (recorded samples).
Warp is imported only by the functions that need its types.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from .. import TwinExtError

__all__ = [
    "ROLLOUT_ARGS",
    "BY_NAME",
    "KernelArg",
    "KernelArgumentError",
    "names",
    "dtypes",
    "warp_type",
    "signature",
    "launch_inputs",
]

# groups, in kernel order
MODEL = "model"
SETS = "sets"
WORLDS = "worlds"
STREAMS = "streams"
OPTIONS = "options"
OUTPUTS = "outputs"
SCRATCH = "scratch"
GROUPS = (MODEL, SETS, WORLDS, STREAMS, OPTIONS, OUTPUTS, SCRATCH)

# kinds
INT32 = "int32"
SCALAR = "scalar"
VEC3 = "vec3"
MAT33 = "mat33"
COMPONENTS = {INT32: 1, SCALAR: 1, VEC3: 3, MAT33: 9}
"""Numbers per element of each kind (the trailing NumPy axes of a vec3 / mat33 array are (3,) / (3, 3))."""

# what the kernel does with an argument
IN, INOUT, OUT = "in", "inout", "out"

AXES = ("dof", "slot", "set", "world", "stream", "step", "record")


class KernelArgumentError(TwinExtError, TypeError):
    """A launch's arguments do not match `ROLLOUT_ARGS` (the message names the arguments)."""


@dataclass(frozen=True)
class KernelArg:
    """One argument of the rollout kernel."""

    name: str
    kind: str  # INT32 | SCALAR | VEC3 | MAT33
    axes: tuple[str, ...]  # () for a value, else one name per array axis (AXES)
    group: str  # GROUPS
    io: str = IN  # IN | INOUT | OUT

    def __post_init__(self) -> None:
        if self.kind not in COMPONENTS or self.group not in GROUPS or self.io not in (IN, INOUT, OUT):
            raise ValueError(f"kernel argument {self.name}: bad kind, group or io {self}")
        if any(axis not in AXES for axis in self.axes):
            raise ValueError(f"kernel argument {self.name}: unknown axis in {self.axes} (known: {AXES})")

    @property
    def ndim(self) -> int:
        """Array dimensionality (0: a value)."""
        return len(self.axes)


def _args(group: str, io: str, *specs: tuple[str, str, tuple[str, ...]]) -> tuple[KernelArg, ...]:
    return tuple(KernelArg(name, kind, axes, group, io) for name, kind, axes in specs)


_DOF = ("dof",)
_SET_DOF = ("set", "dof")
_WORLD_DOF = ("world", "dof")
_WORLD_REC = ("world", "record", "dof")
_STREAM = ("stream", "step", "dof")
_SLOT = ("world", "slot")

ROLLOUT_ARGS: tuple[KernelArg, ...] = (
    # Model: one robot; parent_slot is the parent or nb (the world) for roots
    *_args(
        MODEL,
        IN,
        ("parent", INT32, _DOF),
        ("parent_slot", INT32, _DOF),
        ("joint_type", INT32, _DOF),
        ("parent_rot", MAT33, _DOF),
        ("parent_pos", VEC3, _DOF),
        ("gravity", VEC3, ()),
        ("lower", SCALAR, _DOF),
        ("upper", SCALAR, _DOF),
        ("vel_limit", SCALAR, _DOF),
        ("effort_limit", SCALAR, _DOF),
        ("armature", SCALAR, _DOF),
        ("pos_tol", SCALAR, _DOF),
        ("vel_tol", SCALAR, _DOF),
    ),
    # Parameter sets: one per variant and sample
    *_args(
        SETS,
        IN,
        ("set_mass", SCALAR, _SET_DOF),
        ("set_moment", VEC3, _SET_DOF),
        ("set_inertia", MAT33, _SET_DOF),
        ("set_kp", SCALAR, _SET_DOF),
        ("set_kd", SCALAR, _SET_DOF),
        ("set_damping", SCALAR, _SET_DOF),
        ("set_friction", SCALAR, _SET_DOF),
        ("set_latency", INT32, ("set",)),
        ("set_gravcomp", INT32, ("set",)),
        ("set_gc_mass", SCALAR, _SET_DOF),
        ("set_gc_moment", VEC3, _SET_DOF),
        ("set_wrench_body", INT32, ("set",)),
        ("set_wrench_point", VEC3, ("set",)),
        ("set_wrench_force", VEC3, ("set",)),
        ("set_wrench_torque", VEC3, ("set",)),
        ("set_wrench_begin", INT32, ("set",)),
        ("set_wrench_end", INT32, ("set",)),
    ),
    # Worlds: which set and command stream each world runs
    *_args(WORLDS, IN, ("world_set", INT32, ("world",)), ("world_stream", INT32, ("world",))),
    # Worlds: the state, integrated in place
    *_args(WORLDS, INOUT, ("q", SCALAR, _WORLD_DOF), ("qd", SCALAR, _WORLD_DOF)),
    # Command streams
    *_args(STREAMS, IN, ("target_q", SCALAR, _STREAM), ("target_qd", SCALAR, _STREAM)),
    # Options
    *_args(
        OPTIONS,
        IN,
        ("use_target_qd", INT32, ()),
        ("mode", INT32, ()),
        ("dt", SCALAR, ()),
        ("step_begin", INT32, ()),
        ("step_end", INT32, ()),
        ("record_every", INT32, ()),
        ("friction_eps", SCALAR, ()),
        ("limit_omega", SCALAR, ()),
        ("limit_active", INT32, ()),
        ("drive_implicit_saturated", INT32, ()),
        ("eff_min_steps", INT32, ()),
    ),
    # Outputs: recorded samples, verdict accumulators (updated across chunks), evaluation results
    *_args(
        OUTPUTS,
        OUT,
        ("out_q", SCALAR, _WORLD_REC),
        ("out_qd", SCALAR, _WORLD_REC),
        ("out_tau", SCALAR, _WORLD_REC),
        ("first_pos", INT32, _WORLD_DOF),
        ("first_vel", INT32, _WORLD_DOF),
        ("first_eff", INT32, _WORLD_DOF),
        ("max_track", SCALAR, _WORLD_DOF),
        ("min_pos_margin", SCALAR, _WORLD_DOF),
        ("min_vel_margin", SCALAR, _WORLD_DOF),
        ("min_eff_margin", SCALAR, _WORLD_DOF),
        ("diverged", INT32, ("world",)),
        ("eval_qdd", SCALAR, _WORLD_DOF),
        ("eval_bias", SCALAR, _WORLD_DOF),
        ("eval_mass", SCALAR, ("world", "dof", "dof")),
    ),
    # Scratch of the generic kernel (the specialised one keeps these in registers and ignores them)
    *_args(
        SCRATCH,
        INOUT,
        ("s_rot", MAT33, _SLOT),
        ("s_pos", VEC3, _SLOT),
        ("s_axis", VEC3, _SLOT),
        ("s_mom", VEC3, _SLOT),
        ("s_vw", VEC3, _SLOT),
        ("s_vv", VEC3, _SLOT),
        ("s_aw", VEC3, _SLOT),
        ("s_av", VEC3, _SLOT),
        ("s_fn", VEC3, _SLOT),
        ("s_ff", VEC3, _SLOT),
        ("s_cm", SCALAR, _SLOT),
        ("s_ch", VEC3, _SLOT),
        ("s_ci", MAT33, _SLOT),
        ("s_rhs", SCALAR, _SLOT),
        ("s_tau", SCALAR, _SLOT),
        ("s_gq", SCALAR, _SLOT),
        ("s_gm", SCALAR, _SLOT),
        ("s_gh", VEC3, _SLOT),
        ("s_h", SCALAR, ("world", "dof", "dof")),
    ),
)
"""Every argument of the rollout kernel, in kernel order (both kernels have exactly this signature)."""

BY_NAME: dict[str, KernelArg] = {a.name: a for a in ROLLOUT_ARGS}
_NAMES = tuple(BY_NAME)
if len(_NAMES) != len(ROLLOUT_ARGS) or [a.group for a in ROLLOUT_ARGS] != sorted(
    (a.group for a in ROLLOUT_ARGS), key=GROUPS.index
):
    raise AssertionError("ROLLOUT_ARGS: names must be unique and groups contiguous, in GROUPS order")


def names(*groups: str) -> tuple[str, ...]:
    """Names of the arguments in ``groups``, in kernel order."""
    unknown = set(groups) - set(GROUPS)
    if unknown:
        raise ValueError(f"unknown argument group(s) {sorted(unknown)}; the groups are {GROUPS}")
    return tuple(a.name for a in ROLLOUT_ARGS if a.group in groups)


@functools.cache
def dtypes(precision: str) -> dict[str, object]:
    """Warp element type of each kind for ``precision`` ("float32" | "float64")."""
    if precision not in ("float32", "float64"):
        raise ValueError(f"precision must be 'float32' or 'float64', got {precision!r}")
    import warp as wp

    scalar = wp.float64 if precision == "float64" else wp.float32
    return {
        INT32: wp.int32,
        SCALAR: scalar,
        VEC3: wp.types.vector(3, scalar),
        MAT33: wp.types.matrix((3, 3), scalar),
    }


def warp_type(arg: KernelArg, precision: str):
    """The Warp annotation of ``arg``: its element type, or an array of it with ``arg.ndim`` dimensions."""
    import warp as wp

    dtype = dtypes(precision)[arg.kind]
    return wp.array(dtype=dtype, ndim=arg.ndim) if arg.ndim else dtype


def signature(precision: str) -> Callable[[Callable], Callable]:
    """Decorator giving a kernel body written without parameters the parameters of `ROLLOUT_ARGS`.

    Put it under ``@wp.kernel``; Warp reads the parameters from the function's annotations. The body refers
    to the arguments by name, so none of them may also be a global or closure variable of the body.
    """
    annotations = {a.name: warp_type(a, precision) for a in ROLLOUT_ARGS}
    parameters = [
        inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=t)
        for name, t in annotations.items()
    ]

    def attach(func: Callable) -> Callable:
        code = func.__code__
        if code.co_argcount or code.co_kwonlyargcount or code.co_flags & (inspect.CO_VARARGS | inspect.CO_VARKEYWORDS):
            raise TypeError(
                f"{func.__qualname__}: write the kernel body without parameters (they come from ROLLOUT_ARGS)"
            )
        shadowed = sorted(set(code.co_freevars) & set(annotations) | set(func.__globals__) & set(annotations))
        if shadowed:
            raise TypeError(f"{func.__qualname__}: kernel argument(s) {shadowed} are also closure or global names")
        func.__annotations__ = dict(annotations)
        func.__signature__ = inspect.Signature(parameters)
        return func

    return attach


def launch_inputs(values: Mapping[str, object]) -> list:
    """The launch's ``inputs=`` list: ``values[name]`` for every argument, in kernel order.

    Raises:
        KernelArgumentError: an argument is missing or ``values`` has a name the kernel does not take.
    """
    if len(values) == len(_NAMES):
        try:
            return [values[name] for name in _NAMES]
        except KeyError:
            pass
    missing = [name for name in _NAMES if name not in values]
    unknown = sorted(name for name in values if name not in BY_NAME)
    parts = ([f"missing {missing}"] if missing else []) + ([f"unknown {unknown}"] if unknown else [])
    raise KernelArgumentError(
        f"rollout kernel launch: {', '.join(parts)} argument(s) (the arguments are "
        "twin_ext.whatif._kernel_args.ROLLOUT_ARGS)"
    )
