"""Driver errors -> threadkeep errors, in one place.

Store code runs inside :func:`translate_errors`; whatever the driver raises
leaves as a :class:`~threadkeep.errors.ThreadkeepError`, chained with ``from``
so the original stays in the traceback.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import sqlalchemy.exc as sa_exc

from threadkeep.errors import InvalidInput, StoreError, ThreadkeepError


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


@contextmanager
def translate_errors() -> Iterator[None]:
    try:
        yield
    except ThreadkeepError:
        raise
    except sa_exc.IntegrityError as exc:
        # Validation in model/ and service/ runs first, so a constraint firing
        # here means input the checks did not anticipate; it is still the
        # caller's input, and nothing was written.
        raise InvalidInput("row", f"violates a database constraint: {exc.orig}") from exc
    except sa_exc.DataError as exc:
        raise InvalidInput("row", f"the database refused a value: {exc.orig}") from exc
    except sa_exc.SQLAlchemyError as exc:
        raise StoreError(f"database error: {exc}") from exc
    # The hot paths run on the DBAPI cursor (store/prepared.py): same mapping.
    except (sqlite3.IntegrityError, psycopg.IntegrityError) as exc:
        raise InvalidInput("row", f"violates a database constraint: {exc}") from exc
    except (sqlite3.DataError, psycopg.DataError, OverflowError) as exc:
        raise InvalidInput("row", f"the database refused a value: {exc}") from exc
    except (sqlite3.Error, psycopg.Error) as exc:
        raise StoreError(f"database error: {exc}") from exc
