"""The Kit skin: the omni.ext.IExt and the adapters/views that only run inside Kit.

Everything here may import omni.*; nothing in the core imports this package. Kit imports it through the
second ``[[python.module]]`` entry of extension.toml and finds `TwinExtension` in it.
"""

from .extension import TwinExtension, get_extension

__all__ = ["TwinExtension", "get_extension"]
