"""The headless Chromium the browser tests drive: Debian's chromium through Playwright."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.support.services import unavailable

CHROMIUM = "/usr/bin/chromium"


CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextmanager
def launched_chromium() -> Iterator[Any]:
    """A launched headless Chromium (Playwright's Browser), closed on exit.

    Without chromium or Playwright this skips on a developer machine and fails when
    KYM_REQUIRE_SERVICES=1.
    """
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("the playwright package")
    if not Path(CHROMIUM).exists():
        unavailable("chromium (apt-get install chromium)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


def signed_in_page(browser: Any, base: str, api_key: str) -> tuple[Any, list[str]]:
    """A desktop-sized page signed in to the console at `base` with `api_key`, and the list its
    console errors go to (a script the pages' CSP blocks would show up there)."""
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(f"{base}/console")
    page.fill("#api_key", api_key)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/console")
    return page, errors


def phone_of(browser: Any, page: Any) -> Any:
    """A phone-sized page with `page`'s cookies (signed in as `page` is)."""
    phone = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True)
    phone.context.add_cookies(page.context.cookies())
    return phone


def fits_a_phone(phone: Any, url: str, what: str, shot: Path) -> None:
    """Open `url` on `phone`: it must not scroll sideways; its screenshot goes to `shot`."""
    phone.goto(url)
    width = phone.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the {what} page scrolls sideways on a phone"
    phone.screenshot(path=str(shot), full_page=True)
