"""A user's data, whole: the export archive holds every row and blob the user
owns and nothing of anyone else; an erasure leaves nothing of the user (rows,
blobs, change-log payloads), keeps other users' rows and shared blobs, and
reaches sync followers as deletes."""

from __future__ import annotations

import hashlib
import io
import threading
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
import sqlalchemy as sa

from conftest import row_counts
from threadkeep import Actor, BlobGone, InvalidInput, SessionNotFound, Threadkeep, UserNotFound
from threadkeep.service import userdata as userdata_ops
from threadkeep.service.tokens import InvalidToken
from threadkeep.store import tables
from threadkeep.store import userdata as ud
from threadkeep.store.changes import row_json

SHARED = b"the same bytes, uploaded by both users\n" * 100
OWN = b"only ada has these bytes\n" * 50_000  # > 1 MiB: several blob chunks
EXPORTED = ud.exported_tables()


@dataclass
class World:
    tk: Threadkeep
    ada: Actor
    bob: Actor
    ada_token: str
    ada_sessions: list[str]
    own_sha: str
    shared_sha: str


def _every_kind(tk: Threadkeep, me: Actor, sid: str) -> None:
    """One row of every session-scoped kind in ``sid``."""
    m = tk.append_message(me, sid, {"role": "user", "content": "hello"}).value
    tk.append_message(me, sid, {"role": "assistant", "content": "hi there"})
    ev = tk.start_tool_event(me, sid, {"name": "edit", "message_id": m.id}).value
    tk.finish_tool_event(me, ev.id, output={"ok": True})
    tk.append_timeline_events(me, sid, [{"kind": "focus", "payload": {"pane": 1}}])
    tk.add_todo(me, sid, {"content": "write tests"})
    tk.record_misalignment(
        me,
        sid,
        {
            "kind": "scope_creep",
            "severity": "low",
            "description": "wandered",
            "evidence": [{"kind": "message", "id": m.id}],
        },
    )
    tk.record_hook_decision(
        me, sid, {"rule_id": "r1", "event": "tool_call", "decision": "warn", "tool_event_id": ev.id}
    )
    tk.bind_repo(me, sid, {"path": "/src/app"})
    tk.create_snapshot(me, sid, {"kind": "manual", "state": {"panel": 1}})
    tk.create_checkpoint(me, sid, {"message_id": m.id, "context": {"files": ["a.py"]}})
    tk.set_summary(me, sid, {"summary": "we talked", "final_message_count": 2})
    tk.create_recording(me, sid, {"events": [{"t": 0}]})
    tk.record_file_change(me, sid, {"path": "a.py", "kind": "modify", "diff": "-a\n+b\n"})
    tk.record_analytics_event(me, sid, {"event_type": "llm_call", "input_tokens": 3})


@pytest.fixture
def world(tk: Threadkeep) -> World:
    ada = Actor(tk.create_user("ada", id="ada").value.id)
    bob = Actor(tk.create_user("bob", id="bob").value.id)
    token = tk.create_token(ada, "laptop").value.token
    tk.create_token(ada, "phone", scopes=["read"])
    main = tk.create_session(ada, title="main", tags=["x"]).value.id
    _every_kind(tk, ada, main)
    own = tk.upload(ada, main, [OWN], filename="own.txt").value.sha256
    shared = tk.upload(ada, main, [SHARED], filename="shared.txt").value.sha256
    branch = tk.fork_session(ada, main, at_seq=1).value.id
    tk.append_message(ada, branch, {"role": "user", "content": "on the branch"})
    trashed = tk.create_session(ada, title="old").value.id
    tk.append_message(ada, trashed, {"role": "user", "content": "in the trash"})
    tk.delete_session(ada, trashed)
    # bob: every kind too, and an upload of the bytes ada also uploaded
    theirs = tk.create_session(bob, title="bob's").value.id
    _every_kind(tk, bob, theirs)
    tk.upload(bob, theirs, [SHARED], filename="mine-too.txt")
    return World(tk, ada, bob, token, [main, branch, trashed], own, shared)


def owned_rows(tk: Threadkeep, owner: str) -> dict[str, list[dict[str, Any]]]:
    """Every row ``owner`` owns, per exported table, as the export writes them."""
    out: dict[str, list[dict[str, Any]]] = {}
    with tk.engine.sa_engine.connect() as conn:
        for name in EXPORTED:
            table = tables.metadata.tables[name]
            if name == "users":
                q = sa.select(table).where(table.c.id == owner)
            elif name == "api_tokens":
                q = sa.select(*ud.TOKEN_COLUMNS).where(table.c.user_id == owner)
            else:
                q = sa.select(table).where(table.c.owner_id == owner)
            rows = [orjson.loads(orjson.dumps(row_json(r._mapping))) for r in conn.execute(q)]
            out[name] = sorted(rows, key=lambda r: str(r["id"]))
    return out


def read_archive(data: bytes) -> tuple[dict[str, Any], dict[str, list[Any]], dict[str, bytes]]:
    """(manifest, rows per table, blob bytes per sha256) of an archive."""
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.testzip() is None
        manifest = orjson.loads(zf.read("manifest.json"))
        files = {n: zf.read(n) for n in zf.namelist() if n != "manifest.json"}
    for name, meta in manifest["files"].items():
        assert hashlib.sha256(files[name]).hexdigest() == meta["sha256"], name
        assert len(files[name]) == meta["bytes"], name
    rows = {
        n.removesuffix(".jsonl"): [orjson.loads(line) for line in b.splitlines()]
        for n, b in files.items()
        if n.endswith(".jsonl")
    }
    blobs = {n.removeprefix("blobs/"): b for n, b in files.items() if n.startswith("blobs/")}
    assert set(files) == set(manifest["files"])
    return manifest, rows, blobs


def test_export_holds_every_row_and_blob_of_the_user_and_nothing_else(
    world: World, tmp_path: Path
) -> None:
    tk = world.tk
    dest = tmp_path / "ada.zip"
    seen: dict[str, int] = {}
    done = tk.export_user("ada", dest, progress=lambda what, n: seen.update({what: n}))
    manifest, rows, blobs = read_archive(dest.read_bytes())

    expected = owned_rows(tk, "ada")
    assert set(rows) == set(EXPORTED)
    for name in EXPORTED:
        assert expected[name], f"the fixture has no {name} row"
        assert sorted(rows[name], key=lambda r: str(r["id"])) == expected[name], name
        assert manifest["counts"][name] == len(expected[name]) == done.counts[name]
    assert all("token_hash" not in t for t in rows["api_tokens"])
    assert len(rows["api_tokens"]) == 2
    assert {s["id"] for s in rows["sessions"]} == set(world.ada_sessions)  # the trash too
    # the blob bytes, equal to what the store holds
    assert set(blobs) == {world.own_sha, world.shared_sha}
    for sha, data in blobs.items():
        assert data == b"".join(tk.blobs.open(sha))
        assert hashlib.sha256(data).hexdigest() == sha
    # nothing of bob's
    everything = dest.read_bytes()
    with zipfile.ZipFile(io.BytesIO(everything)) as zf:
        text = b"".join(zf.read(n) for n in zf.namelist() if n.endswith(".jsonl"))
    assert b'"bob' not in text and b"bob's" not in text
    assert manifest["user_id"] == "ada" and manifest["format"] == "threadkeep-user-export"
    assert manifest["schema_revision"] and manifest["missing_blobs"] == []
    assert done.archive_bytes == len(everything) and done.missing_blobs == []
    assert seen  # progress was reported
    assert not list(tmp_path.glob(".*partial"))


def test_export_pages_through_many_sessions_and_rows(
    tk: Threadkeep, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Tiny pages and windows: every keyset boundary is crossed many times.
    monkeypatch.setattr(userdata_ops, "PAGE", 3)
    monkeypatch.setattr(userdata_ops, "WINDOW", 2)
    me = Actor(tk.create_user("ada", id="ada").value.id)
    for i in range(5):
        sid = tk.create_session(me, title=f"s{i}").value.id
        tk.append_messages(
            me, sid, [{"role": "user", "content": f"{i}-{k}"} for k in range(i * 2 + 1)]
        )
        # Tables paged on (created_at, id) or (position, id): rows sharing a
        # timestamp (one batch) and rows of different times.
        tk.record_tool_events(me, sid, [{"name": f"t{k}"} for k in range(4)])
        tk.start_tool_event(me, sid, {"name": "later"})
        tk.replace_todos(me, sid, [{"content": f"todo {k}"} for k in range(4)])
    tk.export_user("ada", tmp_path / "a.zip")
    _, rows, _ = read_archive((tmp_path / "a.zip").read_bytes())
    assert len(rows["sessions"]) == 5
    assert len({e["id"] for e in rows["tool_events"]}) == len(rows["tool_events"]) == 25
    assert len({t["id"] for t in rows["todos"]}) == len(rows["todos"]) == 20
    assert sorted(m["content"] for m in rows["messages"]) == sorted(
        f"{i}-{k}" for i in range(5) for k in range(i * 2 + 1)
    )
    assert len({m["id"] for m in rows["messages"]}) == 25


def test_stream_my_data_is_the_same_archive(world: World, tmp_path: Path) -> None:
    tk = world.tk
    streamed = b"".join(tk.stream_my_data(world.ada))
    _, rows, blobs = read_archive(streamed)
    tk.export_my_data(world.ada, tmp_path / "file.zip")
    _, file_rows, file_blobs = read_archive((tmp_path / "file.zip").read_bytes())
    assert rows == file_rows and blobs == file_blobs
    with pytest.raises(UserNotFound):
        tk.stream_my_data(Actor("nobody"))  # at once, not at the first chunk


def test_erase_leaves_nothing_of_the_user_and_everything_of_the_other(world: World) -> None:
    tk = world.tk
    bob_before = owned_rows(tk, "bob")
    bob_log = list(tk.read_changes(world.bob, 0))
    before = tk.user_row_counts("ada")
    assert before["messages"] == 4 and before["changes"] > 0

    erased = tk.erase_user("ada").value

    assert set(tk.user_row_counts("ada").values()) == {0}
    assert erased.rows["messages"] == 4 and erased.rows["sessions"] == 3
    assert erased.rows["api_tokens"] == 2 and erased.rows["users"] == 1
    assert erased.blobs_deleted == [world.own_sha] and erased.blobs_kept == [world.shared_sha]
    assert erased.changes_scrubbed == before["changes"]
    with tk.engine.sa_engine.connect() as conn:
        for table in tables.metadata.sorted_tables:
            for col in ("owner_id", "user_id"):
                if col in table.c:
                    q = sa.select(sa.func.count()).select_from(table).where(table.c[col] == "ada")
                    if table is tables.changes:
                        q = q.where(table.c.row.is_not(None))
                    assert conn.execute(q).scalar_one() == 0, table.name
        # what stays of ada in the log: deletes, keys only
        ops = conn.execute(
            sa.select(tables.changes.c.op, tables.changes.c.row).where(
                tables.changes.c.owner_id == "ada"
            )
        ).all()
    assert ops and {(op, row) for op, row in ops} == {("delete", None)}
    assert not tk.blobs.exists(world.own_sha)
    assert b"".join(tk.blobs.open(world.shared_sha)) == SHARED
    # bob: untouched, and his copy of the shared bytes still reads
    assert owned_rows(tk, "bob") == bob_before
    assert tk.read_changes(world.bob, 0) == bob_log
    bob_upload = next(u for u in owned_rows(tk, "bob")["uploads"])
    assert b"".join(tk.open_upload(world.bob, bob_upload["id"]).chunks) == SHARED
    # ada's id answers not-found everywhere
    with pytest.raises(UserNotFound):
        tk.get_user("ada")
    with pytest.raises(SessionNotFound):
        tk.get_session(world.ada, world.ada_sessions[0])
    assert tk.list_sessions(world.ada).items == []
    assert tk.list_sessions(world.ada, trashed=True).items == []
    with pytest.raises(InvalidToken):
        tk.authenticate(world.ada_token)
    with pytest.raises(UserNotFound):
        tk.export_user("ada", "unused.zip")
    with pytest.raises(SessionNotFound):
        tk.append_message(world.ada, world.ada_sessions[0], {"role": "user", "content": "x"})


def test_sync_followers_of_the_erased_user_see_deletes_and_converge(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(userdata_ops, "PAGE", 2)  # several batches per table
    tk, ada = world.tk, world.ada
    # Each follower starts from a snapshot and applies changes after it.
    shapes = {t: tk.shape_snapshot(ada, t) for t in tables.SYNCED_TABLES}
    state = {t: {str(r["id"]) for r in s.rows} for t, s in shapes.items()}
    assert all(state[t] for t in tables.SYNCED_TABLES)
    # one follower falls behind: it never sees the message written now
    late = tk.append_message(ada, world.ada_sessions[0], {"role": "user", "content": "late"})
    tk.erase_user("ada")
    delete_txids = set()
    for t, snap in shapes.items():
        got = tk.shape_changes(ada, t, snap.offset, limit=1000)
        assert got.complete
        for ch in got.changes:
            assert ch.row is None and ch.op.value == "delete", (t, ch)  # no payload left
            state[t].discard(ch.key)
            delete_txids.add(ch.txid)
        assert state[t] == set(), t
    assert late.value.id in {c.key for c in tk.read_changes(ada, 0, tables=["messages"])}
    # a follower from the very start sees the same: nothing but deletes
    assert {c.op.value for c in tk.read_changes(ada, 0)} == {"delete"}
    assert len(delete_txids) > 5  # bounded batches, one transaction each
    assert tk.shape_snapshot(ada, "messages").rows == []


def test_erase_of_a_user_with_no_rows(tk: Threadkeep) -> None:
    tk.create_user("empty", id="empty")
    other = Actor(tk.create_user("other").value.id)
    tk.create_session(other)
    before = row_counts(tk)
    erased = tk.erase_user("empty").value
    assert erased.rows == {"api_tokens": 0, "users": 1}
    assert erased.blobs_deleted == erased.blobs_kept == [] and erased.changes_scrubbed == 0
    with pytest.raises(UserNotFound):
        tk.get_user("empty")
    after = row_counts(tk)
    assert after.pop("users") == before.pop("users") - 1
    assert after == before


def test_unknown_user_is_not_found_and_nothing_changes(world: World, tmp_path: Path) -> None:
    tk = world.tk
    before = row_counts(tk)
    blobs = sorted(k for k, _ in tk.blobs.list_blobs())
    with pytest.raises(UserNotFound):
        tk.erase_user("nobody")
    with pytest.raises(UserNotFound):
        tk.export_user("nobody", tmp_path / "x.zip")
    assert not list(tmp_path.glob("*.zip")) and not list(tmp_path.glob(".*partial"))
    assert row_counts(tk) == before
    assert sorted(k for k, _ in tk.blobs.list_blobs()) == blobs
    # erasing twice: the second answers not-found and changes nothing
    tk.erase_user("ada")
    after_once = row_counts(tk)
    with pytest.raises(UserNotFound):
        tk.erase_user("ada")
    assert row_counts(tk) == after_once


BAD: list[tuple[str, Any, str]] = [
    ("int id", lambda tk, d: tk.erase_user(42), "user_id"),
    ("empty id", lambda tk, d: tk.erase_user(""), "user_id"),
    ("nul id", lambda tk, d: tk.erase_user("a\x00b"), "user_id"),
    ("dest is a directory", lambda tk, d: tk.export_user("ada", d), "dest"),
    ("no such dir", lambda tk, d: tk.export_user("ada", d / "no" / "such" / "x.zip"), "dest"),
    ("dest not a path", lambda tk, d: tk.export_user("ada", 7), "dest"),
    ("counts of None", lambda tk, d: tk.user_row_counts(None), "user_id"),
]


def test_bad_input_is_refused_and_nothing_changes(tk: Threadkeep, tmp_path: Path) -> None:
    tk.create_user("ada", id="ada")
    out = tmp_path / "out"
    out.mkdir()
    before = row_counts(tk)
    for case, call, field in BAD:
        with pytest.raises(InvalidInput) as err:
            call(tk, out)
        assert err.value.field == field, case
        assert row_counts(tk) == before, case
        assert not list(out.iterdir()), case


class Interrupt(Exception):
    pass


def test_an_interrupted_erasure_finishes_when_run_again(world: World) -> None:
    tk = world.tk

    def stop_after_uploads(what: str, n: int) -> None:
        if what == "uploads":
            raise Interrupt  # the uploads' batch has committed: their rows are gone

    with pytest.raises(Interrupt):
        tk.erase_user("ada", progress=stop_after_uploads)
    assert tk.user_row_counts("ada")["uploads"] == 0
    assert tk.get_user("ada").disabled  # its tokens already stop working
    with pytest.raises(InvalidToken):
        tk.authenticate(world.ada_token)
    assert tk.blobs.exists(world.own_sha)

    erased = tk.erase_user("ada").value
    assert set(tk.user_row_counts("ada").values()) == {0}
    # the uploads' rows were gone, but the change log still named their blobs
    assert erased.blobs_deleted == [world.own_sha]
    assert not tk.blobs.exists(world.own_sha) and tk.blobs.exists(world.shared_sha)


def test_erase_survives_reopen(world: World, db_url: str) -> None:
    world.tk.erase_user("ada")
    world.tk.close()
    with Threadkeep.open(db_url) as again:
        assert set(again.user_row_counts("ada").values()) == {0}
        assert again.user_row_counts("bob")["messages"] == 2


def test_rows_written_for_the_user_during_the_erasure_are_erased_too(world: World) -> None:
    tk, ada = world.tk, world.ada
    added: list[str] = []

    def write_behind_its_back(what: str, n: int) -> None:
        # A library caller acting for the user (tokens are refused by now, the
        # library is not) adds a session after the sessions were deleted.
        if what == "sessions" and not added:
            sid = tk.create_session(ada, title="sneaky").value.id
            tk.append_message(ada, sid, {"role": "user", "content": "still here?"})
            added.append(sid)

    erased = tk.erase_user("ada", progress=write_behind_its_back).value
    assert added and erased.rows["sessions"] == 4 and erased.rows["messages"] == 5
    assert set(tk.user_row_counts("ada").values()) == {0}
    assert erased.blobs_deleted == [world.own_sha]


def test_every_table_a_user_owns_is_exported_and_erased() -> None:
    """A new table with an owner (a branch that adds one must extend
    store/userdata.py) fails here instead of surviving an erasure."""
    owned = {
        t.name
        for t in tables.metadata.sorted_tables
        if ("owner_id" in t.c or "user_id" in t.c or t.name == "users")
        and t.name not in tables.DERIVED
    }
    covered = {"users", "api_tokens", "sessions", *(t.name for t in ud.SESSION_TABLES)}
    assert owned - {"changes"} == covered
    assert set(EXPORTED) == covered
    assert set(tables.SYNCED_TABLES) <= covered


def test_erase_leaves_no_word_of_the_user_in_the_sqlite_search_index(tk: Threadkeep) -> None:
    """FTS5 drops a deleted row's terms only when its segments merge; the erase
    merges them, so the words are gone from the index files, not just hidden."""
    if tk.dialect != "sqlite":
        pytest.skip("PostgreSQL's index is a column of the row: it goes with the row")
    user = tk.create_user("leaving").value
    me = Actor(user.id)
    s = tk.create_session(me, title="zebraquokkatitle").value
    tk.append_message(me, s.id, {"role": "user", "content": "zebraquokkaword here"})
    other = Actor(tk.create_user("staying").value.id)
    kept = tk.create_session(other).value
    tk.append_message(other, kept.id, {"role": "user", "content": "filler text"})

    def traces() -> int:
        with tk.engine.sa_engine.connect() as conn:
            return sum(
                conn.exec_driver_sql(
                    f"SELECT count(*) FROM {t}_data "
                    "WHERE instr(block, CAST('zebraquokka' AS BLOB)) > 0"
                ).scalar_one()
                for t in ("search_messages", "search_sessions")
            )

    assert traces() > 0  # the words are in the index files before
    tk.erase_user(user.id)
    assert traces() == 0
    assert tk.search(other, "filler").items  # the other user's index still works


def test_an_export_that_fails_half_way_closes_its_archive(
    tk: Threadkeep, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A row that cannot be written ends the stream with that error, and the
    archive is closed on the way out (a half-open zip left to the garbage
    collector makes zipfile complain loudly, as an unraisable error, whenever
    the collector gets to it; which of its objects goes first decides whether
    it does, so this test cannot always see the difference)."""
    import gc

    user = tk.create_user("half").value
    me = Actor(user.id)
    s = tk.create_session(me).value
    tk.append_message(me, s.id, {"role": "user", "content": "x"})

    def broken(self: Any, row: dict[str, Any]) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(userdata_ops._Entry, "row", broken)
    stream = tk.stream_my_data(me)
    failed = ""
    try:
        for _ in stream:
            pass
    except RuntimeError as exc:  # not pytest.raises: its traceback would keep the zip alive
        failed = str(exc)
    assert failed == "disk full"
    del stream
    gc.collect()


def test_an_upload_whose_bytes_an_erasure_deletes_in_flight_is_refused_not_stored(
    tk: Threadkeep, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two users hold the same file. One uploads it again; between storing the
    bytes and writing the row, the other user is erased. The erasure finds no
    committed row using the blob, and deletes it. The upload then writes its
    row under the blob's lock, finds the bytes gone and is refused (BlobGone,
    409): never a row that names bytes that are not there."""
    me = Actor(tk.create_user("uploader").value.id)
    gone = Actor(tk.create_user("leaving").value.id)
    data = b"a file both users have\n"
    tk.upload(gone, tk.create_session(gone).value.id, [data], filename="a.txt")
    sid = tk.create_session(me).value.id
    put = tk.blobs.put

    def put_then_erase(*args: Any, **kwargs: Any) -> Any:
        out = put(*args, **kwargs)
        tk.erase_user(gone.user_id)
        return out

    monkeypatch.setattr(tk.blobs, "put", put_then_erase)
    with pytest.raises(BlobGone, match="send them again"):
        tk.upload(me, sid, [data], filename="a.txt")
    monkeypatch.setattr(tk.blobs, "put", put)
    assert tk.list_uploads(me, sid) == []
    # Sent again, it is stored anew.
    again = tk.upload(me, sid, [data], filename="a.txt").value
    assert b"".join(tk.open_upload(me, again.id).chunks) == data


def test_an_erasure_waits_for_an_upload_writing_its_row_and_keeps_its_bytes(
    tk: Threadkeep, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The other order: the upload is inside its row's transaction when the
    other holder of the same file is erased. The erasure's check that no row
    uses the blob waits for that transaction (PostgreSQL: the blob's advisory
    lock, seen waiting in pg_locks; SQLite: the one writer), then finds the
    new row and keeps the bytes. Without the lock, PostgreSQL's erasure
    reads no committed row and deletes them under the upload."""
    me = Actor(tk.create_user("uploader").value.id)
    gone = Actor(tk.create_user("leaving").value.id)
    data = b"a file both users have, again\n"
    sha = tk.upload(gone, tk.create_session(gone).value.id, [data], filename="a").value.sha256
    sid = tk.create_session(me).value.id
    postgres = tk.engine.sa_engine.dialect.name == "postgresql"
    in_transaction = tk.blobs.in_transaction
    erasing: list[threading.Thread] = []

    def asked_while_erasing(conn: Any) -> Any:
        # The upload asks the blob store inside its transaction, on ``conn``
        # (so this needs no second connection either).
        view = in_transaction(conn)
        exists = view.exists

        def erasure_waiting_on_the_lock() -> bool:
            waiting = conn.execute(
                sa.text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
            ).scalar_one()
            return bool(waiting)

        def exists_while_erasing(sha256: str) -> bool:
            if not erasing:  # the upload's row is written, not committed
                erasing.append(threading.Thread(target=tk.erase_user, args=(gone.user_id,)))
                erasing[0].start()
                deadline = time.monotonic() + 20
                if postgres:
                    while not erasure_waiting_on_the_lock():
                        assert time.monotonic() < deadline, "the erasure never waited"
                        time.sleep(0.01)
                else:
                    time.sleep(0.3)  # it queues behind this write
            return bool(exists(sha256))

        monkeypatch.setattr(view, "exists", exists_while_erasing)
        return view

    monkeypatch.setattr(tk.blobs, "in_transaction", asked_while_erasing)
    up = tk.upload(me, sid, [data], filename="a").value
    erasing[0].join(30)
    assert not erasing[0].is_alive()
    with pytest.raises(UserNotFound):
        tk.get_user(gone.user_id)
    assert tk.blobs.exists(sha)
    assert b"".join(tk.open_upload(me, up.id).chunks) == data
