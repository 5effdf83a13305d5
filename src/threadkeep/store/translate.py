"""Driver errors -> threadkeep errors, in one place.

Store code runs inside :func:`translate_errors`; whatever the driver raises
leaves as a :class:`~threadkeep.errors.ThreadkeepError`, chained with ``from``
so the original stays in the traceback.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy.exc as sa_exc

from threadkeep.errors import InvalidInput, StoreError, ThreadkeepError


def is_unique_violation(exc: BaseException) -> bool:
    """True for a unique/primary-key violation on either engine."""
    if not isinstance(exc, sa_exc.IntegrityError):
        return False
    orig = exc.orig
    sqlstate = getattr(orig, "sqlstate", None)
    if sqlstate is not None:
        return bool(sqlstate == "23505")
    return "UNIQUE constraint failed" in str(orig)


def is_retryable(exc: BaseException) -> bool:
    """PostgreSQL serialization failures and deadlocks: safe to run the whole
    transaction again."""
    orig = getattr(exc, "orig", None)
    return getattr(orig, "sqlstate", None) in ("40001", "40P01")


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
