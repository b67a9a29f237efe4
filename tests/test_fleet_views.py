# SPDX-License-Identifier: Apache-2.0
"""Fleet views: the Kit ``Fleet`` window's view-model, and the read-only web page in a real headless Chromium."""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import threading
import time
import urllib.error
import urllib.request

import pytest

from twin_ext.fleet import FleetRow
from twin_ext.kit.fleet_viewmodel import FleetPanelViewModel


def _row(rid: str, health: str = "ok", rate: float = 200.0, wear: float = math.nan, rejected: int = 0) -> FleetRow:
    return FleetRow(rid, health, "ok", True, rate, 2.0, 30.0, "", wear, 100, rejected, 0, 0, "[robot] usd", "")


def test_fleet_view_model_sorts_marks_the_column_and_clicks_through():
    """Worst health first by default; a header click sorts by it (again: reversed); a row click selects the robot
    and tells the telemetry panel; NaN wear sorts last."""
    rows = [_row("a", wear=1.1), _row("b", "lost", rejected=9), _row("c", "stale", wear=1.6), _row("d")]
    selected = []
    vm = FleetPanelViewModel(lambda: rows, on_select=selected.append)
    assert [c.robot_id for c in vm.table()] == ["b", "c", "a", "d"]
    assert [c.level for c in vm.table()] == [2, 1, 0, 0]
    vm.sort_by("wear")
    assert [c.robot_id for c in vm.table()] == ["c", "a", "b", "d"] and vm.headers()[6] == "wear ▼"
    vm.sort_by("wear")
    assert [c.robot_id for c in vm.table()][:2] == ["a", "c"] and vm.headers()[6] == "wear ▲"
    vm.sort_by("rejected")
    assert vm.table()[0].texts[7] == "9"
    vm.click("c")
    assert selected == ["c"] and [c.selected for c in vm.table() if c.robot_id == "c"] == [True]
    assert vm.summary() == "4 robots — ok 2, stale 1, lost 1"
    with pytest.raises(ValueError, match="use one of"):
        vm.sort_by("colour")


def test_fleet_view_model_survives_a_failing_source():
    """A source that raises gives an empty table and says why, instead of breaking the window."""

    def broken():
        raise RuntimeError("session gone")

    vm = FleetPanelViewModel(broken)
    assert vm.table() == [] and "session gone" in vm.summary()


def _chromium() -> str:
    for path in (os.environ.get("CHROMIUM"), shutil.which("chromium"), shutil.which("chromium-browser")):
        if path and os.path.exists(path):
            return path
    message = "Chromium is not installed: `apt-get install -y chromium` (playwright's own download is not reachable)"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message)
    pytest.skip(message)


def test_fleet_web_page_lists_every_robot_in_headless_chromium(mosquitto_broker, tmp_path):
    """A real fleet (3 robots, one sending garbage) on the read-only page: Chromium shows a row per robot, sorts by
    a clicked column, shows a robot's details on a click; POST is refused; the screenshot path is printed."""
    sync_api = pytest.importorskip("playwright.sync_api")
    chromium = _chromium()
    from twin_ext.emulator import LightFleet
    from twin_ext.fleet import FleetSession, FleetWebServer
    from twin_ext.live import load_config
    from twin_ext.robot import default_robot_path, load_robot

    panda = load_robot(default_robot_path())
    config = load_config()
    config = dataclasses.replace(config, broker=dataclasses.replace(config.broker, url=mosquitto_broker.url))
    session = FleetSession(config, models={"franka_panda": panda})
    session.run_in_background()
    server = FleetWebServer(session)
    server.start()
    publisher = LightFleet(["cell-a", "cell-b", "cell-c"], panda, mosquitto_broker.url, rate_hz=100.0,
                           misbehave={"cell-b": "garbage"})  # fmt: skip
    thread = threading.Thread(target=publisher.run, args=(8.0,), daemon=True)
    try:
        assert session.link.wait_connected(10)
        thread.start()
        assert session.wait_for_robots(["cell-a", "cell-b", "cell-c"], 10)
        time.sleep(1.5)
        assert server.host == "127.0.0.1"
        with pytest.raises(urllib.error.HTTPError, match="405"):
            urllib.request.urlopen(urllib.request.Request(server.url + "api/fleet", data=b"{}", method="POST"))
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1200, "height": 500})
            page.goto(server.url)
            page.wait_for_function("document.querySelectorAll('#rows tr').length === 3", timeout=15000)
            assert page.inner_text("#summary").startswith("3 robots")
            page.click("th[data-k=rejected]")  # largest first: the garbage robot
            page.wait_for_function("document.querySelector('#rows tr').dataset.id === 'cell-b'", timeout=5000)
            page.click("#rows tr[data-id=cell-a]")
            page.wait_for_function("document.getElementById('detail').textContent.includes('clock_offset_ms')",
                                   timeout=5000)  # fmt: skip
            shot = tmp_path / "fleet_page.png"
            page.screenshot(path=str(shot), full_page=True)
            browser.close()
        assert shot.stat().st_size > 5000
        print(f"\nfleet page screenshot: {shot}")
    finally:
        publisher.stop()
        thread.join(10) if thread.is_alive() else None
        server.stop()
        session.stop()
