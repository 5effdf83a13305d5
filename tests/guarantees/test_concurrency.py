"""One order, no duplicates: concurrent writers to one session, on both engines.

DESIGN.md, Guarantees: "Within a session, seq is assigned inside the writing
transaction, contiguous and unique, whatever the number of writers or server
instances. Every append may carry a client-chosen id; a retry with the same id
returns the original row instead of writing a second one."
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import sqlalchemy as sa
from guarantee_helpers import (
    Ack,
    Child,
    check_batches_contiguous,
    check_change_log,
    check_one_order,
    flat,
    write_messages,
)

from threadkeep import Actor, Threadkeep
from threadkeep.store import tables


def _run_threads(n: int, target: Callable[[int], Any]) -> list[Any]:
    """Run ``target(i)`` on ``n`` threads started together; re-raise the first error."""
    barrier = threading.Barrier(n)

    def run(i: int) -> Any:
        barrier.wait(timeout=30)
        return target(i)

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(run, range(n)))


def _check_session(
    tk: Threadkeep, actor: Actor, session_id: str, calls: list[list[Ack]], expected: int
) -> None:
    history = tk.get_history(actor, session_id)
    assert len(history) == expected
    check_one_order(history, flat(calls))
    check_batches_contiguous(calls)
    assert tk.get_session(actor, session_id).head_seq == expected
    assert tk.count_messages(actor, session_id) == expected
    check_change_log(tk)


def test_threads_sharing_one_store_append_in_one_order(tk: Threadkeep, actor: Actor) -> None:
    s = tk.create_session(actor, title="shared").value
    per_thread = _run_threads(8, lambda i: write_messages(tk, actor, s.id, f"t{i}", 200))
    calls = [c for thread_calls in per_thread for c in thread_calls]
    assert len(flat(calls)) == 8 * 200
    _check_session(tk, actor, s.id, calls, 8 * 200)


def test_two_store_instances_in_one_process_append_in_one_order(
    db_url: str, tk: Threadkeep, actor: Actor
) -> None:
    """Two Threadkeep instances on one database (two server instances, in
    miniature), four threads each. The brief asks for PostgreSQL; SQLite runs
    it too: two instances there are two writers serialised by the file lock."""
    s = tk.create_session(actor, title="two instances").value
    other = Threadkeep.open(db_url)
    try:
        stores = (tk, other)
        per_thread = _run_threads(
            8, lambda i: write_messages(stores[i % 2], actor, s.id, f"i{i % 2}t{i}", 150)
        )
    finally:
        other.close()
    calls = [c for thread_calls in per_thread for c in thread_calls]
    _check_session(tk, actor, s.id, calls, 8 * 150)


@pytest.mark.slow
def test_processes_append_in_one_order(db_url: str, tk: Threadkeep, actor: Actor) -> None:
    """Four OS processes, each with its own Threadkeep on the same database
    (for SQLite: the same file), start appending at the same moment."""
    s = tk.create_session(actor, title="processes").value
    children = [Child("append", db_url, actor.user_id, s.id, "150", f"p{i}") for i in range(4)]
    try:
        for c in children:
            c.wait_ready()
        for c in children:
            c.go()
        rcs = [c.finish(timeout=90) for c in children]
    finally:
        for c in children:
            if c.proc.poll() is None:
                c.proc.kill()
                c.finish(timeout=10)
    for c, rc in zip(children, rcs, strict=True):
        assert rc == 0, f"child exited with {rc}:\n{c.stderr}"
        assert c.lines[-1:] == ["done"], c.lines[-3:]
    acks = [a for c in children for a in c.acks()]
    assert len(acks) == 4 * 150
    history = tk.get_history(actor, s.id)
    assert len(history) == 4 * 150
    check_one_order(history, acks)
    assert tk.get_session(actor, s.id).head_seq == 4 * 150
    check_change_log(tk)


def _message_rows(tk: Threadkeep, session_id: str) -> list[tuple[str, int, str | None]]:
    with tk.engine.sa_engine.connect() as conn:
        return [
            tuple(r)  # type: ignore[misc]
            for r in conn.execute(
                sa.select(tables.messages.c.id, tables.messages.c.seq, tables.messages.c.client_id)
                .where(tables.messages.c.session_id == session_id)
                .order_by(tables.messages.c.seq)
            )
        ]


def test_same_client_id_from_many_threads_writes_one_row(tk: Threadkeep, actor: Actor) -> None:
    """16 threads retry "the same" append at the same moment, five times over:
    one row per client id, and every caller gets that row (same id, seq, txid)."""
    s = tk.create_session(actor, title="retries").value
    for rnd in range(5):
        cid = f"same-{rnd}"
        done = _run_threads(
            16,
            lambda i, cid=cid: tk.append_message(  # type: ignore[misc]
                actor, s.id, {"role": "user", "content": "only once", "client_id": cid}
            ),
        )
        first = done[0]
        assert {(d.value.id, d.value.seq, d.txid) for d in done} == {
            (first.value.id, rnd + 1, first.txid)
        }
        assert all(d.value == first.value for d in done)
    rows = _message_rows(tk, s.id)
    assert [(seq, cid) for _, seq, cid in rows] == [(i + 1, f"same-{i}") for i in range(5)]
    assert tk.get_session(actor, s.id).head_seq == 5
    check_change_log(tk)


def test_overlapping_batches_with_shared_client_ids_write_each_once(
    tk: Threadkeep, actor: Actor
) -> None:
    """Eight threads append batches whose client ids overlap (thread i sends
    c{i}..c{i+3}): each id is written once, and every batch's answer holds, for
    each of its ids, the one stored row."""
    s = tk.create_session(actor, title="overlap").value
    for rnd in range(3):
        done = _run_threads(
            8,
            lambda i, rnd=rnd: tk.append_messages(  # type: ignore[misc]
                actor,
                s.id,
                [
                    {"role": "user", "content": f"r{rnd}c{k}", "client_id": f"r{rnd}c{k}"}
                    for k in range(i, i + 4)
                ],
            ),
        )
        stored = {m.client_id: m for m in tk.get_history(actor, s.id)}
        for i, d in enumerate(done):
            cids = [f"r{rnd}c{k}" for k in range(i, i + 4)]
            assert [m.client_id for m in d.value] == cids
            assert list(d.value) == [stored[c] for c in cids]
    history = tk.get_history(actor, s.id)
    assert len(history) == 3 * 11  # c0..c10 per round
    check_one_order(history, [])
    rows = _message_rows(tk, s.id)
    assert sorted(cid for _, _, cid in rows) == sorted(
        f"r{rnd}c{k}" for rnd in range(3) for k in range(11)
    )
    check_change_log(tk)
