"""A real headless Chromium (Debian's package) driven with Playwright's protocol client, for the
dashboard's tests. Playwright's own browser download is never used: the project installs Debian's
``chromium`` (``make test`` does it when it is missing)."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

REPO_ROOT = Path(__file__).resolve().parents[2]
# Screenshots of every page, kept after the run (CI artifacts; the docs show copies of them).
ARTIFACTS = Path(os.environ.get("FLIGHTDECK_TEST_ARTIFACTS", REPO_ROOT / "artifacts")) / "screenshots"
# As the probe of this machine runs it: no sandbox (root), and nothing that calls out to Google.
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
TOKEN_KEY = "flightdeck-token"


def chromium_path() -> str:
    found = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(found).exists():
        pytest.fail("Debian's chromium is not installed; `make test` installs it (apt-get install chromium)")
    return found


# Module-scoped: Playwright's sync API keeps an event loop running in this thread while it is open,
# and the asyncio tests of later modules need the thread's loop free.
@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium_path(), args=list(CHROMIUM_ARGS))
        yield launched
        launched.close()


@dataclass
class Tab:
    """A page and the JavaScript errors it raised (asserted empty at the end of a test: raising
    inside Playwright's event callback would tear down its connection instead)."""

    page: Page
    errors: list[str] = field(default_factory=list)


def open_tab(browser: Browser, *, token: str | None, width: int = 1280) -> Tab:
    """A fresh tab (its own session storage) that already holds ``token``, as if typed in once."""
    context = browser.new_context(viewport={"width": width, "height": 900})
    if token is not None:
        context.add_init_script(f"sessionStorage.setItem({json.dumps(TOKEN_KEY)}, {json.dumps(token)})")
    tab = Tab(context.new_page())
    tab.page.on("pageerror", lambda error: tab.errors.append(str(error)))
    return tab


def screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
