"""Browser tests: headless Chromium (Debian's ``/usr/bin/chromium``) driven by Playwright against a
real stack. Screenshots of every page visited go to ``tests/artifacts/screenshots`` for people to
look at. Without Chromium these tests skip, except under ``CI=true``, where they fail."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright

from tests.support.stack import Stack, start_stack

CHROMIUM = os.environ.get("WEIR_TEST_CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parents[1] / "artifacts" / "screenshots"


def _require_chromium() -> None:
    if shutil.which(CHROMIUM) is None and not Path(CHROMIUM).exists():
        message = f"Chromium is not at {CHROMIUM}: `apt-get install chromium` (CI installs it)."
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    _require_chromium()
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
        )
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def ui_stack(tmp_path: Path) -> AsyncIterator[Stack]:
    """The stack the browser talks to: PostgreSQL and RabbitMQ, as in production."""
    async with start_stack("postgres", tmp_path) as stack:
        yield stack


async def new_page(browser: Browser, stack: Stack, *, dark: bool = False) -> Page:
    context = await browser.new_context(
        base_url=stack.settings.api_url,
        color_scheme="dark" if dark else "light",
        viewport={"width": 1280, "height": 800},
    )
    context.set_default_timeout(10_000)
    return await context.new_page()


async def sign_in(
    page: Page, stack: Stack, username: str = "admin", password: str | None = None
) -> None:
    """Sign in through the login form, as a person would."""
    if password is None:
        secret = stack.settings.bootstrap_admin_password
        assert secret is not None
        password = secret.get_secret_value()
    await page.goto("/")
    await page.get_by_label("Username").fill(username)
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Sign in").click()


async def screenshot(page: Page, name: str) -> Path:
    """Save a full-page screenshot as a test artefact."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{re.sub(r'[^A-Za-z0-9_.-]+', '-', name)}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path
