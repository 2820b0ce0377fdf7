"""Headless Debian Chromium for the UI tests, driven by Playwright (its own browser download does not work here)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.conftest import missing_tool

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-background-networking", "--disable-gpu"]


def require_chromium() -> None:
    """Skip (or fail, with REQUIRE_SERVICES=1) when Playwright or the browser is missing."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:  # pragma: no cover - depends on the machine
        missing_tool("playwright is not installed")
    if not Path(CHROMIUM).exists():
        missing_tool("Debian chromium is not installed (make system-deps)")


@contextmanager
def chromium() -> Iterator[Any]:
    """A launched browser (Playwright's Browser), closed on the way out."""
    from playwright.sync_api import sync_playwright

    require_chromium()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
