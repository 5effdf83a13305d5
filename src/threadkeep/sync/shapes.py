"""A shape's definition, and its rows and changes as protocol messages.

The definition is (table, owner, session): the owner comes from the token, the
session from the route or the ``session_id`` parameter; a client's ``where``,
``params`` and ``columns`` never enter it. The handle's hash covers the
table's column schema too, so a migration that changes a synced table makes
every handle of that table stale (must-refetch).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from threadkeep.model.changes import Change, Operation
from threadkeep.sync import protocol
from threadkeep.sync.encoding import column_kinds, encode_row, table_schema


@dataclass(frozen=True)
class Shape:
    table: str
    owner_id: str
    session_id: str | None = None

    @property
    def def_hash(self) -> str:
        return _def_hash(self.table, self.owner_id, self.session_id or "")

    def handle(self, epoch: int) -> str:
        return protocol.make_handle(self.def_hash, epoch)

    def electric_where(self) -> tuple[str, list[str]]:
        """The same shape for a real Electric service: a ``where`` with ``$n``
        placeholders and its values (never interpolated)."""
        values = [self.owner_id]
        if self.table == "sessions":
            where = "owner_id = $1 AND deleted_at IS NULL"
            if self.session_id is not None:
                where += " AND id = $2"
        else:
            where = "owner_id = $1"
            if self.session_id is not None:
                where += " AND session_id = $2"
        if self.session_id is not None:
            values.append(self.session_id)
        return where, values

    @property
    def relation(self) -> list[str]:
        return ["public", self.table]


@lru_cache(maxsize=65536)
def _def_hash(table: str, owner_id: str, session_id: str) -> str:
    schema = json.dumps(table_schema(table), sort_keys=True)
    return protocol.definition_hash(table, owner_id, session_id, schema)


def row_key(table: str, key: str) -> str:
    """Electric's message key: ``"public"."table"/"id"`` (a ``/`` in a value doubled)."""
    return f'"public"."{table}"/"{key.replace("/", "//")}"'


def snapshot_messages(
    shape: Shape, rows: Iterable[dict[str, Any]], *, encoded: bool = False
) -> Iterator[dict[str, Any]]:
    """A snapshot's rows as insert messages. ``encoded``: the rows were read
    with ``encode=value_text(table)`` and are already the protocol's text."""
    relation = shape.relation
    for row in rows:
        yield {
            "key": row_key(shape.table, str(row["id"])),
            "value": row if encoded else encode_row(shape.table, row),
            "headers": {"operation": "insert", "relation": relation},
        }


def _operation(shape: Shape, change: Change) -> str | None:
    """The protocol operation for a logged change in this shape, or None.

    The sessions shape leaves trashed sessions out: a logged update carries
    ``deleted_at`` only when the session moves into the trash (a delete here)
    or out of it (an insert, logged with the whole row)."""
    op = change.op
    if shape.table == "sessions" and op == Operation.UPDATE and change.row is not None:
        if "deleted_at" in change.row:
            return "delete" if change.row["deleted_at"] is not None else "insert"
    return op.value


def change_messages(shape: Shape, changes: list[Change]) -> list[dict[str, Any]]:
    """Logged changes as protocol change messages, each carrying its txid."""
    out: list[dict[str, Any]] = []
    relation = shape.relation
    for i, c in enumerate(changes):
        op = _operation(shape, c)
        if op is None:
            continue
        if op == "delete" or c.row is None:
            value: dict[str, Any] = {"id": c.key}
        else:
            row = {**c.row, "id": c.key}
            if op == "insert" and "txid" not in row and "txid" in column_kinds(shape.table):
                row["txid"] = c.txid  # written by SQL on PostgreSQL, so not in the log
            value = encode_row(shape.table, row)
        last = i + 1 == len(changes) or changes[i + 1].txid != c.txid
        out.append(
            {
                "key": row_key(shape.table, c.key),
                "value": value,
                "headers": {
                    "operation": op,
                    "relation": relation,
                    "txids": [c.txid],
                    "lsn": str(c.offset),
                    "op_position": 0,
                    "last": last,
                },
            }
        )
    return out
