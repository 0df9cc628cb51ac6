"""The metadata database: every DAG, run, task instance, log, XCom, credential and setting.

ORM classes are for reads and simple writes; state changes go through ``transitions.py`` as
compare-and-set UPDATEs. Relationships are not declared: queries join explicitly, so no lazy load
can hide on a hot path.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from app.db.types import BigId, Json, UtcDateTime
from weir.states import DagRunState, TaskState

__all__ = [
    "ApiToken",
    "AttemptLog",
    "AuditEntry",
    "Backfill",
    "Base",
    "Connection",
    "Dag",
    "DagFile",
    "DagRun",
    "DagVersion",
    "ImportError_",
    "LoginThrottle",
    "Notification",
    "Outbox",
    "Pool",
    "TaskAttempt",
    "TaskInstance",
    "User",
    "Variable",
    "Webhook",
    "WebhookDelivery",
    "XCom",
]

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

ID = 250  # length of DAG, run and task ids


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Dag(Base):
    """A DAG as last parsed. ``is_active`` turns false when its file is gone; history stays."""

    __tablename__ = "dag"

    dag_id: Mapped[str] = mapped_column(String(ID), primary_key=True)
    fileloc: Mapped[str] = mapped_column(String(1024))
    is_paused: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=text("true"))
    schedule: Mapped[str | None] = mapped_column(String(250))
    description: Mapped[str | None] = mapped_column(Text)
    tags: Mapped[list[str]] = mapped_column(Json, default=list)
    version_id: Mapped[int] = mapped_column(ForeignKey("dag_version.id"))
    last_parsed_at: Mapped[datetime] = mapped_column(UtcDateTime)
    # The next scheduled run: its logical date and data interval, and when it may be created
    # (the interval's end). Null for manual-only DAGs or when the schedule is exhausted.
    next_logical_date: Mapped[datetime | None] = mapped_column(UtcDateTime)
    next_data_interval_start: Mapped[datetime | None] = mapped_column(UtcDateTime)
    next_data_interval_end: Mapped[datetime | None] = mapped_column(UtcDateTime)
    next_run_after: Mapped[datetime | None] = mapped_column(UtcDateTime, index=True)


class DagVersion(Base):
    """One serialized structure of a DAG; a run keeps the version it was created with."""

    __tablename__ = "dag_version"
    __table_args__ = (UniqueConstraint("dag_id", "hash"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    dag_id: Mapped[str] = mapped_column(String(ID))
    hash: Mapped[str] = mapped_column(String(64))
    file_hash: Mapped[str] = mapped_column(String(64))
    serialized: Mapped[dict[str, Any]] = mapped_column(Json)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class DagRun(Base):
    __tablename__ = "dag_run"
    __table_args__ = (
        UniqueConstraint("dag_id", "run_id"),
        UniqueConstraint("dag_id", "idempotency_key"),
        Index(None, "dag_id", "logical_date"),
        Index(None, "dag_id", "id"),
        # Sort keys of the run lists, each ending in the tie-break (bench/api_lists.py).
        Index(None, "logical_date", "id"),
        Index(None, "start_date", "id"),
        Index(None, "end_date", "id"),
        Index(None, "state"),
        Index(None, "needs_scheduling"),
        # One scheduled (or backfill) run per DAG and logical date, whichever replica creates it.
        Index(
            "uq_dag_run_dag_id_logical_date_scheduled",
            "dag_id",
            "logical_date",
            unique=True,
            postgresql_where=text("run_type IN ('scheduled', 'backfill')"),
            sqlite_where=text("run_type IN ('scheduled', 'backfill')"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    dag_id: Mapped[str] = mapped_column(ForeignKey("dag.dag_id"))
    run_id: Mapped[str] = mapped_column(String(ID))
    version_id: Mapped[int] = mapped_column(ForeignKey("dag_version.id"))
    state: Mapped[DagRunState] = mapped_column(String(20))
    run_type: Mapped[str] = mapped_column(String(20))
    logical_date: Mapped[datetime] = mapped_column(UtcDateTime)
    data_interval_start: Mapped[datetime | None] = mapped_column(UtcDateTime)
    data_interval_end: Mapped[datetime | None] = mapped_column(UtcDateTime)
    backfill_id: Mapped[int | None] = mapped_column(ForeignKey("backfill.id", ondelete="SET NULL"))
    conf: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    idempotency_key: Mapped[str | None] = mapped_column(String(250))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    start_date: Mapped[datetime | None] = mapped_column(UtcDateTime)
    end_date: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # Set by whatever may let the run progress (creation, a finished task, a clear); the scheduler
    # examines only flagged runs and clears the flag, so its work is proportional to change.
    needs_scheduling: Mapped[bool] = mapped_column(
        Boolean, default=True, server_default=text("true")
    )


class TaskInstance(Base):
    """One task of one run. ``attempt`` counts tries; 0 until first scheduled."""

    __tablename__ = "task_instance"
    __table_args__ = (
        UniqueConstraint("dag_run_id", "task_id", "map_index"),
        Index(None, "state"),
        Index(None, "dag_run_id", "state"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    dag_run_id: Mapped[int] = mapped_column(ForeignKey("dag_run.id", ondelete="CASCADE"))
    dag_id: Mapped[str] = mapped_column(String(ID))
    run_id: Mapped[str] = mapped_column(String(ID))
    task_id: Mapped[str] = mapped_column(String(ID))
    # -1 for an unmapped task; 0, 1, … for the instances of a mapped one (``task.expand``).
    map_index: Mapped[int] = mapped_column(Integer, default=-1, server_default=text("-1"))
    state: Mapped[TaskState] = mapped_column(String(20))
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    max_tries: Mapped[int] = mapped_column(Integer, default=1)
    # Attempts lost with their worker (lease lapsed, interrupted): re-run without using retries,
    # up to ``Settings.max_lost_attempts``.
    lost_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    retry_delay: Mapped[float] = mapped_column(default=0.0)
    queue: Mapped[str] = mapped_column(String(250))
    pool: Mapped[str] = mapped_column(String(250), default="default_pool")
    pool_slots: Mapped[int] = mapped_column(Integer, default=1)
    priority_weight: Mapped[int] = mapped_column(Integer, default=1)
    # Why a task that could be expected to run is not running: a stable code and words for people.
    wait_code: Mapped[str | None] = mapped_column(String(40))
    wait_reason: Mapped[str | None] = mapped_column(Text)
    worker: Mapped[str | None] = mapped_column(String(250))
    queued_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    start_date: Mapped[datetime | None] = mapped_column(UtcDateTime)
    end_date: Mapped[datetime | None] = mapped_column(UtcDateTime)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    next_retry_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class Pool(Base):
    """A named budget of slots shared by the tasks that name it (``default_pool`` always exists)."""

    __tablename__ = "pool"

    name: Mapped[str] = mapped_column(String(ID), primary_key=True)
    slots: Mapped[int] = mapped_column(Integer)
    description: Mapped[str | None] = mapped_column(Text)


class Backfill(Base):
    """A request to run a DAG over a past range, with its own concurrency budget."""

    __tablename__ = "backfill"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    dag_id: Mapped[str] = mapped_column(ForeignKey("dag.dag_id"))
    from_date: Mapped[datetime] = mapped_column(UtcDateTime)
    to_date: Mapped[datetime] = mapped_column(UtcDateTime)
    max_active_runs: Mapped[int] = mapped_column(Integer, default=4)
    state: Mapped[str] = mapped_column(String(20))
    conf: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class TaskAttempt(Base):
    """The record of one attempt: who ran it, when, and how it ended."""

    __tablename__ = "task_attempt"

    task_instance_id: Mapped[int] = mapped_column(
        ForeignKey("task_instance.id", ondelete="CASCADE"), primary_key=True
    )
    attempt: Mapped[int] = mapped_column(Integer, primary_key=True)
    state: Mapped[TaskState] = mapped_column(String(20))
    worker: Mapped[str | None] = mapped_column(String(250))
    start_date: Mapped[datetime | None] = mapped_column(UtcDateTime)
    end_date: Mapped[datetime | None] = mapped_column(UtcDateTime)
    error: Mapped[str | None] = mapped_column(Text)


class AttemptLog(Base):
    """Log text of an attempt, in the order the worker shipped it."""

    __tablename__ = "attempt_log"
    __table_args__ = (Index(None, "task_instance_id", "attempt", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    task_instance_id: Mapped[int] = mapped_column(
        ForeignKey("task_instance.id", ondelete="CASCADE")
    )
    attempt: Mapped[int] = mapped_column(Integer)
    data: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class XCom(Base):
    """A task's return value, read by its downstream tasks."""

    __tablename__ = "xcom"

    task_instance_id: Mapped[int] = mapped_column(
        ForeignKey("task_instance.id", ondelete="CASCADE"), primary_key=True
    )
    dag_run_id: Mapped[int] = mapped_column(ForeignKey("dag_run.id", ondelete="CASCADE"))
    task_id: Mapped[str] = mapped_column(String(ID))
    value: Mapped[Any] = mapped_column(Json, nullable=True)

    __table_args__ = (Index(None, "dag_run_id", "task_id"),)


class Outbox(Base):
    """Task messages written in the same transaction that queued their task (invariant 3)."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    queue: Mapped[str] = mapped_column(String(250))
    message_id: Mapped[str] = mapped_column(String(100))
    body: Mapped[bytes] = mapped_column(LargeBinary)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class ImportError_(Base):  # noqa: N801 - the trailing underscore avoids the builtin's name
    """A DAG file that failed to import, with its traceback. Cleared by a good parse."""

    __tablename__ = "import_error"

    fileloc: Mapped[str] = mapped_column(String(1024), primary_key=True)
    error: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class DagFile(Base):
    """What the DAG processor last saw of one file: its hash and the DAGs it defined."""

    __tablename__ = "dag_file"

    fileloc: Mapped[str] = mapped_column(String(1024), primary_key=True)
    file_hash: Mapped[str] = mapped_column(String(64))
    dag_ids: Mapped[list[str]] = mapped_column(Json, default=list)
    last_parsed_at: Mapped[datetime] = mapped_column(UtcDateTime)


class User(Base):
    """A person or a service account. The role decides what its tokens and sessions may do.

    ``password_hash`` (argon2) is null for accounts that cannot log in with a password, such as
    the owner of ``WEIR_BOOTSTRAP_ADMIN_TOKEN``. ("user" is a reserved word in PostgreSQL.)
    """

    __tablename__ = "weir_user"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(150), unique=True)
    password_hash: Mapped[str | None] = mapped_column(String(250))
    role: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    disabled_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # Dashboard session cookies carry the epoch they were issued in; logging out, changing the
    # password or disabling the user moves it on, which ends every session of the user at once.
    session_epoch: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))


class LoginThrottle(Base):
    """Sign-in attempts in the current window, per user name (``user:<name>``) and per client
    address (``address:<ip>``): kept in the database so every replica counts the same ones."""

    __tablename__ = "login_throttle"

    key: Mapped[str] = mapped_column(String(300), primary_key=True)
    attempts: Mapped[int] = mapped_column(Integer)
    window_start: Mapped[datetime] = mapped_column(UtcDateTime)


class ApiToken(Base):
    """A bearer token of a user, stored as its SHA-256; the clear value is shown once.

    A token carries its user's role as it is at each request, so changing or disabling the user
    takes effect on every token at once.
    """

    __tablename__ = "api_token"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("weir_user.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(250))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class AuditEntry(Base):
    """One action taken through the API or the dashboard: who, what, on what, when."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("weir_user.id", ondelete="SET NULL"))
    actor: Mapped[str] = mapped_column(String(150))
    action: Mapped[str] = mapped_column(String(100))
    target: Mapped[str | None] = mapped_column(String(1024))
    detail: Mapped[dict[str, Any] | None] = mapped_column(Json)
    origin: Mapped[str] = mapped_column(String(20))


class Webhook(Base):
    """An external trigger of a DAG: ``POST /api/v1/webhooks/{hook_id}``, signed with its secret.

    Declared in a DAG file (``Webhook("name")``, ``origin='dag'``) or created through the API
    (``origin='api'``); ``hook_id`` is ``<dag_id>.<name>`` either way.
    """

    __tablename__ = "webhook"
    __table_args__ = (UniqueConstraint("dag_id", "name"),)

    hook_id: Mapped[str] = mapped_column(String(400), primary_key=True)
    dag_id: Mapped[str] = mapped_column(ForeignKey("dag.dag_id"))
    name: Mapped[str] = mapped_column(String(100))
    origin: Mapped[str] = mapped_column(String(10))
    # 'github' (X-Hub-Signature-256) or 'timestamped' (X-Weir-Timestamp + X-Weir-Signature).
    signature: Mapped[str] = mapped_column(String(20))
    secret_encrypted: Mapped[bytes] = mapped_column(LargeBinary)
    # conf key -> JSON pointer into the payload; null maps the whole payload into conf.
    conf_fields: Mapped[dict[str, str] | None] = mapped_column(Json)
    # [{"pointer": "/ref", "equals": "refs/heads/main"}, ...]: all must hold to start a run.
    filters: Mapped[list[dict[str, Any]]] = mapped_column(Json, default=list)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=text("true"))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class WebhookDelivery(Base):
    """Every call of a webhook, whatever its verdict; a delivery id starts at most one run."""

    __tablename__ = "webhook_delivery"
    __table_args__ = (
        Index(None, "hook_id", "id"),
        # A replayed delivery id is a duplicate only of a delivery that passed verification, so
        # a forged call cannot use up the id of the genuine one.
        Index(
            "uq_webhook_delivery_hook_id_delivery_id_verified",
            "hook_id",
            "delivery_id",
            unique=True,
            postgresql_where=text("verdict IN ('accepted', 'filtered')"),
            sqlite_where=text("verdict IN ('accepted', 'filtered')"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    hook_id: Mapped[str] = mapped_column(ForeignKey("webhook.hook_id", ondelete="CASCADE"))
    delivery_id: Mapped[str | None] = mapped_column(String(250))
    received_at: Mapped[datetime] = mapped_column(UtcDateTime)
    source_address: Mapped[str | None] = mapped_column(String(100))
    # accepted | filtered | duplicate | bad_signature | bad_payload | bad_conf | inactive
    verdict: Mapped[str] = mapped_column(String(20))
    status_code: Mapped[int] = mapped_column(Integer)
    dag_run_id: Mapped[int | None] = mapped_column(ForeignKey("dag_run.id", ondelete="SET NULL"))
    run_id: Mapped[str | None] = mapped_column(String(ID))
    detail: Mapped[str | None] = mapped_column(Text)


class Notification(Base):
    """A failure summary to POST to ``WEIR_NOTIFY_URL``, written with the run's failure (outbox).

    Deleted once delivered; ``gave_up_at`` is set when retries are exhausted. A replica takes a
    row by pushing ``next_attempt_at`` forward under ``FOR UPDATE SKIP LOCKED``.
    """

    __tablename__ = "notification"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    dag_run_id: Mapped[int] = mapped_column(ForeignKey("dag_run.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    last_error: Mapped[str | None] = mapped_column(Text)
    gave_up_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class Connection(Base):
    """Credentials for external systems; secret fields are Fernet-encrypted (issue 4/6)."""

    __tablename__ = "connection"

    conn_id: Mapped[str] = mapped_column(String(ID), primary_key=True)
    conn_type: Mapped[str] = mapped_column(String(100))
    description: Mapped[str | None] = mapped_column(Text)
    host: Mapped[str | None] = mapped_column(String(500))
    port: Mapped[int | None] = mapped_column(Integer)
    login: Mapped[str | None] = mapped_column(String(500))
    schema: Mapped[str | None] = mapped_column(String(500))
    password_encrypted: Mapped[bytes | None] = mapped_column(LargeBinary)
    extra_encrypted: Mapped[bytes | None] = mapped_column(LargeBinary)


class Variable(Base):
    """A named setting tasks can read; the value is Fernet-encrypted."""

    __tablename__ = "variable"

    key: Mapped[str] = mapped_column(String(ID), primary_key=True)
    value_encrypted: Mapped[bytes] = mapped_column(LargeBinary)
    description: Mapped[str | None] = mapped_column(Text)
    is_secret: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
