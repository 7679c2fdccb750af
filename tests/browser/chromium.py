"""Headless Chromium (Debian's ``chromium`` and ``chromium-driver``) through Selenium, with
the browser's console log readable; nothing is downloaded (the driver's path is given)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
DRIVER = Path("/usr/bin/chromedriver")


def available() -> bool:
    return CHROMIUM.is_file() and DRIVER.is_file()


@contextmanager
def chromium(profile: Path) -> Iterator[object]:
    """A fresh browser with its own profile folder; skips when Chromium is not installed
    (CI installs it: .ci/run)."""
    if not available():
        pytest.skip("needs Debian's chromium and chromium-driver (apt-get install)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--window-size=1280,1000", "--no-first-run", "--disable-extensions",
        "--disable-background-networking", "--disable-component-update",
        f"--user-data-dir={profile}", "--proxy-server=direct://", "--proxy-bypass-list=*",
    ):  # fmt: skip
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(DRIVER)), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
