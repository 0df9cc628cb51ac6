"""The run and task-instance pages in a real browser: a failed task's log, a retry from the
dashboard that turns the page green live, and a running task's log lines arriving as it prints."""

from __future__ import annotations

from playwright.async_api import Browser, Page, expect

from tests.browser.conftest import new_page, screenshot, sign_in
from tests.support.stack import Stack

FLAKY = """
    from pathlib import Path
    from weir import dag, task

    READY = Path(__file__).with_name("ready.txt")

    @dag(params={"rows": 3})
    def flaky():
        @task
        def extract() -> list[int]:
            return [1, 2, 3]

        @task
        def load(rows: list[int]) -> int:
            print(f"loading {len(rows)} rows")
            if not READY.exists():
                raise RuntimeError("the warehouse is not ready")
            return sum(rows)

        load(extract())

    flaky()
"""

CHATTY = """
    import time
    from pathlib import Path
    from weir import dag, task

    GO = Path(__file__).with_name("go.txt")

    @dag
    def chatty():
        @task
        def talk() -> None:
            print("warming up", flush=True)
            while not GO.exists():
                time.sleep(0.05)
            print("all done", flush=True)

        talk()

    chatty()
"""


async def _signed_in_page(browser: Browser, stack: Stack, *, dark: bool = False) -> Page:
    page = await new_page(browser, stack, dark=dark)
    await sign_in(page, stack)
    await page.wait_for_url(lambda url: "/login" not in url)
    return page


async def test_open_a_failed_tasks_log_and_retry_it(browser: Browser, ui_stack: Stack) -> None:
    path = ui_stack.write_dag("flaky.py", FLAKY)
    await ui_stack.wait_for_dag("flaky")
    run_id = await ui_stack.trigger("flaky", {"rows": 5})
    assert await ui_stack.wait_for_run("flaky", run_id) == "failed"
    page = await _signed_in_page(browser, ui_stack)

    await page.goto(f"/dags/flaky/runs/{run_id}")
    summary = page.locator("#run-summary")
    await expect(summary.locator(".state.s-failed")).to_have_text("failed")
    await expect(page.locator("#run-gantt .gantt-bar.s-failed")).to_have_count(1)
    await screenshot(page, "run-failed")

    await page.locator("#run-tasks").get_by_role("link", name="load").click()
    log = page.get_by_label("Log of attempt 1", exact=True)
    await expect(log).to_contain_text("loading 3 rows")  # streamed in over the log's SSE
    await expect(log).to_contain_text("RuntimeError: the warehouse is not ready")
    await expect(page.locator(".log-status")).to_contain_text("Attempt 1 has ended")
    await screenshot(page, "task-instance-failed")

    path.with_name("ready.txt").write_text("ready")
    await page.get_by_role("button", name="Clear", exact=True).click()
    await expect(page.locator("#toasts")).to_contain_text("Cleared")
    await expect(page.locator("#ti-summary .state.s-success")).to_be_visible(timeout=20_000)
    await expect(page.get_by_role("link", name="Attempt 2", exact=True)).to_be_visible()
    await expect(page.get_by_label("Log of attempt 2", exact=True)).to_contain_text(
        "loading 3 rows"
    )
    await expect(page.locator("#ti-value")).to_contain_text("6")
    await screenshot(page, "task-instance-retried")

    await page.goto(f"/dags/flaky/runs/{run_id}")
    await expect(summary.locator(".state.s-success")).to_be_visible()

    dark = await _signed_in_page(browser, ui_stack, dark=True)
    await dark.goto(f"/dags/flaky/runs/{run_id}")
    await expect(dark.locator("#run-gantt .gantt-bar.s-success")).to_have_count(2)
    await screenshot(dark, "run-dark")
    await dark.goto(f"/dags/flaky/runs/{run_id}/tasks/load?attempt=1")
    await expect(dark.get_by_label("Log of attempt 1", exact=True)).to_contain_text("not ready")
    await screenshot(dark, "task-instance-dark")

    phone_context = await browser.new_context(
        base_url=ui_stack.settings.api_url, viewport={"width": 390, "height": 844}
    )
    phone = await phone_context.new_page()
    await sign_in(phone, ui_stack)
    await phone.wait_for_url(lambda url: "/login" not in url)
    await phone.goto(f"/dags/flaky/runs/{run_id}")
    await expect(phone.locator("#run-summary .state.s-success")).to_be_visible()
    await screenshot(phone, "run-phone")
    await phone.goto(f"/dags/flaky/runs/{run_id}/tasks/load")
    await expect(phone.get_by_label("Log of attempt 2", exact=True)).to_contain_text("loading")
    await screenshot(phone, "task-instance-phone")


async def test_a_running_tasks_log_lines_appear_live(browser: Browser, ui_stack: Stack) -> None:
    path = ui_stack.write_dag("chatty.py", CHATTY)
    await ui_stack.wait_for_dag("chatty")
    run_id = await ui_stack.trigger("chatty")
    page = await _signed_in_page(browser, ui_stack)

    await page.goto(f"/dags/chatty/runs/{run_id}/tasks/talk")
    await expect(page.locator("#ti-summary .state.s-running")).to_be_visible(timeout=20_000)
    log = page.get_by_label("Log of attempt 1", exact=True)
    await expect(log).to_contain_text("warming up")
    await expect(log).not_to_contain_text("all done")
    await expect(page.locator(".log-status")).to_contain_text("Streaming")
    await screenshot(page, "task-instance-running")

    path.with_name("go.txt").write_text("go")
    await expect(log).to_contain_text("all done")
    await expect(page.locator(".log-status")).to_contain_text("Attempt 1 has ended")
    await expect(page.locator("#ti-summary .state.s-success")).to_be_visible()
    text = await log.inner_text()
    assert text.count("warming up") == 1  # appended, never repeated
