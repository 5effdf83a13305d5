"""Bearer auth, scopes, token routes, and least privilege: no route reads or
changes another user's rows, and a foreign id answers exactly like a missing one."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from api_helpers import (
    Api,
    Caller,
    api_client_fixture,
    api_store_fixture,
    assert_problem,
    new_caller,
    writes_nothing,
)

from threadkeep import Threadkeep
from threadkeep.api.problems import ApiProblem
from threadkeep.model.common import utcnow
from threadkeep.service.tokens import hash_token
from threadkeep.store import tables

store = api_store_fixture()
api = api_client_fixture()


def new_session(api: Api, who: Caller) -> str:
    r = api.post("/v1/sessions", json={"title": "mine"}, headers=who.headers)
    assert r.status_code == 201, r.text
    sid: str = r.json()["id"]
    return sid


# --- authentication ----------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer", "Bearer tk_not-a-real-token", "Bearer nonsense", "Basic dXNlcjpwdw=="],
    ids=["missing", "empty", "unknown", "not-ours", "basic"],
)
def test_a_missing_or_bad_token_answers_401(
    api: Api, store: Threadkeep, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    with writes_nothing(store):
        r = api.post("/v1/sessions", json={}, headers=headers)
    assert_problem(r, 401)
    assert r.headers["www-authenticate"].startswith("Bearer")


def test_a_revoked_token_stops_working_at_once(api: Api, store: Threadkeep) -> None:
    me = new_caller(store)
    assert api.get("/v1/sessions", headers=me.headers).status_code == 200
    token_id = store.authenticate(me.token).id

    revoked = api.delete(f"/v1/tokens/{token_id}", headers=me.headers)

    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    body = assert_problem(api.get("/v1/sessions", headers=me.headers), 401)
    assert "revoked" in body["detail"]


def test_an_expired_token_answers_401(api: Api, store: Threadkeep) -> None:
    me = new_caller(store)
    with store.engine.sa_engine.begin() as conn:
        conn.execute(
            sa.update(tables.api_tokens)
            .where(tables.api_tokens.c.token_hash == hash_token(me.token))
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    body = assert_problem(api.get("/v1/sessions", headers=me.headers), 401)
    assert "expired" in body["detail"]


def test_a_disabled_users_token_answers_401(api: Api, store: Threadkeep) -> None:
    me = new_caller(store)
    with store.engine.sa_engine.begin() as conn:
        conn.execute(
            sa.update(tables.users)
            .where(tables.users.c.id == me.actor.user_id)
            .values(disabled=True)
        )
    assert_problem(api.get("/v1/me", headers=me.headers), 401)


def test_the_token_is_stored_only_as_its_hash_and_records_its_use(
    api: Api, store: Threadkeep
) -> None:
    me = new_caller(store)
    api.get("/v1/me", headers=me.headers)
    with store.engine.sa_engine.connect() as conn:
        rows = conn.execute(
            sa.select(tables.api_tokens).where(tables.api_tokens.c.user_id == me.actor.user_id)
        ).all()
    assert len(rows) == 1
    assert rows[0].token_hash == hash_token(me.token) != me.token
    assert me.token not in [str(v) for v in rows[0]]
    assert rows[0].last_used_at is not None


# --- scopes --------------------------------------------------------------------------


def test_a_read_only_token_cannot_write(api: Api, store: Threadkeep) -> None:
    writer = new_caller(store)
    sid = new_session(api, writer)
    reader = Caller(
        writer.actor,
        token := store.create_token(writer.actor, "ro", scopes=["read"]).value.token,
        {"Authorization": f"Bearer {token}"},
    )

    assert api.get(f"/v1/sessions/{sid}", headers=reader.headers).status_code == 200
    streaming = store.start_message(writer.actor, sid, {"role": "assistant"}).value.id
    with writes_nothing(store):
        for method, url, body in [
            ("POST", "/v1/sessions", {}),
            ("PATCH", f"/v1/sessions/{sid}", {"title": "x"}),
            ("POST", f"/v1/sessions/{sid}/messages", {"messages": [{"role": "user"}]}),
            ("DELETE", f"/v1/sessions/{sid}", None),
            ("POST", f"/v1/messages/{streaming}/finish", {"status": "incomplete"}),
        ]:
            r = api.request(method, url, json=body, headers=reader.headers)
            problem = assert_problem(r, 403)
            assert "'write' scope" in problem["detail"]
            assert 'error="insufficient_scope"' in r.headers["www-authenticate"]


def test_a_write_only_token_cannot_read_and_only_admin_manages_tokens(
    api: Api, store: Threadkeep
) -> None:
    owner = new_caller(store)
    write_only = store.create_token(owner.actor, "wo", scopes=["write"]).value.token
    headers = {"Authorization": f"Bearer {write_only}"}

    assert api.post("/v1/sessions", json={}, headers=headers).status_code == 201
    assert_problem(api.get("/v1/sessions", headers=headers), 403)
    rw = store.create_token(owner.actor, "rw", scopes=["read", "write"]).value.token
    rw_headers = {"Authorization": f"Bearer {rw}"}
    with writes_nothing(store):
        assert_problem(api.get("/v1/tokens", headers=rw_headers), 403)
        assert_problem(api.post("/v1/tokens", json={"name": "x"}, headers=rw_headers), 403)


def test_token_routes_create_list_and_revoke_without_ever_showing_a_hash(
    api: Api, store: Threadkeep
) -> None:
    admin = new_caller(store)
    made = api.post("/v1/tokens", json={"name": "ci", "scopes": ["read"]}, headers=admin.headers)
    assert made.status_code == 201, made.text
    issued = made.json()
    assert issued["token"].startswith("tk_") and issued["scopes"] == ["read"]
    assert isinstance(issued["txid"], int)
    new_headers = {"Authorization": f"Bearer {issued['token']}"}
    me = api.get("/v1/me", headers=new_headers).json()
    assert me["user"]["id"] == admin.actor.user_id and me["token"]["id"] == issued["id"]

    listed = api.get("/v1/tokens", headers=admin.headers).json()["items"]
    assert {t["name"] for t in listed} == {"test", "ci"}
    for t in listed:
        assert "token" not in t and "token_hash" not in t

    with writes_nothing(store):
        assert_problem(
            api.post("/v1/tokens", json={"name": "x", "scopes": ["root"]}, headers=admin.headers),
            422,
        )
        past = (utcnow() - timedelta(days=1)).isoformat()
        assert_problem(
            api.post("/v1/tokens", json={"name": "x", "expires_at": past}, headers=admin.headers),
            422,
        )
    assert api.delete(f"/v1/tokens/{issued['id']}", headers=admin.headers).status_code == 200
    assert_problem(api.get("/v1/me", headers=new_headers), 401)


def test_health_routes_need_no_token(api: Api) -> None:
    for url in ("/healthz", "/readyz", "/metrics", "/openapi.json", "/"):
        assert api.get(url).status_code == 200, url


# --- least privilege ---------------------------------------------------------------


def _victim(api: Api, store: Threadkeep) -> tuple[Caller, dict[str, str]]:
    """A user with a session holding a message, a tool event, a timeline event,
    a branch, and a second token; returns the ids an attacker might try."""
    owner = new_caller(store)
    sid = new_session(api, owner)
    appended = api.post(
        f"/v1/sessions/{sid}/messages",
        json={
            "messages": [{"role": "user", "content": "secret"}],
            "tool_events": [{"name": "t"}],
            "timeline_events": [{"kind": "k"}],
        },
        headers=owner.headers,
    ).json()
    api.post(f"/v1/sessions/{sid}/fork", json={"at_seq": 1}, headers=owner.headers)
    token = store.create_token(owner.actor, "victim's").value
    me = owner.actor
    # Still streaming, so that finishing it would succeed for its owner.
    mid = store.start_message(me, sid, {"role": "assistant", "content": "secret"}).value.id
    store.set_summary(me, sid, {"summary": "secret"})
    upload = store.upload(owner.actor, sid, [b"private file"], filename="secret.txt").value
    return owner, {
        "upload_id": upload.id,
        "session_id": sid,
        "message_id": mid,
        "event_id": appended["tool_events"][0]["id"],
        "token_id": token.id,
        # The session record (revision 0003).
        "todo_id": store.add_todo(me, sid, {"content": "t"}).value.id,
        "misalignment_id": store.record_misalignment(
            me, sid, {"kind": "k", "description": "d"}
        ).value.id,
        "hook_decision_id": store.record_hook_decision(
            me, sid, {"rule_id": "r", "event": "stop", "decision": "allow"}
        ).value.id,
        "repo_binding_id": store.bind_repo(me, sid, {"path": "/p"}).value.id,
        "snapshot_id": store.create_snapshot(me, sid, {}).value.id,
        "checkpoint_id": store.create_checkpoint(me, sid, {"message_id": mid}).value.id,
        "recording_id": store.create_recording(me, sid, {}).value.id,
        "file_change_id": store.record_file_change(me, sid, {"path": "a"}).value.id,
        "analytics_event_id": store.record_analytics_event(me, sid, {"event_type": "e"}).value.id,
    }


# Every route that takes an id, with a body that would be valid for the owner.
FOREIGN: dict[tuple[str, str], Any] = {
    ("GET", "/v1/sessions/{session_id}"): None,
    ("PATCH", "/v1/sessions/{session_id}"): {"title": "pwned"},
    ("DELETE", "/v1/sessions/{session_id}"): None,
    ("POST", "/v1/sessions/{session_id}/restore"): None,
    ("POST", "/v1/sessions/{session_id}/purge"): None,
    ("POST", "/v1/sessions/{session_id}/messages"): {
        "messages": [{"role": "user", "content": "x"}]
    },
    # bytes: sent as they are, as NDJSON (the streaming route reads no JSON body)
    ("POST", "/v1/sessions/{session_id}/messages/stream"): b'{"role": "assistant"}\n'
    b'{"delta": "x"}\n',
    ("GET", "/v1/sessions/{session_id}/messages"): None,
    ("GET", "/v1/sessions/{session_id}/history"): None,
    ("GET", "/v1/messages/{message_id}"): None,
    ("POST", "/v1/messages/{message_id}/finish"): {"status": "incomplete"},
    ("POST", "/v1/sessions/{session_id}/fork"): {"at_seq": 1},
    ("POST", "/v1/sessions/{session_id}/rewind"): {"to_seq": 0},
    ("GET", "/v1/sessions/{session_id}/branches"): None,
    ("POST", "/v1/sessions/{session_id}/tool-events"): {"name": "x"},
    ("GET", "/v1/sessions/{session_id}/tool-events"): None,
    ("GET", "/v1/tool-events/{event_id}"): None,
    ("PATCH", "/v1/tool-events/{event_id}"): {"status": "cancelled"},
    ("POST", "/v1/tool-events/{event_id}/finish"): {"error": "x"},
    ("POST", "/v1/sessions/{session_id}/timeline-events"): {"events": [{"kind": "x"}]},
    ("GET", "/v1/sessions/{session_id}/timeline-events"): None,
    ("DELETE", "/v1/tokens/{token_id}"): None,
    ("PUT", "/v1/sessions/{session_id}/todos"): {"todos": []},
    ("POST", "/v1/sessions/{session_id}/repo-bindings/unbind"): None,
    ("GET", "/v1/sessions/{session_id}/repo-bindings/active"): None,
    ("PUT", "/v1/sessions/{session_id}/summary"): {"summary": "pwned"},
    ("GET", "/v1/sessions/{session_id}/summary"): None,
    ("DELETE", "/v1/sessions/{session_id}/summary"): None,
    # bytes: the raw body of an upload (filename added by _send)
    ("POST", "/v1/sessions/{session_id}/uploads"): b"intruder's file",
    ("GET", "/v1/sessions/{session_id}/uploads"): None,
    ("GET", "/v1/uploads/{upload_id}"): None,
    ("GET", "/v1/uploads/{upload_id}/content"): None,
    ("DELETE", "/v1/uploads/{upload_id}"): None,
}
# The session record: per collection, a valid new row and a valid change.
_RECORD: dict[str, tuple[str, Any, Any]] = {
    "todos": ("todo_id", {"content": "x"}, {"status": "completed"}),
    "misalignments": ("misalignment_id", {"kind": "k", "description": "d"}, {"severity": "low"}),
    "hook-decisions": (
        "hook_decision_id",
        {"rule_id": "r", "event": "stop", "decision": "block"},
        {"reason": "x"},
    ),
    "repo-bindings": ("repo_binding_id", {"path": "/x"}, {"branch": "b"}),
    "snapshots": ("snapshot_id", {}, {"starred": True}),
    "checkpoints": ("checkpoint_id", {"message_id": "x"}, {"label": "x"}),
    "recordings": ("recording_id", {}, {"name": "x"}),
    "file-changes": ("file_change_id", {"path": "x"}, {"diff": "x"}),
    "analytics-events": ("analytics_event_id", {"events": [{"event_type": "x"}]}, {"model": "m"}),
}
for _path, (_key, _new, _change) in _RECORD.items():
    _base = f"/v1/sessions/{{session_id}}/{_path}"
    _item = f"{_base}/{{{_key}}}"
    FOREIGN.update(
        {
            ("POST", _base): _new,
            ("GET", _base): None,
            ("GET", _item): None,
            ("PATCH", _item): _change,
            ("DELETE", _item): None,
        }
    )
# Routes without an id: scoped by the token alone (checked below).
OWN: set[tuple[str, str]] = {
    ("POST", "/v1/sessions"),
    ("GET", "/v1/sessions"),
    ("GET", "/v1/me"),
    ("GET", "/v1/me/export"),
    # The import writes only the token's user's rows; an archive naming a
    # session another user holds fails that session (test_api_userdata.py).
    ("POST", "/v1/me/import"),
    ("DELETE", "/v1/me"),
    ("GET", "/v1/tokens"),
    ("POST", "/v1/tokens"),
    # Sync: the owner comes from the token; a foreign session_id answers 404
    # (tests/sync/test_shape_protocol.py).
    ("GET", "/v1/shape"),
    ("GET", "/v1/shapes/{table}"),
    # Search: the owner comes from the token (tests/api/test_api_search.py).
    ("GET", "/v1/search"),
}


def test_every_v1_route_is_covered_by_the_cross_user_cases(api: Api) -> None:
    # The OpenAPI schema lists every route (test_api_errors checks that too).
    paths = api.get("/openapi.json").json()["paths"]
    routes = {
        (method.upper(), path)
        for path, operations in paths.items()
        if path.startswith("/v1")
        for method in operations
    }
    assert routes == set(FOREIGN) | OWN


def _send(api: Api, method: str, url: str, body: Any, headers: dict[str, str]) -> Any:
    if method == "POST" and url.endswith("/uploads"):
        return api.request(method, url, content=body, params={"filename": "f"}, headers=headers)
    if isinstance(body, bytes):
        ndjson = {**headers, "content-type": "application/x-ndjson"}
        return api.request(method, url, content=body, headers=ndjson)
    return api.request(method, url, json=body, headers=headers)


def test_another_users_ids_answer_404_on_every_route_and_nothing_is_written(
    api: Api, store: Threadkeep
) -> None:
    owner, ids = _victim(api, store)
    attacker = new_caller(store)
    before = api.get(f"/v1/sessions/{ids['session_id']}", headers=owner.headers).json()

    with writes_nothing(store):
        for (method, template), body in FOREIGN.items():
            url = template.format(**ids)
            r = _send(api, method, url, body, attacker.headers)
            problem = assert_problem(r, 404)
            # Exactly like a missing id: same status, same title, no hint of existence.
            missing = _send(
                api,
                method,
                template.format(**{k: f"missing-{k}" for k in ids}),
                body,
                attacker.headers,
            )
            assert assert_problem(missing, 404)["title"] == problem["title"], (method, url)

    after = api.get(f"/v1/sessions/{ids['session_id']}", headers=owner.headers).json()
    assert after == before
    assert store.authenticate(owner.token).revoked_at is None


# How to reach each route without an id with a request its schema accepts:
# (body, query). A body of bytes is sent as it is.
OWN_REQUESTS: dict[tuple[str, str], tuple[Any, dict[str, str]]] = {
    ("POST", "/v1/sessions"): ({}, {}),
    ("GET", "/v1/sessions"): (None, {}),
    ("GET", "/v1/me"): (None, {}),
    ("GET", "/v1/me/export"): (None, {}),
    ("POST", "/v1/me/import"): (b"PK\x05\x06" + bytes(18), {}),
    ("DELETE", "/v1/me"): (None, {"confirm": "someone"}),
    ("GET", "/v1/tokens"): (None, {}),
    ("POST", "/v1/tokens"): ({"name": "x"}, {}),
    ("GET", "/v1/shape"): (None, {"table": "sessions", "offset": "-1"}),
    ("GET", "/v1/shapes/{table}"): (None, {"offset": "-1"}),
    ("GET", "/v1/search"): (None, {"q": "secret"}),
}


def test_an_unknown_token_answers_401_on_every_route_and_nothing_is_written(
    api: Api, store: Threadkeep
) -> None:
    """The token is looked up in the route's own worker thread (auth.py), not
    by the dependency. Every route must still check it before it does
    anything: a route that skipped the check would answer 2xx or 404 here."""
    assert set(OWN_REQUESTS) == OWN
    _, ids = _victim(api, store)
    stranger = {"Authorization": "Bearer tk_" + "A" * 43}
    requests = [(m, t.format(**ids), body, {}) for (m, t), body in FOREIGN.items()]
    requests += [
        (m, t.format(table="sessions"), body, query)
        for (m, t), (body, query) in OWN_REQUESTS.items()
    ]
    with writes_nothing(store):
        for method, url, body, query in requests:
            if query:
                r = api.request(method, url, params=query, headers=stranger)
            elif method == "POST" and url.endswith("/import"):
                headers = {**stranger, "content-type": "application/zip"}
                r = api.request(method, url, content=body, headers=headers)
            else:
                r = _send(api, method, url, body, stranger)
            problem = assert_problem(r, 401)
            assert problem["detail"].startswith("unknown token"), (method, url, problem)


def test_an_authenticated_request_makes_one_hop_to_the_thread_pool(
    api: Api, store: Threadkeep, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The token lookup runs in the thread that runs the route: one hop where
    a sync auth dependency made two (each 100-200 µs of CPU on 2 cores)."""
    import anyio.to_thread

    who = new_caller(store)
    sid = new_session(api, who)
    hops: list[Any] = []
    run_sync = anyio.to_thread.run_sync

    async def counted(func: Any, *args: Any, **kwargs: Any) -> Any:
        hops.append(func)
        return await run_sync(func, *args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", counted)
    assert api.get(f"/v1/sessions/{sid}", headers=who.headers).status_code == 200
    appended = api.post(
        f"/v1/sessions/{sid}/messages",
        json={"messages": [{"role": "user", "content": "hi"}]},
        headers=who.headers,
    )
    assert appended.status_code == 201, appended.text
    assert len(hops) == 2, hops


def test_a_principal_refuses_to_say_who_it_is_before_its_token_is_checked(
    store: Threadkeep,
) -> None:
    from threadkeep.api.auth import Principal, UncheckedPrincipal
    from threadkeep.service.tokens import Scope

    who = new_caller(store, scopes=("read",))
    principal = Principal(store, who.token, Scope.READ)
    with pytest.raises(UncheckedPrincipal):
        _ = principal.actor
    principal.check()
    assert principal.actor == who.actor
    assert principal.token.user_id == who.actor.user_id
    # The scope is part of the check: a read token is no writer.
    writer = Principal(store, who.token, Scope.WRITE)
    with pytest.raises(ApiProblem) as refused:
        writer.check()
    assert refused.value.status == 403
    with pytest.raises(UncheckedPrincipal):
        _ = writer.actor


def test_a_missing_token_answers_401_before_the_body_is_validated(
    api: Api, store: Threadkeep
) -> None:
    with writes_nothing(store):
        r = api.post("/v1/sessions", json={"title": 42, "flags": "x"})
    assert_problem(r, 401)


def test_listings_show_only_the_callers_own_rows(api: Api, store: Threadkeep) -> None:
    owner, ids = _victim(api, store)
    attacker = new_caller(store)

    sessions = api.get("/v1/sessions", headers=attacker.headers).json()["items"]
    assert sessions == []
    tokens = api.get("/v1/tokens", headers=attacker.headers).json()["items"]
    assert [t["user_id"] for t in tokens] == [attacker.actor.user_id]
    me = api.get("/v1/me", headers=attacker.headers).json()
    assert me["user"]["id"] == attacker.actor.user_id
    # A session created with the victim's id is refused, not taken over.
    with writes_nothing(store):
        assert_problem(
            api.post("/v1/sessions", json={"id": ids["session_id"]}, headers=attacker.headers),
            409,
        )
    assert api.get(f"/v1/sessions/{ids['session_id']}", headers=owner.headers).status_code == 200
