"""Acknowledged means durable, over HTTP: ``threadkeep serve`` killed with
SIGKILL while clients write through it loses nothing it answered 2xx for,
leaves no request half-written, and, once restarted, takes the retries of
the requests it never answered exactly once (their client ids dedupe them).
The replies it was streaming in stay ``streaming`` until retention finishes
them ``incomplete``, with their text.

tests/guarantees/test_crash.py kills a process using the library; this is
the same promise as an app sees it, through the API's thread pool, group
commit under concurrent requests, and a restart on the same database."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from sync_helpers import Serve

from random_writes import WORD
from replay_checks import assert_log_rebuilds, assert_views_agree
from threadkeep import Actor, Threadkeep
from threadkeep.config import RetentionSettings
from threadkeep.store.tables import SYNCED_TABLES
from threadkeep.sync.shapes import Shape

ROUNDS = 3
WRITERS = 4

Request = tuple[str, list[dict[str, Any]]]  # (session id, messages with client ids)


class Writers:
    """``WRITERS`` threads appending batches of 1-3 messages, each with its
    own client id, across the sessions, until the server stops answering."""

    def __init__(self, base: str, token: str, sessions: list[str], round_no: int) -> None:
        self.base, self.token, self.sessions, self.round_no = base, token, sessions, round_no
        self.answered: dict[str, dict[str, Any]] = {}  # client id -> message as answered
        self.unanswered: list[Request] = []
        self.failures: list[str] = []
        self._lock = threading.Lock()
        self.threads = [threading.Thread(target=self._write, args=(w,)) for w in range(WRITERS)]

    def _write(self, w: int) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        with httpx.Client(base_url=self.base, headers=headers, timeout=30) as http:
            for i in range(1_000_000):
                sid = self.sessions[(w + i) % len(self.sessions)]
                tag = f"r{self.round_no}-w{w}-{i}"
                msgs = [
                    {"role": "user", "content": f"{tag}-{k} {WORD}", "client_id": f"{tag}-{k}"}
                    for k in range(1 + i % 3)
                ]
                try:
                    r = http.post(f"/v1/sessions/{sid}/messages", json={"messages": msgs})
                except httpx.TransportError:
                    with self._lock:
                        self.unanswered.append((sid, msgs))
                    return
                with self._lock:
                    if r.status_code != 201:
                        self.failures.append(f"{r.status_code} {r.text[:200]}")
                        return
                    for m in r.json()["messages"]:
                        self.answered[m["client_id"]] = m

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def join(self) -> None:
        for t in self.threads:
            t.join(60)
            assert not t.is_alive(), "a writer hung after the server died"


def _held(tk: Threadkeep, actor: Actor, sid: str) -> dict[str, Any]:
    """The session's own appended messages by client id (streams have none)."""
    own = tk.get_messages(actor, sid)
    return {m.client_id: m for m in own if m.session_id == sid and m.client_id is not None}


def _stream(base: str, token: str, sid: str, failures: list[str]) -> None:
    """Stream a reply into ``sid`` that never ends: a first line, then a
    word every 20 ms, until the server dies under it (if it answers
    instead, that goes to ``failures``)."""

    def body() -> Any:
        yield b'{"role": "assistant", "content": "cut"}\n'
        while True:
            time.sleep(0.02)
            yield b'{"delta": " word"}\n'

    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/x-ndjson"}
    try:
        r = httpx.post(f"{base}/v1/sessions/{sid}/messages/stream", content=body(), headers=headers)
    except httpx.TransportError:
        return
    failures.append(f"the stream was answered though the server was killed: {r.status_code}")


def _streaming(tk: Threadkeep, actor: Actor, sid: str) -> int:
    return sum(m.status == "streaming" for m in tk.get_messages(actor, sid))


def _wait_for(ready: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert time.monotonic() < deadline, f"no {what} within {timeout:.0f}s"
        time.sleep(0.02)


@pytest.mark.slow
def test_sigkill_of_the_server_loses_no_answered_write_and_retries_land_once(
    db_url: str, tmp_path: Path
) -> None:
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    tk = Threadkeep.open(db_url)
    try:
        actor = Actor(tk.create_user("ada").value.id)
        token = tk.create_token(actor, "crash").value.token
        sessions = [tk.create_session(actor, title=f"s{i}").value.id for i in range(3)]
        start = {Shape(t, actor.user_id): tk.shape_snapshot(actor, t) for t in SYNCED_TABLES}
        server = Serve(db_url, tmp_path)
        answered: dict[str, dict[str, Any]] = {}
        killed_mid_write = landed_unanswered = 0
        try:
            for round_no in range(ROUNDS):
                where = f"seed {seed}, round {round_no}"
                writers = Writers(server.base, token, sessions, round_no)
                streamer = threading.Thread(
                    target=_stream, args=(server.base, token, sessions[0], writers.failures)
                )
                writers.start()
                streamer.start()
                # Kill at a random moment once both are under way: a loaded
                # machine can take longer than any fixed sleep to answer once.
                _wait_for(lambda w=writers: bool(w.answered), f"{where}: a first answer")
                _wait_for(
                    lambda n=round_no: _streaming(tk, actor, sessions[0]) > n,
                    f"{where}: the stream's first line",
                )
                time.sleep(rng.uniform(0.0, 0.9))
                server.kill()
                writers.join()
                streamer.join(30)
                assert not streamer.is_alive(), f"{where}: the stream hung after the kill"
                assert writers.failures == [], (where, writers.failures)
                assert writers.answered, f"{where}: nothing was answered before the kill"
                answered |= writers.answered
                killed_mid_write += len(writers.unanswered)

                # Every answered message is there as answered.
                held = {sid: _held(tk, actor, sid) for sid in sessions}
                for cid, m in answered.items():
                    got = held[m["session_id"]].get(cid)
                    assert got is not None, f"{where}: answered {cid} is gone"
                    assert (got.id, got.seq, got.content) == (m["id"], m["seq"], m["content"])
                # An unanswered request wrote all of its messages or none.
                for sid, msgs in writers.unanswered:
                    there = [m["client_id"] in held[sid] for m in msgs]
                    assert len(set(there)) == 1, f"{where}: half of a request landed: {there}"
                    landed_unanswered += there[0]
                for sid in sessions:
                    own = tk.get_messages(actor, sid)
                    seqs = sorted(m.seq for m in own if m.session_id == sid)
                    assert seqs == list(range(1, len(seqs) + 1)), f"{where}: seq gaps in {sid}"

                # Restarted, the server takes the retries once each.
                server.start()
                with httpx.Client(
                    base_url=server.base, headers={"Authorization": f"Bearer {token}"}
                ) as http:
                    for sid, msgs in writers.unanswered:
                        r = http.post(f"/v1/sessions/{sid}/messages", json={"messages": msgs})
                        assert r.status_code == 201, (where, r.text)
                        for m in r.json()["messages"]:
                            answered[m["client_id"]] = m
                for sid, msgs in writers.unanswered:
                    ids = [m.client_id for m in tk.get_messages(actor, sid)]
                    for m in msgs:
                        assert ids.count(m["client_id"]) == 1, (where, m["client_id"])
        finally:
            server.kill()
        print(
            f"seed {seed}: {len(answered)} messages; {killed_mid_write} requests cut off, "
            f"{landed_unanswered} of them written before the kill"
        )
        total = sum(len(_held(tk, actor, sid)) for sid in sessions)
        assert total == len(answered), f"seed {seed}: messages nobody asked for"

        # The killed server left one reply per round streaming; nothing else
        # would ever finish them. Retention does, keeping their text.
        cut = [m for m in tk.get_messages(actor, sessions[0]) if m.status == "streaming"]
        assert len(cut) == ROUNDS, (seed, [m.status for m in cut])
        rules = RetentionSettings(
            stream_hours=1e-9, snapshot_days=0, analytics_days=0, trash_days=0
        )
        assert sorted(tk.apply_retention(rules=rules).streams) == sorted(m.id for m in cut)
        for m in cut:
            got = tk.get_message(actor, m.id)
            assert got.status == "incomplete" and got.content.startswith("cut"), got
            assert got.content.replace(" word", "") == "cut", got.content  # whole deltas only
        assert_log_rebuilds(tk, actor, start, seed)
        assert_views_agree(tk, actor, seed)
    finally:
        tk.close()
