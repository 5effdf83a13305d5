"""Least privilege: another user's ids behave exactly like ids that do not exist.

For every read and write method, ``other`` using ``owner``'s ids gets the same
NotFound subclass as for a random missing id, and nothing is written. The
cases share one database per engine (each checks that it wrote nothing).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from contract_helpers import missing_id, user_msgs, writes_nothing

from conftest import shared_store_fixture
from threadkeep import (
    Actor,
    MessageNotFound,
    NotFound,
    SessionNotFound,
    Threadkeep,
    ThreadkeepError,
    ToolEventNotFound,
)

store = shared_store_fixture()


@dataclass(frozen=True)
class Ids:
    session: str
    trashed: str  # a session in the trash
    message: str
    tool_event: str


@dataclass
class World:
    tk: Threadkeep
    owner: Actor
    other: Actor
    owned: Ids  # the owner's real ids
    other_session: str  # a session of `other`, with messages


@pytest.fixture(scope="module")
def world(store) -> World:
    tk = store
    owner = Actor(tk.create_user("owner").value.id)
    other = Actor(tk.create_user("other").value.id)
    s = tk.create_session(owner, title="private").value
    msgs = tk.append(
        owner,
        s.id,
        user_msgs(3),
        timeline_events=[{"kind": "k"}],
    ).value.messages
    ev = tk.start_tool_event(owner, s.id, {"name": "x", "message_id": msgs[0].id}).value
    tk.fork_session(owner, s.id, at_seq=2)
    trashed = tk.create_session(owner, title="binned").value
    tk.append_messages(owner, trashed.id, user_msgs(2))
    tk.delete_session(owner, trashed.id)
    theirs = tk.create_session(other, title="their own").value
    tk.append_messages(other, theirs.id, user_msgs(3))
    return World(tk, owner, other, Ids(s.id, trashed.id, msgs[0].id, ev.id), theirs.id)


def _missing() -> Ids:
    return Ids(missing_id(), missing_id(), missing_id(), missing_id())


Call = Callable[[World, Ids], Any]

# (name, call as `other` with the given ids, the NotFound subclass expected)
CALLS: list[tuple[str, Call, type[NotFound]]] = [
    ("get_session", lambda w, i: w.tk.get_session(w.other, i.session), SessionNotFound),
    ("get_trashed_session", lambda w, i: w.tk.get_session(w.other, i.trashed), SessionNotFound),
    ("get_history", lambda w, i: w.tk.get_history(w.other, i.session), SessionNotFound),
    (
        "get_messages",
        lambda w, i: w.tk.get_messages(w.other, i.session, after_seq=0),
        SessionNotFound,
    ),
    ("last_messages", lambda w, i: w.tk.last_messages(w.other, i.session, 5), SessionNotFound),
    ("count_messages", lambda w, i: w.tk.count_messages(w.other, i.session), SessionNotFound),
    ("get_message", lambda w, i: w.tk.get_message(w.other, i.message), MessageNotFound),
    ("list_branches", lambda w, i: w.tk.list_branches(w.other, i.session), SessionNotFound),
    ("get_tool_event", lambda w, i: w.tk.get_tool_event(w.other, i.tool_event), ToolEventNotFound),
    ("list_tool_events", lambda w, i: w.tk.list_tool_events(w.other, i.session), SessionNotFound),
    (
        "list_tool_events_of_message",
        lambda w, i: w.tk.list_tool_events(w.other, i.session, message_id=i.message),
        SessionNotFound,
    ),
    (
        "list_timeline_events",
        lambda w, i: w.tk.list_timeline_events(w.other, i.session),
        SessionNotFound,
    ),
    (
        "update_session",
        lambda w, i: w.tk.update_session(w.other, i.session, title="x"),
        SessionNotFound,
    ),
    (
        "update_session_with_version",
        lambda w, i: w.tk.update_session(w.other, i.session, title="x", expected_version=1),
        SessionNotFound,
    ),
    ("delete_session", lambda w, i: w.tk.delete_session(w.other, i.session), SessionNotFound),
    (
        "delete_session_with_version",
        lambda w, i: w.tk.delete_session(w.other, i.session, expected_version=1),
        SessionNotFound,
    ),
    ("restore_session", lambda w, i: w.tk.restore_session(w.other, i.trashed), SessionNotFound),
    ("purge_session", lambda w, i: w.tk.purge_session(w.other, i.session), SessionNotFound),
    ("purge_trashed_session", lambda w, i: w.tk.purge_session(w.other, i.trashed), SessionNotFound),
    (
        "append_message",
        lambda w, i: w.tk.append_message(w.other, i.session, {"role": "user", "content": "x"}),
        SessionNotFound,
    ),
    (
        "append_message_with_client_id",
        lambda w, i: w.tk.append_message(
            w.other, i.session, {"role": "user", "content": "x", "client_id": "c"}
        ),
        SessionNotFound,
    ),
    (
        "append_to_trashed",
        lambda w, i: w.tk.append_message(w.other, i.trashed, {"role": "user", "content": "x"}),
        SessionNotFound,
    ),
    (
        "append_messages",
        lambda w, i: w.tk.append_messages(w.other, i.session, user_msgs(2)),
        SessionNotFound,
    ),
    (
        "append_with_events",
        lambda w, i: w.tk.append(
            w.other,
            i.session,
            user_msgs(1),
            tool_events=[{"name": "t"}],
            timeline_events=[{"kind": "k"}],
        ),
        SessionNotFound,
    ),
    (
        "start_tool_event",
        lambda w, i: w.tk.start_tool_event(w.other, i.session, {"name": "t"}),
        SessionNotFound,
    ),
    (
        "record_tool_events",
        lambda w, i: w.tk.record_tool_events(w.other, i.session, [{"name": "t"}]),
        SessionNotFound,
    ),
    (
        "append_timeline_events",
        lambda w, i: w.tk.append_timeline_events(w.other, i.session, [{"kind": "k"}]),
        SessionNotFound,
    ),
    (
        "update_tool_event",
        lambda w, i: w.tk.update_tool_event(w.other, i.tool_event, {"status": "running"}),
        ToolEventNotFound,
    ),
    (
        "finish_tool_event",
        lambda w, i: w.tk.finish_tool_event(w.other, i.tool_event, output=1),
        ToolEventNotFound,
    ),
    ("fork_session", lambda w, i: w.tk.fork_session(w.other, i.session, at_seq=1), SessionNotFound),
    (
        "fork_session_at_message",
        lambda w, i: w.tk.fork_session(w.other, i.session, at_message_id=i.message),
        MessageNotFound,
    ),
    (
        "fork_own_session_at_foreign_message",
        lambda w, i: w.tk.fork_session(w.other, w.other_session, at_message_id=i.message),
        MessageNotFound,
    ),
    (
        "rewind_session",
        lambda w, i: w.tk.rewind_session(w.other, i.session, to_seq=1),
        SessionNotFound,
    ),
    (
        "rewind_own_session_to_foreign_message",
        lambda w, i: w.tk.rewind_session(w.other, w.other_session, to_message_id=i.message),
        MessageNotFound,
    ),
    (
        "tool_event_in_own_session_linked_to_foreign_message",
        lambda w, i: w.tk.start_tool_event(
            w.other, w.other_session, {"name": "t", "message_id": i.message}
        ),
        MessageNotFound,
    ),
    (
        "timeline_event_in_own_session_linked_to_foreign_message",
        lambda w, i: w.tk.append_timeline_events(
            w.other, w.other_session, [{"kind": "k", "message_id": i.message}]
        ),
        MessageNotFound,
    ),
]


def _outcome(fn: Callable[[], Any]) -> tuple[str, Any]:
    try:
        return ("returned", fn())
    except ThreadkeepError as exc:
        return ("raised", type(exc))


@pytest.mark.parametrize(
    ("call", "expected"), [(c[1], c[2]) for c in CALLS], ids=[c[0] for c in CALLS]
)
def test_another_users_id_looks_exactly_like_a_missing_one(world, call, expected):
    with writes_nothing(world.tk):
        foreign = _outcome(lambda: call(world, world.owned))
        missing = _outcome(lambda: call(world, _missing()))
    assert foreign == missing, "another user's id must be indistinguishable from a missing one"
    assert foreign == ("raised", expected), f"an unknown id should raise {expected.__name__}"


def test_the_owner_still_sees_everything_the_probes_targeted(world):
    tk, owner, ids = world.tk, world.owner, world.owned
    s = tk.get_session(owner, ids.session)
    assert (s.title, s.head_seq, s.version) == ("private", 3, 1)
    assert tk.get_tool_event(owner, ids.tool_event).status == "started"
    assert tk.get_session(owner, ids.trashed).deleted_at is not None


def test_another_users_sessions_are_never_listed(world):
    tk, other = world.tk, world.other
    for flt in ({}, {"trashed": True}, {"title_contains": "private"}, {"title_contains": "i"}):
        listed = tk.list_sessions(other, flt, limit=1000).items
        assert {s.owner_id for s in listed} <= {other.user_id}, flt
    assert [s.id for s in tk.list_sessions(other).items] == [world.other_session]
    assert tk.list_sessions(other, trashed=True).items == []


def test_another_users_changes_are_not_readable_by_session_id(world):
    tk = world.tk
    foreign = tk.read_changes(world.other, 0, session_id=world.owned.session)
    missing = tk.read_changes(world.other, 0, session_id=missing_id())
    assert foreign == missing == []
    assert all(c.owner_id == world.other.user_id for c in tk.read_changes(world.other, 0))


def test_the_same_client_id_in_another_users_session_is_not_a_replay(world):
    tk = world.tk
    s = tk.create_session(world.other).value
    owners = tk.create_session(world.owner).value
    msg = {"role": "user", "content": "mine", "client_id": "shared-cid"}
    tk.append_message(world.owner, owners.id, {**msg, "content": "owner's"})
    got = tk.append_message(world.other, s.id, msg).value
    assert (got.content, got.owner_id, got.seq) == ("mine", world.other.user_id, 1)


def test_another_users_token_looks_exactly_like_a_missing_one(store):
    from threadkeep.service.tokens import TokenNotFound

    tk = store
    owner = Actor(tk.create_user("token-owner").value.id)
    other = Actor(tk.create_user("token-other").value.id)
    issued = tk.create_token(owner, "laptop").value
    with writes_nothing(tk):
        foreign = _outcome(lambda: tk.revoke_token(other, issued.id))
        missing = _outcome(lambda: tk.revoke_token(other, missing_id()))
    assert foreign == missing == ("raised", TokenNotFound)
    assert [t.id for t in tk.list_tokens(owner)] == [issued.id]
    assert tk.list_tokens(other) == []
    assert tk.authenticate(issued.token).revoked_at is None
