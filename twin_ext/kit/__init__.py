# SPDX-License-Identifier: Apache-2.0
"""The Kit skin: the omni.ext.IExt, the adapters that touch omni.* and the panels' view-models.

Kit imports this package through the second ``[[python.module]]`` entry of extension.toml and finds
`TwinExtension` in it. Outside Kit (plain Python) only the plain-Python parts are importable —
`twin_ext.kit.controller`, `twin_ext.kit.viewmodels`, `twin_ext.kit.dof_mapping` — which is how they are
tested without Kit.
"""

try:  # inside Kit
    import omni.ext  # noqa: F401
except ImportError:  # plain Python: no extension class here
    __all__: list[str] = []
else:
    from .extension import TwinExtension, get_extension

    __all__ = ["TwinExtension", "get_extension"]
