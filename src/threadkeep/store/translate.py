"""Driver errors -> threadkeep errors, in one place.

Store code runs inside :func:`translate_errors`; whatever the driver raises
leaves as a :class:`~threadkeep.errors.ThreadkeepError`, chained with ``from``
so the original stays in the traceback.
"""

from __future__ import annotations

import errno
import sqlite3
from typing import Any

import psycopg
import sqlalchemy.exc as sa_exc

from threadkeep.errors import (
    CommitInDoubt,
    InvalidInput,
    StorageFull,
    StoreBusy,
    StoreError,
    ThreadkeepError,
)


def _driver_error(exc: BaseException) -> BaseException:
    """The DBAPI exception, whether SQLAlchemy wrapped it or the hot path raised it."""
    return getattr(exc, "orig", None) or exc


def is_unique_violation(exc: BaseException) -> bool:
    """True for a unique/primary-key violation on either engine."""
    orig = _driver_error(exc)
    sqlstate = getattr(orig, "sqlstate", None)
    if sqlstate is not None:
        return bool(sqlstate == "23505")
    return isinstance(orig, sqlite3.IntegrityError) and "UNIQUE constraint failed" in str(orig)


def is_retryable(exc: BaseException) -> bool:
    """PostgreSQL serialization failures and deadlocks: safe to run the whole
    transaction again."""
    return getattr(_driver_error(exc), "sqlstate", None) in ("40001", "40P01")


# What psycopg's prepared statements meet behind a transaction pooler that
# was not declared (store/pg_connect.py): no such statement, one of the same
# name, or one of the same name with other parameters.
_POOLER_SQLSTATES = ("26000", "42P05")
_POOLER_HINT = (
    " (is this URL a transaction pooler's, such as PgBouncer's? "
    "Add ?pgbouncer=true to it: docs/postgresql.md)"
)


def _pooler_hint(exc: BaseException) -> str:
    orig = _driver_error(exc)
    if getattr(orig, "sqlstate", None) in _POOLER_SQLSTATES:
        return _POOLER_HINT
    if "prepared statement" in str(orig) and "bind message" in str(orig):
        return _POOLER_HINT
    return ""


# SQLite's result codes (extended codes keep the primary one in their low
# byte: SQLITE_IOERR_FSYNC is 10 | 4 << 8) and PostgreSQL's SQLSTATE for a
# full disk.
_SQLITE_FULL = sqlite3.SQLITE_FULL
_SQLITE_IOERR = sqlite3.SQLITE_IOERR
_PG_DISK_FULL = "53100"
# A full disk, or the user's quota on it, met by a file threadkeep writes itself.
_OS_FULL = (errno.ENOSPC, errno.EDQUOT)


def _sqlite_code(exc: BaseException) -> int | None:
    """The primary SQLite result code of a driver error, or None."""
    code = getattr(exc, "sqlite_errorcode", None)
    return code & 0xFF if isinstance(exc, sqlite3.Error) and code is not None else None


def storage_full(exc: BaseException) -> StorageFull | None:
    """The :class:`StorageFull` a driver error stands for, or None. SQLite
    reports a full disk as ``SQLITE_FULL`` (an ``OperationalError``);
    PostgreSQL as SQLSTATE 53100 (``could not extend file``, ``could not
    write``)."""
    orig = _driver_error(exc)
    if isinstance(orig, OSError) and orig.errno in _OS_FULL:
        return StorageFull(f"{orig.filename}: {orig.strerror}")
    if getattr(orig, "sqlstate", None) != _PG_DISK_FULL and _sqlite_code(orig) != _SQLITE_FULL:
        return None
    text = str(orig).strip()
    return StorageFull(text.splitlines()[0] if text else type(orig).__name__)


def commit_in_doubt(exc: BaseException) -> CommitInDoubt | None:
    """The :class:`CommitInDoubt` that a failed SQLite ``COMMIT`` stands for,
    or None. An I/O error there is in doubt: when ``fsync`` fails, the
    commit's frames may already be in the write-ahead log, and a restart
    before the next commit replays them (tests/guarantees/
    test_commit_in_doubt.py shows it happen). A full disk or a busy database
    leaves nothing behind."""
    orig = _driver_error(exc)
    if _sqlite_code(orig) != _SQLITE_IOERR:
        return None
    return CommitInDoubt(str(orig))


def _translated(exc: BaseException) -> BaseException | None:
    """The threadkeep error a driver error stands for; None to let it pass."""
    if isinstance(exc, ThreadkeepError):
        return None
    full = storage_full(exc)
    if full is not None:
        return full
    if isinstance(exc, sa_exc.IntegrityError):
        # Validation in model/ and service/ runs first, so a constraint firing
        # here means input the checks did not anticipate; it is still the
        # caller's input, and nothing was written.
        return InvalidInput("row", f"violates a database constraint: {exc.orig}")
    if isinstance(exc, sa_exc.DataError):
        return InvalidInput("row", f"the database refused a value: {exc.orig}")
    if isinstance(exc, sa_exc.TimeoutError):  # the pool's, not the server's
        return StoreBusy(str(exc).split(" (Background")[0])
    if isinstance(exc, sa_exc.SQLAlchemyError):
        return StoreError(f"database error: {exc}{_pooler_hint(exc)}")
    # The hot paths run on the DBAPI cursor (store/prepared.py): same mapping.
    if isinstance(exc, sqlite3.IntegrityError | psycopg.IntegrityError):
        return InvalidInput("row", f"violates a database constraint: {exc}")
    if isinstance(exc, sqlite3.DataError | psycopg.DataError | OverflowError):
        return InvalidInput("row", f"the database refused a value: {exc}")
    if isinstance(exc, sqlite3.Error | psycopg.Error):
        return StoreError(f"database error: {exc}{_pooler_hint(exc)}")
    return None


class translate_errors:  # a lower-case name: it reads as the function it replaced
    """Context manager: driver errors raised inside leave as threadkeep errors,
    chained to the original. A class, not a generator: it wraps every append
    and every read, and a generator-based manager costs a generator per use."""

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        # Returns None (never swallows): an exception that maps to nothing
        # propagates unchanged.
        if exc is not None:
            mapped = _translated(exc)
            if mapped is not None:
                raise mapped from exc
