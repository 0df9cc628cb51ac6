"""CLI commands that read or change state through the REST API, so they work against any Weir
(``--url`` and ``--token``, or ``WEIR_API_URL`` and ``WEIR_TOKEN``)."""

from __future__ import annotations

import json
import sys
import time
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from weir.terminal_text import printable

__all__ = [
    "DEFAULT_URL",
    "Token",
    "Url",
    "backfill",
    "call_api",
    "console",
    "dags_app",
    "errors",
    "runs_app",
    "tasks_app",
]

console = Console(soft_wrap=True)
errors = Console(stderr=True, soft_wrap=True)
dags_app = typer.Typer(help="List, trigger, pause and unpause DAGs.", no_args_is_help=True)
runs_app = typer.Typer(help="Inspect DAG runs.", no_args_is_help=True)
tasks_app = typer.Typer(help="Clear task instances and read their logs.", no_args_is_help=True)

Url = Annotated[str, typer.Option("--url", envvar="WEIR_API_URL", help="The Weir API to talk to.")]
Token = Annotated[
    str, typer.Option("--token", envvar="WEIR_TOKEN", help="An API token (weir tokens create).")
]
DEFAULT_URL = "http://127.0.0.1:8080"


def call_api(method: str, url: str, token: str, path: str, **kwargs: Any) -> Any:
    """Call the REST API; a transport or HTTP error becomes a one-line message and an exit code."""
    try:
        response = httpx.request(
            method, f"{url.rstrip('/')}{path}", headers={"Authorization": f"Bearer {token}"},
            timeout=30, **kwargs,
        )  # fmt: skip
    except httpx.TransportError as error:
        errors.print(f"[red]Cannot reach Weir at {url}: {error}.[/] Is `weir api` running? "
                      "Pass --url or set WEIR_API_URL.")  # fmt: skip
        raise typer.Exit(2) from error
    if response.status_code >= 400:
        try:
            detail = response.json().get("detail") or response.text
        except ValueError:
            detail = response.text
        errors.print(f"[red]{response.status_code}[/]: {detail}")
        raise typer.Exit(1)
    return response.json() if response.content else None


def _json_conf(conf: str) -> Any:
    try:
        return json.loads(conf)
    except json.JSONDecodeError as error:
        errors.print(f"[red]--conf is not valid JSON[/]: {error}. Example: --conf '{{\"n\": 3}}'")
        raise typer.Exit(2) from error


@dags_app.command("list")
def list_dags(url: Url = DEFAULT_URL, token: Token = "") -> None:
    """List every DAG with its schedule and whether it is paused."""
    body = call_api("GET", url, token, "/api/v1/dags")
    table = Table("DAG", "schedule", "paused", "active", "file")
    for d in body["dags"]:
        table.add_row(d["dag_id"], d["schedule"] or "manual", str(d["is_paused"]),
                      str(d["is_active"]), d["fileloc"])  # fmt: skip
    console.print(table)


@dags_app.command("trigger")
def trigger(
    dag_id: str,
    conf: Annotated[str, typer.Option(help="JSON object passed to the run.")] = "{}",
    run_id: Annotated[str | None, typer.Option(help="Name the run yourself.")] = None,
    url: Url = DEFAULT_URL,
    token: Token = "",
) -> None:
    """Start a run of DAG_ID now."""
    body: dict[str, Any] = {"conf": _json_conf(conf)}
    if run_id:
        body["run_id"] = run_id
    run = call_api("POST", url, token, f"/api/v1/dags/{dag_id}/runs", json=body)
    console.print(f"Triggered [bold]{dag_id}[/]: run [bold]{run['run_id']}[/] is {run['state']}.")


def _set_paused(dag_id: str, paused: bool, url: str, token: str) -> None:
    call_api("PATCH", url, token, f"/api/v1/dags/{dag_id}", json={"is_paused": paused})
    console.print(f"{dag_id} is now {'paused' if paused else 'unpaused'}.")


@dags_app.command("pause")
def pause(dag_id: str, url: Url = DEFAULT_URL, token: Token = "") -> None:
    """Pause DAG_ID: no new runs start until it is unpaused."""
    _set_paused(dag_id, True, url, token)


@dags_app.command("unpause")
def unpause(dag_id: str, url: Url = DEFAULT_URL, token: Token = "") -> None:
    """Unpause DAG_ID."""
    _set_paused(dag_id, False, url, token)


@runs_app.command("show")
def show_run(dag_id: str, run_id: str, url: Url = DEFAULT_URL, token: Token = "") -> None:
    """Show one run and the state of each of its tasks."""
    run = call_api("GET", url, token, f"/api/v1/dags/{dag_id}/runs/{run_id}")
    tasks = call_api("GET", url, token, f"/api/v1/dags/{dag_id}/runs/{run_id}/tasks")
    console.print(f"[bold]{dag_id}[/] run [bold]{run_id}[/]: {run['state']}")
    table = Table("task", "state", "attempt", "started", "ended")
    for t in tasks["task_instances"]:
        table.add_row(t["task_id"], t["state"], str(t["attempt"]), t["start_date"] or "",
                      t["end_date"] or "")  # fmt: skip
    console.print(table)


FINISHED_BACKFILL = ("completed", "cancelled")
START_HELP = "First logical date, ISO 8601 (2024-01-01); without an offset, in the DAG's timezone."


def backfill(
    dag_id: str,
    start: Annotated[str, typer.Option(help=START_HELP)],
    end: Annotated[str, typer.Option(help="Last logical date, included.")],
    max_active_runs: Annotated[int, typer.Option(help="How many of its runs may run at once.")] = 4,
    conf: Annotated[str, typer.Option(help="JSON object passed to every run.")] = "{}",
    wait: Annotated[bool, typer.Option(help="Show a progress bar until it ends.")] = True,
    url: Url = DEFAULT_URL,
    token: Token = "",
) -> None:
    """Run DAG_ID over a past range: one run per interval of its schedule that has none yet.

    Exits non-zero if a run failed or the backfill was cancelled. Interrupting the progress bar
    leaves the backfill running (pause or cancel it over REST: POST /api/v1/backfills/ID/cancel).
    """
    body = {"dag_id": dag_id, "start": start, "end": end, "max_active_runs": max_active_runs,
            "conf": _json_conf(conf)}  # fmt: skip
    created = call_api("POST", url, token, "/api/v1/backfills", json=body)
    progress = created["progress"]
    console.print(
        f"Backfill [bold]{created['id']}[/] of [bold]{dag_id}[/]: queued {progress['total']} "
        f"run(s); {created['skipped']} interval(s) already had one."
    )
    if not wait:
        return
    final = _follow(created, url, token)
    progress = final["progress"]
    console.print(f"Backfill {final['id']} {final['state']}: {progress['success']} succeeded, "
                  f"{progress['failed']} failed.")  # fmt: skip
    if progress["failed"] or final["state"] == "cancelled":
        raise typer.Exit(1)


def _follow(backfill: dict[str, Any], url: str, token: str, poll: float = 0.5) -> Any:
    """Poll the backfill (a client has no wake-up to wait on) and draw its progress."""
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[states]}"), TimeElapsedColumn())  # fmt: skip
    with Progress(*columns, console=console) as bar:
        task = bar.add_task(f"backfill {backfill['id']}", total=None, states="")
        while True:
            p = backfill["progress"]
            states = f"{p['running']} running, {p['queued']} queued, {p['failed']} failed"
            bar.update(task, total=p["total"], completed=p["success"] + p["failed"], states=states)
            if backfill["state"] in FINISHED_BACKFILL:
                return backfill
            time.sleep(poll)
            backfill = call_api("GET", url, token, f"/api/v1/backfills/{backfill['id']}")


@dags_app.command("show")
def show_dag(dag_id: str, url: Url = DEFAULT_URL, token: Token = "") -> None:
    """Show one DAG: its schedule, state, next run and latest runs."""
    dag = call_api("GET", url, token, f"/api/v1/dags/{dag_id}")
    runs = call_api("GET", url, token, f"/api/v1/dags/{dag_id}/runs", params={"limit": 5})
    paused = "paused" if dag["is_paused"] else "unpaused"
    console.print(f"[bold]{escape(dag_id)}[/] ({paused}{'' if dag['is_active'] else ', inactive'})"
                  f" from {escape(dag['fileloc'])}")  # fmt: skip
    console.print(f"schedule: {escape(dag['schedule'] or 'manual')}   tags: "
                  f"{escape(', '.join(dag['tags']) or '-')}   next run after: "
                  f"{dag['next_run_after'] or '-'}")  # fmt: skip
    if dag["description"]:
        console.print(escape(dag["description"]))
    console.print(f"{runs['total']} run(s); the latest:")
    console.print(_runs_table(runs["dag_runs"]))


def _runs_table(runs: list[dict[str, Any]]) -> Table:
    table = Table("run", "state", "type", "logical date", "started", "ended")
    for r in runs:
        table.add_row(escape(r["run_id"]), r["state"], r["run_type"], r["logical_date"],
                      r["start_date"] or "", r["end_date"] or "")  # fmt: skip
    return table


@runs_app.command("list")
def list_runs(
    dag_id: str,
    state: Annotated[
        list[str] | None, typer.Option(help="Only runs in this state (repeatable).")
    ] = None,
    limit: Annotated[int, typer.Option(help="How many, newest first.")] = 25,
    url: Url = DEFAULT_URL,
    token: Token = "",
) -> None:
    """List the runs of DAG_ID, newest first."""
    params: dict[str, Any] = {"limit": limit, "state": state or []}
    body = call_api("GET", url, token, f"/api/v1/dags/{dag_id}/runs", params=params)
    console.print(_runs_table(body["dag_runs"]))
    console.print(f"{len(body['dag_runs'])} of {body['total']} run(s).")


@tasks_app.command("clear")
def clear_task(
    dag_id: str,
    run_id: str,
    task_id: str,
    downstream: Annotated[bool, typer.Option(help="Clear every task after it too.")] = False,
    url: Url = DEFAULT_URL,
    token: Token = "",
) -> None:
    """Clear TASK_ID of a run so it runs again (as its next attempt, with its retries renewed)."""
    path = f"/api/v1/dags/{dag_id}/runs/{run_id}/tasks/{task_id}/clear"
    body = call_api("POST", url, token, path, json={"include_downstream": downstream})
    for change in body["task_instances"]:
        index = "" if change["map_index"] < 0 else f"[{change['map_index']}]"
        console.print(f"cleared {escape(change['task_id'])}{escape(index)} "
                      f"(was {change['previous_state']})")  # fmt: skip
    console.print(f"{body['total']} task instance(s) cleared; run {escape(run_id)} runs again.")


LIVE_TASK_STATES = ("none", "scheduled", "queued", "running", "up_for_retry", "up_for_reschedule")


@tasks_app.command("logs")
def task_logs(
    dag_id: str,
    run_id: str,
    task_id: str,
    attempt: Annotated[
        int | None, typer.Option(help="Which attempt (the latest by default).")
    ] = None,
    map_index: Annotated[int | None, typer.Option(help="Which instance of a mapped task.")] = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing until the task ends.")
    ] = False,
    poll: Annotated[float, typer.Option(help="Seconds between checks when following.")] = 1.0,
    raw: Annotated[
        bool, typer.Option(help="Print control characters as they are (for a file).")
    ] = False,
    url: Url = DEFAULT_URL,
    token: Token = "",
) -> None:
    """Print a task's log. With --follow, print what comes next as it comes (following the
    next attempts too, unless --attempt pins one) until the task ends. Control characters other
    than newline and tab are shown escaped (\\x1b…), so a log cannot drive your terminal."""
    path = f"/api/v1/dags/{dag_id}/runs/{run_id}/tasks/{task_id}"
    base: dict[str, Any] = {} if map_index is None else {"map_index": map_index}
    current, offset = attempt, 0
    while True:
        params = base | {"offset": offset} | ({} if current is None else {"attempt": current})
        piece = call_api("GET", url, token, f"{path}/logs", params=params)
        sys.stdout.write(piece["content"] if raw else printable(piece["content"]))
        sys.stdout.flush()
        current, offset = piece["attempt"], piece["next_offset"]
        if piece["content"]:
            continue  # more may be waiting beyond this page
        if not follow or (piece["complete"] and attempt is not None):
            return
        if piece["complete"]:
            instance = call_api("GET", url, token, path, params=base)
            if instance["attempt"] > current:
                current, offset = instance["attempt"], 0
                errors.print(f"--- attempt {current} ---")
                continue
            if instance["state"] not in LIVE_TASK_STATES:
                return
        time.sleep(poll)
