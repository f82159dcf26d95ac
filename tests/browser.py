"""A real Chromium for the page tests: Playwright for Python driving Debian's /usr/bin/chromium
(never a browser Playwright downloads). `launch()` is None when either is missing, and the tests
that need it skip with the reason."""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from typing import Iterator

CHROMIUM = next((p for p in ("/usr/bin/chromium", "/usr/bin/chromium-browser", shutil.which("chromium") or "")
                 if p and os.path.exists(p)), None)
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]


def missing() -> str | None:
    """Why there is no browser to test with, or None."""
    if CHROMIUM is None:
        return "chromium not installed (apt-get install -y chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright not installed (pip install playwright; the browser is Debian's chromium)"
    return None


@contextmanager
def chromium() -> Iterator[object]:
    """A headless Chromium, closed (its processes ended) on the way out."""
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


class Page:
    """A page that fails the test on any JavaScript dialog it did not expect (an injected
    alert(1) would be one) and on console errors, and accepts the confirmations it expects."""

    def __init__(self, browser, base_url: str, width: int = 1400, height: int = 1000):
        self.context = browser.new_context(base_url=base_url, viewport={"width": width, "height": height})
        # a loaded 2-core test machine runs the whole simulated line beside the browser: patience,
        # not a speed target (those are bench/ figures)
        self.context.set_default_timeout(120_000)
        self.context.set_default_navigation_timeout(120_000)
        self.page = self.context.new_page()
        self.unexpected_dialogs: list[str] = []
        self.confirms: list[str] = []
        self.errors: list[str] = []
        self.page.on("dialog", self._dialog)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))

    def _dialog(self, dialog) -> None:
        if dialog.type == "confirm":
            self.confirms.append(dialog.message)
            dialog.accept()
        else:
            self.unexpected_dialogs.append(f"{dialog.type}: {dialog.message}")
            dialog.dismiss()

    def close(self) -> None:
        self.context.close()
