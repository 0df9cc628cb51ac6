"""Settings: one object, built once by the CLI and passed down.

Precedence: command-line flags (passed as keyword arguments) > ``WEIR_*`` environment variables >
an optional ``weir.toml`` > defaults. Nothing in Weir reads the environment anywhere else.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

__all__ = ["Settings"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="WEIR_", toml_file="weir.toml", extra="ignore", validate_default=True
    )

    # Where things are.
    database_url: str = Field(
        default="sqlite+aiosqlite:///.weir/weir.db",
        description="postgresql+asyncpg://… in production, sqlite+aiosqlite://… embedded.",
    )
    broker_url: str = Field(
        default="memory://",
        description="amqp://user:pass@host/vhost for RabbitMQ, or memory:// (standalone only).",
    )
    broker_namespace: str = Field(
        default="weir", description="Prefix of every queue and exchange Weir declares."
    )
    dags_folder: Path = Path("dags")
    data_dir: Path = Path(".weir")
    api_url: str = Field(
        default="http://127.0.0.1:8080",
        description="Where workers reach the API: one URL, or several separated by commas (a "
        "worker fails over to the next when one cannot be reached).",
    )
    host: str = "127.0.0.1"
    port: int = 8080

    # Secrets.
    secret_key: SecretStr | None = Field(
        default=None, description="Signs attempt tokens; every API replica must share it."
    )
    fernet_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    bootstrap_admin_token: SecretStr | None = None
    bootstrap_admin_password: SecretStr | None = Field(
        default=None, description="When set at start, user admin logs in with this password."
    )

    # Scheduling and leases (seconds).
    heartbeat_interval: float = Field(
        default=2.0, gt=0, description="Seconds between a worker's (batched) heartbeats."
    )
    lease_seconds: float = Field(
        default=8.0,
        gt=0,
        description="A running attempt not renewed for this long is lost with its worker and "
        "runs again; at least twice the heartbeat interval.",
    )
    max_lost_attempts: int = Field(
        default=3,
        ge=0,
        description="How often a task instance may be lost with its worker (lease lapsed) and "
        "run again without using its retries; once more and it fails, named as the likely cause.",
    )
    sweep_interval: float = Field(default=5.0, gt=0)
    dag_parse_timeout: float = Field(default=30.0, gt=0)
    dag_rescan_interval: float = Field(default=30.0, gt=0)

    # History retention (see docs/scheduling/retention.md). A DAG's own options win per limit.
    retention_days: float | None = Field(
        default=None,
        gt=0,
        description="Delete finished runs that ended more than this many days ago (None: keep).",
    )
    retention_runs: int | None = Field(
        default=None,
        ge=1,
        description="Keep only this many most recent finished runs per DAG (None: no limit).",
    )
    retention_interval: float = Field(
        default=3600.0, gt=0, description="Seconds between two passes of the retention job."
    )
    retention_batch_size: int = Field(
        default=500, ge=1, description="Runs deleted per transaction, so no lock is held long."
    )
    retention_export_dir: Path | None = Field(
        default=None,
        description="When set, runs are appended to <dir>/<dag_id>/<YYYY-MM-DD>.jsonl "
        "(fsynced) before they are deleted.",
    )
    retention_export_logs: bool = Field(
        default=False, description="Include each attempt's log text in the export."
    )

    # HTTP limits (see docs/decisions/http-hardening.md).
    max_request_body_bytes: int = Field(
        default=1024 * 1024,
        ge=1024,
        description="Largest request body /api/v1 and the dashboard accept (413 above it).",
    )
    max_execution_body_bytes: int = Field(
        default=16 * 1024 * 1024,
        ge=1024 * 1024,
        description="Largest request body /execution/v1 accepts: workers' log batches and "
        "finish reports, which carry the end of the log and the task's return value.",
    )
    max_conf_bytes: int = Field(
        default=64 * 1024,
        ge=2,
        description="Largest run conf, measured as compact JSON (422 above it).",
    )
    request_head_timeout: float = Field(
        default=10.0,
        gt=0,
        description="Seconds a client may take to send a request's line and headers before "
        "its connection is closed (against slow-header attacks).",
    )

    # Failure notifier (see docs/scheduling/callbacks.md).
    notify_url: str | None = Field(
        default=None, description="POST a JSON summary of every failed run to this URL."
    )
    notify_secret: SecretStr | None = Field(
        default=None,
        description="Signs the body: header X-Weir-Signature: sha256=<HMAC-SHA256 hex>.",
    )
    notify_give_up_after: float = Field(
        default=600.0, gt=0, description="Seconds of retries (exponential backoff) per run."
    )

    # Worker.
    worker_queues: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["default"])
    worker_concurrency: int = Field(default=8, ge=1)
    worker_grace_period: float = Field(default=30.0, ge=0)
    broker_heartbeat: int = Field(
        default=5,
        ge=0,
        description="AMQP heartbeat timeout (s): RabbitMQ drops a dead or frozen consumer after "
        "about this long and hands its unacknowledged messages to others (0: off).",
    )

    webhook_rejected_kept: int = Field(
        default=1000,
        ge=1,
        description="Rejected webhook deliveries (bad signature, replays, bad payloads) kept "
        "per hook: the newest; older ones are deleted, so forged calls cannot grow the table.",
    )

    log_level: str = "INFO"

    @field_validator("secret_key")
    @classmethod
    def _strong_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError(
                "WEIR_SECRET_KEY must be at least 16 characters; generate one with "
                "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
            )
        return value

    @model_validator(mode="after")
    def _lease_outlives_heartbeats(self) -> Settings:
        if self.lease_seconds < 2 * self.heartbeat_interval:
            raise ValueError(
                f"WEIR_LEASE_SECONDS ({self.lease_seconds:g}) must be at least twice "
                f"WEIR_HEARTBEAT_INTERVAL ({self.heartbeat_interval:g}): one late heartbeat "
                "must not make a healthy worker's attempts run again elsewhere."
            )
        return self

    @field_validator("worker_queues", mode="before")
    @classmethod
    def _split_queues(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [q.strip() for q in value.split(",") if q.strip()]
        return value

    @field_validator("fernet_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [k.strip() for k in value.split(",") if k.strip()]
        return value

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))
