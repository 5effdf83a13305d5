"""The routes do what the library does, over HTTP: sessions, messages, branches,
tool and timeline events; every write answers with its txid."""

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


def create(api: Api, me: Caller, **fields: Any) -> dict[str, Any]:
    r = api.post("/v1/sessions", json=fields, headers=me.headers)
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


def append(api: Api, me: Caller, sid: str, *contents: str) -> dict[str, Any]:
    messages = [{"role": "user", "content": c} for c in contents]
    r = api.post(f"/v1/sessions/{sid}/messages", json={"messages": messages}, headers=me.headers)
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


# --- sessions --------------------------------------------------------------------


def test_create_get_and_etag_of_a_session(api: Api, me: Caller) -> None:
    r = api.post(
        "/v1/sessions", json={"title": "Plans", "tags": ["a"], "model": "m1"}, headers=me.headers
    )

    assert r.status_code == 201
    created = r.json()
    assert created["title"] == "Plans" and created["owner_id"] == me.actor.user_id
    assert isinstance(created["txid"], int)
    assert r.headers["etag"] == '"1"'
    got = api.get(f"/v1/sessions/{created['id']}", headers=me.headers)
    assert got.status_code == 200
    assert got.headers["etag"] == '"1"'
    assert got.json() == {k: v for k, v in created.items() if k != "txid"}


def test_a_taken_session_id_answers_409(api: Api, me: Caller, store: Threadkeep) -> None:
    sid = create(api, me)["id"]
    with writes_nothing(store):
        assert_problem(api.post("/v1/sessions", json={"id": sid}, headers=me.headers), 409)


def test_list_filters_by_flags_tag_title_and_trash(api: Api, me: Caller) -> None:
    a = create(api, me, title="Alpha plans", starred=True, tags=["work"])["id"]
    b = create(api, me, title="beta", pinned=True)["id"]
    c = create(api, me, title="Gamma", archived=True, tags=["work", "x"])["id"]
    d = create(api, me, title="trash me")["id"]
    assert api.delete(f"/v1/sessions/{d}", headers=me.headers).status_code == 200

    def ids(**params: Any) -> set[str]:
        r = api.get("/v1/sessions", params=params, headers=me.headers)
        assert r.status_code == 200, r.text
        return {s["id"] for s in r.json()["items"]}

    assert ids() == {a, b, c}
    assert ids(starred="true") == {a}
    assert ids(pinned="true") == {b}
    assert ids(archived="true") == {c}
    assert ids(archived="false") == {a, b}
    assert ids(tag="work") == {a, c}
    assert ids(q="PLANS") == {a}
    assert ids(trashed="true") == {d}


def test_keyset_pagination_returns_every_session_once_in_order(api: Api, me: Caller) -> None:
    made = [create(api, me, title=f"s{i}")["id"] for i in range(5)]
    seen: list[str] = []
    cursor = None
    for _ in range(10):
        params: dict[str, Any] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = api.get("/v1/sessions", params=params, headers=me.headers).json()
        assert len(page["items"]) <= 2
        seen += [s["id"] for s in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(made))


def test_patch_with_if_match_updates_and_a_stale_version_answers_412(
    api: Api, me: Caller, store: Threadkeep
) -> None:
    sid = create(api, me, title="old")["id"]

    ok = api.patch(
        f"/v1/sessions/{sid}",
        json={"title": "new", "starred": True, "metadata": {"k": 1}},
        headers={**me.headers, "If-Match": '"1"'},
    )
    assert ok.status_code == 200, ok.text
    assert ok.headers["etag"] == '"2"'
    assert ok.json()["title"] == "new" and ok.json()["starred"] is True
    assert isinstance(ok.json()["txid"], int)

    with writes_nothing(store):
        stale = api.patch(
            f"/v1/sessions/{sid}", json={"title": "lost"}, headers={**me.headers, "If-Match": '"1"'}
        )
        body = assert_problem(stale, 412)
        assert stale.headers["etag"] == '"2"'
        assert "version 2" in body["detail"]
        weak = api.patch(
            f"/v1/sessions/{sid}", json={"title": "x"}, headers={**me.headers, "If-Match": 'W/"2"'}
        )
        assert_problem(weak, 412)
    assert api.get(f"/v1/sessions/{sid}", headers=me.headers).json()["title"] == "new"

    # No If-Match (or *): last writer wins.
    free = api.patch(f"/v1/sessions/{sid}", json={"tags": ["t"]}, headers=me.headers)
    assert free.status_code == 200 and free.headers["etag"] == '"3"'
    star = api.patch(
        f"/v1/sessions/{sid}", json={"pinned": True}, headers={**me.headers, "If-Match": "*"}
    )
    assert star.status_code == 200 and star.headers["etag"] == '"4"'


def test_trash_restore_and_purge(api: Api, me: Caller, store: Threadkeep) -> None:
    sid = create(api, me)["id"]
    append(api, me, sid, "hi")

    trashed = api.delete(f"/v1/sessions/{sid}", headers={**me.headers, "If-Match": '"1"'})
    assert trashed.status_code == 200 and trashed.json()["deleted_at"] is not None
    assert isinstance(trashed.json()["txid"], int)
    with writes_nothing(store):
        # Appending to a session in the trash is a conflict with its state.
        assert_problem(
            api.post(
                f"/v1/sessions/{sid}/messages",
                json={"messages": [{"role": "user", "content": "x"}]},
                headers=me.headers,
            ),
            409,
        )
        assert_problem(
            api.post(f"/v1/sessions/{sid}/restore", headers={**me.headers, "If-Match": '"1"'}), 412
        )
    restored = api.post(f"/v1/sessions/{sid}/restore", headers=me.headers)
    assert restored.status_code == 200 and restored.json()["deleted_at"] is None

    purged = api.delete(f"/v1/sessions/{sid}", params={"purge": "true"}, headers=me.headers)
    assert purged.status_code == 200 and set(purged.json()) == {"txid"}
    assert_problem(api.get(f"/v1/sessions/{sid}", headers=me.headers), 404)

    other = create(api, me)["id"]
    assert api.post(f"/v1/sessions/{other}/purge", headers=me.headers).json()["txid"] > 0
    assert_problem(api.get(f"/v1/sessions/{other}", headers=me.headers), 404)


def test_purging_a_session_with_branches_answers_409(
    api: Api, me: Caller, store: Threadkeep
) -> None:
    sid = create(api, me)["id"]
    append(api, me, sid, "a", "b")
    fork = api.post(f"/v1/sessions/{sid}/fork", json={"at_seq": 1}, headers=me.headers)
    assert fork.status_code == 201
    with writes_nothing(store):
        body = assert_problem(api.post(f"/v1/sessions/{sid}/purge", headers=me.headers), 409)
        assert "branch" in body["detail"]
        assert_problem(
            api.delete(
                f"/v1/sessions/{sid}",
                params={"purge": "true"},
                headers={**me.headers, "If-Match": '"1"'},
            ),
            422,
        )


# --- messages --------------------------------------------------------------------


def test_append_one_and_a_batch_with_contiguous_seq(api: Api, me: Caller) -> None:
    sid = create(api, me)["id"]
    one = append(api, me, sid, "first")
    batch = append(api, me, sid, "second", "third")

    assert [m["seq"] for m in one["messages"]] == [1]
    assert [m["seq"] for m in batch["messages"]] == [2, 3]
    assert batch["txid"] > one["txid"]
    assert api.get(f"/v1/sessions/{sid}", headers=me.headers).json()["head_seq"] == 3


def test_idempotency_key_replay_returns_the_same_message_and_txid(
    api: Api, me: Caller, store: Threadkeep
) -> None:
    sid = create(api, me)["id"]
    body = {"messages": [{"role": "user", "content": "once"}]}
    headers = {**me.headers, "Idempotency-Key": "req-1"}

    first = api.post(f"/v1/sessions/{sid}/messages", json=body, headers=headers)
    assert first.status_code == 201
    with writes_nothing(store):
        again = api.post(f"/v1/sessions/{sid}/messages", json=body, headers=headers)
    assert again.status_code == 201
    assert again.json() == first.json()
    assert first.json()["messages"][0]["client_id"] == "req-1"

    with writes_nothing(store):
        clash = {"messages": [{"role": "user", "content": "x", "client_id": "other"}]}
        assert_problem(api.post(f"/v1/sessions/{sid}/messages", json=clash, headers=headers), 422)
        two = {"messages": [{"role": "user"}, {"role": "user"}]}
        assert_problem(api.post(f"/v1/sessions/{sid}/messages", json=two, headers=headers), 422)


def test_per_message_client_ids_make_a_batch_retry_safe(
    api: Api, me: Caller, store: Threadkeep
) -> None:
    sid = create(api, me)["id"]
    body = {
        "messages": [
            {"role": "user", "content": "q", "client_id": "c1"},
            {"role": "assistant", "content": "a", "client_id": "c2"},
        ]
    }
    first = api.post(f"/v1/sessions/{sid}/messages", json=body, headers=me.headers).json()
    with writes_nothing(store):
        again = api.post(f"/v1/sessions/{sid}/messages", json=body, headers=me.headers).json()
    assert again == first


def test_read_messages_by_seq_window_and_last_n(api: Api, me: Caller) -> None:
    sid = create(api, me)["id"]
    append(api, me, sid, *[f"m{i}" for i in range(1, 8)])
    url = f"/v1/sessions/{sid}/messages"

    def contents(**params: Any) -> list[str]:
        r = api.get(url, params=params, headers=me.headers)
        assert r.status_code == 200, r.text
        return [m["content"] for m in r.json()["items"]]

    assert contents() == [f"m{i}" for i in range(1, 8)]
    assert contents(after_seq=2, limit=3) == ["m3", "m4", "m5"]
    assert contents(after_seq=2, before_seq=5) == ["m3", "m4"]
    assert contents(last=3) == ["m5", "m6", "m7"]
    assert contents(last=2, before_seq=5) == ["m3", "m4"]
    assert_problem(api.get(url, params={"last": 2, "after_seq": 1}, headers=me.headers), 422)
    assert_problem(api.get(url, params={"limit": 0}, headers=me.headers), 422)

    first = api.get(url, params={"limit": 1}, headers=me.headers).json()["items"][0]
    got = api.get(f"/v1/messages/{first['id']}", headers=me.headers)
    assert got.status_code == 200 and got.json() == first


def test_append_messages_with_tool_and_timeline_events_in_one_transaction(
    api: Api, me: Caller
) -> None:
    sid = create(api, me)["id"]
    body = {
        "messages": [{"id": "msg-1", "role": "assistant", "content": "calling"}],
        "tool_events": [{"name": "search", "input": {"q": "x"}, "message_id": "msg-1"}],
        "timeline_events": [{"kind": "note", "payload": {"a": 1}}],
    }
    r = api.post(f"/v1/sessions/{sid}/messages", json=body, headers=me.headers)

    assert r.status_code == 201, r.text
    out = r.json()
    assert out["tool_events"][0]["message_id"] == "msg-1"
    assert out["timeline_events"][0]["kind"] == "note"
    assert len({out["txid"]}) == 1


# --- branches --------------------------------------------------------------------


def test_fork_rewind_branches_and_history(api: Api, me: Caller, store: Threadkeep) -> None:
    sid = create(api, me)["id"]
    msgs = append(api, me, sid, "a", "b", "c")["messages"]

    fork = api.post(
        f"/v1/sessions/{sid}/fork",
        json={"at_message_id": msgs[1]["id"], "title": "alt"},
        headers=me.headers,
    )
    assert fork.status_code == 201, fork.text
    branch = fork.json()
    assert branch["parent_session_id"] == sid and branch["fork_seq"] == 2
    assert isinstance(branch["txid"], int) and fork.headers["etag"] == '"1"'
    append(api, me, branch["id"], "b2")
    history = api.get(f"/v1/sessions/{branch['id']}/history", headers=me.headers).json()
    assert [m["content"] for m in history["items"]] == ["a", "b", "b2"]

    branches = api.get(f"/v1/sessions/{sid}/branches", headers=me.headers).json()
    assert [s["id"] for s in branches["items"]] == [branch["id"]]

    with writes_nothing(store):
        both = {"at_seq": 1, "at_message_id": msgs[0]["id"]}
        assert_problem(api.post(f"/v1/sessions/{sid}/fork", json=both, headers=me.headers), 422)
        assert_problem(
            api.post(f"/v1/sessions/{sid}/fork", json={"at_seq": 99}, headers=me.headers), 422
        )

    rewound = api.post(f"/v1/sessions/{sid}/rewind", json={"to_seq": 1}, headers=me.headers)
    assert rewound.status_code == 200, rewound.text
    out = rewound.json()
    assert out["session"]["head_seq"] == 1
    assert out["branch"] is not None and isinstance(out["txid"], int)
    left = api.get(f"/v1/sessions/{sid}/messages", headers=me.headers).json()["items"]
    assert [m["content"] for m in left] == ["a"]


# --- events ----------------------------------------------------------------------


def test_tool_event_lifecycle(api: Api, me: Caller) -> None:
    sid = create(api, me)["id"]
    started = api.post(
        f"/v1/sessions/{sid}/tool-events",
        json={"name": "grep", "input": {"pattern": "x"}, "call_id": "call-1"},
        headers=me.headers,
    )
    assert started.status_code == 201, started.text
    event = started.json()
    assert event["status"] == "started" and isinstance(event["txid"], int)

    running = api.patch(
        f"/v1/tool-events/{event['id']}", json={"status": "running"}, headers=me.headers
    )
    assert running.status_code == 200 and running.json()["status"] == "running"
    done = api.post(
        f"/v1/tool-events/{event['id']}/finish", json={"output": ["a.py"]}, headers=me.headers
    )
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "succeeded" and done.json()["output"] == ["a.py"]
    failed = api.post(
        f"/v1/sessions/{sid}/tool-events", json={"name": "rm"}, headers=me.headers
    ).json()
    err = api.post(
        f"/v1/tool-events/{failed['id']}/finish", json={"error": "denied"}, headers=me.headers
    )
    assert err.json()["status"] == "failed" and err.json()["error"] == "denied"

    listed = api.get(f"/v1/sessions/{sid}/tool-events", headers=me.headers).json()["items"]
    assert [e["name"] for e in listed] == ["grep", "rm"]
    one = api.get(f"/v1/tool-events/{event['id']}", headers=me.headers).json()
    assert one["status"] == "succeeded"


def test_timeline_events_append_in_order_and_page(api: Api, me: Caller) -> None:
    sid = create(api, me)["id"]
    r = api.post(
        f"/v1/sessions/{sid}/timeline-events",
        json={"events": [{"kind": "opened"}, {"kind": "edited", "payload": {"file": "a"}}]},
        headers=me.headers,
    )
    assert r.status_code == 201, r.text
    assert [e["seq"] for e in r.json()["events"]] == [1, 2]
    assert isinstance(r.json()["txid"], int)

    url = f"/v1/sessions/{sid}/timeline-events"
    everything = api.get(url, headers=me.headers).json()["items"]
    assert [e["kind"] for e in everything] == ["opened", "edited"]
    after = api.get(url, params={"after_seq": 1, "limit": 5}, headers=me.headers).json()["items"]
    assert [e["kind"] for e in after] == ["edited"]
