"""Hot-path statements: Core statements compiled once, run on the DBAPI cursor.

SQLAlchemy's ``Connection.execute`` costs tens of microseconds per call in
Python (cache-key generation, execution context, result wrapping). An append
makes four or five statements, and the durable floor of a commit is ~170 µs,
so on the paths that run per message (append, the session lookup, reading
the last N) that overhead alone would double the latency. Here the
statements are still written as Core expressions from ``tables.py``, and the
values still go through each column type's own bind and result processors
(the same conversions ``execute`` applies); only the per-call machinery is
skipped. Everything else in the store uses ``Connection.execute``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any
from weakref import WeakKeyDictionary

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

Processor = Callable[[Any], Any] | None


class Prepared:
    """One statement compiled for one dialect."""

    __slots__ = ("defaults", "plan", "positional", "sql")

    def __init__(self, stmt: sa.Executable, dialect: Dialect) -> None:
        compiled = stmt.compile(dialect=dialect)  # type: ignore[attr-defined]
        self.sql: str = compiled.string
        self.positional: bool = bool(compiled.positional)
        procs: dict[str, Processor] = dict(compiled._bind_processors)
        names = list(compiled.positiontup or []) if self.positional else list(compiled.binds)
        # (name, processor or None), in parameter order: built once, walked per row.
        self.plan: list[tuple[str, Processor]] = [(n, procs.get(n)) for n in names]
        # Parameters the dialect adds itself (SQLite's OFFSET 0) keep their values.
        self.defaults: dict[str, Any] = {
            n: compiled.binds[n].value for n in names if n in compiled.binds
        }

    def params(self, values: Mapping[str, Any]) -> Sequence[Any] | dict[str, Any]:
        if len(values) < len(self.plan):
            values = {**self.defaults, **values}
        if self.positional:
            return [v if p is None else p(v) for n, p in self.plan for v in (values[n],)]
        return {n: (values[n] if p is None else p(values[n])) for n, p in self.plan}

    def execute(self, cur: Any, values: Mapping[str, Any]) -> Any:
        cur.execute(self.sql, self.params(values))
        return cur

    def executemany(self, cur: Any, rows: Iterable[Mapping[str, Any]]) -> None:
        cur.executemany(self.sql, [self.params(r) for r in rows])


class RowDecoder:
    """Turns DBAPI tuples of a table's columns (in table order) into dicts of
    Python values, with the columns' result processors."""

    __slots__ = ("cols",)

    def __init__(self, table: sa.Table, dialect: Dialect) -> None:
        self.cols: list[tuple[str, Processor]] = [
            (str(c.name), _result_processor(c, dialect)) for c in table.c
        ]

    def __call__(self, row: Sequence[Any]) -> dict[str, Any]:
        return {
            name: (proc(v) if proc is not None else v)
            for (name, proc), v in zip(self.cols, row, strict=True)
        }


def _result_processor(column: sa.Column[Any], dialect: Dialect) -> Processor:
    try:
        return column.type.dialect_impl(dialect).result_processor(dialect, None)
    except TypeError:
        # A processor that needs the driver's type code (SQLAlchemy's numeric
        # types on psycopg): the driver already returns the Python type there.
        return None


_statements: WeakKeyDictionary[Dialect, dict[str, Prepared]] = WeakKeyDictionary()
_decoders: WeakKeyDictionary[Dialect, dict[str, RowDecoder]] = WeakKeyDictionary()


def prepared(dialect: Dialect, key: str, build: Callable[[], sa.Executable]) -> Prepared:
    """The statement ``build()`` compiled for ``dialect``, cached under ``key``."""
    cache = _statements.setdefault(dialect, {})
    p = cache.get(key)
    if p is None:
        p = cache[key] = Prepared(build(), dialect)
    return p


def decoder(dialect: Dialect, table: sa.Table) -> RowDecoder:
    cache = _decoders.setdefault(dialect, {})
    d = cache.get(table.name)
    if d is None:
        d = cache[table.name] = RowDecoder(table, dialect)
    return d


def cursor(conn: sa.Connection) -> Any:
    """A DBAPI cursor on the connection's current transaction."""
    return conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
