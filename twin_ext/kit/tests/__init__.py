# SPDX-License-Identifier: Apache-2.0
"""Tests for Kit's own runner (omni.kit.test), registered under [[test]] in extension.toml.

They need omni.kit.test, which ships with Kit/Isaac Sim but is not installable here; the same behaviour is
checked under pytest by booting the bare Kit kernel (tests/test_kit_extension.py).
"""

from .test_extension import *  # noqa: F401,F403
