"""The size limit of a run's conf, wherever a conf comes in (REST trigger, backfills, webhooks,
the dashboard's trigger form).

A conf is stored with its run and copied into every task's claim, into callbacks and into API
answers that list runs: data belongs in storage the task reads, the conf should only point to it.
The limit is ``WEIR_MAX_CONF_BYTES``, measured as compact UTF-8 JSON.
"""

from __future__ import annotations

import json
from typing import Any

from weir.errors import InvalidRequest

__all__ = ["check_conf_size", "conf_size_error"]


def conf_size_error(conf: dict[str, Any], max_bytes: int) -> str | None:
    """Why ``conf`` is too large, or None when it fits."""
    size = len(json.dumps(conf, ensure_ascii=False, separators=(",", ":")).encode())
    if size <= max_bytes:
        return None
    return (
        f"The conf is {size:,} bytes of JSON; the limit is {max_bytes:,} bytes "
        "(setting WEIR_MAX_CONF_BYTES). Pass large data by reference (a path, key or URL the "
        "task reads), or raise the limit."
    )


def check_conf_size(conf: dict[str, Any], max_bytes: int) -> None:
    """Raise ``InvalidRequest`` (422) naming the limit and its setting if ``conf`` is too large."""
    message = conf_size_error(conf, max_bytes)
    if message is not None:
        raise InvalidRequest(message, errors=[{"field": "conf", "message": message}])
