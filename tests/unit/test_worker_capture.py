"""The worker's own notes in a task's log read like the records captured from the task."""

from __future__ import annotations

import logging
import re

from workers.capture import LOG_FORMAT, log_line

STAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}"


def test_a_worker_note_has_the_format_of_a_captured_record() -> None:
    record = logging.makeLogRecord({"name": "weir.worker", "levelno": 40, "levelname": "ERROR"})
    record.msg = "Task failed:\nTraceback"
    captured = logging.Formatter(LOG_FORMAT).format(record) + "\n"

    note = log_line(logging.ERROR, "Task failed:\nTraceback")

    assert re.fullmatch(rf"\[{STAMP}\] ERROR weir.worker: Task failed:\nTraceback\n", note)
    assert re.sub(STAMP, "", note) == re.sub(STAMP, "", captured)
