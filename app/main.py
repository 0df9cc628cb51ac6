"""``create_app``: the FastAPI application of one ``weir api`` replica.

Its lifespan checks the schema, makes the bootstrap token exist, connects the broker and runs the
service loops (scheduler, outbox relay, DAG processor) beside the HTTP server.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from app.api.bearer_gate import BearerGate
from app.api.body_limit import BodyLimitMiddleware, BodyLimits
from app.api.openapi import install_openapi
from app.api.problems import install_problem_handlers
from app.api.security_headers import SecurityHeaders
from app.api.v1 import (
    audit,
    backfills,
    connections,
    dags,
    health,
    import_errors,
    meta,
    pools,
    runs,
    tasks,
    tokens,
    users,
    variables,
    webhook_trigger,
    webhooks,
    xcoms,
)
from app.api.validation import RefuseNulParameters
from app.auth import ensure_bootstrap_admin
from app.dashboard import routes as dashboard
from app.db.engine import Database
from app.db.migrate import check_schema_is_current
from app.execution import routes as execution
from app.execution.tokens import AttemptTokens
from app.metrics import install_metrics
from app.secrets import SecretBox
from app.services import ServiceLoops, run_loops
from app.state import ServiceState
from weir import __version__
from weir.broker import Broker
from weir.clock import Clock, SystemClock
from weir.config import Settings
from weir.errors import ConfigError

__all__ = ["create_app"]

log = logging.getLogger(__name__)


def create_app(
    settings: Settings,
    database: Database,
    broker: Broker,
    *,
    clock: Clock | None = None,
    run_service_loops: bool = True,
    manage_broker: bool = True,
) -> FastAPI:
    """The app; ``run_service_loops=False`` lets tests drive the loops themselves."""
    if settings.secret_key is None:
        raise ConfigError(
            "WEIR_SECRET_KEY is not set: every API replica needs the same secret key to sign "
            "attempt tokens. Generate one with `python -c 'import secrets; "
            "print(secrets.token_urlsafe(32))'` and set it in the environment or weir.toml."
        )
    state = ServiceState(
        settings=settings,
        database=database,
        tokens=AttemptTokens(settings.secret_key.get_secret_value().encode()),
        clock=clock or SystemClock(),
        secrets=SecretBox.from_settings(settings),
    )
    loops = ServiceLoops(state, broker)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await check_schema_is_current(database)
        await _ensure_bootstrap_token(state)
        if manage_broker:
            await broker.connect()
        try:
            if run_service_loops:
                async with run_loops(loops):
                    yield
            else:
                yield
        finally:
            if manage_broker:
                await broker.close()

    app = FastAPI(title="Weir", version=__version__, lifespan=lifespan)
    app.state.weir = state
    app.state.loops = loops
    install_problem_handlers(app)
    for module in (
        dags, runs, tasks, xcoms, backfills, pools, connections, variables, import_errors,
        webhooks, webhook_trigger, users, tokens, audit, meta, health, execution,
    ):  # fmt: skip
        app.include_router(module.router)
    dashboard.install_dashboard(app)
    install_openapi(app)
    app.add_middleware(RefuseNulParameters)  # NUL in a path or query: 422, on every route
    # The last added runs first: headers on every answer, then sizes, then tokens (both before
    # the body is read; docs/decisions/http-hardening.md).
    app.add_middleware(BearerGate, state=state)
    app.add_middleware(BodyLimitMiddleware, limits=BodyLimits.from_settings(settings))
    app.add_middleware(SecurityHeaders)
    install_metrics(app)  # last: its request counter runs first and sees every request
    return app


async def _ensure_bootstrap_token(state: ServiceState) -> None:
    """Make user ``admin`` hold WEIR_BOOTSTRAP_ADMIN_TOKEN and WEIR_BOOTSTRAP_ADMIN_PASSWORD."""
    token = state.settings.bootstrap_admin_token
    password = state.settings.bootstrap_admin_password
    if token is None and password is None:
        return
    await ensure_bootstrap_admin(
        state.database,
        token.get_secret_value() if token is not None else None,
        password.get_secret_value() if password is not None else None,
        state.clock.now(),
    )
