"""CHECK constraints on a closed set of values: a chain of equalities, not ``IN``.

SQLite (3.40) evaluates ``role IN ('system', ..., 'tool')`` in a CHECK by
building a temporary b-tree of the list each time it checks a row. On the
append path that was about 9 µs per row and constraint: a batch of 100
messages spent 2.3 ms inserting its rows, 1.3 ms without those two checks,
and every change-log row paid once more for ``op``. ``role = 'system' OR ...``
accepts and refuses exactly the same values and costs nothing measurable.

SQLite cannot alter a CHECK, and Alembic's batch mode would copy each table,
which renumbers the ``messages`` rowids that the search index refers to. So
on SQLite this revision edits the constraint text in the schema table, the
procedure SQLite's documentation gives for changes that leave the stored
rows as they are ("Making Other Kinds Of Table Schema Changes"): the new
constraint admits exactly the rows the old one did, so no row needs checking,
and the schema version is bumped so every connection reads the new text. It
takes milliseconds whatever the size of the database. Where the schema table
cannot be written (a SQLite built or configured in defensive mode), the old
constraints stay: they are equivalent, only slower, and the store says so in
its log.

PostgreSQL evaluates both forms alike; the constraints are dropped and added
again there so that both engines hold the one schema of ``tables.py``. Adding
them reads each table once, under a lock that holds its writes off meanwhile
(seconds per few million rows; see docs/postgresql.md).

The message status check also gets the name ``tables.py`` gives it
(``ck_messages_status``; revision 0002 had named it
``ck_messages_ck_messages_status``).

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-22 09:00:00
"""

from __future__ import annotations

import logging
from typing import NamedTuple

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

log = logging.getLogger("threadkeep.store.migrate")


class Rewrite(NamedTuple):
    table: str
    name: str
    column: str
    values: tuple[str, ...]
    old_name: str | None = None  # where revision 0002's name differs

    def listed(self) -> tuple[str, str]:
        """The constraint before this revision: (name, expression)."""
        values = ", ".join(repr(v) for v in self.values)
        return self.old_name or self.name, f"{self.column} IN ({values})"

    def chained(self) -> tuple[str, str]:
        """The constraint after it."""
        return self.name, " OR ".join(f"{self.column} = {v!r}" for v in self.values)


# Spelled out rather than taken from tables.py: a revision must keep meaning
# what it meant when it was written.
REWRITES = (
    Rewrite("changes", "ck_changes_op", "op", ("insert", "update", "delete")),
    Rewrite(
        "messages", "ck_messages_role", "role", ("system", "developer", "user", "assistant", "tool")
    ),
    Rewrite(
        "messages",
        "ck_messages_status",
        "status",
        ("complete", "streaming", "incomplete"),
        old_name="ck_messages_ck_messages_status",
    ),
    Rewrite(
        "tool_events",
        "ck_tool_events_status",
        "status",
        ("started", "running", "succeeded", "failed", "cancelled"),
    ),
    Rewrite("todos", "ck_todos_status", "status", ("pending", "in_progress", "completed")),
    Rewrite(
        "misalignments",
        "ck_misalignments_severity",
        "severity",
        ("low", "medium", "high", "critical"),
    ),
    Rewrite(
        "hookify_decisions", "ck_hookify_decisions_event", "event", ("tool_call", "prompt", "stop")
    ),
    Rewrite(
        "hookify_decisions", "ck_hookify_decisions_decision", "decision", ("allow", "warn", "block")
    ),
    Rewrite("snapshots", "ck_snapshots_kind", "kind", ("auto", "manual", "system")),
    Rewrite(
        "file_changes", "ck_file_changes_kind", "kind", ("create", "modify", "delete", "rename")
    ),
)


def upgrade() -> None:
    _replace([(r.table, r.listed(), r.chained()) for r in REWRITES])


def downgrade() -> None:
    _replace([(r.table, r.chained(), r.listed()) for r in REWRITES])


def _replace(steps: list[tuple[str, tuple[str, str], tuple[str, str]]]) -> None:
    """In each table, replace the constraint ``(name, expression)`` by another."""
    if op.get_bind().dialect.name == "sqlite":
        _edit_sqlite_schema(
            [
                (table, f"CONSTRAINT {a} CHECK ({x})", f"CONSTRAINT {b} CHECK ({y})")
                for table, (a, x), (b, y) in steps
            ]
        )
        return
    for table, (old, _), (new, expression) in steps:
        op.drop_constraint(op.f(old), table, type_="check")
        op.create_check_constraint(op.f(new), table, expression)


def _edit_sqlite_schema(edits: list[tuple[str, str, str]]) -> None:
    """In each ``(table, old, new)``, replace the constraint text ``old`` by
    ``new`` in the CREATE TABLE statement SQLite keeps, inside the migration's
    transaction. A table holding neither text is not as threadkeep made it:
    refuse rather than guess."""
    conn = op.get_bind()
    query = "SELECT name, sql FROM sqlite_master WHERE type = 'table'"
    tables: dict[str, str] = {row[0]: row[1] for row in conn.exec_driver_sql(query)}
    edited: dict[str, str] = {}
    for table, old, new in edits:
        sql = edited.get(table, tables[table])
        if old in sql:
            edited[table] = sql.replace(old, new)
        elif new not in sql:
            raise RuntimeError(f"revision 0009: {table} has neither {old!r} nor {new!r}")
    if not edited:
        return
    # The steps of SQLite's procedure, in its order; a savepoint so that a
    # refusal part-way leaves the schema table as it was.
    version = int(conn.exec_driver_sql("PRAGMA schema_version").scalar_one())
    conn.exec_driver_sql("SAVEPOINT rewrite_checks")
    conn.exec_driver_sql("PRAGMA writable_schema = ON")
    try:
        for table, sql in edited.items():
            conn.exec_driver_sql(
                "UPDATE sqlite_master SET sql = ? WHERE type = 'table' AND name = ?",
                (sql, table),
            )
        conn.exec_driver_sql(f"PRAGMA schema_version = {version + 1}")
    except sa.exc.DBAPIError as exc:
        conn.exec_driver_sql("ROLLBACK TO rewrite_checks")
        log.warning(
            "revision 0009: SQLite refused to edit its schema table (%s); the CHECK "
            "constraints keep their IN lists, equivalent but slower to check",
            exc.orig,
        )
    finally:
        conn.exec_driver_sql("PRAGMA writable_schema = OFF")
        conn.exec_driver_sql("RELEASE rewrite_checks")
