"""What threadkeep needs of the SQLite library this Python links, checked
before a store opens a file.

Python's ``sqlite3`` uses whatever SQLite the interpreter was built with, and
an older one fails deep inside a write with a syntax error. So a store checks
first and says what to do:

* 3.35 or newer: ``RETURNING`` (every write) and ``MATERIALIZED`` CTEs (the
  session list's filters);
* FTS5 with its ``trigram`` tokenizer (3.34): search and the title filter.
"""

from __future__ import annotations

import functools
import sqlite3

from threadkeep.errors import StoreError

MINIMUM = (3, 35, 0)


def problem(version: tuple[int, ...], fts5: bool) -> str | None:
    """What is missing, in words, or None."""
    have = ".".join(map(str, version))
    if tuple(version) < MINIMUM:
        return f"SQLite {'.'.join(map(str, MINIMUM))} or newer, and this Python uses {have}"
    if not fts5:
        return f"SQLite with FTS5 and its trigram tokenizer, which this Python's {have} lacks"
    return None


@functools.cache
def has_fts5_trigram() -> bool:
    conn = sqlite3.connect(":memory:")
    try:
        conn.execute("CREATE VIRTUAL TABLE probe USING fts5(text, tokenize = 'trigram')")
        return True
    except sqlite3.OperationalError:
        return False
    finally:
        conn.close()


def require() -> None:
    """Raise StoreError when this Python's SQLite cannot hold a store."""
    missing = problem(sqlite3.sqlite_version_info, has_fts5_trigram())
    if missing is not None:
        raise StoreError(f"threadkeep needs {missing}. {WAYS_OUT}")


WAYS_OUT = (
    "Use a Python built with a newer SQLite (python.org's builds and Debian 12's "
    "are), or PostgreSQL (THREADKEEP_DATABASE_URL=postgresql://...)"
)


def describe() -> str:
    """This Python's SQLite, as the doctor shows it."""
    fts5 = "with" if has_fts5_trigram() else "without"
    return f"SQLite {sqlite3.sqlite_version}, {fts5} FTS5's trigram tokenizer"
