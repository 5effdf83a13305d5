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

import json
import operator
import threading
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Dialect

from threadkeep.store.types import json_result

Processor = Callable[[Any], Any] | None


class Prepared:
    """One statement compiled for one dialect."""

    __slots__ = ("_names", "_pick", "_procs", "defaults", "plan", "positional", "sql")

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
        # Per row, the values are picked in one C call and only the columns
        # that have a processor are converted.
        self._names = tuple(names)
        self._pick = operator.itemgetter(*names) if len(names) > 1 else None
        self._procs: list[tuple[int, Callable[[Any], Any]]] = [
            (i, p) for i, (_, p) in enumerate(self.plan) if p is not None
        ]

    def params(self, values: Mapping[str, Any]) -> Sequence[Any] | dict[str, Any]:
        if len(values) < len(self.plan):
            values = {**self.defaults, **values}
        if self._pick is None:  # zero or one parameter
            out = [values[n] for n in self._names]
        else:
            out = list(self._pick(values))
        for i, p in self._procs:
            out[i] = p(out[i])
        if self.positional:
            return out
        return dict(zip(self._names, out, strict=True))

    def execute(self, cur: Any, values: Mapping[str, Any]) -> Any:
        cur.execute(self.sql, self.params(values))
        return cur

    def executemany(self, cur: Any, rows: Iterable[Mapping[str, Any]]) -> None:
        cur.executemany(self.sql, [self.params(r) for r in rows])


class RowDecoder:
    """Turns DBAPI tuples of some columns (by default a table's, in table
    order) into dicts of Python values, with the columns' result processors.
    ``convert`` gives columns a processor of their own in place of their
    type's (e.g. the enum members a model holds); ``then`` a function applied
    after it (the sync layer's text encoding, so that a snapshot's rows are
    encoded as they are read, without a dict of Python values in between).

    Reading a session's history decodes up to 10,000 rows a call, and a loop
    over the columns per row cost more than the query. So, as SQLAlchemy and
    dataclasses do, the decoder is one generated function per column list:
    it unpacks the row (which also checks its length), and builds the dict in
    one expression, calling a processor only for a non-NULL value (every
    result processor maps NULL to None). Only column names (as string
    literals) and positions go into its source; processors are passed in."""

    __slots__ = ("decode", "names")

    def __init__(
        self,
        table: sa.Table,
        dialect: Dialect,
        columns: Sequence[sa.Column[Any]] | None = None,
        convert: Mapping[str, Callable[[Any], Any]] | None = None,
        then: Mapping[str, Callable[[Any], Any]] | None = None,
    ) -> None:
        cols = list(table.c) if columns is None else list(columns)
        own = convert or {}
        self.names: tuple[str, ...] = tuple(str(c.name) for c in cols)
        procs = [own.get(c.name) or _result_processor(c, dialect) for c in cols]
        after = [(then or {}).get(name) for name in self.names]
        self.decode: Callable[[Sequence[Any]], dict[str, Any]] = _compile(self.names, procs, after)

    def __call__(self, row: Sequence[Any]) -> dict[str, Any]:
        return self.decode(row)


def _compile(
    names: Sequence[str], procs: Sequence[Processor], then: Sequence[Processor]
) -> Callable[[Sequence[Any]], dict[str, Any]]:
    env: dict[str, Any] = {}
    items = []
    for i, (name, proc, after) in enumerate(zip(names, procs, then, strict=True)):
        value = f"v{i}"
        if proc is not None:
            env[f"p{i}"] = proc
            value = f"p{i}({value})"
        if after is not None:
            env[f"t{i}"] = after
            value = f"t{i}({value})"
        if proc is None and after is None:
            items.append(f"{name!r}: v{i}")
        else:
            items.append(f"{name!r}: None if v{i} is None else {value}")
    unpack = "".join(f"v{i}, " for i in range(len(names)))
    source = f"def decode(row):\n    ({unpack}) = row\n    return {{{', '.join(items)}}}\n"
    exec(compile(source, f"<decoder {', '.join(names)}>", "exec"), env)
    return env["decode"]  # type: ignore[no-any-return]


def _result_processor(column: sa.Column[Any], dialect: Dialect) -> Processor:
    impl = column.type.dialect_impl(dialect)
    try:
        proc = impl.result_processor(dialect, None)
    except TypeError:
        # A processor that needs the driver's type code (SQLAlchemy's numeric
        # types on psycopg): the driver already returns the Python type there.
        return None
    if proc is not None and isinstance(impl, sa.JSON) and _default_json(dialect):
        return json_result  # the same values as json.loads, at orjson's speed
    return proc


def _default_json(dialect: Dialect) -> bool:
    loads = getattr(dialect, "_json_deserializer", None)
    return loads is None or loads is json.loads or loads is orjson.loads


# The caches live on the dialect object itself: a WeakKeyDictionary lookup
# builds a weak reference per call, which cost ~20 µs per append (three
# lookups) in a profile; an attribute read costs nothing, and the cache still
# goes away with its dialect (its engine).
_STATEMENTS = "_threadkeep_prepared"
_DECODERS = "_threadkeep_decoders"


def _cache(dialect: Dialect, name: str) -> dict[Hashable, Any]:
    cache: dict[Hashable, Any] | None = dialect.__dict__.get(name)
    if cache is None:
        cache = {}
        setattr(dialect, name, cache)
    return cache


def prepared(dialect: Dialect, key: str, build: Callable[[], sa.Executable]) -> Prepared:
    """The statement ``build()`` compiled for ``dialect``, cached under ``key``."""
    cache = _cache(dialect, _STATEMENTS)
    p: Prepared | None = cache.get(key)
    if p is None:
        p = cache[key] = Prepared(build(), dialect)
    return p


def decoder(dialect: Dialect, table: sa.Table) -> RowDecoder:
    """The decoder of ``table``'s whole rows for ``dialect``."""
    return custom_decoder(dialect, table.name, lambda: RowDecoder(table, dialect))


def custom_decoder(dialect: Dialect, key: str, build: Callable[[], RowDecoder]) -> RowDecoder:
    """The decoder ``build()`` made for ``dialect``, cached under ``key``."""
    cache = _cache(dialect, _DECODERS)
    d: RowDecoder | None = cache.get(key)
    if d is None:
        d = cache[key] = build()
    return d


# Decoders with ``then`` functions are keyed by the functions themselves. A
# caller that builds new functions per call would add one per call, so there
# are at most this many per dialect, the oldest dropped first.
_THEN_DECODERS = "_threadkeep_then_decoders"
_THEN_DECODERS_KEPT = 64
_then_lock = threading.Lock()


def then_decoder(
    dialect: Dialect, table: sa.Table, then: Mapping[str, Callable[[Any], Any]]
) -> RowDecoder:
    """The decoder of ``table``'s whole rows with ``then`` (see
    :class:`RowDecoder`). Building one compiles a function (about 0.5 ms), so
    the same functions get the same decoder again (a callable that cannot
    be hashed gets a new one each time)."""
    cache = _cache(dialect, _THEN_DECODERS)
    key = (table.name, tuple(then.items()))
    try:
        d: RowDecoder | None = cache.get(key)
    except TypeError:  # an unhashable callable
        return RowDecoder(table, dialect, then=then)
    if d is None:
        d = RowDecoder(table, dialect, then=then)
        with _then_lock:
            while len(cache) >= _THEN_DECODERS_KEPT:
                del cache[next(iter(cache))]
            cache[key] = d
    return d


# An UPDATE whose column list varies by call (a patch sets only what it was
# given) is built once per column list by its module and cached, with each
# new value a bound parameter. The parameters are named ``new_<column>``, so
# that no value can take the name of one of the statement's own parameters
# (``sid``, ``owner``, ``now``...), whatever the table's columns are called.


def bound_set(table: sa.Table, columns: Iterable[str]) -> dict[str, Any]:
    """The SET clause's values for ``columns``: bound parameters of the
    columns' types, to be filled by :func:`bound_values`."""
    return {c: sa.bindparam(f"new_{c}", type_=table.c[c].type) for c in columns}


def bound_values(values: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters of :func:`bound_set`'s values."""
    return {f"new_{c}": v for c, v in values.items()}


def cursor(conn: sa.Connection) -> Any:
    """A DBAPI cursor on the connection's current transaction."""
    return conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
