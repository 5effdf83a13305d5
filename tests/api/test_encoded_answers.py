"""The routes that answer with JSON they encoded themselves (api/encoded.py:
append, read messages, get and list sessions, and every write that answers a
session: create, update, trash, restore, fork, rewind; the branch list and
purge too) send what FastAPI's own serialisation
of the same model would: the same document, the same status, JSON content
type. Compared here with pydantic's JSON mode of the model the library
returns for the same call."""

from __future__ import annotations

from typing import Any

from api_helpers import Api, api_client_fixture, api_store_fixture, new_caller
from pydantic import BaseModel

from threadkeep import Threadkeep
from threadkeep.api.schemas import (
    AppendResult,
    MessageList,
    Purged,
    RewindResult,
    SessionList,
    SessionPage,
    SessionWritten,
)

store = api_store_fixture()
api = api_client_fixture()

RICH = {
    "role": "assistant",
    "content": 'héllo ✓ \U0001f600 "quoted" \\ back',
    "parts": [{"type": "text", "text": "a"}],
    "tool_calls": [{"id": "t1", "name": "grep", "args": {"n": [1, 2.5, None, True]}}],
    "model": "m-1",
    "input_tokens": 7,
    "output_tokens": 11,
    "client_id": "c-1",
    "metadata": {"nested": {"f": 1.25, "big": 2**53}},
}


def _as_fastapi_sends(model: BaseModel) -> Any:
    return model.model_dump(mode="json", by_alias=True)


def _json(r: Any) -> Any:
    assert r.headers["content-type"] == "application/json"
    return r.json()


def test_append_read_and_list_answer_the_documents_fastapi_would(
    api: Api, store: Threadkeep
) -> None:
    me = new_caller(store)
    sid = api.post("/v1/sessions", json={"title": "t"}, headers=me.headers).json()["id"]

    r = api.post(f"/v1/sessions/{sid}/messages", json={"messages": [RICH]}, headers=me.headers)
    assert r.status_code == 201
    appended = _json(r)
    stored = store.get_history(me.actor, sid)
    expected = AppendResult(
        messages=stored, tool_events=[], timeline_events=[], txid=r.json()["txid"]
    )
    assert appended == _as_fastapi_sends(expected)

    retry = api.post(f"/v1/sessions/{sid}/messages", json={"messages": [RICH]}, headers=me.headers)
    assert retry.status_code == 201 and _json(retry) == appended

    for params in ({"last": 50}, {"after_seq": 0}, {"before_seq": 2, "last": 1}):
        r = api.get(f"/v1/sessions/{sid}/messages", params=params, headers=me.headers)
        assert r.status_code == 200
        assert _json(r) == _as_fastapi_sends(MessageList(items=stored)), params

    r = api.get(f"/v1/sessions/{sid}", headers=me.headers)
    assert r.status_code == 200
    session = store.get_session(me.actor, sid)
    assert _json(r) == _as_fastapi_sends(session)
    assert r.headers["etag"] == f'"{session.version}"'

    r = api.get("/v1/sessions", headers=me.headers)
    assert r.status_code == 200
    page = store.list_sessions(me.actor)
    assert _json(r) == _as_fastapi_sends(
        SessionPage(items=page.items, next_cursor=page.next_cursor)
    )


def _written(store: Threadkeep, caller: Any, r: Any, status: int) -> Any:
    """The answer of a write that answers a session: the stored session as
    FastAPI would send a SessionWritten, the status, and the ETag."""
    assert r.status_code == status, r.text
    body = _json(r)
    session = store.get_session(caller.actor, body["id"])
    expected = SessionWritten(**dict(session), txid=body["txid"])
    assert body == _as_fastapi_sends(expected)
    assert r.headers["etag"] == f'"{session.version}"'
    return body


def test_session_writes_answer_the_documents_fastapi_would(api: Api, store: Threadkeep) -> None:
    me = new_caller(store)
    h = me.headers
    created = _written(
        store,
        me,
        api.post(
            "/v1/sessions",
            json={"title": "é ✓", "tags": ["a"], "metadata": {"f": 1.5, "big": 2**53}},
            headers=h,
        ),
        201,
    )
    sid = created["id"]
    api.post(
        f"/v1/sessions/{sid}/messages",
        json={"messages": [RICH, RICH | {"client_id": "c-2"}]},
        headers=h,
    )

    updated = _written(
        store, me, api.patch(f"/v1/sessions/{sid}", json={"starred": True}, headers=h), 200
    )
    assert updated["starred"] is True and updated["version"] == created["version"] + 1
    branch = _written(
        store, me, api.post(f"/v1/sessions/{sid}/fork", json={"at_seq": 1}, headers=h), 201
    )
    assert branch["parent_session_id"] == sid

    r = api.get(f"/v1/sessions/{sid}/branches", headers=h)
    assert r.status_code == 200
    assert _json(r) == _as_fastapi_sends(SessionList(items=store.list_branches(me.actor, sid)))

    r = api.post(f"/v1/sessions/{sid}/rewind", json={"to_seq": 1}, headers=h)
    assert r.status_code == 200
    rewound = _json(r)
    expected = RewindResult(
        session=store.get_session(me.actor, sid),
        branch=store.get_session(me.actor, rewound["branch"]["id"]),
        txid=rewound["txid"],
    )
    assert rewound == _as_fastapi_sends(expected)

    trashed = _written(store, me, api.delete(f"/v1/sessions/{sid}", headers=h), 200)
    assert trashed["deleted_at"] is not None
    restored = _written(store, me, api.post(f"/v1/sessions/{sid}/restore", headers=h), 200)
    assert restored["deleted_at"] is None

    r = api.delete(f"/v1/sessions/{branch['id']}", params={"purge": "true"}, headers=h)
    assert r.status_code == 200
    assert _json(r) == _as_fastapi_sends(Purged(txid=r.json()["txid"]))
