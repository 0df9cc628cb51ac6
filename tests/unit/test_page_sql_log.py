"""``bench.page_sql.parse_log``: a page's statements out of a slice of PostgreSQL's log."""

from __future__ import annotations

from bench.page_sql import parse_log

LOG = """\
2026-11-25 11:52:47.282 UTC [13438] postgres@weir_t_a LOG:  duration: 0.052 ms  statement: BEGIN;
2026-11-25 11:52:47.282 UTC [13438] postgres@weir_t_a LOG:  duration: 0.234 ms  parse s7: SELECT $1::int + 1,
\t  2
2026-11-25 11:52:47.283 UTC [13438] postgres@weir_t_a LOG:  duration: 0.074 ms  bind s7: SELECT $1::int + 1,
\t  2
2026-11-25 11:52:47.283 UTC [13438] postgres@weir_t_a DETAIL:  parameters: $1 = '1'
2026-11-25 11:52:47.283 UTC [13999] postgres@weir_t_a LOG:  duration: 0.500 ms  parse s1: SELECT other
2026-11-25 11:52:47.283 UTC [13438] postgres@weir_t_a LOG:  duration: 0.006 ms  execute s7: SELECT $1::int + 1,
\t  2
2026-11-25 11:52:47.283 UTC [13438] postgres@weir_t_a DETAIL:  parameters: $1 = '1'
2026-11-25 11:52:47.284 UTC [14000] postgres@weir_t_b LOG:  duration: 9.000 ms  statement: SELECT elsewhere
2026-11-25 11:52:47.293 UTC [13438] postgres@weir_t_a LOG:  duration: 10.133 ms  execute s8: SELECT pg_sleep(0.01)
2026-11-25 11:52:47.293 UTC [13438] postgres@weir_t_a LOG:  duration: 0.034 ms  statement: COMMIT;
"""  # noqa: E501


def test_statements_of_one_database_with_their_parse_and_bind_time() -> None:
    sql = parse_log(LOG, "weir_t_a")

    assert [s.sql for s in sql.statements] == ["SELECT $1::int + 1,\n2", "SELECT pg_sleep(0.01)"]
    first, second = sql.statements
    # parse + bind + execute of one backend; the other backend's parse is not added to it
    assert round(first.ms, 3) == 0.314
    assert second.ms == 10.133
    assert sql.queries == 2
    assert sql.slowest(1)[0] is second


def test_other_databases_and_transaction_control_are_left_out() -> None:
    assert [s.sql for s in parse_log(LOG, "weir_t_b").statements] == ["SELECT elsewhere"]
    assert parse_log("garbage\n\tmore garbage\n", "weir_t_a").queries == 0
