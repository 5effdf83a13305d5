"""SQLite reads in one process take turns, and a commit never waits for them.

Python's sqlite3 lets go of the GIL at every row it steps to, so threads
reading at once pass the GIL back and forth at every row: in one process,
sixteen threads reading the last 50 messages did 448 reads/s where one thread
did 1,631. The store makes its reads take turns (store/sqlite.py). These
tests pin what that must and must not do: reads do not overlap, a read inside
a read on the same thread does not deadlock, and a write commits while a read
is in progress (the writer does not take the readers' turn).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from threadkeep import Actor, Threadkeep


def _store(tmp_path: Path) -> tuple[Threadkeep, Actor, str]:
    tk = Threadkeep.open(f"sqlite:///{tmp_path / 'tk.db'}")
    me = Actor(tk.create_user("ada").value.id)
    session = tk.create_session(me).value.id
    tk.append_messages(me, session, [{"role": "user", "content": f"m{i}"} for i in range(50)])
    return tk, me, session


def test_reads_from_many_threads_do_not_overlap(tmp_path: Path) -> None:
    tk, _, _ = _store(tmp_path)
    inside = most = 0
    count = threading.Lock()

    def probe(conn: sa.Connection) -> int:
        nonlocal inside, most
        with count:
            inside += 1
            most = max(most, inside)
        try:
            n = conn.exec_driver_sql("SELECT count(*) FROM messages").scalar_one()
            time.sleep(0.005)  # long enough for the others to try to come in
            return int(n)
        finally:
            with count:
                inside -= 1

    results: list[int] = []

    def reader() -> None:
        for _ in range(5):
            results.append(tk.engine.read(probe))

    threads = [threading.Thread(target=reader) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    tk.close()
    assert results == [50] * 40
    assert most == 1


def test_a_read_inside_a_read_on_the_same_thread_does_not_deadlock(tmp_path: Path) -> None:
    tk, _, _ = _store(tmp_path)
    try:
        done: list[Any] = []

        def nested() -> None:
            done.append(tk.engine.read(lambda c: tk.engine.read(lambda d: 7)))

        t = threading.Thread(target=nested, daemon=True)
        t.start()
        t.join(10)
        assert done == [7]
    finally:
        tk.close()


def test_a_write_commits_while_a_read_is_in_progress(tmp_path: Path) -> None:
    tk, me, session = _store(tmp_path)
    try:
        committed = threading.Event()
        seen: list[bool] = []

        def long_read(conn: sa.Connection) -> None:
            # Holds the readers' turn until the write has returned (or 10 s).
            seen.append(committed.wait(10))

        reader = threading.Thread(target=lambda: tk.engine.read(long_read))
        reader.start()
        time.sleep(0.05)  # the read is in progress
        tk.append_message(me, session, {"role": "user", "content": "while reading"})
        committed.set()
        reader.join(15)
        assert seen == [True]
        assert tk.last_messages(me, session, 1)[0].content == "while reading"
    finally:
        tk.close()
