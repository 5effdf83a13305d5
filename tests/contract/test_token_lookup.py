"""The per-request token lookup (store/tokens.py ``find_by_hash``) runs on the
driver's cursor with its own row decoder. It must return exactly the mapping
the ordinary SQLAlchemy path returns, for tokens in every state auth decides
on: fresh, expiring, used, revoked, and of a disabled user."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from threadkeep import Actor
from threadkeep.model.common import utcnow
from threadkeep.service.tokens import InvalidToken, hash_token
from threadkeep.store import tables, tokens


def _ordinary(conn: sa.Connection, digest: str) -> dict[str, Any] | None:
    row = conn.execute(tokens._select().where(tables.api_tokens.c.token_hash == digest)).first()
    return None if row is None else dict(row._mapping)


def _both(tk: Any, secret: str) -> tuple[Any, Any]:
    digest = hash_token(secret)
    with tk.engine.sa_engine.connect() as conn, conn.begin():
        return tokens.find_by_hash(conn, digest), _ordinary(conn, digest)


def test_the_fast_lookup_returns_what_the_ordinary_path_returns(tk, actor):
    fresh = tk.create_token(actor, "fresh").value.token
    expiring = tk.create_token(
        actor, "expiring", scopes=["read"], expires_at=utcnow() + timedelta(days=3)
    ).value.token
    used = tk.create_token(actor, "used", scopes=["read", "write", "admin"]).value.token
    tk.authenticate(used)  # sets last_used_at
    revoked = tk.create_token(actor, "revoked").value
    tk.revoke_token(actor, revoked.id)

    for secret in (fresh, expiring, used, revoked.token):
        fast, ordinary = _both(tk, secret)
        assert fast is not None
        assert fast == ordinary
        assert {k: type(v) for k, v in fast.items()} == {k: type(v) for k, v in ordinary.items()}
    assert _both(tk, "tk_" + "x" * 40) == (None, None)
    assert _both(tk, used)[0]["last_used_at"] is not None
    assert _both(tk, revoked.token)[0]["revoked_at"] is not None


def test_a_disabled_users_token_is_read_as_disabled_and_refused(tk):
    user = tk.create_user("soon-disabled").value
    secret = tk.create_token(Actor(user.id), "t").value.token
    with tk.engine.sa_engine.begin() as conn:
        conn.execute(
            sa.update(tables.users).where(tables.users.c.id == user.id).values(disabled=True)
        )
    fast, ordinary = _both(tk, secret)
    assert fast == ordinary and fast["user_disabled"] is True
    with pytest.raises(InvalidToken, match="disabled"):
        tk.authenticate(secret)
