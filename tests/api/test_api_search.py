"""GET /v1/search: the library's search over HTTP, scoped by the token."""

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


def seed(api: Api, me: Caller, title: str, *contents: str) -> tuple[str, list[str]]:
    r = api.post("/v1/sessions", json={"title": title}, headers=me.headers)
    assert r.status_code == 201, r.text
    sid = r.json()["id"]
    msgs = [{"role": "user", "content": c} for c in contents]
    r = api.post(f"/v1/sessions/{sid}/messages", json={"messages": msgs}, headers=me.headers)
    assert r.status_code == 201, r.text
    return sid, [m["id"] for m in r.json()["messages"]]


def search(api: Api, caller: Caller, **params: Any) -> dict[str, Any]:
    r = api.get("/v1/search", params=params, headers=caller.headers)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def test_search_answers_ranked_hits_with_marked_snippets(api: Api, me: Caller) -> None:
    sid, (mid,) = seed(api, me, "Quarterly budget & review", "the quarterly budget is <b>due</b>")
    body = search(api, me, q="quarterly budget")
    assert body["next_offset"] is None
    got = {(h["kind"], h["id"]): h for h in body["items"]}
    assert set(got) == {("sessions", sid), ("messages", mid)}
    msg = got[("messages", mid)]
    assert msg["snippet"].startswith("the <mark>quarterly</mark> <mark>budget</mark> is")
    assert "<b>" not in msg["snippet"]
    assert (msg["session_id"], msg["seq"], msg["role"]) == (sid, 1, "user")
    assert got[("sessions", sid)]["snippet"] == (
        "<mark>Quarterly</mark> <mark>budget</mark> &amp; review"
    )


def test_filters_and_pages_pass_through(api: Api, me: Caller) -> None:
    a, _ = seed(api, me, "first", "lantern one", "lantern two")
    b, (in_b,) = seed(api, me, "second", "lantern three")
    assert len(search(api, me, q="lantern")["items"]) == 3
    assert [h["id"] for h in search(api, me, q="lantern", session_id=b)["items"]] == [in_b]
    assert search(api, me, q="lantern", role="assistant")["items"] == []
    assert search(api, me, q="lantern", since="2999-01-01T00:00:00Z")["items"] == []
    assert len(search(api, me, q="lantern", until="2999-01-01T00:00:00Z")["items"]) == 3
    assert search(api, me, q="lantern", starred="true")["items"] == []
    assert search(api, me, q="first", kind=["messages"])["items"] == []
    assert len(search(api, me, q="first", kind=["sessions", "tool_events"])["items"]) == 1
    page = search(api, me, q="lantern", limit=2)
    assert len(page["items"]) == 2 and page["next_offset"] == 2
    assert len(search(api, me, q="lantern", limit=2, offset=2)["items"]) == 1
    api.delete(f"/v1/sessions/{a}", headers=me.headers)
    assert len(search(api, me, q="lantern")["items"]) == 1
    assert len(search(api, me, q="lantern", include_trashed="true")["items"]) == 3


def test_another_users_rows_never_appear(api: Api, me: Caller, store: Threadkeep) -> None:
    other = new_caller(store)
    seed(api, other, "their marmalade", "marmalade recipe")
    _, (mid,) = seed(api, me, "my notes", "marmalade notes")
    assert {h["id"] for h in search(api, me, q="marmalade")["items"]} == {mid}
    assert search(api, me, q="marmalade", session_id="not-mine")["items"] == []
    assert mid not in {h["id"] for h in search(api, other, q="marmalade")["items"]}


def test_a_read_only_token_may_search(api: Api, me: Caller, store: Threadkeep) -> None:
    reader = new_caller(store, scopes=("read",))
    assert search(api, reader, q="anything")["items"] == []
    r = api.get("/v1/search", params={"q": "x"})
    assert_problem(r, 401)


@pytest.mark.parametrize(
    "params",
    [
        {"q": ""},
        {"q": "   "},
        {},
        {"q": "x" * 1001},
        {"q": "a\x00b"},
        {"q": "x", "role": "wizard"},
        {"q": "x", "kind": "secrets"},
        {"q": "x", "since": "yesterday"},
        {"q": "x", "since": "2026-01-01T00:00:00"},  # no time zone
        {"q": "x", "limit": "0"},
        {"q": "x", "offset": "-1"},
        {"q": "x", "offset": "10001"},
    ],
)
def test_bad_queries_are_422_problems(
    api: Api, me: Caller, store: Threadkeep, params: dict[str, str]
) -> None:
    with writes_nothing(store):
        assert_problem(api.get("/v1/search", params=params, headers=me.headers), 422)


@pytest.mark.parametrize(
    "q",
    ['"', "*", "NEAR(a b)", "a:b", "a & b", "!x", "(((", ")", "a | b <-> c", "\\", "%", "'--"],
)
def test_hostile_queries_are_words(api: Api, me: Caller, q: str) -> None:
    r = api.get("/v1/search", params={"q": q}, headers=me.headers)
    assert r.status_code == 200, r.text


def test_a_lone_surrogate_in_the_url_is_not_a_500(api: Api, me: Caller) -> None:
    # %ED%B3%BF is a UTF-8-encoded lone surrogate: not valid UTF-8.
    r = api.get("/v1/search?q=%ED%B3%BF", headers=me.headers)
    assert r.status_code < 500, r.text


def test_my_scores_and_order_do_not_depend_on_other_users_rows(
    api: Api, me: Caller, store: Threadkeep
) -> None:
    """A rank computed from statistics over every user's rows tells a caller
    how often *other* users wrote a word: search for it in a message of your
    own, watch the score move. The ranking must depend on the caller's rows
    alone. PostgreSQL's ts_rank(..., 1) does; on SQLite, FTS5's bm25 did not
    (it weighs each word by how many rows of the whole index hold it), and
    threadkeep ranks each hit by its own text instead (store/search.py
    row_rank)."""
    seed(api, me, "notes", "osprey osprey heron", "osprey heron heron", "filler text only")
    seed(api, me, "more", *(f"unrelated line {i}" for i in range(6)))

    def ranking() -> list[tuple[str, float]]:
        items = search(api, me, q="osprey heron")["items"]
        return [(h["id"], h["score"]) for h in items]

    before = ranking()
    assert len(before) == 2
    other = new_caller(store)
    seed(api, other, "theirs", *(f"osprey sighting {i}" for i in range(8)))
    assert ranking() == before
