"""Headless Chromium for the browser tests: the system chromium and chromedriver, offline.

Selenium gets the driver's path, so Selenium Manager never downloads a driver; SE_OFFLINE
makes sure it does not try. Set RECLOOP_SCREENSHOTS=docs/img to also write the screenshots
there (the README's pictures are made this way).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service

from tests.support import ROOT, require_tool

CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",  # Chromium refuses to run as root with its sandbox
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1800",
)


@contextmanager
def chromium(profile: Path) -> Iterator[webdriver.Chrome]:
    """A headless Chromium with a fresh profile in `profile`, keeping the console log."""
    binary = require_tool("chromium")
    driver_path = require_tool("chromedriver")
    os.environ["SE_OFFLINE"] = "true"
    options = Options()
    options.binary_location = binary
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(driver_path))
    try:
        yield driver
    finally:
        driver.quit()


def console_errors(driver: webdriver.Chrome) -> list[dict[str, Any]]:
    """The browser console's errors since the last call."""
    return [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def chart_points(driver: webdriver.Chrome) -> dict[str, int]:
    """Drawn data points per chart (charts.js keeps them in data-points), with a canvas each."""
    return driver.execute_script(
        "var out = {}; document.querySelectorAll('.chart').forEach(function (c) {"
        "  if (c.querySelector('canvas')) out[c.id] = +c.getAttribute('data-points'); });"
        "return out;"
    )


def axis_ticks(driver: webdriver.Chrome) -> dict[str, dict[str, list[str]]]:
    """The tick labels each chart drew on its x and y axes (charts.js records them)."""
    return driver.execute_script(
        "var out = {}; document.querySelectorAll('.chart').forEach(function (c) {"
        "  out[c.id] = {x: (c.getAttribute('data-x-ticks') || '').split('|'),"
        "               y: (c.getAttribute('data-y-ticks') || '').split('|')}; });"
        "return out;"
    )


def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll `predicate` until it returns something truthy; fail naming `what`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def screenshot(driver: webdriver.Chrome, tmp_path: Path, name: str) -> Path:
    """Save a PNG of the page into `tmp_path` (and into $RECLOOP_SCREENSHOTS when set)."""
    path = tmp_path / f"{name}.png"
    assert driver.save_screenshot(str(path)), f"no screenshot {path}"
    if target := os.environ.get("RECLOOP_SCREENSHOTS"):
        out = ROOT / target
        out.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, out / path.name)
    return path
