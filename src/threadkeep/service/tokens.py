"""API tokens: create, list, revoke, and authenticate a bearer token.

A token is ``tk_`` followed by 32 random bytes (URL-safe base64). It is shown
once, when created; the database keeps only its sha256, so a leaked database
does not leak working tokens. Each token carries scopes (``read``, ``write``,
``admin``), independent of each other, and may expire.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict

from threadkeep.errors import InvalidInput, NotFound, ThreadkeepError
from threadkeep.model.common import Actor, Committed, utcnow
from threadkeep.model.ids import new_id
from threadkeep.model.text import check_text
from threadkeep.service.base import ServiceBase, check_actor
from threadkeep.store import tokens as token_q
from threadkeep.store import users as user_q
from threadkeep.store.contract import WriteTx

TOKEN_PREFIX = "tk_"
# tk_ + 43 characters for 32 bytes; anything much longer is not one of ours.
_MAX_TOKEN_LENGTH = 200
# How stale ``last_used_at`` may get before a request refreshes it: a write on
# every request would cost a durable commit per read.
TOUCH_EVERY = timedelta(seconds=60)


class Scope(StrEnum):
    """What a token may do. GET routes need ``read``, writes ``write``, token
    management ``admin``; no scope implies another."""

    READ = "read"
    WRITE = "write"
    ADMIN = "admin"


class ApiToken(BaseModel):
    """A token as stored (without its hash)."""

    model_config = ConfigDict(frozen=True)

    id: str
    user_id: str
    name: str
    scopes: list[Scope]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None


class IssuedToken(ApiToken):
    """A token just created: the only time ``token`` itself is known."""

    token: str


class TokenNotFound(NotFound):
    kind = "token"


class InvalidToken(ThreadkeepError):
    """A bearer token that does not authenticate: unknown, revoked, expired, or
    of a disabled user."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


def hash_token(token: str) -> str:
    """The sha256 hex digest under which a token is stored."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def parse_scopes(scopes: Iterable[str | Scope]) -> list[Scope]:
    """Scopes in canonical order, without duplicates; InvalidInput for unknown ones."""
    if isinstance(scopes, str):
        scopes = [s for s in scopes.split(",") if s.strip()]
    wanted: set[Scope] = set()
    for s in scopes:
        try:
            wanted.add(Scope(str(s).strip()))
        except ValueError:
            allowed = ", ".join(x.value for x in Scope)
            raise InvalidInput("scopes", f"unknown scope {s!r}; use {allowed}") from None
    if not wanted:
        raise InvalidInput("scopes", "give at least one scope (read, write, admin)")
    return [s for s in Scope if s in wanted]


def _to_token(row: Mapping[str, Any]) -> ApiToken:
    return ApiToken.model_validate({k: v for k, v in row.items() if k in ApiToken.model_fields})


class TokenOps(ServiceBase):
    def create_token(
        self,
        actor: Actor,
        name: str,
        *,
        scopes: Iterable[str | Scope] = ("read", "write"),
        expires_at: datetime | None = None,
    ) -> Committed[IssuedToken]:
        """Create an API token for ``actor``'s user. The returned ``token`` is
        shown only now; threadkeep keeps its hash.

        Args:
            name: what the token is for (1-200 characters).
            scopes: any of ``read``, ``write``, ``admin``.
            expires_at: an aware datetime in the future; None never expires.

        Raises:
            UserNotFound: no such user.
            InvalidInput: a bad name, scope or expiry.
        """
        owner = check_actor(actor)
        check_text("name", name)
        if not name.strip() or len(name) > 200:
            raise InvalidInput("name", "must be 1 to 200 characters")
        granted = parse_scopes(scopes)
        if expires_at is not None:
            if expires_at.tzinfo is None:
                raise InvalidInput("expires_at", "must be an aware datetime (with a time zone)")
            if expires_at <= utcnow():
                raise InvalidInput("expires_at", "must be in the future")
        token = new_token()

        def op(tx: WriteTx) -> IssuedToken:
            user_q.get_user(tx.conn, owner)
            row = token_q.insert_token(
                tx,
                {
                    "id": new_id(),
                    "user_id": owner,
                    "name": name,
                    "token_hash": hash_token(token),
                    "scopes": [s.value for s in granted],
                    "created_at": tx.now,
                    "expires_at": expires_at,
                    "revoked_at": None,
                    "last_used_at": None,
                },
            )
            return IssuedToken(**_to_token(row).model_dump(), token=token)

        return self.engine.write(op)

    def list_tokens(self, actor: Actor) -> list[ApiToken]:
        """``actor``'s tokens, oldest first, revoked and expired ones included."""
        owner = check_actor(actor)
        rows = self.engine.read(lambda c: token_q.list_tokens(c, owner))
        return [_to_token(r) for r in rows]

    def list_all_tokens(self) -> list[ApiToken]:
        """Every user's tokens (administrative: for the command line)."""
        return [_to_token(r) for r in self.engine.read(lambda c: token_q.list_tokens(c, None))]

    def find_token(self, token_id: str) -> ApiToken:
        """The token ``token_id``, whoever owns it (administrative: for the
        command line). Raises TokenNotFound."""
        row = self.engine.read(lambda c: token_q.get_token(c, token_id, None))
        if row is None:
            raise TokenNotFound(token_id)
        return _to_token(row)

    def revoke_token(self, actor: Actor, token_id: str) -> Committed[ApiToken]:
        """Revoke one of ``actor``'s tokens; it stops working at once.

        Raises:
            TokenNotFound: no such token for this actor.
        """
        owner = check_actor(actor)

        def op(tx: WriteTx) -> ApiToken:
            row = token_q.revoke_token(tx, token_id, owner)
            if row is None:
                raise TokenNotFound(token_id)
            return _to_token(row)

        return self.engine.write(op)

    def authenticate(self, token: str) -> ApiToken:
        """The live token that ``token`` is.

        Raises:
            InvalidToken: not a threadkeep token, unknown, revoked, expired, or
                its user is disabled.
        """
        if not token.startswith(TOKEN_PREFIX) or len(token) > _MAX_TOKEN_LENGTH:
            raise InvalidToken("not a threadkeep token (they start with tk_)")
        digest = hash_token(token)
        # Every request pays this lookup: one statement, no transaction around it.
        row = self.engine.read(lambda c: token_q.find_by_hash(c, digest), single_statement=True)
        if row is None:
            raise InvalidToken("unknown token")
        now = utcnow()
        if row["revoked_at"] is not None:
            raise InvalidToken("the token was revoked")
        if row["expires_at"] is not None and row["expires_at"] <= now:
            raise InvalidToken("the token has expired")
        if row["user_disabled"]:
            raise InvalidToken("the token's user is disabled")
        found = _to_token(row)
        last = found.last_used_at
        if last is None or now - last >= TOUCH_EVERY:
            self.engine.write(lambda tx: token_q.touch_token(tx, found.id, tx.now))
        return found
