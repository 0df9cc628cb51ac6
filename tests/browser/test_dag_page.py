"""The DAG page in a real browser: the grid's cells and their links, a run appearing live, the
graph's SVG nodes, tabs switched by htmx, the code tab; a screenshot of every tab (and one dark)."""

from __future__ import annotations

import re
from urllib.parse import quote

from playwright.async_api import Browser, expect

from tests.browser.conftest import new_page, screenshot, sign_in
from tests.support.stack import Stack

PIPELINE = """
    from weir import Param, Webhook, dag, get_current_context, task

    @dag(schedule="@daily", tags=["etl"], params={"fail": Param(False, type="boolean")},
         triggers=[Webhook("shop")])
    def pipeline():
        \"\"\"Loads the shop's orders every night.\"\"\"

        @task
        def extract() -> list[int]:
            return [1, 2, 3]

        @task
        def double(x: int) -> int:
            return 2 * x

        @task
        def load(values: list[int]) -> int:
            if get_current_context().params["fail"]:
                raise RuntimeError("asked to fail")
            return sum(values)

        @task
        def report(total: int) -> None:
            print(total)

        @task
        def audit() -> None:
            print("audited")

        rows = extract()
        report(load(double.expand(x=rows)))
        rows >> audit()

    pipeline()
"""


async def _pipeline_runs(stack: Stack) -> list[str]:
    stack.write_dag("pipeline.py", PIPELINE)
    await stack.wait_for_dag("pipeline")
    runs = []
    for fail in (False, True):
        run_id = await stack.trigger("pipeline", {"fail": fail})
        await stack.wait_for_run("pipeline", run_id)
        runs.append(run_id)
    return runs


async def test_grid_graph_and_code_of_a_dag(browser: Browser, ui_stack: Stack) -> None:
    succeeded, failed = await _pipeline_runs(ui_stack)
    page = await new_page(browser, ui_stack)
    await sign_in(page, ui_stack)
    await page.goto("/dags/pipeline")

    grid = page.locator("#dag-page-grid")
    load_row = grid.locator('tr[data-task-id="load"]')
    await expect(load_row.locator(f'td[data-run-id="{failed}"]')).to_have_attribute(
        "data-state", "failed"
    )
    await expect(grid.locator('tr[data-task-id="extract"] td[data-state="success"]')).to_have_count(
        3  # the two triggered runs and the scheduled one
    )
    await expect(grid.locator('tr[data-task-id="double"]')).to_contain_text("3/3")
    await screenshot(page, "dag-grid")

    # A run triggered now appears as a new column without a reload.
    third = await ui_stack.trigger("pipeline")
    await expect(grid.locator(f'th[data-run-id="{third}"]')).to_have_count(1, timeout=15_000)
    await expect(
        grid.locator(f'tr[data-task-id="report"] td[data-run-id="{third}"]')
    ).to_have_attribute("data-state", "success", timeout=30_000)

    await load_row.locator(f'td[data-run-id="{succeeded}"] a').click()
    await expect(page).to_have_url(
        re.compile(re.escape(f"/dags/pipeline/runs/{quote(succeeded, safe='')}/tasks/load") + "$")
    )

    await page.goto("/dags/pipeline")
    await page.get_by_role("link", name="Graph").click()
    await expect(page).to_have_url(re.compile(r"\?tab=graph$"))
    nodes = page.locator("svg.dag-page-svg .dag-page-node")
    await expect(nodes).to_have_count(5)
    await expect(page.locator('.dag-page-node[data-task-id="audit"]')).to_have_class(
        re.compile(r"\bs-success\b")
    )
    await expect(page.locator("svg .dag-page-edge")).to_have_count(4)
    await screenshot(page, "dag-graph")

    await page.get_by_label("Run").select_option(failed)
    await expect(page.locator('.dag-page-node[data-task-id="load"]')).to_have_class(
        re.compile(r"\bs-failed\b")
    )
    await expect(page.locator('.dag-page-node[data-task-id="report"]')).to_have_class(
        re.compile(r"\bs-upstream_failed\b")
    )

    await page.get_by_role("link", name="Runs").click()
    await expect(page.locator("#dag-page-runs tbody tr")).to_have_count(4)
    await screenshot(page, "dag-runs")

    await page.get_by_role("link", name="Details").click()
    await expect(page.locator("#dag-page-details")).to_contain_text("pipeline.shop")
    await screenshot(page, "dag-details")

    await page.get_by_role("link", name="Code").click()
    await expect(page.locator(".dag-page-source")).to_contain_text("def pipeline():")
    await screenshot(page, "dag-code")


async def test_graph_in_the_dark_theme(browser: Browser, ui_stack: Stack) -> None:
    await _pipeline_runs(ui_stack)
    page = await new_page(browser, ui_stack, dark=True)
    await sign_in(page, ui_stack)
    await page.goto("/dags/pipeline?tab=graph")
    await expect(page.locator("svg.dag-page-svg .dag-page-node")).to_have_count(5)
    await screenshot(page, "dag-graph-dark")
    await page.goto("/dags/pipeline")
    await expect(page.locator("#dag-page-grid tbody tr")).to_have_count(5)
    await screenshot(page, "dag-grid-dark")
