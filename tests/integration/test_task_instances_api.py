"""Task instances over REST, on both backends: list filters and sort keys with totals, one
instance with its attempts, logs tailed by byte offsets through multi-byte text, plain text on
request, and XComs."""

from __future__ import annotations

from typing import Any

from tests.support.stack import Stack

CHATTY = """
    from weir import dag, task

    @task(retries=1, retry_delay=0)
    def speak() -> dict:
        from weir import get_current_context
        attempt = get_current_context().attempt
        for i in range(40):
            print(f"{i} héllo wörld 🌍 attempt {attempt}")
        if attempt == 1:
            raise ValueError("first try fails")
        return {"said": 40}

    @task
    def listen(said: dict) -> int:
        return said["said"]

    @dag
    def chatty():
        listen(speak())

    chatty()
"""


def _url(run_id: str, tail: str = "") -> str:
    return f"/api/v1/dags/chatty/runs/{run_id}/tasks{tail}"


async def _finished_run(stack: Stack) -> str:
    stack.write_dag("chatty.py", CHATTY)
    await stack.wait_for_dag("chatty")
    run_id = await stack.trigger("chatty")
    assert await stack.wait_for_run("chatty", run_id) == "success"
    return run_id


async def _get(stack: Stack, path: str, **params: Any) -> Any:
    response = await stack.client.get(path, params=params)
    assert response.status_code == 200, response.text
    return response.json()


async def test_list_get_and_xcom(stack: Stack) -> None:
    run_id = await _finished_run(stack)
    listed = await _get(stack, _url(run_id), order_by="-task_id", limit=1)
    assert listed["total"] == 2
    assert [t["task_id"] for t in listed["task_instances"]] == ["speak"]
    assert (await _get(stack, _url(run_id), state="failed"))["total"] == 0
    assert (await _get(stack, _url(run_id), task_id="listen", map_index=-1))["total"] == 1
    bad = await stack.client.get(_url(run_id), params={"order_by": "worker"})
    assert bad.status_code == 422

    speak = await _get(stack, _url(run_id, "/speak"))
    assert (speak["state"], speak["attempt"]) == ("success", 2)
    assert [(a["attempt"], a["state"]) for a in speak["attempts"]] == [
        (1, "up_for_retry"),
        (2, "success"),
    ]
    assert "first try fails" in speak["attempts"][0]["error"]
    assert speak["attempts"][1]["worker"] and speak["attempts"][1]["end_date"]

    xcom = await _get(stack, _url(run_id, "/speak/xcom"))
    assert xcom == {"task_id": "speak", "map_index": -1, "value": {"said": 40}}
    missing = await stack.client.get(f"/api/v1/dags/chatty/runs/{run_id}/tasks/nope/xcom")
    assert missing.status_code == 404


async def test_logs_are_tailed_by_byte_offsets_without_splitting_characters(
    stack: Stack,
) -> None:
    run_id = await _finished_run(stack)
    whole = await _get(stack, _url(run_id, "/speak/logs"), attempt=1)
    assert whole["complete"] is True and whole["attempt"] == 1
    assert "39 héllo wörld 🌍 attempt 1" in whole["content"]
    size = len(whole["content"].encode())
    assert whole["next_offset"] == size

    pieces, offset = [], 0
    while True:
        piece = await _get(stack, _url(run_id, "/speak/logs"), attempt=1, offset=offset,
                           max_bytes=97)  # fmt: skip
        assert piece["offset"] == offset
        pieces.append(piece["content"])
        offset = piece["next_offset"]
        if piece["complete"]:
            break
    assert "".join(pieces) == whole["content"] and len(pieces) > 10

    emoji = whole["content"].encode().index("🌍".encode())
    inside = await _get(stack, _url(run_id, "/speak/logs"), attempt=1, offset=emoji + 2)
    assert inside["offset"] == emoji and inside["content"].startswith("🌍")

    latest = await _get(stack, _url(run_id, "/speak/logs"))
    assert latest["attempt"] == 2 and "attempt 2" in latest["content"]
    text = await stack.client.get(_url(run_id, "/speak/logs"), params={"format": "text"})
    assert text.headers["content-type"].startswith("text/plain")
    assert text.text == latest["content"]
    assert text.headers["x-weir-log-complete"] == "true"
    plain = await stack.client.get(_url(run_id, "/speak/logs"), headers={"Accept": "text/plain"})
    assert plain.text == latest["content"]
    future = await stack.client.get(_url(run_id, "/speak/logs"), params={"attempt": 3})
    assert future.status_code == 404
