"""Branches: fork (shares history, copies nothing), rewind (moves the tail to a
branch, loses nothing), forks of forks, list_branches."""

from __future__ import annotations

import contextlib

import pytest
import sqlalchemy as sa
from contract_helpers import (
    contents,
    missing_id,
    not_raising,
    seqs,
    view,
    with_messages,
    writes_nothing,
)

from conftest import running_in_threads
from threadkeep import (
    AlreadyExists,
    InvalidInput,
    InvalidState,
    MessageNotFound,
    SessionNotFound,
)
from threadkeep.store import tables


def _message_rows(tk) -> int:
    with tk.engine.sa_engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(tables.messages)).scalar_one()


def _append(tk, actor, sid, *texts):
    return tk.append_messages(actor, sid, [{"role": "user", "content": t} for t in texts]).value


# --- fork -------------------------------------------------------------------------


def test_fork_at_seq_k_shares_history_1_to_k_and_continues_at_k_plus_1(tk, actor):
    s = with_messages(tk, actor, 6, title="root", model="m", tags=["t"], metadata={"a": 1})
    parent_hist = tk.get_history(actor, s.id)
    b = tk.fork_session(actor, s.id, at_seq=4).value
    assert b.parent_session_id == s.id and b.fork_seq == 4
    assert b.head_seq == 4 and b.id != s.id
    assert (b.title, b.model, b.tags, b.metadata) == ("root", "m", ["t"], {"a": 1})
    assert view(tk.get_history(actor, b.id)) == view(parent_hist[:4])
    own = tk.append_message(actor, b.id, {"role": "user", "content": "branch-5"}).value
    assert own.seq == 5 and own.session_id == b.id
    assert contents(tk.get_history(actor, b.id)) == ["m1", "m2", "m3", "m4", "branch-5"]
    assert seqs(tk.get_history(actor, b.id)) == [1, 2, 3, 4, 5]
    # the parent is untouched and keeps going on its own
    assert view(tk.get_history(actor, s.id)) == view(parent_hist)
    assert tk.append_message(actor, s.id, {"role": "user", "content": "p7"}).value.seq == 7
    assert contents(tk.get_history(actor, b.id))[-1] == "branch-5"


def test_forking_copies_no_messages(tk, actor):
    s = with_messages(tk, actor, 50)
    before = _message_rows(tk)
    tk.fork_session(actor, s.id, at_seq=50)
    tk.fork_session(actor, s.id, at_seq=25)
    assert _message_rows(tk) == before == 50


def test_fork_with_title_and_id_uses_them(tk, actor):
    s = with_messages(tk, actor, 2, title="root")
    b = tk.fork_session(actor, s.id, at_seq=1, id="branch-x", title="alt").value
    assert (b.id, b.title) == ("branch-x", "alt")
    assert tk.get_session(actor, "branch-x") == b


def test_fork_at_zero_gives_an_empty_branch(tk, actor):
    s = with_messages(tk, actor, 3)
    b = tk.fork_session(actor, s.id, at_seq=0).value
    assert tk.get_history(actor, b.id) == []
    assert tk.count_messages(actor, b.id) == 0
    assert tk.append_message(actor, b.id, {"role": "user", "content": "x"}).value.seq == 1


def test_fork_at_the_head_shares_everything(tk, actor):
    s = with_messages(tk, actor, 3)
    b = tk.fork_session(actor, s.id, at_seq=3).value
    assert view(tk.get_history(actor, b.id)) == view(tk.get_history(actor, s.id))


def test_fork_at_message_id_forks_at_that_messages_seq(tk, actor):
    s = with_messages(tk, actor, 5)
    third = tk.get_history(actor, s.id)[2]
    b = tk.fork_session(actor, s.id, at_message_id=third.id).value
    assert b.fork_seq == 3
    assert contents(tk.get_history(actor, b.id)) == ["m1", "m2", "m3"]


def test_fork_at_a_message_id_of_another_session_is_refused(tk, actor):
    s = with_messages(tk, actor, 5)
    other = with_messages(tk, actor, 5, prefix="o")
    foreign_msg = tk.get_history(actor, other.id)[2]
    with writes_nothing(tk), pytest.raises((MessageNotFound, InvalidInput)):
        tk.fork_session(actor, s.id, at_message_id=foreign_msg.id)


def test_fork_at_an_inherited_message_id_of_a_branch_works(tk, actor):
    s = with_messages(tk, actor, 5, prefix="a")
    b = tk.fork_session(actor, s.id, at_seq=4).value
    _append(tk, actor, b.id, "b5")
    inherited = tk.get_history(actor, b.id)[1]  # a2, held by the parent
    assert inherited.session_id == s.id
    c = tk.fork_session(actor, b.id, at_message_id=inherited.id).value
    assert c.fork_seq == 2
    assert contents(tk.get_history(actor, c.id)) == ["a1", "a2"]


def test_a_message_rewound_out_of_a_session_no_longer_names_a_fork_point_in_it(tk, actor):
    s = with_messages(tk, actor, 4)
    gone = tk.get_history(actor, s.id)[3]
    branch = tk.rewind_session(actor, s.id, to_seq=2).value.branch
    with writes_nothing(tk), pytest.raises((MessageNotFound, InvalidInput)):
        tk.fork_session(actor, s.id, at_message_id=gone.id)
    # ...but it does in the branch that now holds it
    f = tk.fork_session(actor, branch.id, at_message_id=gone.id).value
    assert f.fork_seq == 4


def test_rewind_to_a_message_id_of_another_session_is_refused(tk, actor):
    s = with_messages(tk, actor, 4)
    other = with_messages(tk, actor, 4, prefix="o")
    foreign_msg = tk.get_history(actor, other.id)[1]
    with writes_nothing(tk), pytest.raises((MessageNotFound, InvalidInput)):
        tk.rewind_session(actor, s.id, to_message_id=foreign_msg.id)
    assert tk.count_messages(actor, s.id) == 4


def test_fork_of_a_fork_reads_through_both_ancestors(tk, actor):
    s = with_messages(tk, actor, 5, prefix="a")
    b = tk.fork_session(actor, s.id, at_seq=3).value
    _append(tk, actor, b.id, "b4", "b5", "b6")
    c = tk.fork_session(actor, b.id, at_seq=5).value
    _append(tk, actor, c.id, "c6")
    assert contents(tk.get_history(actor, c.id)) == ["a1", "a2", "a3", "b4", "b5", "c6"]
    assert seqs(tk.get_history(actor, c.id)) == [1, 2, 3, 4, 5, 6]
    assert tk.count_messages(actor, c.id) == 6
    assert contents(tk.get_messages(actor, c.id, after_seq=2, before_seq=6)) == [
        "a3",
        "b4",
        "b5",
    ]
    assert contents(tk.last_messages(actor, c.id, 2)) == ["b5", "c6"]


def test_fork_of_a_fork_inside_the_inherited_part_shares_only_up_to_its_fork(tk, actor):
    s = with_messages(tk, actor, 10, prefix="a")
    b = tk.fork_session(actor, s.id, at_seq=8).value
    c = tk.fork_session(actor, b.id, at_seq=5).value
    assert c.head_seq == 5
    assert contents(tk.get_history(actor, c.id)) == ["a1", "a2", "a3", "a4", "a5"]
    _append(tk, actor, c.id, "c6")
    hist = tk.get_history(actor, c.id)
    assert contents(hist) == ["a1", "a2", "a3", "a4", "a5", "c6"]
    assert seqs(hist) == [1, 2, 3, 4, 5, 6]


def test_fork_outside_the_history_raises_invalid_input(tk, actor):
    s = with_messages(tk, actor, 3)
    at = {str(k): k for k in (-1, 4, 100)}
    with writes_nothing(tk):
        wrong = not_raising(at, lambda k: tk.fork_session(actor, s.id, at_seq=k), InvalidInput)
    assert wrong == {}


def test_fork_needs_exactly_one_of_seq_and_message_id(tk, actor):
    s = with_messages(tk, actor, 3)
    m = tk.get_history(actor, s.id)[0]
    with writes_nothing(tk), pytest.raises(InvalidInput):
        tk.fork_session(actor, s.id)
    with writes_nothing(tk), pytest.raises(InvalidInput):
        tk.fork_session(actor, s.id, at_seq=1, at_message_id=m.id)


def test_fork_with_a_taken_id_raises_already_exists(tk, actor, other_actor):
    s = with_messages(tk, actor, 2)
    tk.create_session(other_actor, id="taken")
    with writes_nothing(tk), pytest.raises(AlreadyExists):
        tk.fork_session(actor, s.id, at_seq=1, id="taken")


def test_fork_of_a_trashed_session_raises_invalid_state(tk, actor):
    s = with_messages(tk, actor, 2)
    tk.delete_session(actor, s.id)
    with writes_nothing(tk), pytest.raises(InvalidState):
        tk.fork_session(actor, s.id, at_seq=1)


def test_fork_of_a_missing_session_raises_session_not_found(tk, actor):
    with writes_nothing(tk), pytest.raises(SessionNotFound):
        tk.fork_session(actor, missing_id(), at_seq=0)


def test_list_branches_lists_direct_branches_only(tk, actor):
    s = with_messages(tk, actor, 4)
    b1 = tk.fork_session(actor, s.id, at_seq=1).value
    b2 = tk.fork_session(actor, s.id, at_seq=3).value
    tk.fork_session(actor, b1.id, at_seq=1)  # a grandchild: not listed
    got = tk.list_branches(actor, s.id)
    assert {b.id for b in got} == {b1.id, b2.id}
    assert [b.id for b in got] == [b1.id, b2.id]  # oldest first
    assert tk.list_branches(actor, b2.id) == []


def test_list_branches_of_a_missing_session_raises_session_not_found(tk, actor):
    with pytest.raises(SessionNotFound):
        tk.list_branches(actor, missing_id())


# --- rewind -----------------------------------------------------------------------


def test_rewind_makes_k_the_head_and_moves_the_tail_to_a_branch(tk, actor):
    s = with_messages(tk, actor, 6)
    old = tk.get_history(actor, s.id)
    rows_before = _message_rows(tk)
    done = tk.rewind_session(actor, s.id, to_seq=3)
    rewound, branch = done.value.session, done.value.branch
    assert rewound.id == s.id and rewound.head_seq == 3
    assert branch is not None and branch.id != s.id
    assert view(tk.get_history(actor, s.id)) == view(old[:3])
    assert tk.count_messages(actor, s.id) == 3
    assert view(tk.get_history(actor, branch.id)) == view(old)
    assert tk.count_messages(actor, branch.id) == 6
    assert _message_rows(tk) == rows_before  # moved, not copied
    assert tk.get_session(actor, s.id).head_seq == 3
    # the session continues from k + 1
    new = tk.append_message(actor, s.id, {"role": "user", "content": "new-4"}).value
    assert new.seq == 4
    assert contents(tk.get_history(actor, s.id)) == ["m1", "m2", "m3", "new-4"]
    assert view(tk.get_history(actor, branch.id)) == view(old)


def test_rewind_with_a_chosen_branch_id_and_by_message_id(tk, actor):
    s = with_messages(tk, actor, 4)
    second = tk.get_history(actor, s.id)[1]
    done = tk.rewind_session(actor, s.id, to_message_id=second.id, branch_id="kept")
    assert done.value.branch is not None and done.value.branch.id == "kept"
    assert contents(tk.get_history(actor, s.id)) == ["m1", "m2"]
    assert contents(tk.get_history(actor, "kept")) == ["m1", "m2", "m3", "m4"]


def test_rewind_to_the_head_is_a_no_op_without_a_branch(tk, actor):
    s = with_messages(tk, actor, 3)
    with writes_nothing(tk, except_log=True):
        done = tk.rewind_session(actor, s.id, to_seq=3)
    assert done.value.branch is None
    assert done.value.session.head_seq == 3


def test_rewind_to_zero_keeps_everything_in_the_branch(tk, actor):
    s = with_messages(tk, actor, 3)
    old = tk.get_history(actor, s.id)
    branch = tk.rewind_session(actor, s.id, to_seq=0).value.branch
    assert tk.get_history(actor, s.id) == []
    assert view(tk.get_history(actor, branch.id)) == view(old)
    assert tk.append_message(actor, s.id, {"role": "user", "content": "x"}).value.seq == 1


def test_rewind_outside_the_history_raises_invalid_input(tk, actor):
    s = with_messages(tk, actor, 3)
    to = {str(k): k for k in (-1, 4)}
    with writes_nothing(tk):
        wrong = not_raising(to, lambda k: tk.rewind_session(actor, s.id, to_seq=k), InvalidInput)
    assert wrong == {}


def test_rewind_of_a_trashed_session_raises_invalid_state(tk, actor):
    s = with_messages(tk, actor, 3)
    tk.delete_session(actor, s.id)
    with writes_nothing(tk), pytest.raises(InvalidState):
        tk.rewind_session(actor, s.id, to_seq=1)


def test_rewind_lists_the_new_branch_under_the_session(tk, actor):
    s = with_messages(tk, actor, 3)
    branch = tk.rewind_session(actor, s.id, to_seq=1).value.branch
    assert [b.id for b in tk.list_branches(actor, s.id)] == [branch.id]


def test_rewind_within_a_forks_own_messages(tk, actor):
    s = with_messages(tk, actor, 4, prefix="a")
    b = tk.fork_session(actor, s.id, at_seq=2).value
    _append(tk, actor, b.id, "b3", "b4", "b5")
    old = tk.get_history(actor, b.id)
    branch = tk.rewind_session(actor, b.id, to_seq=3).value.branch
    assert contents(tk.get_history(actor, b.id)) == ["a1", "a2", "b3"]
    assert view(tk.get_history(actor, branch.id)) == view(old)
    assert contents(tk.get_history(actor, s.id)) == ["a1", "a2", "a3", "a4"]
    _append(tk, actor, b.id, "new4")
    assert seqs(tk.get_history(actor, b.id)) == [1, 2, 3, 4]
    assert view(tk.get_history(actor, branch.id)) == view(old)


def test_rewind_below_the_fork_point_of_a_forked_session(tk, actor):
    s = with_messages(tk, actor, 6, prefix="a")
    b = tk.fork_session(actor, s.id, at_seq=4).value
    _append(tk, actor, b.id, "b5", "b6")
    old = tk.get_history(actor, b.id)
    assert contents(old) == ["a1", "a2", "a3", "a4", "b5", "b6"]
    branch = tk.rewind_session(actor, b.id, to_seq=2).value.branch
    assert contents(tk.get_history(actor, b.id)) == ["a1", "a2"]
    assert tk.count_messages(actor, b.id) == 2
    assert view(tk.get_history(actor, branch.id)) == view(old)
    assert tk.count_messages(actor, branch.id) == 6
    assert contents(tk.get_history(actor, s.id)) == ["a1", "a2", "a3", "a4", "a5", "a6"]
    _append(tk, actor, b.id, "new3")
    assert contents(tk.get_history(actor, b.id)) == ["a1", "a2", "new3"]
    assert seqs(tk.get_history(actor, b.id)) == [1, 2, 3]
    assert view(tk.get_history(actor, branch.id)) == view(old)


def test_rewind_below_the_fork_point_of_a_fork_of_a_fork(tk, actor):
    s = with_messages(tk, actor, 6, prefix="a")
    b = tk.fork_session(actor, s.id, at_seq=4).value
    _append(tk, actor, b.id, "b5", "b6")
    c = tk.fork_session(actor, b.id, at_seq=5).value
    _append(tk, actor, c.id, "c6")
    old = tk.get_history(actor, c.id)
    assert contents(old) == ["a1", "a2", "a3", "a4", "b5", "c6"]
    branch = tk.rewind_session(actor, c.id, to_seq=3).value.branch
    assert contents(tk.get_history(actor, c.id)) == ["a1", "a2", "a3"]
    assert view(tk.get_history(actor, branch.id)) == view(old)


def test_children_forked_after_the_rewind_point_still_read_their_exact_history(tk, actor):
    s = with_messages(tk, actor, 8)
    late = tk.fork_session(actor, s.id, at_seq=6).value
    _append(tk, actor, late.id, "late7")
    early = tk.fork_session(actor, s.id, at_seq=2).value
    _append(tk, actor, early.id, "early3")
    at_point = tk.fork_session(actor, s.id, at_seq=4).value
    before = {b.id: tk.get_history(actor, b.id) for b in (late, early, at_point)}
    branch = tk.rewind_session(actor, s.id, to_seq=4).value.branch
    _append(tk, actor, s.id, "s5", "s6", "s7")  # the session now writes new seqs 5..7
    for sid, hist in before.items():
        assert view(tk.get_history(actor, sid)) == view(hist), sid
        assert tk.count_messages(actor, sid) == len(hist)
    assert contents(tk.get_history(actor, s.id)) == ["m1", "m2", "m3", "m4", "s5", "s6", "s7"]
    assert contents(tk.get_history(actor, branch.id)) == [f"m{i}" for i in range(1, 9)]
    _append(tk, actor, late.id, "late8")
    assert contents(tk.get_history(actor, late.id)) == [
        *(f"m{i}" for i in range(1, 7)),
        "late7",
        "late8",
    ]


def test_children_of_a_fork_keep_their_history_when_it_rewinds_below_its_fork(tk, actor):
    s = with_messages(tk, actor, 6, prefix="a")
    b = tk.fork_session(actor, s.id, at_seq=4).value
    _append(tk, actor, b.id, "b5", "b6", "b7")
    kids = [tk.fork_session(actor, b.id, at_seq=k).value for k in (1, 3, 4, 6)]
    for k in kids:
        _append(tk, actor, k.id, f"kid-of-{k.fork_seq}")
    before = {k.id: tk.get_history(actor, k.id) for k in kids}
    tk.rewind_session(actor, b.id, to_seq=2)
    _append(tk, actor, b.id, "new3", "new4", "new5")
    for sid, hist in before.items():
        assert view(tk.get_history(actor, sid)) == view(hist), sid


def test_rewound_tool_and_timeline_events_follow_their_messages(tk, actor):
    s = with_messages(tk, actor, 4)
    hist = tk.get_history(actor, s.id)
    early = tk.start_tool_event(actor, s.id, {"name": "early", "message_id": hist[0].id}).value
    late = tk.start_tool_event(actor, s.id, {"name": "late", "message_id": hist[3].id}).value
    branch = tk.rewind_session(actor, s.id, to_seq=2).value.branch
    assert [e.id for e in tk.list_tool_events(actor, s.id)] == [early.id]
    assert [e.id for e in tk.list_tool_events(actor, branch.id)] == [late.id]
    assert tk.get_tool_event(actor, late.id).message_id == hist[3].id


def test_rewound_messages_take_their_tokens_to_the_branch(tk, actor):
    """A session's token totals are its own messages' (as appends, streams and
    imports keep them), so a rewind splits them between the two sessions."""
    s = tk.create_session(actor).value
    tokens = [(3, 5), (None, 7), (11, None), (13, 17)]
    tk.append_messages(
        actor,
        s.id,
        [
            {"role": "user", "content": "t", "input_tokens": i, "output_tokens": o}
            for i, o in tokens
        ],
    )
    done = tk.rewind_session(actor, s.id, to_seq=1)
    rewound, branch = done.value.session, done.value.branch
    assert branch is not None
    assert (rewound.input_tokens, rewound.output_tokens) == (3, 5)
    assert (branch.input_tokens, branch.output_tokens) == (24, 24)
    assert tk.get_session(actor, s.id).input_tokens == 3
    (logged,) = [c for c in tk.read_changes(actor, 0) if c.txid == done.txid and c.key == s.id]
    assert logged.row is not None
    assert (logged.row["input_tokens"], logged.row["output_tokens"]) == (3, 5)
    # Below the fork point of a fork: the fork's own messages all move.
    fork = tk.fork_session(actor, s.id, at_seq=1).value
    tk.append_message(actor, fork.id, {"role": "user", "content": "f", "output_tokens": 2})
    below = tk.rewind_session(actor, fork.id, to_seq=0).value
    assert below.branch is not None
    assert (below.session.output_tokens, below.branch.output_tokens) == (0, 2)


def test_appending_after_many_rewinds_and_forks_never_reuses_a_seq(tk, actor):
    s = with_messages(tk, actor, 5)
    for k in (4, 2, 3):
        tk.rewind_session(actor, s.id, to_seq=k)
        _append(tk, actor, s.id, f"x{k}a", f"x{k}b")
    hist = tk.get_history(actor, s.id)
    assert seqs(hist) == list(range(1, len(hist) + 1))
    assert contents(hist) == ["m1", "m2", "x2a", "x3a", "x3b"]


def test_fork_title_longer_than_a_session_title_may_be_is_refused(tk, actor):
    s = with_messages(tk, actor, 1)
    with writes_nothing(tk), pytest.raises(InvalidInput):
        tk.fork_session(actor, s.id, at_seq=1, title="x" * 1001)


def test_fork_id_longer_than_an_id_may_be_is_refused(tk, actor):
    s = with_messages(tk, actor, 1)
    with writes_nothing(tk), pytest.raises(InvalidInput):
        tk.fork_session(actor, s.id, at_seq=1, id="x" * 129)


def test_fork_and_rewind_with_a_non_integer_seq_raise_invalid_input(tk, actor):
    s = with_messages(tk, actor, 2)
    seqs_ = {"1.5": 1.5, "None": None}
    with writes_nothing(tk):
        fork = not_raising(seqs_, lambda k: tk.fork_session(actor, s.id, at_seq=k), InvalidInput)
        rewind = not_raising(
            seqs_, lambda k: tk.rewind_session(actor, s.id, to_seq=k), InvalidInput
        )
    assert (fork, rewind) == ({}, {})


def test_forks_racing_rewinds_of_their_parent_read_exactly_what_they_forked(tk, actor):
    """A fork reads its parent's head, then writes the branch row. A rewind
    of the parent in between moves the messages past its point to a new
    branch, and re-parents the branches that forked past it: a fork that it
    could not see yet would then read a history with a hole where the moved
    messages were. So a fork holds its parent row while it writes (on
    PostgreSQL: FOR KEY SHARE, which a rewind's lock waits for and an
    append's does not); on SQLite the single writer serialises the two."""
    s = tk.create_session(actor).value
    _append(tk, actor, s.id, *[f"m{i}" for i in range(1, 501)])
    forks: list[tuple[str, int]] = []

    def fork_at_the_head() -> None:
        head = tk.get_session(actor, s.id).head_seq
        with contextlib.suppress(InvalidInput):  # the head moved below it first
            forks.append((tk.fork_session(actor, s.id, at_seq=head).value.id, head))

    with running_in_threads(fork_at_the_head, fork_at_the_head):
        # Until enough forks have raced (they wait for rewinds, so a loaded
        # machine sees fewer per rewind), or the history runs out.
        for to in range(499, 0, -1):
            tk.rewind_session(actor, s.id, to_seq=to)
            if to < 450 and len(forks) >= 30:
                break
    assert len(forks) > 10
    for branch_id, at in forks:
        history = tk.get_history(actor, branch_id)
        assert contents(history) == [f"m{i}" for i in range(1, at + 1)], (branch_id, at)


def test_a_fork_at_a_message_racing_rewinds_forks_at_that_message_or_is_refused(tk, actor):
    """Another client rewinds the session by one and writes a new message in
    that seq, over and over, while this one forks at the last message it saw.
    The branch must end with exactly that message, or the fork must be
    refused because the message left the history: never a fork at whatever
    message holds that seq by the time the fork is written."""
    s = tk.create_session(actor).value
    _append(tk, actor, s.id, *[f"m{i}" for i in range(1, 21)])
    forks: list[tuple[str, str]] = []

    def fork_at_the_last_message() -> None:
        last = tk.last_messages(actor, s.id, 1)[-1]
        with contextlib.suppress(MessageNotFound):  # it left the history first
            forks.append((tk.fork_session(actor, s.id, at_message_id=last.id).value.id, last.id))

    with running_in_threads(fork_at_the_last_message, fork_at_the_last_message):
        for i in range(2000):  # until enough forks have raced
            tk.rewind_session(actor, s.id, to_seq=19)
            _append(tk, actor, s.id, f"again {i}")
            if i >= 50 and len(forks) >= 30:
                break
    assert len(forks) > 10
    for branch_id, message_id in forks:
        assert tk.get_history(actor, branch_id)[-1].id == message_id, branch_id


def test_rewinds_of_a_session_and_of_its_branch_into_the_shared_part_wait_not_deadlock(
    tk, actor, monkeypatch, retried
):
    """A rewind of a branch below its fork point writes a new branch under
    the branch's parent (its row names the parent: PostgreSQL checks that
    key, FOR KEY SHARE). A rewind of that parent, meanwhile, holds the parent
    FOR UPDATE and re-parents its branches, the first one included. If the
    first rewind has locked its branch and the second the parent, each waits
    for the other: PostgreSQL finds the deadlock after deadlock_timeout (1 s
    by default), aborts one and the store runs it again. Nothing is lost, but
    both writers stall. So a rewind takes its parent's key lock before its
    own row: parent before branch, the order every operation locks in. Here
    the two are made to interleave exactly so; the store must not have met a
    deadlock (or any other error it retries)."""
    import threading
    import time

    from threadkeep.store import branches

    s = tk.create_session(actor, id="s").value
    _append(tk, actor, s.id, *[f"s{i}" for i in range(1, 7)])
    tk.fork_session(actor, s.id, at_seq=4, id="y")
    _append(tk, actor, "y", "y5", "y6")

    y_locked = threading.Event()
    real_get_live_row = branches.session_q.get_live_row
    real_insert = branches.session_q.insert_session

    def get_live_row(conn, owner_id, session_id, **kw):
        row = real_get_live_row(conn, owner_id, session_id, **kw)
        if session_id == "y" and kw.get("lock"):
            y_locked.set()  # the branch's rewind holds its row now
        return row

    def insert_session(tx, owner_id, session_id, fields):
        if session_id == "y-tail":
            time.sleep(0.5)  # the parent's rewind runs into the branch's row meanwhile
        return real_insert(tx, owner_id, session_id, fields)

    monkeypatch.setattr(branches.session_q, "get_live_row", get_live_row)
    monkeypatch.setattr(branches.session_q, "insert_session", insert_session)
    errors: list[BaseException] = []

    def rewind_the_branch() -> None:
        try:  # below its fork point (4): into the part it shares with "s"
            tk.rewind_session(actor, "y", to_seq=2, branch_id="y-tail")
        except BaseException as exc:
            errors.append(exc)

    branch = threading.Thread(target=rewind_the_branch)
    branch.start()
    assert y_locked.wait(30)
    tk.rewind_session(actor, s.id, to_seq=3, branch_id="s-tail")  # re-parents y's forks
    branch.join(30)
    assert errors == [] and retried == [], (errors, retried)
    # Both happened, whole: every history reads as it did.
    assert contents(tk.get_history(actor, "s")) == ["s1", "s2", "s3"]
    assert contents(tk.get_history(actor, "y")) == ["s1", "s2"]
    assert contents(tk.get_history(actor, "y-tail")) == ["s1", "s2", "s3", "s4", "y5", "y6"]
    assert contents(tk.get_history(actor, "s-tail")) == [f"s{i}" for i in range(1, 7)]
