"""Properties: random sequences of appends, forks and rewinds keep every branch's
history equal to a plain in-memory model (a list of messages per session)."""

from __future__ import annotations

import itertools

import sqlalchemy as sa
from hypothesis import example, given
from hypothesis import strategies as st

from conftest import db_property
from threadkeep import Actor
from threadkeep.store import tables

OPS = st.lists(
    st.tuples(
        st.sampled_from(["append", "append", "fork", "rewind"]),
        st.integers(min_value=0, max_value=50),  # which session
        st.integers(min_value=0, max_value=50),  # which seq
        st.integers(min_value=1, max_value=3),  # how many messages
    ),
    min_size=1,
    max_size=10,
)


@db_property(max_examples=25)
@given(initial=st.integers(min_value=0, max_value=4), ops=OPS)
# fork of a fork inside the part it inherited
@example(initial=2, ops=[("fork", 0, 2, 1), ("fork", 1, 1, 1)])
# rewind a fork below its fork point, then keep writing on both
@example(
    initial=4,
    ops=[
        ("fork", 0, 3, 1),
        ("append", 1, 0, 2),
        ("rewind", 1, 1, 1),
        ("append", 1, 0, 1),
        ("append", 2, 0, 1),
    ],
)
# a child forked after the rewind point, then the parent writes new seqs
@example(initial=4, ops=[("fork", 0, 3, 1), ("rewind", 0, 1, 1), ("append", 0, 0, 3)])
def test_random_appends_forks_and_rewinds_match_an_in_memory_model(tk, initial, ops):
    me = Actor(tk.create_user("prop").value.id)  # a fresh user per example
    names = itertools.count()
    model: dict[str, list[str]] = {}
    order: list[str] = []  # session ids in creation order, for stable picking
    appended = 0

    def add(sid: str, history: list[str]) -> None:
        model[sid] = history
        order.append(sid)

    def append(sid: str, n: int) -> None:
        nonlocal appended
        texts = [f"msg-{next(names)}" for _ in range(n)]
        out = tk.append_messages(me, sid, [{"role": "user", "content": t} for t in texts]).value
        start = len(model[sid])
        assert [m.seq for m in out] == list(range(start + 1, start + n + 1))
        model[sid] = model[sid] + texts
        appended += n

    root = tk.create_session(me).value.id
    add(root, [])
    if initial:
        append(root, initial)

    for kind, which, at, n in ops:
        sid = order[which % len(order)]
        head = len(model[sid])
        k = at % (head + 1)
        if kind == "append":
            append(sid, n)
        elif kind == "fork":
            b = tk.fork_session(me, sid, at_seq=k).value
            assert b.head_seq == k
            add(b.id, model[sid][:k])
        else:
            r = tk.rewind_session(me, sid, to_seq=k).value
            assert r.session.head_seq == k
            if k == head:
                assert r.branch is None
            else:
                assert r.branch is not None
                add(r.branch.id, list(model[sid]))
                model[sid] = model[sid][:k]

    for sid in order:
        want = model[sid]
        hist = tk.get_history(me, sid)
        assert [m.content for m in hist] == want, sid
        assert [m.seq for m in hist] == list(range(1, len(want) + 1)), sid
        assert tk.count_messages(me, sid) == len(want)
        assert tk.get_session(me, sid).head_seq == len(want)
        half = len(want) // 2
        assert [m.content for m in tk.get_messages(me, sid, after_seq=half)] == want[half:]
        assert [m.content for m in tk.last_messages(me, sid, 2)] == want[-2:]
    # nothing was copied and nothing was lost: one row per appended message
    with tk.engine.sa_engine.connect() as conn:
        rows = conn.execute(
            sa.select(sa.func.count())
            .select_from(tables.messages)
            .where(tables.messages.c.owner_id == me.user_id)
        ).scalar_one()
    assert rows == appended
