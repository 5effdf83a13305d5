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
    SQLAlchemy ``connect`` event listener."""
    dbapi_conn.create_function("tk_fold", 1, fold, deterministic=True)
