"""Weir: what DAG files import. Kept light: no database, broker or web imports here."""

from weir.context import RunContext, get_current_context
from weir.dag import Dag, dag
from weir.params import Param
from weir.task import task

__all__ = ["Dag", "Param", "RunContext", "dag", "get_current_context", "task"]
__version__ = "0.1.0"
