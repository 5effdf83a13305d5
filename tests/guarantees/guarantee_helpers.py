"""Shared by the guarantee tests and by the child-process script (no pytest here).

The checks assert exact values and say what they saw, so a failure report can
be pasted as is.
"""

from __future__ import annotations

import collections
import itertools
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import sqlalchemy as sa

from threadkeep import Actor, Message, Threadkeep
from threadkeep.store import tables
from threadkeep.store.pg_url import sa_url

CHILD = str(Path(__file__).with_name("guarantee_child.py"))


@dataclass(frozen=True)
class Ack:
    """One acknowledged message: the call that wrote it returned."""

    writer: str  # who wrote it (thread / process / round), for the order check
    client_id: str
    seq: int
    id: str


def chunks(n: int) -> Iterator[int]:
    """Sizes of the appends that write ``n`` messages: 1, 5, 1, 5, ... (the last
    one cut to fit). Singles go through append_message, the others through
    append_messages."""
    left, single = n, True
    while left > 0:
        size = 1 if single else min(5, left)
        yield size
        left -= size
        single = not single


def append_with_ids(
    tk: Threadkeep, actor: Actor, session_id: str, client_ids: list[str]
) -> list[Message]:
    """One call: a single append for one client id, a batch for several (both
    paths, as apps use them); each message's content is its client id."""
    if len(client_ids) == 1:
        cid = client_ids[0]
        msg = {"role": "user", "content": cid, "client_id": cid}
        return [tk.append_message(actor, session_id, msg).value]
    batch = [{"role": "assistant", "content": c, "client_id": c} for c in client_ids]
    return tk.append_messages(actor, session_id, batch).value


def write_messages(
    tk: Threadkeep, actor: Actor, session_id: str, writer: str, n: int
) -> list[list[Ack]]:
    """Append ``n`` messages with unique client ids; return what each call
    acknowledged, in the order the calls returned."""
    calls: list[list[Ack]] = []
    k = 0
    for size in chunks(n):
        cids = [f"{writer}-{k + j}" for j in range(size)]
        k += size
        msgs = append_with_ids(tk, actor, session_id, cids)
        assert [m.client_id for m in msgs] == cids, (cids, msgs)
        calls.append([Ack(writer, m.client_id, m.seq, m.id) for m in msgs])  # type: ignore[arg-type]
    return calls


def settle_after_kill(db_url: str, timeout: float = 30.0) -> None:
    """Wait until the server has finished what killed writers left running.

    On PostgreSQL a statement whose client was killed still runs to its end,
    and in autocommit it commits: an append the writer never heard back about
    can land after the kill (it was in doubt, not lost). Checks that read the
    database in several statements must wait for those backends to go, or a
    late commit between two reads looks like an inconsistency. SQLite has no
    server: a killed writer's transaction dies with it."""
    if not db_url.startswith("postgresql"):
        return
    # Autocommit: pg_stat_activity is a snapshot per transaction.
    eng = sa.create_engine(sa_url(db_url), isolation_level="AUTOCOMMIT")
    deadline = time.monotonic() + timeout
    try:
        with eng.connect() as conn:
            while True:
                others = conn.execute(
                    sa.text(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                        " AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
                        " AND state IS DISTINCT FROM 'idle'"
                    )
                ).scalar_one()
                if others == 0:
                    return
                if time.monotonic() > deadline:
                    raise AssertionError(f"{others} backends of killed writers still running")
                time.sleep(0.05)
    finally:
        eng.dispose()


def flat(calls: Sequence[Sequence[Ack]]) -> list[Ack]:
    return [a for call in calls for a in call]


def check_one_order(
    history: Sequence[Message], acks: Sequence[Ack], *, batches: Sequence[int] | None = None
) -> None:
    """The session's history against what writers were told.

    * seq is exactly 1..N, in order, no gaps, no duplicates;
    * every client id appears once; every acked one is there with the seq and
      id its writer was given;
    * a writer's messages have increasing seq (its calls were sequential);
    """
    seqs = [m.seq for m in history]
    n = len(history)
    assert seqs == list(range(1, n + 1)), f"seqs are not 1..{n}: first bad {_first_bad(seqs)}"
    cids = collections.Counter(m.client_id for m in history)
    dup = {c: k for c, k in cids.items() if k != 1}
    assert not dup, f"client ids stored more than once: {dict(list(dup.items())[:10])}"
    by_cid = {m.client_id: m for m in history}
    missing = [a.client_id for a in acks if a.client_id not in by_cid]
    assert not missing, f"{len(missing)} acknowledged messages are missing, e.g. {missing[:10]}"
    wrong = [
        (a.client_id, (a.seq, a.id), (by_cid[a.client_id].seq, by_cid[a.client_id].id))
        for a in acks
        if (by_cid[a.client_id].seq, by_cid[a.client_id].id) != (a.seq, a.id)
    ]
    assert not wrong, f"acked (seq, id) differs from stored: {wrong[:10]}"
    per_writer: dict[str, list[int]] = collections.defaultdict(list)
    for a in acks:
        per_writer[a.writer].append(a.seq)
    for writer, ws in per_writer.items():
        assert all(x < y for x, y in itertools.pairwise(ws)), (
            f"writer {writer}'s messages are out of order: {ws}"
        )


def _first_bad(seqs: Sequence[int]) -> Any:
    for i, s in enumerate(seqs, start=1):
        if s != i:
            return (i, s, seqs[max(0, i - 3) : i + 3])
    return None


def check_batches_contiguous(acks_by_call: Sequence[Sequence[Ack]]) -> None:
    """A batch is atomic, so its messages got consecutive seqs."""
    for call in acks_by_call:
        seqs = [a.seq for a in call]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), f"batch not contiguous: {seqs}"


def change_rows(tk: Threadkeep) -> list[Any]:
    """Every row of ``changes`` after the pending offsets were assigned, in offset order."""
    tk.engine.prepare_changes_read()
    with tk.engine.sa_engine.connect() as conn:
        return list(
            conn.execute(
                sa.select(
                    tables.changes.c.id,
                    tables.changes.c.log_offset,
                    tables.changes.c.txid,
                    tables.changes.c.table_name,
                    tables.changes.c.row_key,
                    tables.changes.c.op,
                    tables.changes.c.owner_id,
                    tables.changes.c.session_id,
                ).order_by(tables.changes.c.log_offset, tables.changes.c.id)
            )
        )


def check_change_log(tk: Threadkeep) -> list[Any]:
    """The log matches the data: every message row has exactly one insert, no
    insert names a message that does not exist, offsets are assigned, unique and
    at most ``log_state.last_offset``."""
    rows = change_rows(tk)
    unassigned = [r.id for r in rows if r.log_offset is None]
    assert not unassigned, f"{len(unassigned)} change rows have no offset after prepare"
    offsets = [r.log_offset for r in rows]
    assert len(set(offsets)) == len(offsets), "duplicate offsets"
    with tk.engine.sa_engine.connect() as conn:
        message_ids = set(conn.execute(sa.select(tables.messages.c.id)).scalars())
        session_ids = set(conn.execute(sa.select(tables.sessions.c.id)).scalars())
        last_offset, last_txid = conn.execute(
            sa.select(tables.log_state.c.last_offset, tables.log_state.c.last_txid)
        ).one()
    if offsets:
        assert max(offsets) == last_offset, (max(offsets), last_offset)
    inserts = collections.Counter(
        r.row_key for r in rows if r.table_name == "messages" and r.op == "insert"
    )
    assert set(inserts) == message_ids, (
        f"messages without an insert change: {sorted(message_ids - set(inserts))[:5]}; "
        f"inserts naming no message: {sorted(set(inserts) - message_ids)[:5]}"
    )
    dup = {k: n for k, n in inserts.items() if n != 1}
    assert not dup, f"messages with several insert changes: {list(dup.items())[:5]}"
    session_inserts = {r.row_key for r in rows if r.table_name == "sessions" and r.op == "insert"}
    assert session_inserts == session_ids, (session_inserts, session_ids)
    if tk.dialect == "sqlite":
        # SQLite numbers transactions from log_state itself: none may be ahead of it.
        assert max((r.txid for r in rows), default=0) <= last_txid
    return rows


# --- child processes -------------------------------------------------------------


class Child:
    """A child process running guarantee_child.py; its stdout is drained by a
    thread into ``lines`` (complete lines only), so it never blocks on the pipe."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, CHILD, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.lines: list[str] = []
        self.ready = threading.Event()
        self.err: list[str] = []
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._out = threading.Thread(target=self._drain, args=(self.proc.stdout,), daemon=True)
        self._err = threading.Thread(target=self._drain_err, args=(self.proc.stderr,), daemon=True)
        self._out.start()
        self._err.start()

    def _drain(self, stream: TextIO) -> None:
        for line in stream:
            if not line.endswith("\n"):
                break  # cut by the kill: never acknowledged as a whole
            line = line.rstrip("\n")
            if line == "ready":
                self.ready.set()
            else:
                self.lines.append(line)

    def _drain_err(self, stream: TextIO) -> None:
        self.err.append(stream.read())

    def wait_ready(self, timeout: float = 30) -> None:
        if not self.ready.wait(timeout):
            self.proc.kill()
            self.finish(timeout=10)
            raise AssertionError(f"child never became ready; stderr:\n{self.stderr}")

    def wait_output(self, timeout: float = 30) -> None:
        """Until the child printed a line (after "ready")."""
        end = time.monotonic() + timeout
        while not self.lines:
            if time.monotonic() > end or self.proc.poll() is not None:
                raise AssertionError(f"child printed nothing; stderr:\n{self.stderr}")
            time.sleep(0.005)

    def go(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        self.proc.stdin.close()

    def finish(self, timeout: float = 60) -> int:
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait(10)
        self._out.join(10)
        self._err.join(10)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None and not stream.closed:
                try:
                    stream.close()
                except OSError:  # stdin: the child is gone (broken pipe)
                    pass
        return rc

    @property
    def stderr(self) -> str:
        return "".join(self.err)

    def acks(self) -> list[Ack]:
        out = []
        for line in self.lines:
            kind, *fields = line.split(" ")
            if kind == "ack":
                writer, cid, seq, mid = fields
                out.append(Ack(writer, cid, int(seq), mid))
        return out
