"""What the session-record operations share (todos, snapshots...): argument
checks, size limits, and the read/delete calls every kind has."""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any, TypeVar

import pydantic

from threadkeep.errors import InvalidInput
from threadkeep.model.common import Actor, Committed
from threadkeep.model.record import RecordRow
from threadkeep.model.text import check_size, json_size, text_size
from threadkeep.service import args
from threadkeep.service.base import ServiceBase, check_actor, coerce
from threadkeep.store import records as record_q
from threadkeep.store.contract import WriteFn, WriteTx

M = TypeVar("M", bound=pydantic.BaseModel)
R = TypeVar("R", bound=RecordRow)
T = TypeVar("T")
E = TypeVar("E", bound=StrEnum)


def choice(field: str, value: Any, enum: type[E]) -> E | None:
    """An optional filter value that must be one of ``enum``'s values."""
    if value is None:
        return None
    try:
        return enum(value)
    except ValueError:
        allowed = ", ".join(e.value for e in enum)
        raise InvalidInput(field, f"must be one of {allowed}") from None


class RecordOps(ServiceBase):
    def _scope(self, actor: Actor, session_id: str) -> tuple[str, str]:
        """The actor's user id and a checked session id."""
        return check_actor(actor), args.key("session_id", session_id)

    def _write(self, owner: str, session_id: str, fn: WriteFn[T]) -> Committed[T]:
        """Run ``fn`` as one write. A write that changed nothing (the same todo
        list again, an empty patch) still logs a key-only update of its session,
        so the txid it returns appears in the change stream a sync client waits
        on."""

        def op(tx: WriteTx) -> T:
            value = fn(tx)
            if not tx.changes:
                tx.log("sessions", session_id, "update", {"id": session_id}, owner, session_id)
            return value

        return self.engine.write(op)

    def _input(self, model: type[M], value: M | Mapping[str, Any], field: str) -> M:
        args.mapping_or_model(field, value, model)
        return coerce(model, value, field)

    def _json_limit(self, field: str, *values: Any) -> None:
        size = sum(json_size(v) for v in values if v is not None)
        check_size(field, size, self.limits.max_json_bytes)

    def _text_limit(self, field: str, value: str | None) -> None:
        if value is not None:
            check_size(field, text_size(value), self.limits.max_message_bytes)

    def _get(self, kind: record_q.Kind[R], actor: Actor, session_id: str, key: str) -> R:
        owner, sid = self._scope(actor, session_id)
        key = args.key("id", key)
        return self.engine.read(lambda c: record_q.get(c, kind, owner, sid, key))

    def _list(
        self,
        kind: record_q.Kind[R],
        actor: Actor,
        session_id: str,
        limit: int | None,
        /,
        **equal: Any,
    ) -> list[R]:
        """The session's rows, optionally only those whose columns equal ``equal``
        (None values are ignored)."""
        owner, sid = self._scope(actor, session_id)
        if limit is not None:
            self._page_limit(limit)
        where = [kind.table.c[k] == v for k, v in record_q.plain(equal).items() if v is not None]
        return self.engine.read(
            lambda c: record_q.list_rows(c, kind, owner, sid, *where, limit=limit)
        )

    def _patch(
        self,
        kind: record_q.Kind[R],
        actor: Actor,
        session_id: str,
        key: str,
        change: pydantic.BaseModel,
        required: tuple[str, ...] = (),
    ) -> Committed[R]:
        owner, sid = self._scope(actor, session_id)
        key = args.key("id", key)
        values = change.model_dump(exclude_unset=True)
        return self._write(
            owner,
            sid,
            lambda tx: record_q.patch(tx, kind, owner, sid, key, values, required=required),
        )

    def _delete(
        self, kind: record_q.Kind[Any], actor: Actor, session_id: str, key: str
    ) -> Committed[None]:
        owner, sid = self._scope(actor, session_id)
        key = args.key("id", key)
        return self._write(owner, sid, lambda tx: record_q.delete(tx, kind, owner, sid, key))
