"""The DAGs page in a real browser: trigger a DAG through its params form (a wrong value first),
watch its squares turn green without a reload, pause it; screenshots light, dark and phone."""

from __future__ import annotations

from playwright.async_api import Browser, expect

from tests.browser.conftest import new_page, screenshot, sign_in
from tests.support.stack import Stack

DAG = """
from weir import Param, dag, task

@dag(tags=["demo", "etl"], owner="data-team",
     params={"count": Param(2, type="integer", minimum=1, description="how many rows"),
             "mode": Param("fast", enum=["fast", "safe"])})
def greet():
    @task
    def first() -> int:
        return 1

    @task
    def second(value: int) -> int:
        return value + 1

    second(first())

greet()

@dag(schedule="*/30 * * * *", tags=["reports"])
def half_hourly():
    @task
    def only() -> None: ...

    only()

half_hourly()
"""


async def test_trigger_with_params_watch_it_succeed_live_then_pause(
    browser: Browser, ui_stack: Stack
) -> None:
    ui_stack.write_dag("greet.py", DAG)
    await ui_stack.wait_for_dag("greet")
    await ui_stack.wait_for_dag("half_hourly")
    page = await new_page(browser, ui_stack)
    await sign_in(page, ui_stack)
    row = page.locator('#dag-table tr[data-dag-id="greet"]')
    await expect(row).to_contain_text("data-team")

    await row.get_by_role("button", name="Trigger greet").click()
    dialog = page.get_by_role("dialog")
    await expect(dialog).to_be_visible()
    await dialog.get_by_label("count").fill("0")
    await dialog.get_by_role("button", name="Trigger run").click()
    await expect(dialog.get_by_role("alert")).to_contain_text("less than the minimum of 1")
    await screenshot(page, "dags-trigger-error")

    await dialog.get_by_label("count").fill("3")
    await dialog.get_by_label("mode").select_option("safe")
    await dialog.get_by_role("button", name="Trigger run").click()
    await expect(dialog).to_be_hidden()
    await expect(page.locator("#toasts")).to_contain_text("Run started")
    await expect(row.locator(".runs .sq.s-success")).to_have_count(1, timeout=30_000)
    runs = (await ui_stack.client.get("/api/v1/dags/greet/runs")).json()["dag_runs"]
    assert [run["conf"] for run in runs] == [{"count": 3, "mode": "safe"}]
    await screenshot(page, "dags-after-run")

    switch = row.get_by_role("button", name="Pause greet")
    await expect(switch).to_have_attribute("aria-pressed", "false")
    await switch.click()
    await expect(switch).to_have_attribute("aria-pressed", "true")
    assert (await ui_stack.client.get("/api/v1/dags/greet")).json()["is_paused"] is True

    await page.get_by_label("Name").fill("half")
    await expect(page.locator("#dag-table tbody tr")).to_have_count(1)
    await expect(page).to_have_url("/?q=half&tag=&state=")
    await page.get_by_label("Name").fill("")
    await expect(page.locator("#dag-table tbody tr")).to_have_count(2)
    await screenshot(page, "dags-light")

    dark = await new_page(browser, ui_stack, dark=True)
    await sign_in(dark, ui_stack)
    await expect(dark.locator("#dag-table")).to_contain_text("greet")
    await screenshot(dark, "dags-dark")

    phone_context = await browser.new_context(
        base_url=ui_stack.settings.api_url, viewport={"width": 390, "height": 844}
    )
    phone = await phone_context.new_page()
    await sign_in(phone, ui_stack)
    await expect(phone.locator("#dag-table")).to_contain_text("greet")
    await screenshot(phone, "dags-phone")
