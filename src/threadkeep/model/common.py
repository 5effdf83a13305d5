"""Types shared by every entity: the actor, write receipts, pages."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Actor:
    """The user a call acts for. Every read and write takes one; the store scopes
    every query to ``user_id`` so one user's calls never see another's rows."""

    user_id: str


@dataclass(frozen=True, slots=True)
class Committed(Generic[T]):
    """What a write returns: its result and the id of the transaction that committed
    it. Sync clients (TanStack DB's ``awaitTxId``) wait for ``txid`` to appear in the
    change stream."""

    value: T
    txid: int


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a keyset-paginated listing. ``next_cursor`` is None on the last
    page; pass it back unchanged to get the next one."""

    items: list[T]
    next_cursor: str | None


def utcnow() -> datetime:
    return datetime.now(UTC)
