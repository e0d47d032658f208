"""Headless Chromium for the tests that look at a page (kiosk dashboard, docs site, analyze report)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from typing import Any

import pytest


def headless_chromium(name: str, window: str, extra_args: Sequence[str] = ()) -> Any:
    """A selenium-driven headless Chromium with no background networking, or skip saying what is missing.

    Args:
        name: Prefix of its temporary profile folder.
        window: ``--window-size`` value, e.g. ``"1280,800"``.
        extra_args: More command-line switches (e.g. a dead proxy, so nothing outside loopback loads).
    """
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("selenium is not installed (pip install selenium)")
    if chromium is None or driver is None:
        pytest.skip("headless Chromium test needs the Debian packages chromium and chromium-driver")
    o = webdriver.ChromeOptions()
    o.binary_location = chromium
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
              "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
              "--disable-dev-shm-usage", f"--user-data-dir={tempfile.mkdtemp(prefix=f'{name}-chrome-')}",
              *extra_args, f"--window-size={window}"):
        o.add_argument(a)
    return webdriver.Chrome(service=Service(driver), options=o)
