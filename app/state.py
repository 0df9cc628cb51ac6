"""The service's long-lived parts, built once per process by ``create_app`` and shared by routes
and loops through ``app.state.weir`` (no globals, no service locator)."""

from __future__ import annotations

import dataclasses

from app.db.engine import Database
from app.execution.tokens import AttemptTokens
from app.scheduler.versions import VersionCache
from app.scheduler.wakeup import Wakeup
from app.secrets import SecretBox
from weir.clock import Clock
from weir.config import Settings

__all__ = ["ServiceState"]


@dataclasses.dataclass
class ServiceState:
    settings: Settings
    database: Database
    tokens: AttemptTokens
    clock: Clock
    secrets: SecretBox
    versions: VersionCache = dataclasses.field(default_factory=VersionCache)
    scheduler_wakeup: Wakeup = dataclasses.field(default_factory=Wakeup)
    outbox_ready: Wakeup = dataclasses.field(default_factory=Wakeup)
