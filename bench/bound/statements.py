"""Every SQL statement of the minimal core: set-based, one round trip each, compare-and-set like
Weir's transitions (``WHERE id AND attempt AND state … RETURNING`` answers which items won).

Timestamps come from ``clock_timestamp()``, the moment the row is written, not the start of the
transaction, so a batch's rows carry their own times.
"""

from __future__ import annotations

__all__ = [
    "CREATE_RUN",
    "HOPS_MS",
    "LINK_CHAIN",
    "MARK_RUNNING",
    "MARK_SUCCESS_AND_QUEUE_DOWNSTREAM",
    "QUEUE_ROOTS",
    "TRIGGER",
]

CREATE_RUN = """
WITH new_run AS (INSERT INTO run DEFAULT VALUES RETURNING id)
INSERT INTO task (run_id, position)
SELECT new_run.id, position FROM new_run, generate_series(1, $1::integer) AS position
RETURNING run_id
"""
"""A run of ``$1`` tasks, none of them queued (setting up a measured run, not part of it)."""

LINK_CHAIN = """
UPDATE task AS downstream SET upstream_id = upstream.id
FROM task AS upstream
WHERE downstream.run_id = $1 AND upstream.run_id = $1
  AND upstream.position = downstream.position - 1
"""
"""Make run ``$1`` a chain: each task waits for the one before it."""

QUEUE_ROOTS = """
UPDATE task SET state = 'queued', attempt = attempt + 1, queued_at = clock_timestamp()
WHERE run_id = $1 AND state = 'none' AND upstream_id IS NULL
RETURNING id, attempt
"""
"""The scheduler's pass over a new run: every task that is ready, queued in one statement."""

TRIGGER = """
WITH new_run AS (INSERT INTO run DEFAULT VALUES RETURNING id)
INSERT INTO task (run_id, position, state, attempt, queued_at)
SELECT id, 1, 'queued', 1, clock_timestamp() FROM new_run
RETURNING id, run_id, attempt
"""
"""A triggered one-task run: the run inserted and its task queued in the same statement."""

MARK_RUNNING = """
UPDATE task SET state = 'running', started_at = clock_timestamp()
FROM unnest($1::bigint[], $2::integer[]) AS claim (id, attempt)
WHERE task.id = claim.id AND task.attempt = claim.attempt AND task.state = 'queued'
RETURNING task.id, task.attempt
"""
"""Claim a batch of delivered attempts; a row comes back for each claim that won."""

MARK_SUCCESS_AND_QUEUE_DOWNSTREAM = """
WITH done AS (
    UPDATE task SET state = 'success', ended_at = clock_timestamp()
    FROM unnest($1::bigint[], $2::integer[]) AS finish (id, attempt)
    WHERE task.id = finish.id AND task.attempt = finish.attempt AND task.state = 'running'
    RETURNING task.id, task.run_id
), queued AS (
    UPDATE task AS downstream
    SET state = 'queued', attempt = downstream.attempt + 1, queued_at = clock_timestamp()
    FROM done
    WHERE downstream.upstream_id = done.id AND downstream.state = 'none'
    RETURNING downstream.id, downstream.attempt
)
SELECT true AS is_done, id, run_id, 0 AS attempt FROM done
UNION ALL
SELECT false, id, 0, attempt FROM queued
"""
"""Finish a batch of attempts and, in the same statement (so the same transaction), queue every
downstream whose upstream has just succeeded: the scheduler's reaction costs no extra round trip.
Rows with ``is_done`` are the finishes that won; the others are the attempts now to publish."""

HOPS_MS = """
SELECT extract(epoch FROM downstream.started_at - upstream.ended_at) * 1000.0 AS hop_ms
FROM task AS downstream JOIN task AS upstream ON upstream.id = downstream.upstream_id
WHERE downstream.run_id = $1
"""
"""Each hop of run ``$1``: the downstream's start minus its upstream's end, both server times."""
