"""Ids a client chose: free, or refused before the insert.

Every table keys its rows by one id for all users, so an id another user's
row holds is simply not available. Checked before the insert, the caller gets
:class:`AlreadyExists` (409) naming the id, the same for every kind, instead
of the engine's constraint text (which names tables and differs between
SQLite and PostgreSQL). A concurrent insert of the same id can still reach
the constraint on PostgreSQL; it is refused there all the same.
"""

from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa

from threadkeep.errors import AlreadyExists, InvalidInput


def check_free(conn: sa.Connection, table: sa.Table, name: str, ids: Iterable[str | None]) -> None:
    """Refuse ``ids`` (``None``: the server chooses) repeated or already taken."""
    chosen = [i for i in ids if i is not None]
    if not chosen:
        return
    if len(set(chosen)) != len(chosen):
        raise InvalidInput("id", f"the same {name} id appears twice in one call")
    taken = conn.execute(sa.select(table.c.id).where(table.c.id.in_(chosen))).scalars().first()
    if taken is not None:
        # Whoever holds it: the id is simply not available.
        raise AlreadyExists(name, taken)
