"""Weir: what DAG files import. Kept light: no database, broker or web imports here."""

from weir.context import RunContext, get_current_context
from weir.dag import Dag, dag
from weir.params import Param
from weir.task import task
from weir.webhooks import Webhook

__all__ = ["Dag", "Param", "RunContext", "Webhook", "dag", "get_current_context", "task"]
__version__ = "0.1.0"
