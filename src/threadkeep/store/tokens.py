"""Queries on API tokens. Only the sha256 of a token is ever stored or compared.

Rows go back to the service layer as plain mappings; the service turns them
into :class:`threadkeep.service.tokens.ApiToken`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from threadkeep.store.contract import WriteTx
from threadkeep.store.prepared import RowDecoder, cursor, custom_decoder, prepared
from threadkeep.store.tables import api_tokens, users

# What a token row is read with: the token and whether its user is disabled.
_COLUMNS = (*api_tokens.c, users.c.disabled.label("user_disabled"))


def _select() -> sa.Select[Any]:
    return sa.select(*_COLUMNS).join(users, users.c.id == api_tokens.c.user_id)


def insert_token(tx: WriteTx, values: Mapping[str, Any]) -> dict[str, Any]:
    tx.conn.execute(api_tokens.insert().values(**values))
    row = tx.conn.execute(_select().where(api_tokens.c.id == values["id"])).one()
    return dict(row._mapping)


def find_by_hash(conn: sa.Connection, token_hash: str) -> dict[str, Any] | None:
    """Every API request pays this lookup, so it runs as a prepared statement
    on the driver's cursor (store/prepared.py): through ``Connection.execute``
    it cost as much as reading the last 50 messages."""
    stmt = prepared(conn.dialect, "tokens.by_hash", _by_hash_statement)
    row = stmt.execute(cursor(conn), {"hash": token_hash}).fetchone()
    if row is None:
        return None
    dialect = conn.dialect
    decode = custom_decoder(
        dialect, "tokens.by_hash", lambda: RowDecoder(api_tokens, dialect, _COLUMNS)
    )
    return decode(row)


def _by_hash_statement() -> sa.Executable:
    return _select().where(api_tokens.c.token_hash == sa.bindparam("hash"))


def get_token(conn: sa.Connection, token_id: str, user_id: str | None) -> dict[str, Any] | None:
    """The token ``token_id``; when ``user_id`` is given, only if that user owns it."""
    q = _select().where(api_tokens.c.id == token_id)
    if user_id is not None:
        q = q.where(api_tokens.c.user_id == user_id)
    row = conn.execute(q).first()
    return None if row is None else dict(row._mapping)


def list_tokens(conn: sa.Connection, user_id: str | None) -> list[dict[str, Any]]:
    """Tokens of ``user_id`` (every user's when None), oldest first."""
    q = _select().order_by(api_tokens.c.created_at, api_tokens.c.id)
    if user_id is not None:
        q = q.where(api_tokens.c.user_id == user_id)
    return [dict(r._mapping) for r in conn.execute(q)]


def revoke_token(tx: WriteTx, token_id: str, user_id: str) -> dict[str, Any] | None:
    """Revoke the token if ``user_id`` owns it; revoking twice keeps the first time."""
    row = get_token(tx.conn, token_id, user_id)
    if row is None:
        return None
    if row["revoked_at"] is None:
        tx.conn.execute(
            api_tokens.update().where(api_tokens.c.id == token_id).values(revoked_at=tx.now)
        )
        row["revoked_at"] = tx.now
    return row


def touch_token(tx: WriteTx, token_id: str, used_at: datetime) -> None:
    tx.conn.execute(
        api_tokens.update().where(api_tokens.c.id == token_id).values(last_used_at=used_at)
    )
