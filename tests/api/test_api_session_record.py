"""The session-record routes (todos, repo bindings, snapshots...) do what the
library does over HTTP: every write answers with its txid, every refusal is
a problem body and writes nothing, another user's rows answer 404."""

from __future__ import annotations

from typing import Any

import pytest
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

store = api_store_fixture()
api = api_client_fixture()


@pytest.fixture
def me(store: Threadkeep) -> Caller:
    return new_caller(store)


def _session(store: Threadkeep, me: Caller) -> tuple[str, str, str]:
    """A session of ``me`` with a message and a tool event: (sid, message, event)."""
    s = store.create_session(me.actor).value
    m = store.append_message(me.actor, s.id, {"role": "user", "content": "hi"}).value
    ev = store.start_tool_event(me.actor, s.id, {"name": "edit"}).value
    return s.id, m.id, ev.id


def _ok(r: Any, status: int = 200) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body: dict[str, Any] = r.json()
    return body


# (collection path, a valid new row given the message and tool-event ids, a change)
CRUD = [
    ("misalignments", lambda m, e: {"kind": "k", "description": "d"}, {"severity": "low"}),
    (
        "hook-decisions",
        lambda m, e: {"rule_id": "r", "event": "prompt", "decision": "warn", "message_id": m},
        {"reason": "why"},
    ),
    ("snapshots", lambda m, e: {"state": {"a": 1}}, {"starred": True}),
    ("checkpoints", lambda m, e: {"message_id": m}, {"label": "l"}),
    ("recordings", lambda m, e: {"events": [1, 2]}, {"name": "n"}),
    ("file-changes", lambda m, e: {"path": "a.py", "tool_event_id": e}, {"diff": "+x"}),
]


@pytest.mark.parametrize(("path", "new", "change"), CRUD, ids=[c[0] for c in CRUD])
def test_create_list_get_update_delete_over_http(
    api: Api, me: Caller, store: Threadkeep, path: str, new: Any, change: dict[str, Any]
) -> None:
    sid, mid, eid = _session(store, me)
    base = f"/v1/sessions/{sid}/{path}"
    created = _ok(api.post(base, json=new(mid, eid), headers=me.headers), 201)
    assert isinstance(created["txid"], int) and created["session_id"] == sid
    row = {k: v for k, v in created.items() if k != "txid"}
    assert _ok(api.get(base, headers=me.headers))["items"] == [row]
    item = f"{base}/{row['id']}"
    assert _ok(api.get(item, headers=me.headers)) == row
    updated = _ok(api.patch(item, json=change, headers=me.headers))
    assert updated["txid"] > created["txid"]
    assert all(updated[k] == v for k, v in change.items())
    deleted = _ok(api.delete(item, headers=me.headers))
    assert set(deleted) == {"txid"} and deleted["txid"] > updated["txid"]
    assert_problem(api.get(item, headers=me.headers), 404)


def test_todos_replace_add_update_and_another_user_gets_404(
    api: Api, me: Caller, store: Threadkeep
) -> None:
    sid, _, _ = _session(store, me)
    base = f"/v1/sessions/{sid}/todos"
    replaced = _ok(
        api.put(base, json={"todos": [{"content": "a"}, {"content": "b"}]}, headers=me.headers)
    )
    assert [t["content"] for t in replaced["items"]] == ["a", "b"]
    assert isinstance(replaced["txid"], int)
    added = _ok(api.post(base, json={"content": "c"}, headers=me.headers), 201)
    assert added["position"] == 2
    first = replaced["items"][0]["id"]
    done = _ok(api.patch(f"{base}/{first}", json={"status": "completed"}, headers=me.headers))
    assert done["status"] == "completed"

    other = new_caller(store)
    with writes_nothing(store):
        assert_problem(api.get(base, headers=other.headers), 404)
        assert_problem(api.put(base, json={"todos": []}, headers=other.headers), 404)
        assert_problem(
            api.patch(f"{base}/{first}", json={"status": "pending"}, headers=other.headers), 404
        )
        assert_problem(api.delete(f"{base}/{first}", headers=other.headers), 404)
    assert len(_ok(api.get(base, headers=me.headers))["items"]) == 3


def test_bad_input_is_a_problem_and_writes_nothing(api: Api, me: Caller, store: Threadkeep) -> None:
    sid, _, _ = _session(store, me)
    base = f"/v1/sessions/{sid}"
    with writes_nothing(store):
        body = assert_problem(
            api.put(f"{base}/todos", json={"todos": [{"content": "x", "status": "done"}]},
                    headers=me.headers),
            422,
        )  # fmt: skip
        assert body["errors"]
        assert_problem(
            api.post(f"{base}/hook-decisions", headers=me.headers,
                     json={"rule_id": "r", "event": "stop", "decision": "block",
                           "tool_event_id": "missing"}),
            404,
        )  # fmt: skip
        assert_problem(
            api.post(f"{base}/checkpoints", json={"message_id": "x\u0000"}, headers=me.headers),
            422,
        )
        assert_problem(api.post(f"{base}/repo-bindings", json={}, headers=me.headers), 422)
        assert_problem(api.get(f"{base}/summary", headers=me.headers), 404)


def test_repo_bindings_summary_and_analytics_routes(
    api: Api, me: Caller, store: Threadkeep
) -> None:
    sid, _, _ = _session(store, me)
    base = f"/v1/sessions/{sid}"
    assert _ok(api.get(f"{base}/repo-bindings/active", headers=me.headers)) == {"binding": None}
    first = _ok(api.post(f"{base}/repo-bindings", json={"path": "/a"}, headers=me.headers), 201)
    second = _ok(
        api.post(f"{base}/repo-bindings", json={"remote_url": "https://x/y"}, headers=me.headers),
        201,
    )
    active = _ok(api.get(f"{base}/repo-bindings/active", headers=me.headers))["binding"]
    assert active["id"] == second["id"]
    history = _ok(api.get(f"{base}/repo-bindings", headers=me.headers))["items"]
    assert [b["id"] for b in history] == [first["id"], second["id"]]
    assert history[0]["unbound_at"] is not None
    unbound = _ok(api.post(f"{base}/repo-bindings/unbind", headers=me.headers))
    assert unbound["binding"]["id"] == second["id"] and isinstance(unbound["txid"], int)

    summary = _ok(api.put(f"{base}/summary", json={"summary": "done"}, headers=me.headers))
    again = _ok(api.put(f"{base}/summary", json={"summary": "redone"}, headers=me.headers))
    assert again["id"] == summary["id"] and again["txid"] > summary["txid"]
    assert _ok(api.get(f"{base}/summary", headers=me.headers))["summary"] == "redone"
    assert set(_ok(api.delete(f"{base}/summary", headers=me.headers))) == {"txid"}

    events = [{"event_type": "llm", "input_tokens": 3}, {"event_type": "tool", "cost_usd": 0.1}]
    recorded = _ok(
        api.post(f"{base}/analytics-events", json={"events": events}, headers=me.headers), 201
    )
    assert [e["event_type"] for e in recorded["items"]] == ["llm", "tool"]
    listed = _ok(api.get(f"{base}/analytics-events?event_type=tool", headers=me.headers))
    assert [e["event_type"] for e in listed["items"]] == ["tool"]
