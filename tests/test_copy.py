"""``threadkeep copy``: a whole store into a new database, across engines.

The copy is taken while other threads write every kind of row; the target
must then hold the source at one moment: the change log (offsets kept)
rebuilds every synced table, each upload has its bytes, search and histories
agree, and the store takes new writes where the source left off. Bad targets
are refused with nothing written, and a copy the target does not read back
identically is rolled back whole."""

from __future__ import annotations

import hashlib
import sqlite3
import sys
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from conftest import empty_database, row_counts, running_in_threads, server_conninfo
from random_writes import make_world, random_writers
from replay_checks import assert_log_rebuilds, assert_views_agree
from threadkeep import Actor, Threadkeep
from threadkeep.cli.main import app
from threadkeep.config import Settings, load_settings
from threadkeep.copy_store import copy_store
from threadkeep.errors import CopyError, CopyTargetNotEmpty
from threadkeep.store import copy as copy_q
from threadkeep.store import tables
from threadkeep.sync.shapes import Shape

sys.path.insert(0, str(Path(__file__).parent / "api"))

from api_helpers import api_client

PAIRS = [
    ("sqlite", "postgres"),
    ("postgres", "sqlite"),
    ("sqlite", "sqlite"),
    ("postgres", "postgres"),
]


pytestmark = pytest.mark.usefixtures("isolated_settings")


@pytest.fixture(params=PAIRS, ids=[f"{a}-to-{b}" for a, b in PAIRS])
def pair(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Settings]]:
    """(source URL, target settings): an empty database of each engine."""
    source_engine, target_engine = request.param
    with (
        empty_database(source_engine, tmp_path / "source" / "threadkeep.db") as source,
        empty_database(target_engine, tmp_path / "target" / "threadkeep.db") as target,
    ):
        yield source, load_settings(database_url=target)


@pytest.fixture(params=["sqlite", "postgres"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    """An empty target database on each engine (the source: a SQLite file)."""
    with empty_database(str(request.param), tmp_path / "target" / "threadkeep.db") as url:
        yield load_settings(database_url=url)


def test_a_copy_taken_during_random_writes_is_the_store_at_one_moment(
    pair: tuple[str, Settings], tmp_path: Path
) -> None:
    source_url, target = pair
    tk = Threadkeep.open(source_url)
    try:
        first = make_world(tk, tmp_path / "files")
        me, writing = first.me, first.tk  # the blob store the writes use
        token = writing.create_token(me, "ui").value.token
        headers = {"Authorization": f"Bearer {token}"}
        start = {Shape(t, me.user_id): writing.shape_snapshot(me, t) for t in tables.SYNCED_TABLES}
        with api_client(writing) as api:
            r = api.get("/v1/shape", params={"table": "messages", "offset": "-1"}, headers=headers)
            handle, offset = r.headers["electric-handle"], r.headers["electric-offset"]
        phases: set[str] = set()
        with running_in_threads(*random_writers(first)):
            time.sleep(0.5)  # the writers are well under way
            done = copy_store(writing, target, progress=lambda p, d, n: phases.add(p))
        assert phases == {"blobs", "rows", "compare"}
        source_counts = row_counts(tk)
    finally:
        tk.close()

    assert done.missing_blobs == []
    with Threadkeep.open(settings=target) as copied:
        got = row_counts(copied)
        assert {t: got[t] for t in done.counts} == done.counts
        # The source went on writing after the snapshot, so it holds more.
        assert done.counts["changes"] < source_counts["changes"]
        assert done.counts["messages"] > 1 and done.counts["sessions"] > 1
        # The log, followed from before the writes, rebuilds every synced
        # table: the offsets came across unchanged.
        assert_log_rebuilds(copied, me, start)
        for row in copied.shape_snapshot(me, "uploads").rows:
            data = b"".join(copied.open_upload(me, row["id"]))
            assert hashlib.sha256(data).hexdigest() == row["sha256"]
        assert_views_agree(copied, me)

        # New writes carry on where the copy left off: the next seq, the
        # next change-log key (PostgreSQL's sequence moved past the copied
        # ids) and the next offset.
        before = copied.sync_state()
        fresh = copied.create_session(me, title="new on the copy").value
        busiest = max(copied.list_sessions(me, limit=100).items, key=lambda x: x.head_seq)
        added = copied.append_message(me, busiest.id, {"role": "user", "content": "after"})
        assert added.value.seq == busiest.head_seq + 1
        changed = copied.shape_changes(me, "sessions", before.last_offset)
        assert fresh.id in {c.key for c in changed.changes}
        assert all(c.offset > before.last_offset for c in changed.changes)

        # A client that synced against the source refetches here.
        with api_client(copied) as api:
            stale = api.get(
                "/v1/shape",
                params={"table": "messages", "offset": offset, "handle": handle},
                headers=headers,
            )
            assert stale.status_code == 409
            assert stale.json() == [{"headers": {"control": "must-refetch"}}]


def test_the_target_refuses_a_row_and_holds_nothing_then_a_second_copy_succeeds(
    tmp_path: Path, pg_db: str
) -> None:
    """A SQLite file can hold a value the schema's types forbid (SQLite does
    not check lengths); PostgreSQL refuses it. A copy with such a row fails
    naming the table and leaves the target without a row; once the row is
    fixed, the same target takes the copy (the blobs the failed copy put
    there first are no obstacle)."""
    source = f"sqlite:///{tmp_path / 'source.db'}"
    with Threadkeep.open(source) as tk:
        me = Actor(tk.create_user("ada").value.id)
        s = tk.create_session(me, title="short").value
        tk.append_message(me, s.id, {"role": "user", "content": "hello"})
        up = tk.upload(me, s.id, [b"the bytes"], filename="a.txt").value
    with closing(sqlite3.connect(tmp_path / "source.db")) as raw, raw:
        raw.execute("UPDATE sessions SET model = ? WHERE id = ?", ("m" * 300, s.id))
    target = load_settings(database_url=pg_db)
    with Threadkeep.open(source) as tk:
        with pytest.raises(CopyError, match="refused a row of sessions"):
            copy_store(tk, target)
        assert copy_q.holds_data(target.database_url) == []
        with closing(sqlite3.connect(tmp_path / "source.db")) as raw, raw:
            raw.execute("UPDATE sessions SET model = 'm' WHERE id = ?", (s.id,))
        copy_store(tk, target)
    with Threadkeep.open(settings=target) as copied:
        assert copied.get_session(me, s.id).model == "m"
        assert copied.open_upload(me, up.id).read() == b"the bytes"


def _lose_rows_on_insert(url: str) -> None:
    """A trigger on the target that deletes every todo as it is inserted: a
    database that silently drops rows."""
    if url.startswith("sqlite"):
        path = url.removeprefix("sqlite:///")
        with closing(sqlite3.connect(path)) as conn, conn:
            conn.execute(
                "CREATE TRIGGER lose AFTER INSERT ON todos "
                "BEGIN DELETE FROM todos WHERE id = NEW.id; END"
            )
        return
    with psycopg.connect(server_conninfo(url), autocommit=True) as c:
        c.execute(
            "CREATE FUNCTION lose() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN DELETE FROM todos WHERE id = NEW.id; RETURN NULL; END $$"
        )
        c.execute("CREATE TRIGGER lose AFTER INSERT ON todos FOR EACH ROW EXECUTE FUNCTION lose()")


def test_a_copy_that_does_not_read_back_as_written_is_rolled_back_whole(
    tmp_path: Path, target: Settings
) -> None:
    with Threadkeep.open(settings=target):
        pass  # migrated, so the trigger has a table to sit on
    _lose_rows_on_insert(target.database_url)
    with Threadkeep.open(f"sqlite:///{tmp_path / 'source.db'}") as tk:
        me = Actor(tk.create_user("ada").value.id)
        s = tk.create_session(me, title="plan").value
        tk.append_message(me, s.id, {"role": "user", "content": "hello"})
        tk.replace_todos(me, s.id, [{"content": "write it", "status": "pending"}])
        with pytest.raises(CopyError, match=r"todos: 0 rows read back, 1 written"):
            copy_store(tk, target)
    assert copy_q.holds_data(target.database_url) == []


def test_a_target_with_data_or_the_source_itself_is_refused_and_left_alone(
    tmp_path: Path, target: Settings
) -> None:
    source = f"sqlite:///{tmp_path / 'source.db'}"
    with Threadkeep.open(settings=target) as other:
        other.create_user("somebody else")
        before = row_counts(other)
    with Threadkeep.open(source) as tk:
        me = Actor(tk.create_user("ada").value.id)
        tk.create_session(me, title="plan")
        mine = row_counts(tk)
        with pytest.raises(CopyTargetNotEmpty, match=r"not empty \(rows in users\)"):
            copy_store(tk, target)
        with pytest.raises(CopyError, match="is the source database itself"):
            # The same file, spelt another way.
            copy_store(tk, load_settings(database_url=f"sqlite:///{tmp_path}/./source.db"))
        assert row_counts(tk) == mine
    with Threadkeep.open(settings=target) as other:
        assert row_counts(other) == before
        assert [u.name for u in other.list_users()] == ["somebody else"]


def test_digests_ignore_row_order_and_see_any_changed_value() -> None:
    rows = [("a", 1, {"x": [1, 2]}), ("b", 2, None), ("c", 3, "text")]

    def digest(rs: list[tuple[object, ...]]) -> copy_q.Digest:
        d = copy_q.Digest()
        for r in rs:
            d.add(r)
        return d

    assert digest(rows) == digest(list(reversed(rows)))
    assert digest(rows) != digest([*rows[:2], ("c", 3, "texT")])
    assert digest(rows) != digest(rows[:2])
    assert digest(rows) != digest([*rows, rows[0]])  # a duplicate counts


def test_the_copy_command_moves_a_sqlite_store_to_postgres_and_says_what_it_did(
    tmp_path: Path, pg_db: str
) -> None:
    source = f"sqlite:///{tmp_path / 'source.db'}"
    with Threadkeep.open(source) as tk:
        me = Actor(tk.create_user("ada").value.id)
        s = tk.create_session(me, title="plan").value
        tk.append_messages(me, s.id, [{"role": "user", "content": f"m{i}"} for i in range(5)])
    runner = CliRunner()
    target = pg_db
    r = runner.invoke(app, ["copy", target, "--database-url", source])
    assert r.exit_code == 0, r.output
    assert "copied 1 users, 1 sessions, 5 messages, 0 uploads" in r.output
    assert "read back identical" in r.output
    with Threadkeep.open(target) as copied:
        assert [m.content for m in copied.get_messages(me, s.id)] == [f"m{i}" for i in range(5)]
    again = runner.invoke(app, ["copy", target, "--database-url", source])
    assert again.exit_code == 2
    assert "is not empty" in again.output
    absent = target.rsplit("/", 1)[0] + "/tk_no_such_database"
    missing = runner.invoke(app, ["copy", absent, "--database-url", source])
    assert missing.exit_code == 2
    assert "cannot open the copy's target" in missing.output
    assert '"tk_no_such_database" does not exist' in missing.output
    assert "createdb" in missing.output


def test_branches_whose_ids_sort_before_their_parents_copy_parents_first(
    pair: tuple[str, Settings],
) -> None:
    """A fork names its parent, so the parent row must be written first;
    client-chosen ids can sort either way, so key order is not enough."""
    source_url, target = pair
    with Threadkeep.open(source_url) as tk:
        me = Actor(tk.create_user("ada").value.id)
        tk.create_session(me, id="z-root", title="root")
        tk.append_messages(me, "z-root", [{"role": "user", "content": f"m{i}"} for i in range(4)])
        tk.fork_session(me, "z-root", at_seq=3, id="m-child")
        tk.append_message(me, "m-child", {"role": "user", "content": "child says"})
        tk.fork_session(me, "m-child", at_seq=4, id="a-grandchild")
        copy_store(tk, target)
        want = [m.content for m in tk.get_history(me, "a-grandchild")]
    assert want == ["m0", "m1", "m2", "child says"]
    with Threadkeep.open(settings=target) as copied:
        assert [m.content for m in copied.get_history(me, "a-grandchild")] == want
        assert copied.get_session(me, "a-grandchild").parent_session_id == "m-child"


def test_change_rows_not_yet_numbered_on_postgres_are_numbered_in_commit_order(
    pg_db: str, target: Settings
) -> None:
    """On PostgreSQL a change row is numbered just after it commits
    (store/changes.py). A copy whose snapshot falls in between numbers such
    rows itself, as the assigner would: SQLite would never number them, and
    a client following the copy's log would miss them."""
    source = pg_db
    with Threadkeep.open(source) as tk:
        me = Actor(tk.create_user("ada").value.id)
        s = tk.create_session(me, title="plan").value
        for i in range(3):
            tk.append_message(me, s.id, {"role": "user", "content": f"m{i}"})
        state = tk.sync_state()
    # The state a snapshot can catch: the last two transactions committed,
    # their rows not numbered yet, log_state not moved past them.
    with psycopg.connect(server_conninfo(source), autocommit=True) as c:
        txids = [
            r[0]
            for r in c.execute(
                "SELECT DISTINCT txid FROM changes ORDER BY txid DESC LIMIT 2"
            ).fetchall()
        ]
        unnumbered = c.execute(
            "UPDATE changes SET log_offset = NULL WHERE txid = ANY(%s) RETURNING id",
            (txids,),
        ).fetchall()
        c.execute("UPDATE log_state SET last_offset = %s", (state.last_offset - len(unnumbered),))
    with Threadkeep.open(source) as tk:
        copy_store(tk, target)
    with Threadkeep.open(settings=target) as copied:
        assert copied.sync_state().last_offset == state.last_offset
        read = copied.shape_changes(me, "messages", 0, limit=100).changes
        assert [c.row["content"] for c in read if c.row] == ["m0", "m1", "m2"]
        assert [c.offset for c in read] == sorted(c.offset for c in read)


def test_the_copy_commits_durably_whatever_the_targets_default(target: Settings) -> None:
    """Every threadkeep write is durable at commit (synchronous_commit on,
    SQLite's synchronous=FULL), even where the server's or the database's
    default is weaker; so is the copy's one transaction."""
    url = target.database_url
    with Threadkeep.open(settings=target):
        pass
    if url.startswith("postgresql"):
        name = sa.make_url(url).database
        with psycopg.connect(server_conninfo(url), autocommit=True) as c:
            c.execute(f'ALTER DATABASE "{name}" SET synchronous_commit = off')
        setting = "SHOW synchronous_commit"
        want = "on"
    else:
        setting = "PRAGMA synchronous"
        want = 2  # FULL
    with copy_q.writing(url) as conn:
        got = conn.exec_driver_sql(setting).scalar()
    assert got == want
