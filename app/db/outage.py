"""Database outages: tell them from bad input, raise them as one error, and log each one once.

When PostgreSQL goes away, its failures surface in many shapes: a raw ``ConnectionRefusedError``
or ``TimeoutError`` from a new connection, a ``DBAPIError`` whose connection was invalidated
mid-statement, a connection-class SQLSTATE (``08…``, ``57P01``-``57P03``, ``53300``).
``install_outage_tracking`` hooks the engine so that all of them are raised as
``DatabaseUnavailable`` (refused values, ``DataError`` and ``IntegrityError``, stay as they are:
they are the client's fault) and reported to the process's ``DatabaseOutage``. The outage logs a
warning when it begins and one info line, with its length, at the first connection that works
again: one pair of lines per outage, instead of a traceback per request or per loop pass.

The API answers ``DatabaseUnavailable`` with 503 and ``Retry-After``; the background loops wait
``OUTAGE_RETRY`` seconds and try again. SQLite has no outage in this sense: nothing is installed.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Dialect, ExceptionContext
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = [
    "OUTAGE_RETRY",
    "UNAVAILABLE",
    "DatabaseOutage",
    "DatabaseUnavailable",
    "install_outage_tracking",
]

log = logging.getLogger(__name__)

OUTAGE_RETRY = 1.0
"""Seconds a background loop waits before trying the database again during an outage."""

_CONNECTION_SQLSTATES = ("08", "57P01", "57P02", "57P03", "53300")
"""Connection exception class, admin/crash shutdown, cannot connect now, too many connections."""


class DatabaseUnavailable(SQLAlchemyError):
    """The database cannot be reached: down, restarting, cut off or out of connections.

    A ``SQLAlchemyError``, so code that reports database problems (``weir api``'s start-up
    check) keeps treating it as one; the original error is its ``__cause__``.
    """


UNAVAILABLE: tuple[type[Exception], ...] = (DatabaseUnavailable, PoolTimeout)
"""What a loop or the API treats as "the database is not available now": an outage, or no
pooled connection free within the pool timeout."""


class DatabaseOutage:
    """Whether the database is reachable, as this process last saw it; logs each outage once."""

    def __init__(self) -> None:
        self._began: float | None = None  # time.monotonic() of the first failure
        self._ended: float | None = None  # time.monotonic() of the last recovery
        self._failures = 0

    @property
    def is_down(self) -> bool:
        return self._began is not None

    @property
    def seconds(self) -> float:
        """How long the current outage has lasted (0 when the database is reachable)."""
        return 0.0 if self._began is None else time.monotonic() - self._began

    def has_been_up_for(self, seconds: float) -> bool:
        """Whether the database has been reachable for at least ``seconds`` (always, if it
        never went away): workers could not renew their leases during an outage, so a lease
        may be judged lapsed only a whole lease after it ended."""
        if self._began is not None:
            return False
        return self._ended is None or time.monotonic() - self._ended >= seconds

    def failed(self, error: BaseException) -> None:
        """An operation failed for want of the database; the first one starts the outage."""
        self._failures += 1
        if self._began is not None:
            return
        self._began = time.monotonic()
        log.warning(
            "Database unavailable (%s); API requests answer 503 and background loops retry "
            "every %g s until it is back",
            _reason(error),
            OUTAGE_RETRY,
        )

    def recovered(self) -> None:
        """A connection works again: ends the outage, if there was one."""
        if self._began is None:
            return
        self._ended = time.monotonic()
        lasted, failures = self._ended - self._began, self._failures
        self._began, self._failures = None, 0
        log.info(
            "Database available again after %.1f s of outage (%d operations failed meanwhile)",
            lasted,
            failures,
        )


def install_outage_tracking(engine: AsyncEngine, outage: DatabaseOutage) -> None:
    """Raise connection-level failures of ``engine`` as ``DatabaseUnavailable`` and report them,
    and every working checkout, to ``outage``."""

    def connect(dialect: Dialect, _record: Any, cargs: Any, cparams: Any) -> Any:
        # A refused or timed-out connect is not a DBAPI error: SQLAlchemy re-raises it raw,
        # without consulting handle_error, so it is translated here, where it is certain.
        try:
            return dialect.connect(*cargs, **cparams)
        except (OSError, TimeoutError) as error:
            outage.failed(error)
            raise DatabaseUnavailable(
                f"cannot connect to the database: {_reason(error)}"
            ) from error

    def translate(context: ExceptionContext) -> BaseException | None:
        # The pool's pre-ping must see the original error: it reconnects on a disconnect.
        if context.is_pre_ping or not _is_connection_failure(context):
            return None
        error = context.original_exception
        outage.failed(error)
        return DatabaseUnavailable(f"lost the database connection: {_reason(error)}")

    def checkout(*_args: Any) -> None:
        outage.recovered()  # the pool pinged (pre_ping) or just opened this connection

    sync_engine = engine.sync_engine
    event.listen(sync_engine, "do_connect", connect)
    event.listen(sync_engine, "handle_error", translate, retval=True)
    event.listen(sync_engine.pool, "checkout", checkout)


def _is_connection_failure(context: ExceptionContext) -> bool:
    if context.is_disconnect:
        return True
    error = context.original_exception
    if isinstance(error, OSError | TimeoutError):
        return True
    wrapped = context.sqlalchemy_exception
    if isinstance(wrapped, DBAPIError) and wrapped.connection_invalidated:
        return True
    sqlstate = getattr(error, "sqlstate", None)
    return isinstance(sqlstate, str) and sqlstate.startswith(_CONNECTION_SQLSTATES)


def _reason(error: BaseException) -> str:
    """The first line of the innermost message: ``ConnectionRefusedError: [Errno 111] …``."""
    orig = getattr(error, "orig", None) or error
    text = str(orig).strip().splitlines()
    return f"{type(orig).__name__}: {text[0]}" if text else type(orig).__name__
