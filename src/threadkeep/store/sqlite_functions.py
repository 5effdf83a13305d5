"""SQL functions threadkeep adds to every SQLite connection it opens.

``tk_fold`` folds case as Python's ``str.casefold`` does (SQLite's own
``lower()`` folds ASCII only). The list's title filter compares with it, and
since revision 0012 the triggers that keep ``search_titles`` call it, so a
connection that inserts a session or changes a title must have it: the
store's, ``threadkeep copy``'s and backup's. A connection without it (the
``sqlite3`` shell) gets "no such function: tk_fold" for such a write, and
nothing is written.
"""

from __future__ import annotations

from typing import Any


def fold(value: str | None) -> str | None:
    return None if value is None else value.casefold()


def add_functions(dbapi_conn: Any, _record: Any = None) -> None:
    """Register the functions on a DBAPI connection; also usable as a
    SQLAlchemy ``connect`` event listener.

    ``trusted_schema`` on: a SQLite built with it off by default refuses a
    trigger that writes an FTS5 table or calls a function not marked
    innocuous (Python's ``create_function`` cannot mark one), so creating
    a session, or finishing, editing or purging a message, would fail
    ("unsafe use of virtual table": the search triggers of revision 0006).
    The setting guards against a hostile database file whose schema makes
    an application's functions or virtual tables act for it; threadkeep
    opens its own files, and its functions have no effects."""
    dbapi_conn.execute("PRAGMA trusted_schema = ON")
    dbapi_conn.create_function("tk_fold", 1, fold, deterministic=True)
