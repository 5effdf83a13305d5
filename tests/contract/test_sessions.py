"""Sessions: create, get, list (filters, keyset pagination), update, trash, purge."""

from __future__ import annotations

import base64
import json
import time
import uuid

import pytest
import sqlalchemy as sa
from contract_helpers import (
    list_plan,
    missing_id,
    new_session,
    not_raising,
    user_msgs,
    with_messages,
    writes_nothing,
)

from threadkeep import (
    AlreadyExists,
    HasBranches,
    InvalidInput,
    InvalidState,
    Operation,
    Session,
    SessionFilter,
    SessionNotFound,
    Threadkeep,
    UserNotFound,
    VersionConflict,
)
from threadkeep.model.common import Actor
from threadkeep.store import tables

# --- create / get ----------------------------------------------------------------


def test_create_without_id_gets_a_server_chosen_uuid(tk, actor):
    s = tk.create_session(actor, title="Plans").value
    assert str(uuid.UUID(s.id)) == s.id
    assert s.owner_id == actor.user_id
    assert s.title == "Plans"
    assert s.version == 1
    assert s.head_seq == 0 and s.message_count == 0
    assert s.parent_session_id is None and s.fork_seq is None
    assert s.deleted_at is None
    assert s.created_at.tzinfo is not None


def test_two_creates_without_id_get_distinct_ids(tk, actor):
    a = new_session(tk, actor)
    b = new_session(tk, actor)
    assert a.id != b.id


def test_create_with_client_chosen_id_keeps_that_id(tk, actor):
    s = tk.create_session(actor, {"id": "chat-42", "title": "t"}).value
    assert s.id == "chat-42"
    assert tk.get_session(actor, "chat-42") == s


def test_create_accepts_a_dict_keywords_and_all_fields(tk, actor):
    s = tk.create_session(
        actor,
        {"title": "T", "model": "gpt-x"},
        provider="acme",
        state="running",
        tags=["a", "b", "a"],
        starred=True,
        pinned=True,
        archived=True,
        metadata={"k": [1, 2.5, None, True, "é"]},
    ).value
    got = tk.get_session(actor, s.id)
    assert got == s
    assert (got.title, got.model, got.provider, got.state) == ("T", "gpt-x", "acme", "running")
    assert got.tags == ["a", "b"]  # duplicates dropped, order kept
    assert (got.starred, got.pinned, got.archived) == (True, True, True)
    assert got.metadata == {"k": [1, 2.5, None, True, "é"]}


def test_get_reads_what_the_general_row_path_reads(tk, actor, other_actor):
    """get_session runs a compiled statement and decodes the row itself
    (store/sessions.py); the session must be exactly what the Core select
    and ``to_session`` give, every field set (JSON, flags, a fork, the
    trash, counters, aware datetimes), and another user's id still missing."""
    from threadkeep.store.sessions import get_row, to_session

    parent = tk.create_session(
        actor, title="t\u00e9", tags=["a", "b"], metadata={"k": [1, {"x": None}], "f": 1.5}
    ).value
    tk.append_messages(actor, parent.id, user_msgs(3))
    first = tk.get_history(actor, parent.id)[0]
    branch = tk.fork_session(actor, parent.id, at_message_id=first.id).value
    tk.update_session(actor, branch.id, {"starred": True, "pinned": True, "archived": True})
    tk.delete_session(actor, branch.id)  # to the trash: deleted_at set
    for sid in (parent.id, branch.id):
        got = tk.get_session(actor, sid)
        general = tk.engine.read(lambda c, sid=sid: to_session(get_row(c, actor.user_id, sid)))
        assert got == general
        assert got.model_dump() == general.model_dump()
        assert all(
            v.tzinfo is not None for v in (got.created_at, got.updated_at, got.last_activity_at)
        )
    trashed = tk.get_session(actor, branch.id)
    assert trashed.deleted_at is not None and trashed.fork_seq == first.seq
    assert (trashed.starred, trashed.pinned, trashed.archived) == (True, True, True)
    assert all(type(getattr(trashed, f)) is bool for f in ("starred", "pinned", "archived"))
    assert tk.get_session(actor, parent.id).metadata == {"k": [1, {"x": None}], "f": 1.5}
    with pytest.raises(SessionNotFound):
        tk.get_session(other_actor, parent.id)


def test_create_with_a_taken_id_raises_already_exists_and_writes_nothing(tk, actor):
    tk.create_session(actor, id="dup", title="first")
    with writes_nothing(tk), pytest.raises(AlreadyExists) as info:
        tk.create_session(actor, id="dup", title="second")
    assert info.value.key == "dup"
    assert tk.get_session(actor, "dup").title == "first"


def test_create_with_an_id_another_user_owns_raises_already_exists(tk, actor, other_actor):
    tk.create_session(other_actor, id="theirs")
    with writes_nothing(tk), pytest.raises(AlreadyExists):
        tk.create_session(actor, id="theirs")
    with pytest.raises(SessionNotFound):
        tk.get_session(actor, "theirs")


def test_create_for_a_user_that_does_not_exist_raises_user_not_found(tk):
    with writes_nothing(tk), pytest.raises(UserNotFound):
        tk.create_session(Actor("nobody"), title="x")


def test_an_unknown_user_is_refused_before_a_taken_id(tk, actor):
    # Both are checked in one statement; the unknown user is named first.
    taken = new_session(tk, actor).id
    with writes_nothing(tk), pytest.raises(UserNotFound):
        tk.create_session(Actor("nobody"), id=taken)


def test_get_of_a_missing_id_raises_session_not_found(tk, actor):
    key = missing_id()
    with pytest.raises(SessionNotFound) as info:
        tk.get_session(actor, key)
    assert info.value.key == key


# --- list -------------------------------------------------------------------------


def _ids(page) -> list[str]:
    return [s.id for s in page.items]


def test_list_is_newest_activity_first(tk, actor):
    a = new_session(tk, actor, title="a")
    time.sleep(0.002)
    b = new_session(tk, actor, title="b")
    time.sleep(0.002)
    c = new_session(tk, actor, title="c")
    assert _ids(tk.list_sessions(actor)) == [c.id, b.id, a.id]
    time.sleep(0.002)
    tk.append_message(actor, a.id, {"role": "user", "content": "bump"})
    page = tk.list_sessions(actor)
    assert _ids(page) == [a.id, c.id, b.id]
    assert page.next_cursor is None


def test_list_of_a_user_without_sessions_is_empty(tk, actor, other_actor):
    new_session(tk, other_actor)
    page = tk.list_sessions(actor)
    assert page.items == [] and page.next_cursor is None


@pytest.fixture
def flagged(tk, actor) -> dict[str, Session]:
    return {
        "plain": new_session(tk, actor, title="plain"),
        "starred": new_session(tk, actor, title="starred", starred=True, tags=["work"]),
        "pinned": new_session(tk, actor, title="pinned", pinned=True, tags=["home", "work"]),
        "archived": new_session(tk, actor, title="archived", archived=True, tags=["x"]),
    }


FILTERS = [
    ({"starred": True}, {"starred"}),
    ({"starred": False}, {"plain", "pinned", "archived"}),
    ({"pinned": True}, {"pinned"}),
    ({"archived": True}, {"archived"}),
    ({"archived": False}, {"plain", "starred", "pinned"}),
    ({"tag": "work"}, {"starred", "pinned"}),
    ({"tag": "home"}, {"pinned"}),
    ({"tag": "wor"}, set()),
    ({"tag": "work", "pinned": False}, {"starred"}),
    ({}, {"plain", "starred", "pinned", "archived"}),
]


def test_list_filters_by_flags_and_tag(tk, actor, flagged):
    by_id = {s.id: name for name, s in flagged.items()}
    for flt, expected in FILTERS:
        # the same filter as a dict, as a SessionFilter and as keywords
        for how, page in (
            ("dict", tk.list_sessions(actor, flt)),
            ("model", tk.list_sessions(actor, SessionFilter(**flt))),
            ("keywords", tk.list_sessions(actor, **flt)),
        ):
            assert {by_id[i] for i in _ids(page)} == expected, (flt, how)


@pytest.mark.parametrize("flag", tables.SESSION_FLAGS)
def test_a_flag_view_walks_that_flags_own_index(tk, actor, flag):
    """Without it, a flag few sessions carry walks the whole list to fill a
    page: 14-23 ms at 50,000 sessions instead of 0.1 ms."""
    flagged = [new_session(tk, actor, **{flag: i == 3}) for i in range(12)][3]
    assert _ids(tk.list_sessions(actor, **{flag: True})) == [flagged.id]
    plan = list_plan(tk, actor, **{flag: True})
    assert f"ix_sessions_{flag}" in plan, plan


def test_a_flag_view_follows_flags_trash_and_activity(tk, actor):
    """The starred view as the flag, the trash and new messages change it."""
    a, b, c = (new_session(tk, actor, starred=True) for _ in range(3))
    assert _ids(tk.list_sessions(actor, starred=True)) == [c.id, b.id, a.id]
    tk.append_message(actor, a.id, {"role": "user", "content": "back to this one"})
    tk.update_session(actor, b.id, {"starred": False})
    assert _ids(tk.list_sessions(actor, starred=True)) == [a.id, c.id]
    tk.delete_session(actor, c.id)
    assert _ids(tk.list_sessions(actor, starred=True)) == [a.id]
    assert _ids(tk.list_sessions(actor, starred=True, trashed=True)) == [c.id]
    tk.restore_session(actor, c.id)
    tk.update_session(actor, b.id, {"starred": True})
    # A flag or the trash is not activity: the order is the messages'.
    assert _ids(tk.list_sessions(actor, starred=True)) == [a.id, c.id, b.id]
    assert _ids(tk.list_sessions(actor, starred=False)) == []


def test_title_contains_is_case_insensitive(tk, actor):
    hit = new_session(tk, actor, title="Hello World")
    new_session(tk, actor, title="Goodbye")
    new_session(tk, actor)  # no title at all
    for needle in ("hello", "WORLD", "lo wo", "Hello World"):
        assert _ids(tk.list_sessions(actor, title_contains=needle)) == [hit.id], needle


def test_title_contains_treats_percent_underscore_and_backslash_literally(tk, actor):
    s = {
        t: new_session(tk, actor, title=t)
        for t in ("100% done", "100 done", "a_b", "axb", "back\\slash", "backslash")
    }
    assert _ids(tk.list_sessions(actor, title_contains="100%")) == [s["100% done"].id]
    assert _ids(tk.list_sessions(actor, title_contains="%")) == [s["100% done"].id]
    assert _ids(tk.list_sessions(actor, title_contains="a_b")) == [s["a_b"].id]
    assert _ids(tk.list_sessions(actor, title_contains="_")) == [s["a_b"].id]
    assert _ids(tk.list_sessions(actor, title_contains="k\\s")) == [s["back\\slash"].id]


def test_title_contains_is_case_insensitive_beyond_ascii(tk, actor):
    hit = new_session(tk, actor, title="ÄRGER mit Öl")
    new_session(tk, actor, title="other")
    assert _ids(tk.list_sessions(actor, title_contains="ärger")) == [hit.id]
    assert _ids(tk.list_sessions(actor, title_contains="öl")) == [hit.id]


def test_keyset_pagination_returns_every_session_exactly_once_in_order(tk, actor, other_actor):
    created = {new_session(tk, actor, title=f"s{i}").id for i in range(120)}
    new_session(tk, other_actor, title="not mine")
    pages = []
    cursor = None
    while True:
        page = tk.list_sessions(actor, limit=50, cursor=cursor)
        pages.append(page)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
        assert len(pages) < 10, "pagination does not terminate"
    assert [len(p.items) for p in pages] == [50, 50, 20]
    walked = [s for p in pages for s in p.items]
    assert [s.id for s in walked] == _ids(tk.list_sessions(actor, limit=500))
    assert len({s.id for s in walked}) == 120
    assert {s.id for s in walked} == created
    keys = [(s.last_activity_at, s.id) for s in walked]
    assert keys == sorted(keys, reverse=True)


def test_pagination_with_an_exact_multiple_ends_without_an_empty_page(tk, actor):
    for _ in range(4):
        new_session(tk, actor)
    first = tk.list_sessions(actor, limit=2)
    second = tk.list_sessions(actor, limit=2, cursor=first.next_cursor)
    assert len(first.items) == 2 and len(second.items) == 2
    assert second.next_cursor is None
    assert not set(_ids(first)) & set(_ids(second))


def test_pagination_with_a_filter_keeps_the_filter_on_every_page(tk, actor):
    starred = {new_session(tk, actor, starred=True).id for _ in range(5)}
    for _ in range(5):
        new_session(tk, actor)
    seen: list[str] = []
    cursor = None
    while True:
        page = tk.list_sessions(actor, starred=True, limit=2, cursor=cursor)
        seen += _ids(page)
        cursor = page.next_cursor
        if cursor is None:
            break
    assert sorted(seen) == sorted(starred)


def _forged(value: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


BAD_CURSORS = {
    "text": "not a cursor",
    "empty": "",
    "not base64": "!!!!",
    "an object": _forged({"a": 1}),
    "not a time": _forged(["yesterday", "id"]),
    "a naive time": _forged(["2024-01-01T00:00:00", "id"]),
    "a number key": _forged(["2024-01-01T00:00:00+00:00", 5]),
    "three items": _forged([1, 2, 3]),
    "null": _forged(None),
    "not utf-8": base64.urlsafe_b64encode(b"\xff\xfe\x00").decode(),
    "a key with a NUL": _forged(["2024-01-01T00:00:00+00:00", "id\x00nul"]),
    "a key with a lone surrogate": _forged(["2024-01-01T00:00:00+00:00", "id\ud800"]),
}


def test_a_bad_cursor_raises_invalid_input(tk, actor):
    new_session(tk, actor)
    wrong = not_raising(BAD_CURSORS, lambda c: tk.list_sessions(actor, cursor=c), InvalidInput)
    assert wrong == {}


def test_a_page_size_out_of_range_raises_invalid_input(tk, actor):
    limits = {str(n): n for n in (0, -1, 1001)}
    assert not_raising(limits, lambda n: tk.list_sessions(actor, limit=n), InvalidInput) == {}


# --- update -----------------------------------------------------------------------


def test_update_changes_only_the_given_fields_and_bumps_the_version(tk, actor):
    s = new_session(tk, actor, title="old", model="m1", tags=["a"], metadata={"k": 1})
    done = tk.update_session(actor, s.id, title="new", starred=True)
    u = done.value
    assert (u.title, u.starred) == ("new", True)
    assert (u.model, u.tags, u.metadata, u.pinned) == ("m1", ["a"], {"k": 1}, False)
    assert u.version == s.version + 1
    assert u.updated_at >= s.updated_at
    assert tk.get_session(actor, s.id) == u
    again = tk.update_session(actor, s.id, {"tags": ["x", "y"], "metadata": {"z": [1]}}).value
    assert again.version == s.version + 2
    assert (again.tags, again.metadata, again.title) == (["x", "y"], {"z": [1]}, "new")


def test_update_with_explicit_none_clears_the_title(tk, actor):
    s = new_session(tk, actor, title="t", model="m")
    u = tk.update_session(actor, s.id, title=None).value
    assert u.title is None and u.model == "m"


def test_update_with_the_current_version_succeeds(tk, actor):
    s = new_session(tk, actor)
    u = tk.update_session(actor, s.id, title="x", expected_version=s.version).value
    assert u.version == s.version + 1


def test_update_with_a_stale_version_raises_version_conflict_and_writes_nothing(tk, actor):
    s = new_session(tk, actor, title="v1")
    tk.update_session(actor, s.id, title="v2")
    with writes_nothing(tk), pytest.raises(VersionConflict) as info:
        tk.update_session(actor, s.id, title="lost", expected_version=s.version)
    assert (info.value.expected, info.value.actual) == (1, 2)
    got = tk.get_session(actor, s.id)
    assert (got.title, got.version) == ("v2", 2)


def test_update_of_a_missing_session_raises_session_not_found(tk, actor):
    with writes_nothing(tk), pytest.raises(SessionNotFound):
        tk.update_session(actor, missing_id(), title="x")
    with writes_nothing(tk), pytest.raises(SessionNotFound):
        tk.update_session(actor, missing_id(), title="x", expected_version=1)


# --- trash, restore, purge --------------------------------------------------------


def test_delete_moves_to_trash_hidden_from_list_but_visible_with_trashed(tk, actor):
    keep = new_session(tk, actor, title="keep")
    gone = with_messages(tk, actor, 2, title="gone")
    d = tk.delete_session(actor, gone.id).value
    assert d.deleted_at is not None
    assert d.version == gone.version + 1
    assert _ids(tk.list_sessions(actor)) == [keep.id]
    assert _ids(tk.list_sessions(actor, trashed=True)) == [gone.id]
    assert tk.get_session(actor, gone.id).deleted_at is not None
    # reads of a trashed session still work
    assert len(tk.get_history(actor, gone.id)) == 2


def test_appending_to_a_trashed_session_raises_invalid_state_and_writes_nothing(tk, actor):
    s = with_messages(tk, actor, 1)
    tk.delete_session(actor, s.id)
    with writes_nothing(tk), pytest.raises(InvalidState):
        tk.append_message(actor, s.id, {"role": "user", "content": "late"})
    with writes_nothing(tk), pytest.raises(InvalidState):
        tk.update_session(actor, s.id, title="x")


def test_delete_with_a_stale_version_raises_version_conflict(tk, actor):
    s = new_session(tk, actor)
    tk.update_session(actor, s.id, title="x")
    with writes_nothing(tk), pytest.raises(VersionConflict):
        tk.delete_session(actor, s.id, expected_version=s.version)
    assert tk.get_session(actor, s.id).deleted_at is None


def test_restore_brings_a_trashed_session_back(tk, actor):
    s = with_messages(tk, actor, 1)
    tk.delete_session(actor, s.id)
    r = tk.restore_session(actor, s.id).value
    assert r.deleted_at is None
    assert r.version == s.version + 2
    assert _ids(tk.list_sessions(actor)) == [s.id]
    assert tk.list_sessions(actor, trashed=True).items == []
    m = tk.append_message(actor, s.id, {"role": "user", "content": "back"}).value
    assert m.seq == 2


def test_purge_removes_the_session_and_all_its_rows_and_logs_deletes(tk, actor):
    keep = with_messages(tk, actor, 1)
    s = with_messages(tk, actor, 3)
    hist = tk.get_history(actor, s.id)
    tool = tk.start_tool_event(actor, s.id, {"name": "grep", "message_id": hist[0].id}).value
    tl = tk.append_timeline_events(actor, s.id, [{"kind": "note"}]).value[0]
    done = tk.purge_session(actor, s.id)
    assert done.value is None
    with pytest.raises(SessionNotFound):
        tk.get_session(actor, s.id)
    with tk.engine.sa_engine.connect() as conn:
        for table in (tables.messages, tables.tool_events, tables.timeline_events):
            n = conn.execute(
                sa.select(sa.func.count()).select_from(table).where(table.c.session_id == s.id)
            ).scalar_one()
            assert n == 0, table.name
    assert len(tk.get_history(actor, keep.id)) == 1
    deletes = {
        (c.table, c.key)
        for c in tk.read_changes(actor, 0)
        if c.op == Operation.DELETE and c.txid == done.txid
    }
    expected = {("sessions", s.id), ("tool_events", tool.id), ("timeline_events", tl.id)}
    expected |= {("messages", m.id) for m in hist}
    assert deletes == expected


def test_purge_of_a_trashed_session_works(tk, actor):
    s = with_messages(tk, actor, 1)
    tk.delete_session(actor, s.id)
    tk.purge_session(actor, s.id)
    assert tk.list_sessions(actor, trashed=True).items == []


def test_purge_of_a_session_with_branches_raises_has_branches_and_deletes_nothing(tk, actor):
    s = with_messages(tk, actor, 3)
    tk.fork_session(actor, s.id, at_seq=2)
    tk.fork_session(actor, s.id, at_seq=1)
    with writes_nothing(tk), pytest.raises(HasBranches) as info:
        tk.purge_session(actor, s.id)
    assert info.value.branches == 2
    assert len(tk.get_history(actor, s.id)) == 3


def test_purge_of_a_branch_then_its_parent_succeeds(tk, actor):
    s = with_messages(tk, actor, 3)
    b = tk.fork_session(actor, s.id, at_seq=2).value
    tk.append_message(actor, b.id, {"role": "user", "content": "own"})
    tk.purge_session(actor, b.id)
    assert tk.list_branches(actor, s.id) == []
    tk.purge_session(actor, s.id)
    assert tk.list_sessions(actor).items == []
    with tk.engine.sa_engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(tables.messages)).scalar() == 0


def test_token_totals_on_the_session_add_up(tk, actor):
    s = new_session(tk, actor)
    tk.append_messages(
        actor,
        s.id,
        [
            {"role": "user", "content": "q", "input_tokens": 10},
            {"role": "assistant", "content": "a", "input_tokens": 5, "output_tokens": 7},
        ],
    )
    tk.append_message(actor, s.id, {"role": "assistant", "content": "b", "output_tokens": 3})
    tk.append_message(actor, s.id, {"role": "user", "content": "no counts"})
    got = tk.get_session(actor, s.id)
    assert (got.input_tokens, got.output_tokens) == (15, 10)
    hist = tk.get_history(actor, s.id)
    assert sum(m.input_tokens or 0 for m in hist) == got.input_tokens
    assert sum(m.output_tokens or 0 for m in hist) == got.output_tokens


def test_a_second_store_with_other_limits_shares_the_same_data(tk, actor):
    from threadkeep.config import Limits

    small = Threadkeep(tk.engine, Limits(max_page=5))
    s = new_session(tk, actor)
    tk.append_messages(actor, s.id, user_msgs(3))
    assert small.count_messages(actor, s.id) == 3
    with pytest.raises(InvalidInput):
        small.list_sessions(actor, limit=6)
