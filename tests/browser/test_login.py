"""Signing in and out of the dashboard in a real browser, and what an anonymous visitor sees."""

from __future__ import annotations

from playwright.async_api import Browser, expect

from tests.browser.conftest import new_page, screenshot, sign_in
from tests.support.stack import Stack


async def test_sign_in_shows_the_dags_and_sign_out_leaves(
    browser: Browser, ui_stack: Stack
) -> None:
    ui_stack.write_dag(
        "hello.py",
        """
        from weir import dag, task

        @dag(tags=["demo"])
        def hello():
            @task
            def say() -> str:
                return "hi"

            say()

        hello()
        """,
    )
    await ui_stack.wait_for_dag("hello")
    page = await new_page(browser, ui_stack)

    await page.goto("/")
    await expect(page).to_have_url("/login?next=%2F")
    await screenshot(page, "login")

    await page.get_by_label("Username").fill("admin")
    await page.get_by_label("Password").fill("not the password")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("alert")).to_contain_text("wrong password")

    await sign_in(page, ui_stack)
    await expect(page.get_by_role("heading", name="DAGs")).to_be_visible()
    await expect(page.locator("#dag-table")).to_contain_text("hello")
    await screenshot(page, "dags")

    await page.get_by_role("button", name="Sign out").click()
    await expect(page).to_have_url("/login")
    await page.goto("/")
    await expect(page).to_have_url("/login?next=%2F")


async def test_a_new_dag_appears_live_without_a_reload(browser: Browser, ui_stack: Stack) -> None:
    page = await new_page(browser, ui_stack, dark=True)
    await sign_in(page, ui_stack)
    await expect(page.locator("#dag-table")).to_contain_text("No DAGs yet")

    ui_stack.write_dag(
        "later.py",
        """
        from weir import dag, task

        @dag
        def arrives_later():
            @task
            def only() -> None: ...

            only()

        arrives_later()
        """,
    )
    await expect(page.locator("#dag-table")).to_contain_text("arrives_later", timeout=15_000)
    await screenshot(page, "dags-dark-live")
