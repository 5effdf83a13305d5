"""Messages: append (one, batch, idempotent), reads by seq, counts, tokens."""

from __future__ import annotations

import threading
from datetime import UTC

import pytest
import sqlalchemy as sa
from contract_helpers import (
    contents,
    missing_id,
    new_session,
    not_raising,
    seqs,
    user_msgs,
    with_messages,
    writes_nothing,
)

from threadkeep import (
    AlreadyExists,
    InvalidInput,
    Message,
    MessageNotFound,
    NewMessage,
    Role,
    SessionNotFound,
    Threadkeep,
    ThreadkeepError,
    TooLarge,
)
from threadkeep.config import Limits
from threadkeep.store import tables


def _message_rows(tk) -> int:
    with tk.engine.sa_engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(tables.messages)).scalar_one()


# --- append -----------------------------------------------------------------------


def test_append_one_message_gets_seq_1_and_round_trips(tk, actor):
    s = new_session(tk, actor)
    done = tk.append_message(
        actor,
        s.id,
        {
            "role": "assistant",
            "content": "héllo 👋\nline two",
            "parts": [{"type": "text", "text": "héllo"}],
            "tool_calls": [{"id": "c1", "name": "grep", "args": {"q": "x"}}],
            "model": "gpt-x",
            "input_tokens": 3,
            "output_tokens": 4,
            "metadata": {"k": {"nested": [1, 2.5, None, False]}},
        },
    )
    m = done.value
    assert isinstance(done.txid, int)
    assert m.seq == 1
    assert m.session_id == s.id and m.owner_id == actor.user_id
    assert m.role == Role.ASSISTANT
    assert m.content == "héllo 👋\nline two"
    assert m.parts == [{"type": "text", "text": "héllo"}]
    assert m.tool_calls == [{"id": "c1", "name": "grep", "args": {"q": "x"}}]
    assert (m.model, m.input_tokens, m.output_tokens) == ("gpt-x", 3, 4)
    assert m.metadata == {"k": {"nested": [1, 2.5, None, False]}}
    assert m.created_at.tzinfo is not None
    assert tk.get_message(actor, m.id) == m
    assert tk.get_history(actor, s.id) == [m]


def test_append_accepts_a_new_message_model(tk, actor):
    s = new_session(tk, actor)
    m = tk.append_message(actor, s.id, NewMessage(role=Role.USER, content="typed")).value
    assert (m.seq, m.role, m.content) == (1, Role.USER, "typed")


def test_the_message_an_append_returns_equals_what_is_read_back(tk, actor):
    s = new_session(tk, actor)
    written = tk.append_messages(actor, s.id, user_msgs(3)).value
    assert [tk.get_message(actor, m.id) for m in written] == written
    assert tk.get_history(actor, s.id) == written


def test_batch_append_assigns_contiguous_seqs_from_1_in_the_given_order(tk, actor):
    s = new_session(tk, actor)
    first = tk.append_messages(actor, s.id, user_msgs(3, "a")).value
    second = tk.append_messages(actor, s.id, user_msgs(4, "b")).value
    assert seqs(first) == [1, 2, 3]
    assert seqs(second) == [4, 5, 6, 7]
    hist = tk.get_history(actor, s.id)
    assert seqs(hist) == list(range(1, 8))
    assert contents(hist) == ["a1", "a2", "a3", "b1", "b2", "b3", "b4"]
    got = tk.get_session(actor, s.id)
    assert got.head_seq == 7 and got.message_count == 7


def test_append_bumps_last_activity_but_not_version(tk, actor):
    s = new_session(tk, actor)
    tk.append_message(actor, s.id, {"role": "user", "content": "x"})
    got = tk.get_session(actor, s.id)
    assert got.last_activity_at > s.last_activity_at
    assert got.version == s.version


def test_a_batch_with_one_invalid_message_writes_nothing(tk, actor):
    s = with_messages(tk, actor, 2)
    batch = [*user_msgs(3, "ok"), {"role": "wizard", "content": "bad"}]
    with writes_nothing(tk), pytest.raises(InvalidInput) as info:
        tk.append_messages(actor, s.id, batch)
    assert "messages[3]" in info.value.field
    assert tk.count_messages(actor, s.id) == 2


def test_a_batch_whose_last_message_collides_in_the_database_writes_nothing(tk, actor):
    s = with_messages(tk, actor, 1)
    taken = tk.get_history(actor, s.id)[0].id
    batch = [*user_msgs(3, "ok"), {"role": "user", "content": "clash", "id": taken}]
    with writes_nothing(tk), pytest.raises(ThreadkeepError):
        tk.append_messages(actor, s.id, batch)
    assert tk.count_messages(actor, s.id) == 1
    assert tk.get_session(actor, s.id).head_seq == 1


def test_a_chosen_message_id_that_is_taken_raises_already_exists(tk, actor, other_actor):
    mine = new_session(tk, actor)
    theirs = with_messages(tk, other_actor, 1)
    taken = tk.get_history(other_actor, theirs.id)[0].id
    with writes_nothing(tk), pytest.raises(AlreadyExists):
        tk.append_message(actor, mine.id, {"role": "user", "content": "x", "id": taken})


def test_append_with_a_chosen_message_id_keeps_it(tk, actor):
    s = new_session(tk, actor)
    m = tk.append_message(actor, s.id, {"role": "user", "content": "x", "id": "msg-1"}).value
    assert m.id == "msg-1"
    assert tk.get_message(actor, "msg-1").content == "x"


def test_append_to_a_missing_session_raises_session_not_found(tk, actor):
    with writes_nothing(tk), pytest.raises(SessionNotFound):
        tk.append_message(actor, missing_id(), {"role": "user", "content": "x"})


# --- idempotency ------------------------------------------------------------------


def test_retry_with_same_client_id_returns_original_row(tk, actor):
    s = new_session(tk, actor)
    msg = {"role": "user", "content": "once", "client_id": "c-1"}
    first = tk.append_message(actor, s.id, msg)
    tk.append_message(actor, s.id, {"role": "assistant", "content": "reply"})
    with writes_nothing(tk):
        again = tk.append_message(actor, s.id, msg)
    assert again.value == first.value
    assert again.value.id == first.value.id and again.value.seq == 1
    assert again.txid == first.txid
    assert tk.count_messages(actor, s.id) == 2


def test_retry_with_same_client_id_but_other_content_still_returns_the_original(tk, actor):
    s = new_session(tk, actor)
    first = tk.append_message(actor, s.id, {"role": "user", "content": "v1", "client_id": "c"})
    again = tk.append_message(actor, s.id, {"role": "user", "content": "v2", "client_id": "c"})
    assert again.value == first.value
    assert again.value.content == "v1"
    assert contents(tk.get_history(actor, s.id)) == ["v1"]


def test_retry_of_a_whole_batch_returns_the_original_rows_and_txid(tk, actor):
    s = new_session(tk, actor)
    batch = [{**m, "client_id": f"c{i}"} for i, m in enumerate(user_msgs(3))]
    first = tk.append_messages(actor, s.id, batch)
    with writes_nothing(tk):
        again = tk.append_messages(actor, s.id, batch)
    assert again.value == first.value
    assert again.txid == first.txid


def test_a_mixed_batch_of_replayed_and_new_messages_writes_only_the_new(tk, actor):
    s = new_session(tk, actor)
    old = tk.append_messages(
        actor,
        s.id,
        [
            {"role": "user", "content": "a", "client_id": "a"},
            {"role": "user", "content": "b", "client_id": "b"},
        ],
    )
    mixed = tk.append_messages(
        actor,
        s.id,
        [
            {"role": "user", "content": "c", "client_id": "c"},
            {"role": "user", "content": "a-again", "client_id": "a"},
            {"role": "user", "content": "d"},
            {"role": "user", "content": "b-again", "client_id": "b"},
        ],
    )
    out = mixed.value
    assert [m.content for m in out] == ["c", "a", "d", "b"]
    assert out[1] == old.value[0] and out[3] == old.value[1]
    assert (out[0].seq, out[2].seq) == (3, 4)
    assert mixed.txid != old.txid
    hist = tk.get_history(actor, s.id)
    assert contents(hist) == ["a", "b", "c", "d"]
    assert seqs(hist) == [1, 2, 3, 4]


def test_the_same_client_id_in_two_sessions_is_two_messages(tk, actor):
    a = new_session(tk, actor)
    b = new_session(tk, actor)
    ma = tk.append_message(actor, a.id, {"role": "user", "content": "x", "client_id": "c"}).value
    mb = tk.append_message(actor, b.id, {"role": "user", "content": "y", "client_id": "c"}).value
    assert ma.id != mb.id
    assert (ma.content, mb.content) == ("x", "y")


def test_duplicate_client_id_inside_one_batch_raises_invalid_input(tk, actor):
    s = with_messages(tk, actor, 1)
    batch = [
        {"role": "user", "content": "x", "client_id": "same"},
        {"role": "user", "content": "y", "client_id": "same"},
    ]
    with writes_nothing(tk), pytest.raises(InvalidInput):
        tk.append_messages(actor, s.id, batch)


def test_concurrent_retries_with_one_client_id_store_one_message(tk, actor):
    s = new_session(tk, actor)
    results: list[Message] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def go() -> None:
        barrier.wait()
        try:
            msg = {"role": "user", "content": "x", "client_id": "race"}
            results.append(tk.append_message(actor, s.id, msg).value)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=go) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len({m.id for m in results}) == 1
    assert {m.seq for m in results} == {1}
    assert tk.count_messages(actor, s.id) == 1
    assert _message_rows(tk) == 1


def test_concurrent_writers_get_contiguous_unique_seqs(tk, actor):
    s = new_session(tk, actor)
    got: list[int] = []
    lock = threading.Lock()

    def go(w: int) -> None:
        for i in range(5):
            m = tk.append_message(actor, s.id, {"role": "user", "content": f"{w}-{i}"}).value
            with lock:
                got.append(m.seq)

    threads = [threading.Thread(target=go, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got) == list(range(1, 41))
    hist = tk.get_history(actor, s.id)
    assert seqs(hist) == list(range(1, 41))
    assert sorted(contents(hist)) == sorted(f"{w}-{i}" for w in range(8) for i in range(5))


# --- reads ------------------------------------------------------------------------


@pytest.fixture
def ten(tk, actor):
    return with_messages(tk, actor, 10)


SLICES = [
    ({}, list(range(1, 11))),
    ({"after_seq": 7}, [8, 9, 10]),
    ({"after_seq": 0}, list(range(1, 11))),
    ({"after_seq": 10}, []),
    ({"before_seq": 4}, [1, 2, 3]),
    ({"before_seq": 1}, []),
    ({"after_seq": 2, "before_seq": 6}, [3, 4, 5]),
    ({"limit": 3}, [1, 2, 3]),
    ({"after_seq": 5, "limit": 2}, [6, 7]),
    ({"after_seq": 2, "before_seq": 9, "limit": 4}, [3, 4, 5, 6]),
    ({"after_seq": 6, "before_seq": 6}, []),
]


def test_get_messages_by_after_before_and_limit(tk, actor, ten):
    for kwargs, expected in SLICES:
        got = tk.get_messages(actor, ten.id, **kwargs)
        assert seqs(got) == expected, kwargs
        assert contents(got) == [f"m{i}" for i in expected], kwargs


def test_last_messages_returns_the_newest_n_oldest_first(tk, actor, ten):
    assert seqs(tk.last_messages(actor, ten.id, 3)) == [8, 9, 10]
    assert seqs(tk.last_messages(actor, ten.id, 50)) == list(range(1, 11))


def test_paging_back_with_before_seq_walks_the_whole_history_once(tk, actor, ten):
    pages = []
    page = tk.last_messages(actor, ten.id, 4)
    while page:
        pages.append(seqs(page))
        page = tk.last_messages(actor, ten.id, 4, before_seq=page[0].seq)
    assert pages == [[7, 8, 9, 10], [3, 4, 5, 6], [1, 2]]


def test_a_read_limit_out_of_range_raises_invalid_input(tk, actor, ten):
    limits = {str(n): n for n in (0, -5, 1001)}
    get = not_raising(limits, lambda n: tk.get_messages(actor, ten.id, limit=n), InvalidInput)
    last = not_raising(limits, lambda n: tk.last_messages(actor, ten.id, n), InvalidInput)
    assert (get, last) == ({}, {})


def test_count_messages_reads_the_head_without_loading_messages(tk, actor, ten):
    assert tk.count_messages(actor, ten.id) == 10
    assert tk.count_messages(actor, new_session(tk, actor).id) == 0
    tk.append_messages(actor, ten.id, user_msgs(2, "x"))
    assert tk.count_messages(actor, ten.id) == 12


def test_get_message_of_a_missing_id_raises_message_not_found(tk, actor):
    key = missing_id()
    with pytest.raises(MessageNotFound) as info:
        tk.get_message(actor, key)
    assert info.value.key == key


def test_created_at_is_utc_and_non_decreasing_with_seq(tk, actor):
    s = new_session(tk, actor)
    for i in range(3):
        tk.append_message(actor, s.id, {"role": "user", "content": str(i)})
    hist = tk.get_history(actor, s.id)
    assert all(m.created_at.utcoffset() == UTC.utcoffset(None) for m in hist)
    assert [m.created_at for m in hist] == sorted(m.created_at for m in hist)


def test_the_size_limit_counts_bytes_not_a_guess_from_the_length(tk, actor):
    """200 ASCII characters are 200 bytes: with 300 bytes of metadata the
    message is 500 bytes, under a 1,000-byte limit. (The limit once measured
    short text as 4 bytes a character and refused this message.)"""
    small = Threadkeep(tk.engine, Limits(max_message_bytes=1000))
    sid = small.create_session(actor).value.id
    ok = small.append_message(
        actor, sid, {"role": "user", "content": "x" * 200, "metadata": {"k": "y" * 290}}
    )
    assert ok.value.seq == 1
    with pytest.raises(TooLarge):  # 800 bytes of text (400 x 2-byte é) + 300 of metadata
        small.append_message(
            actor, sid, {"role": "user", "content": "é" * 400, "metadata": {"k": "y" * 290}}
        )
    assert small.count_messages(actor, sid) == 1
