"""Every state write goes through ``app/db/transitions.py`` (STYLE.md, issue 14).

The state machines of ``weir/states.py`` (task instances, DAG runs, and the attempt records that
follow them) change only by the compare-and-set functions there, so the transition table and the
fence are checked in one place. This test reads ``app/`` and fails on a state written anywhere
else: ``update(TaskInstance|DagRun|TaskAttempt).values(state=…)`` (keyword or dict), an SQL
string that updates the state of one of their tables, or ``row.state = …`` on a loaded row.
Inserts are not state writes: they create a row in its first state.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HOME = Path("app/db/transitions.py")
TABLES = frozenset({"TaskInstance", "DagRun", "TaskAttempt"})
_SQL = re.compile(
    r"\bupdate\s+(task_instance|dag_run|task_attempt)\b.*\bset\b.*\bstate\s*=",
    re.IGNORECASE | re.DOTALL,
)


@dataclass(frozen=True, slots=True)
class StateWrite:
    function: str
    line: int
    what: str


def find_state_writes(source: str) -> list[StateWrite]:
    """The state writes in ``source``, each with the function it is in."""
    finder = _Finder()
    finder.visit(ast.parse(source))
    return finder.found


class _Finder(ast.NodeVisitor):
    def __init__(self) -> None:
        self.found: list[StateWrite] = []
        self._function = "<module>"

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        outer, self._function = self._function, node.name
        self.generic_visit(node)
        self._function = outer

    visit_AsyncFunctionDef = visit_FunctionDef  # noqa: N815 - ast's visitor naming

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr == "values" and _sets_state(node):
            table = _updated_table(func.value)
            if table is not None:
                self._add(node, f"update({table}).values(state=…)")
        if _name_of(func) == "setattr" and len(node.args) > 1 and _is_state_key(node.args[1]):
            self._add(node, "setattr(…, 'state', …)")
        self.generic_visit(node)

    def visit_Assign(self, node: ast.Assign) -> None:
        for target in node.targets:
            self._check_target(target)
        self.generic_visit(node)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        self._check_target(node.target)
        self.generic_visit(node)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        self._check_target(node.target)
        self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        if isinstance(node.value, str) and _SQL.search(node.value):
            self._add(node, "SQL that updates a state")

    def _check_target(self, target: ast.expr) -> None:
        """``row.state = …`` (a loaded row, flushed later); ``self.state`` is an object's own."""
        is_own = isinstance(target, ast.Attribute) and _name_of(target.value) == "self"
        if isinstance(target, ast.Attribute) and target.attr == "state" and not is_own:
            self._add(target, "row.state = …")

    def _add(self, node: ast.AST, what: str) -> None:
        self.found.append(StateWrite(self._function, getattr(node, "lineno", 0), what))


def _name_of(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _updated_table(node: ast.expr) -> str | None:
    """The state-machine table of the ``update(…)`` at the root of a statement chain."""
    while True:
        if isinstance(node, ast.Call) and _name_of(node.func) == "update" and node.args:
            table = _name_of(node.args[0])
            return table if table in TABLES else None
        if isinstance(node, ast.Call):
            node = node.func
        elif isinstance(node, ast.Attribute):
            node = node.value
        else:
            return None


def _is_state_key(node: ast.expr | None) -> bool:
    if isinstance(node, ast.Constant):
        return node.value == "state"
    return isinstance(node, ast.Attribute) and node.attr == "state"


def _sets_state(call: ast.Call) -> bool:
    if any(keyword.arg == "state" for keyword in call.keywords):
        return True
    return any(
        isinstance(arg, ast.Dict) and any(_is_state_key(key) for key in arg.keys)
        for arg in call.args
    )


def _state_writes_in_app() -> dict[tuple[str, str], list[StateWrite]]:
    found: dict[tuple[str, str], list[StateWrite]] = {}
    for path in sorted((ROOT / "app").rglob("*.py")):
        relative = path.relative_to(ROOT)
        if relative == HOME:
            continue
        for write in find_state_writes(path.read_text()):
            found.setdefault((str(relative), write.function), []).append(write)
    return found


def test_state_is_written_only_by_transitions() -> None:
    assert _state_writes_in_app() == {}, "write these states through app/db/transitions.py"


def test_the_checker_finds_each_form() -> None:
    source = """
async def by_keyword(session):
    await session.execute(update(TaskInstance).where(TaskInstance.id == 1).values(state="failed"))

async def by_dict(session):
    await session.execute(sa.update(DagRun).values({DagRun.state: "failed", "x": 1}))

async def by_string_key(session):
    statement = update(TaskAttempt).where(TaskAttempt.attempt == 2).values({"state": "failed"})

async def by_sql(session):
    await session.execute(text("UPDATE task_instance SET end_date = now(), state = 'failed'"))

def by_row(ti):
    ti.state = TaskState.FAILED

def by_setattr(run):
    setattr(run, "state", "failed")
"""
    found = [(write.function, write.what) for write in find_state_writes(source)]
    assert found == [
        ("by_keyword", "update(TaskInstance).values(state=…)"),
        ("by_dict", "update(DagRun).values(state=…)"),
        ("by_string_key", "update(TaskAttempt).values(state=…)"),
        ("by_sql", "SQL that updates a state"),
        ("by_row", "row.state = …"),
        ("by_setattr", "setattr(…, 'state', …)"),
    ]


def test_the_checker_lets_other_writes_be() -> None:
    source = """
async def fine(session):
    await session.execute(update(TaskInstance).values(lease_expires_at=None))
    await session.execute(insert(TaskInstance).values(state="none"))
    await session.execute(update(Backfill).values(state="completed"))
    await session.execute(select(TaskInstance).where(TaskInstance.state == "running"))
    await session.execute(text("SELECT state FROM task_instance"))

class Gate:
    def __init__(self, state):
        self.state = state
"""
    assert find_state_writes(source) == []
