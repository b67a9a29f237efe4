# SPDX-License-Identifier: Apache-2.0
"""twin_ext inside a running Kit / Isaac Sim, for omni.kit.test (``./kit/omni.app.test_ext.sh twin_ext`` or
Isaac Sim's test runner)."""

import gc
import threading
import weakref

import omni.kit.app
import omni.kit.test

from .. import get_extension

__all__ = ["TestTwinExtension"]

EXT = "twin_ext"


class TestTwinExtension(omni.kit.test.AsyncTestCase):
    async def test_startup_loaded_the_configured_robot(self):
        """On startup the extension read its settings and loaded the robot through the core."""
        ext = get_extension()
        self.assertIsNotNone(ext)
        self.assertIsNone(ext.error, ext.error)
        self.assertGreater(ext.robot.ndof, 0)
        self.assertEqual(len(ext.robot.dof_names), ext.robot.ndof)

    async def test_disable_releases_the_robot_and_enable_loads_it_again(self):
        """Disabling frees the model and leaves no thread behind; enabling again reloads it."""
        app = omni.kit.app.get_app()
        manager = app.get_extension_manager()
        threads = {t.name for t in threading.enumerate()}
        robot_ref = weakref.ref(get_extension().robot)
        manager.set_extension_enabled_immediate(EXT, False)
        await app.next_update_async()
        gc.collect()
        self.assertIsNone(get_extension())
        self.assertIsNone(robot_ref())
        self.assertLessEqual({t.name for t in threading.enumerate()}, threads)
        manager.set_extension_enabled_immediate(EXT, True)
        await app.next_update_async()
        self.assertIsNotNone(get_extension().robot)
