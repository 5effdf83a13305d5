"""Schema changes are migrations: Alembic revisions applied on open, identical
on SQLite and PostgreSQL, refused when the database is newer than the code,
safe when several processes open a fresh database at once."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import alembic.command
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from guarantee_helpers import Child

import threadkeep
from conftest import empty_database, row_counts
from threadkeep import Actor, Threadkeep
from threadkeep.store import migrate, open_engine, pg_connect, pg_url, search, tables
from threadkeep.store import sessions as session_q

FUTURE = "ffff_from_the_future"
OPEN_ROUNDS = 1  # child start-up dominates; raise to hunt for a lock race


def _sa_engine(url: str) -> sa.Engine:
    """A plain engine beside threadkeep's own, to look at the database."""
    if url.startswith("sqlite"):
        return sa.create_engine(url, poolclass=sa.pool.NullPool)
    return pg_connect.create_engine(url, poolclass=sa.pool.NullPool)


def _schema(url: str) -> dict[str, Any]:
    """What the schema is made of, as the database reports it."""
    eng = _sa_engine(url)
    try:
        insp = sa.inspect(eng)
        out: dict[str, Any] = {}
        for t in sorted(insp.get_table_names()):
            out[t] = {
                "columns": [
                    (c["name"], str(c["type"]), c["nullable"]) for c in insp.get_columns(t)
                ],
                "pk": insp.get_pk_constraint(t)["constrained_columns"],
                "indexes": sorted(
                    (i["name"] or "", tuple(i["column_names"])) for i in insp.get_indexes(t)
                ),
                "uniques": sorted(
                    (u["name"] or "", tuple(u["column_names"]))
                    for u in insp.get_unique_constraints(t)
                ),
                "fks": sorted(
                    (f["name"] or "", tuple(f["constrained_columns"]), f["referred_table"])
                    for f in insp.get_foreign_keys(t)
                ),
                "checks": sorted(
                    (c["name"] or "", c["sqltext"]) for c in insp.get_check_constraints(t)
                ),
            }
        with eng.connect() as conn:
            out["alembic_version"] = sorted(
                conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars()
            )
        return out
    finally:
        eng.dispose()


def _diffs(conn: sa.Connection) -> list[Any]:
    ctx = MigrationContext.configure(
        conn,
        opts={
            "compare_type": True,
            "compare_server_default": True,
            "include_object": search.include_object,  # as env.py does
        },
    )
    return list(compare_metadata(ctx, tables.metadata))


_DESCRIBED: dict[str, dict[str, Any]] = {}


def _checks(url: str) -> dict[str, Any]:
    """Each table's CHECK constraints (name and text, as the database reports
    them): Alembic's comparison does not look at these."""
    eng = _sa_engine(url)
    try:
        insp = sa.inspect(eng)
        present = set(insp.get_table_names())  # an older revision lacks later tables
        return {
            t: sorted((c["name"] or "", c["sqltext"]) for c in insp.get_check_constraints(t))
            for t in tables.metadata.tables
            if t in present
        }
    finally:
        eng.dispose()


def _described_checks(engine_name: str, tmp_path: Path) -> dict[str, Any]:
    """The CHECK constraints of a database made straight from tables.py
    (``create_all``, no migration): what every migrated database must hold."""
    if engine_name not in _DESCRIBED:
        with empty_database(engine_name, tmp_path / "described.db") as url:
            eng = _sa_engine(url)
            try:
                schema = pg_url.schema_of_engine(eng)  # THREADKEEP_TEST_PG_SCHEMA
                if schema is not None:
                    with eng.begin() as conn:
                        migrate.ensure_schema(conn, schema)
                tables.metadata.create_all(eng)
            finally:
                eng.dispose()
            _DESCRIBED[engine_name] = _checks(url)
    return _DESCRIBED[engine_name]


def _engine_of(url: str) -> str:
    return "sqlite" if url.startswith("sqlite") else "postgres"


def test_upgrade_from_empty_reaches_the_code_head(db_url: str) -> None:
    head = migrate.code_head()
    with Threadkeep.open(db_url) as tk, tk.engine.sa_engine.connect() as conn:
        assert migrate.database_revision(conn) == head
        assert migrate.is_current(conn)
        # The search index's tables (SQLite FTS5, revision 0006) are not in tables.py.
        assert {
            t for t in sa.inspect(conn).get_table_names() if not t.startswith(search.PREFIX)
        } == {*tables.metadata.tables, "alembic_version"}
        assert conn.execute(sa.text("SELECT count(*) FROM alembic_version")).scalar_one() == 1
        state = conn.execute(sa.select(tables.log_state)).one()._mapping
        assert (state["last_offset"], state["last_txid"], state["pruned_offset"]) == (0, 0, 0)
        # A new database gets a fresh sync epoch: no handle issued elsewhere matches it.
        assert state["epoch"] == state["reset_epoch"] > 1_700_000_000_000_000
    assert _schema(db_url)["alembic_version"] == [head]


def _revisions() -> list[str]:
    """Every revision, oldest first."""
    script = migrate.ScriptDirectory.from_config(migrate.alembic_config())
    return [r.revision for r in reversed(list(script.walk_revisions()))]


@pytest.mark.parametrize("start", _revisions()[:-1])
def test_upgrade_from_each_earlier_revision_keeps_the_data(
    db_url: str, start: str, tmp_path: Path
) -> None:
    """A database left at an older revision, with data written by that schema,
    upgrades to the head on open and reads back whole."""
    old = open_engine(db_url, migrate=False)
    try:
        eng = old.sa_engine
        migrate.upgrade(eng, start)
        with eng.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO users (id, name, created_at, disabled) "
                    "VALUES ('u1', 'old', CURRENT_TIMESTAMP, false)"
                )
            )
            conn.execute(
                sa.text(
                    "INSERT INTO sessions (id, owner_id, title, state, tags, starred, pinned, "
                    "archived, metadata, head_seq, event_seq, input_tokens, output_tokens, "
                    "cost_usd, version, created_at, updated_at, last_activity_at) VALUES "
                    "('s1', 'u1', 'kept', 'active', '[]', false, false, false, '{}', 2, 0, 0, 0, "
                    "0, 1, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
                )
            )
            for seq in (1, 2):
                conn.execute(
                    sa.text(
                        "INSERT INTO messages (id, owner_id, session_id, seq, role, content, "
                        "metadata, created_at) VALUES (:id, 'u1', 's1', :seq, 'user', :c, '{}', "
                        "CURRENT_TIMESTAMP)"
                    ),
                    {"id": f"m{seq}", "seq": seq, "c": f"old {seq}"},
                )
            if conn.dialect.name == "sqlite" and start >= "0007":
                # From 0007 the store, not a trigger, enters new messages in
                # the index: as the code of that revision did.
                search.index_messages(conn.connection.cursor(), ["m1", "m2"])
    finally:
        old.close()
    with Threadkeep.open(db_url) as tk, tk.engine.sa_engine.connect() as conn:
        assert migrate.database_revision(conn) == migrate.code_head()
        history = tk.get_history(Actor("u1"), "s1")
        assert [(m.seq, m.content, m.status.value) for m in history] == [
            (1, "old 1", "complete"),
            (2, "old 2", "complete"),
        ]
        appended = tk.append_message(Actor("u1"), "s1", {"role": "user", "content": "new"})
        assert appended.value.seq == 3
        # The session record (revision 0003) attaches to the old rows.
        me = Actor("u1")
        tk.replace_todos(me, "s1", [{"content": "carry on"}])
        tk.bind_repo(me, "s1", {"path": "/repo"})
        tk.create_checkpoint(me, "s1", {"message_id": "m1", "context": {"k": 1}})
        tk.record_misalignment(
            me,
            "s1",
            {"kind": "k", "description": "d", "evidence": [{"kind": "message", "id": "m2"}]},
        )
        assert [t.content for t in tk.list_todos(me, "s1")] == ["carry on"]
        assert tk.get_active_repo_binding(me, "s1") is not None
        assert [c.message_id for c in tk.list_checkpoints(me, "s1")] == ["m1"]
        # A session from before uploads existed takes files.
        up = tk.upload(Actor("u1"), "s1", [b"after the upgrade"], filename="new.txt").value
        assert tk.open_upload(Actor("u1"), up.id).read() == b"after the upgrade"
        # Search (revision 0006) finds what was written before the upgrade, and
        # what is written after it.
        assert {h.id for h in tk.search(me, "old").items} == {"m1", "m2"}
        assert {h.id for h in tk.search(me, "kept").items} == {"s1"}
        assert [h.id for h in tk.search(me, "new").items] == [appended.value.id]
        assert _diffs(conn) == []
    assert _checks(db_url) == _described_checks(_engine_of(db_url), tmp_path)


UPLOADS_REVISION = "0004"  # the revision that adds uploads (wherever the head is)


def test_the_uploads_revision_downgrades_and_upgrades_again(db_url: str) -> None:
    script = migrate.ScriptDirectory.from_config(migrate.alembic_config())
    before = script.get_revision(UPLOADS_REVISION).down_revision
    assert isinstance(before, str)
    with Threadkeep.open(db_url) as tk:
        a = Actor(tk.create_user("ada").value.id)
        s = tk.create_session(a, title="kept").value
        tk.upload(a, s.id, [b"bytes"], filename="f.txt")
    eng = _sa_engine(db_url)
    try:
        with eng.begin() as conn:
            cfg = migrate.alembic_config(conn)
            alembic.command.downgrade(cfg, before)
        names = set(sa.inspect(eng).get_table_names())
        assert not names & {"uploads", "blobs", "blob_chunks"}
        assert {"sessions", "messages"} <= names
    finally:
        eng.dispose()
    with Threadkeep.open(db_url) as tk, tk.engine.sa_engine.connect() as conn:
        assert migrate.database_revision(conn) == migrate.code_head()
        assert tk.get_session(a, s.id).title == "kept"
        assert tk.list_uploads(a, s.id) == []
        assert _diffs(conn) == []


def test_opening_again_is_a_no_op(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with Threadkeep.open(db_url) as tk:
        a = Actor(tk.create_user("ada").value.id)
        s = tk.create_session(a, title="kept").value
        tk.append_message(a, s.id, {"role": "user", "content": "hi"})
        counts = row_counts(tk)
    schema = _schema(db_url)

    def no_upgrade(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the second open ran an Alembic upgrade")

    monkeypatch.setattr(alembic.command, "upgrade", no_upgrade)
    for _ in range(2):
        with Threadkeep.open(db_url) as tk:
            assert row_counts(tk) == counts
            assert [m.content for m in tk.get_history(a, s.id)] == ["hi"]
            assert migrate.upgrade(tk.engine.sa_engine) == migrate.code_head()
    assert _schema(db_url) == schema


def test_autogenerate_finds_no_difference_from_the_tables(db_url: str) -> None:
    with Threadkeep.open(db_url) as tk, tk.engine.sa_engine.connect() as conn:
        assert _diffs(conn) == []


def test_autogenerate_comparison_would_see_a_difference(db_url: str) -> None:
    """The no-difference check above has teeth: a changed type, a new column and
    a missing index in the tables are each reported (so a clean comparison is
    not an artefact of, e.g., the JSON/JSONB variant hiding types)."""
    changed = sa.MetaData(naming_convention=tables.metadata.naming_convention)
    for t in tables.metadata.sorted_tables:
        t.to_metadata(changed)
    changed.tables["users"].c["name"].type = sa.String(100)
    changed.tables["sessions"].c["tags"].type = sa.Text()
    changed.tables["messages"].append_column(sa.Column("extra", sa.Integer(), nullable=True))
    changed.tables["tool_events"].indexes.clear()
    with Threadkeep.open(db_url) as tk, tk.engine.sa_engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diffs = compare_metadata(ctx, changed)
    flat = [d for item in diffs for d in (item if isinstance(item, list) else [item])]
    kinds = {(d[0], d[2], d[3]) if d[0] == "modify_type" else (d[0],) for d in flat}
    assert ("modify_type", "users", "name") in kinds
    assert ("modify_type", "sessions", "tags") in kinds
    assert ("add_column",) in kinds
    assert ("remove_index",) in kinds


@pytest.mark.parametrize(
    "occupant",
    [
        "CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY);"
        "INSERT INTO alembic_version VALUES ('3f2a9c1d7b4e')",
        "CREATE TABLE users (id integer PRIMARY KEY, email text)",
    ],
    ids=["alembic_version", "users"],
)
def test_another_applications_tables_are_refused_and_left_unchanged(
    db_url: str, occupant: str
) -> None:
    """Pointed at another application's database (an Alembic version table
    that is not threadkeep's, or tables with its names), opening the store
    refuses with a way out and writes nothing, on both engines. It is not
    taken for a newer threadkeep (that one has log_state beside it)."""
    if "schema=" in db_url:
        pytest.skip("in a schema of its own, threadkeep meets no other tables (test_pg_schema.py)")
    eng = _sa_engine(db_url)
    try:
        with eng.begin() as conn:
            for statement in occupant.split(";"):
                conn.execute(sa.text(statement))
    finally:
        eng.dispose()
    before = _tables_and_rows(db_url)
    for migrate_flag in (True, False):
        with pytest.raises(threadkeep.SchemaInUse) as err:
            Threadkeep.open(db_url, migrate=migrate_flag)
        way_out = "file of its own" if db_url.startswith("sqlite") else "?schema=threadkeep"
        assert "nothing was written" in str(err.value) and way_out in str(err.value)
        assert _tables_and_rows(db_url) == before


def _tables_and_rows(url: str) -> dict[str, list[Any]]:
    eng = _sa_engine(url)
    try:
        with eng.connect() as conn:
            names = sorted(sa.inspect(conn).get_table_names())
            return {
                n: [tuple(r) for r in conn.execute(sa.text(f"SELECT * FROM {n}"))] for n in names
            }
    finally:
        eng.dispose()


def test_a_newer_database_is_refused_and_left_unchanged(db_url: str) -> None:
    with Threadkeep.open(db_url) as tk:
        a = Actor(tk.create_user("ada").value.id)
        tk.create_session(a, title="before the downgrade")
        counts = row_counts(tk)
    eng = _sa_engine(db_url)
    try:
        with eng.begin() as conn:
            conn.execute(sa.text("UPDATE alembic_version SET version_num = :v"), {"v": FUTURE})
    finally:
        eng.dispose()
    schema = _schema(db_url)
    assert schema["alembic_version"] == [FUTURE]

    for migrate_flag in (True, False):
        with pytest.raises(threadkeep.SchemaTooNew) as err:
            Threadkeep.open(db_url, migrate=migrate_flag)
        assert err.value.database_revision == FUTURE
        assert err.value.code_revision == migrate.code_head()
        assert FUTURE in str(err.value) and repr(migrate.code_head()) in str(err.value)
        assert _schema(db_url) == schema

    # Nothing changed: same schema, same rows (read with a plain engine).
    eng = _sa_engine(db_url)
    try:
        with eng.connect() as conn:
            after = {
                t.name: conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
                for t in tables.metadata.sorted_tables
            }
            after["log_state.last_offset"] = conn.execute(
                sa.select(tables.log_state.c.last_offset)
            ).scalar_one()
    finally:
        eng.dispose()
    assert after == counts


@pytest.mark.slow
def test_processes_opening_a_fresh_database_at_once_all_succeed(
    engine_name: str, tmp_path: Path
) -> None:
    """Two processes open (and so migrate) a fresh database at the same
    moment: the migration lock lets one migrate, the other finds the schema at
    head. (Each child has imported threadkeep before "go", and an upgrade takes
    a few hundred milliseconds, so the opens overlap.)"""
    for rnd in range(OPEN_ROUNDS):
        with empty_database(engine_name, tmp_path / f"fresh-{rnd}.db") as url:
            children = [Child("open", url) for _ in range(2)]
            try:
                for c in children:
                    c.wait_ready()
                for c in children:
                    c.go()
            finally:
                rcs = [c.finish(timeout=60) for c in children]
            for c, rc in zip(children, rcs, strict=True):
                assert rc == 0, f"round {rnd}: an opener failed (rc {rc}):\n{c.stderr}"
                assert c.lines == [f"rev {migrate.code_head()}"]
            assert _schema(url)["alembic_version"] == [migrate.code_head()]
            with Threadkeep.open(url) as tk, tk.engine.sa_engine.connect() as conn:
                state = conn.execute(sa.select(tables.log_state)).one()._mapping
                assert (state["last_offset"], state["last_txid"]) == (0, 0)
                assert _diffs(conn) == []


def test_sqlite_open_waits_while_another_connection_creates_the_file(tmp_path: Path) -> None:
    """The race behind a flaky two-process open, made deterministic: while
    another connection holds the write lock on a fresh (not yet WAL) file,
    SQLite refuses the switch to WAL at once, without its busy handler. The
    open must wait for the lock, not fail with "database is locked"."""
    path = tmp_path / "racing.db"
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("CREATE TABLE someone_elses (x)")
    released = threading.Event()

    def release_later() -> None:
        time.sleep(0.3)
        holder.execute("COMMIT")
        released.set()

    t = threading.Thread(target=release_later)
    t.start()
    try:
        with Threadkeep.open(f"sqlite:///{path}") as tk:
            assert released.is_set(), "the open cannot finish while the lock is held"
            assert tk.create_user("ada").value.id
            with tk.engine.sa_engine.connect() as conn:
                mode = conn.exec_driver_sql("PRAGMA journal_mode").scalar_one()
            assert mode == "wal"
    finally:
        t.join()
        holder.close()


def test_connections_have_the_durable_settings(db_url: str) -> None:
    """SQLite: WAL, synchronous=FULL, foreign keys on, a busy timeout, on the
    read pool and on the connection that writes. PostgreSQL: synchronous_commit
    on for both."""
    with Threadkeep.open(db_url) as tk:
        if tk.dialect == "sqlite":
            query = (
                "PRAGMA journal_mode",
                "PRAGMA synchronous",
                "PRAGMA foreign_keys",
                "PRAGMA busy_timeout",
            )

            def check(values: list[Any]) -> None:
                mode, sync, fks, busy = values
                assert (str(mode).lower(), sync, fks) == ("wal", 2, 1)
                assert busy > 0
        else:
            query = ("SHOW synchronous_commit",)

            def check(values: list[Any]) -> None:
                assert values == ["on"]

        with tk.engine.sa_engine.connect() as c1, tk.engine.sa_engine.connect() as c2:
            for conn in (c1, c2):
                check([conn.exec_driver_sql(q).scalar() for q in query])
        written = tk.engine.write(lambda tx: [tx.conn.exec_driver_sql(q).scalar() for q in query])
        check(written.value)


SEARCH_REVISION = "0006"


def test_the_search_revision_downgrades_and_upgrades_again(db_url: str) -> None:
    """Down to 0005 removes every search_* object; up again rebuilds the index
    from the rows (the backfill)."""
    with Threadkeep.open(db_url) as tk:
        a = Actor(tk.create_user("ada").value.id)
        s = tk.create_session(a, title="indexed title").value
        m = tk.append_message(a, s.id, {"role": "user", "content": "indexed words"}).value
    eng = _sa_engine(db_url)
    try:
        with eng.begin() as conn:
            alembic.command.downgrade(migrate.alembic_config(conn), "0005")
        insp = sa.inspect(eng)
        assert not [t for t in insp.get_table_names() if t.startswith(search.PREFIX)]
        for table in ("messages", "tool_events", "sessions"):
            assert "search_vector" not in {c["name"] for c in insp.get_columns(table)}
        with eng.begin() as conn:
            # Written while the index is gone: found after the upgrade all the same.
            conn.execute(
                tables.sessions.update()
                .where(tables.sessions.c.id == s.id)
                .values(title="retitled while downgraded")
            )
    finally:
        eng.dispose()
    with Threadkeep.open(db_url) as tk, tk.engine.sa_engine.connect() as conn:
        assert migrate.database_revision(conn) == migrate.code_head()
        assert {h.id for h in tk.search(a, "indexed").items} == {m.id}
        assert {h.id for h in tk.search(a, "downgraded").items} == {s.id}
        assert tk.search(a, "title").items == []
        assert _diffs(conn) == []


def test_the_message_indexing_revision_downgrades_and_upgrades_again(tmp_path: Path) -> None:
    """SQLite: 0007 drops the per-row insert trigger (the store indexes new
    messages itself); down to 0006 brings the trigger back, so code of that
    revision keeps indexing; up again drops it, and the index holds every
    message exactly once either way."""
    url = f"sqlite:///{tmp_path / 'tk.db'}"

    def triggers() -> set[str]:
        with eng.connect() as conn:
            q = "SELECT name FROM sqlite_master WHERE type = 'trigger'"
            return {r[0] for r in conn.exec_driver_sql(q)}

    with Threadkeep.open(url) as tk:
        a = Actor(tk.create_user("ada").value.id)
        s = tk.create_session(a).value
        before = tk.append_message(a, s.id, {"role": "user", "content": "walnut before"}).value
    eng = _sa_engine(url)
    try:
        assert "search_messages_insert" not in triggers()
        with eng.begin() as conn:
            alembic.command.downgrade(migrate.alembic_config(conn), "0006")
        assert "search_messages_insert" in triggers()
        with eng.begin() as conn:  # as code of revision 0006 would write it
            conn.execute(
                tables.messages.insert().values(
                    id="m-at-0006", owner_id=a.user_id, session_id=s.id, seq=2, role="user",
                    content="walnut during", metadata={}, created_at=before.created_at,
                )
            )  # fmt: skip
            conn.execute(
                tables.sessions.update().where(tables.sessions.c.id == s.id).values(head_seq=2)
            )
    finally:
        eng.dispose()
    with Threadkeep.open(url) as tk:
        after = tk.append_message(a, s.id, {"role": "user", "content": "walnut after"}).value
        assert {h.id for h in tk.search(a, "walnut").items} == {before.id, "m-at-0006", after.id}
        with tk.engine.sa_engine.connect() as conn:
            assert migrate.database_revision(conn) == migrate.code_head()
            conn.exec_driver_sql(
                "INSERT INTO search_messages (search_messages, rank) VALUES ('integrity-check', 1)"
            )
    eng = _sa_engine(url)
    try:
        assert "search_messages_insert" not in triggers()
    finally:
        eng.dispose()


def test_a_new_database_has_the_checks_the_tables_describe(db_url: str, tmp_path: Path) -> None:
    """Migrations, not ``create_all``, make a store's schema; the CHECK
    constraints they leave are those of tables.py, name and text."""
    Threadkeep.open(db_url).close()
    checks = _checks(db_url)
    assert checks == _described_checks(_engine_of(db_url), tmp_path)
    # Revision 0002 had named it ck_messages_ck_messages_status; 0009 renames it.
    assert "ck_messages_status" in {name for name, _ in checks["messages"]}


def test_no_check_constraint_is_an_in_list() -> None:
    """SQLite builds a temporary b-tree for ``col IN ('a', 'b')`` in a CHECK
    each time it checks a row (about 9 µs per row on the append path), so the
    tables spell closed sets as chains of equalities (tables.one_of)."""
    for table in tables.metadata.sorted_tables:
        for c in table.constraints:
            if isinstance(c, sa.CheckConstraint):
                assert " IN (" not in str(c.sqltext).upper(), (table.name, c.name)


CHECKS_REVISION = "0009"


def _bad_role_is_refused(url: str) -> None:
    """The database itself refuses a role outside the set, and a known one passes."""
    eng = _sa_engine(url)
    try:
        for role, ok in (("wizard", False), ("tool", True)):
            with eng.connect() as conn:
                insert = tables.messages.insert().values(
                    id=f"m-{role}", owner_id="u1", session_id="s1", seq=9, role=role,
                    content="x", metadata={}, created_at=sa.func.current_timestamp(),
                )  # fmt: skip
                if ok:
                    conn.execute(insert)
                    conn.rollback()
                else:
                    with pytest.raises(sa.exc.IntegrityError, match="ck_messages_role"):
                        conn.execute(insert)
    finally:
        eng.dispose()


def test_the_checks_revision_downgrades_and_upgrades_again(db_url: str, tmp_path: Path) -> None:
    """0009 rewrites the IN-list checks as chains (on SQLite by editing the
    schema text in place, so rowids and the search index stay as they were);
    down to 0008 brings the lists back; both forms refuse the same values, and
    every row and search hit survives the round trip."""
    with Threadkeep.open(db_url) as tk:
        tk.create_user("ada", id="u1")
        me = Actor("u1")
        tk.create_session(me, id="s1", title="kept")
        tk.append_messages(me, "s1", [{"role": "user", "content": f"pebble {i}"} for i in range(5)])
        counts = row_counts(tk)
        before = {h.id for h in tk.search(me, "pebble").items}
    assert len(before) == 5
    eng = _sa_engine(db_url)
    try:
        with eng.begin() as conn:
            alembic.command.downgrade(migrate.alembic_config(conn), "0008")
    finally:
        eng.dispose()
    listed = _checks(db_url)
    assert listed != _described_checks(_engine_of(db_url), tmp_path)
    assert any(" IN " in t.upper() or "ANY" in t.upper() for _, t in listed["messages"])
    _bad_role_is_refused(db_url)
    with Threadkeep.open(db_url) as tk, tk.engine.sa_engine.connect() as conn:
        assert migrate.database_revision(conn) == migrate.code_head()
        assert row_counts(tk) == counts
        assert {h.id for h in tk.search(me, "pebble").items} == before
        assert [m.content for m in tk.get_history(me, "s1")] == [f"pebble {i}" for i in range(5)]
        if conn.dialect.name == "sqlite":
            assert conn.exec_driver_sql("PRAGMA integrity_check").scalar_one() == "ok"
    assert _checks(db_url) == _described_checks(_engine_of(db_url), tmp_path)
    _bad_role_is_refused(db_url)


def test_sqlite_that_refuses_schema_edits_keeps_its_list_checks(tmp_path: Path) -> None:
    """Where SQLite may not write its schema table (defensive mode; here an
    authorizer that denies it, the same refusal), revision 0009 leaves the
    IN-list checks, which are equivalent, and the store opens and works."""
    url = f"sqlite:///{tmp_path / 'tk.db'}"
    old = open_engine(url, migrate=False)
    try:
        migrate.upgrade(old.sa_engine, "0008")
    finally:
        old.close()

    def deny_schema_writes(action: int, arg1: str | None, *_: Any) -> int:
        if action == sqlite3.SQLITE_UPDATE and arg1 == "sqlite_master":
            return sqlite3.SQLITE_DENY
        return sqlite3.SQLITE_OK

    eng = _sa_engine(url)
    sa.event.listen(
        eng, "connect", lambda dbapi_conn, _: dbapi_conn.set_authorizer(deny_schema_writes)
    )
    try:
        # Only up to 0009: this authorizer also refuses the schema row that
        # SQLite's own CREATE TABLE updates, which defensive mode allows.
        assert migrate.upgrade(eng, "0009") == "0008"
        with eng.connect() as conn:
            assert migrate.database_revision(conn) == "0009"
    finally:
        eng.dispose()
    assert any(" IN (" in t for _, t in _checks(url)["messages"])
    with Threadkeep.open(url) as tk:  # the later revisions, as any open does
        me = Actor(tk.create_user("ada", id="u1").value.id)
        tk.create_session(me, id="s1")
        assert tk.append_message(me, "s1", {"role": "user", "content": "fine"}).value.seq == 1
    _bad_role_is_refused(url)


def test_the_tags_revision_downgrades_and_builds_its_index_again(db_url: str) -> None:
    """0011 fills session_tags from the tags sessions already hold; down to
    0010 drops it and its triggers (tags written there are not indexed),
    and up again fills it from the sessions once more."""
    with Threadkeep.open(db_url) as tk:
        me = Actor(tk.create_user("ada", id="u1").value.id)
        for i, tags in enumerate([["a"], ["a", "b"], [], ["b"]]):
            tk.create_session(me, id=f"s{i}", tags=tags)
        tk.delete_session(me, "s3")
    eng = _sa_engine(db_url)
    try:
        with eng.begin() as conn:
            alembic.command.downgrade(migrate.alembic_config(conn), "0010")
            assert "session_tags" not in sa.inspect(conn).get_table_names()
            # A write made by code of 0010's time, which knew no index.
            conn.execute(
                tables.sessions.update().where(tables.sessions.c.id == "s2").values(tags=["a", "c"])
            )
    finally:
        eng.dispose()
    with Threadkeep.open(db_url) as tk, tk.engine.sa_engine.connect() as conn:
        st = tables.session_tags.c
        held = set(conn.execute(sa.select(st.owner_id, st.tag, st.session_id)).all())
        assert held == {
            ("u1", "a", "s0"),
            ("u1", "a", "s1"),
            ("u1", "b", "s1"),
            ("u1", "a", "s2"),
            ("u1", "c", "s2"),
            ("u1", "b", "s3"),
        }
        assert [s.id for s in tk.list_sessions(me, tag="a").items] == ["s2", "s1", "s0"]
        assert [s.id for s in tk.list_sessions(me, tag="b", trashed=True).items] == ["s3"]
        tk.update_session(me, "s0", {"tags": ["c"]})  # and the triggers are back
        assert [s.id for s in tk.list_sessions(me, tag="c").items] == ["s2", "s0"]


def test_the_tags_revision_applies_again_over_a_restored_older_dump(db_url: str) -> None:
    """What restoring a PostgreSQL dump taken at 0010 leaves: sessions made
    again without their triggers, no session_tags, the revision at 0010,
    and the function of 0011 still there (pg_restore drops only what the
    dump holds). Opening the store migrates through 0011 again."""
    with Threadkeep.open(db_url) as tk:
        me = Actor(tk.create_user("ada", id="u1").value.id)
        tk.create_session(me, id="s1", tags=["kept"])
    eng = _sa_engine(db_url)
    try:
        with eng.begin() as conn:
            on = " ON sessions" if conn.dialect.name == "postgresql" else ""
            for event in ("insert", "update", "delete"):
                conn.exec_driver_sql(f"DROP TRIGGER session_tags_{event}{on}")
            conn.exec_driver_sql("DROP TABLE session_tags")
            # The later revisions' tables, which a dump at 0010 would not hold.
            if not on:
                for event in ("insert", "update", "delete"):
                    conn.exec_driver_sql(f"DROP TRIGGER search_titles_{event}")
                conn.exec_driver_sql("DROP TABLE search_titles")
            else:
                for event in ("insert", "update"):
                    conn.exec_driver_sql(f"DROP TRIGGER search_title_grams_{event}{on}")
                conn.exec_driver_sql("DROP TABLE search_title_grams")
            conn.exec_driver_sql("UPDATE alembic_version SET version_num = '0010'")
    finally:
        eng.dispose()
    with Threadkeep.open(db_url) as tk:
        assert [s.id for s in tk.list_sessions(me, tag="kept").items] == ["s1"]
        tk.update_session(me, "s1", {"tags": ["moved"]})
        assert [s.id for s in tk.list_sessions(me, tag="moved").items] == ["s1"]
        assert all(c.ok for c in tk.check_search_index())


def test_the_titles_revision_downgrades_and_builds_its_index_again(db_url: str) -> None:
    """0012 fills SQLite's search_titles from the titles sessions already
    hold, folded; down to 0011 drops it and its triggers (a title written
    there is not indexed), and up again, on a connection that never had the
    folding function, fills it from the sessions once more. On PostgreSQL
    0012 changes nothing, and 0013 does the same with search_title_grams:
    down drops it, up fills it again from the titles, the one written in
    between too."""
    with Threadkeep.open(db_url) as tk:
        me = Actor(tk.create_user("ada", id="u1").value.id)
        for i, title in enumerate(["Straße", "STRASSE plan", None, "other"]):
            tk.create_session(me, id=f"s{i}", title=title)
    eng = _sa_engine(db_url)
    try:
        with eng.begin() as conn:
            before = sa.inspect(conn).get_table_names()
            alembic.command.downgrade(migrate.alembic_config(conn), "0011")
            assert "search_titles" not in sa.inspect(conn).get_table_names()
            # A write made by code of 0011's time, which knew no index.
            conn.execute(
                tables.sessions.update().where(tables.sessions.c.id == "s3").values(title="strasse")
            )
            if conn.dialect.name == "postgresql":
                after = set(sa.inspect(conn).get_table_names())
                assert after == set(before) - {"search_title_grams"}
                functions = conn.exec_driver_sql(
                    "SELECT count(*) FROM pg_proc WHERE proname LIKE 'tk_title_%%grams%%'"
                ).scalar_one()
                assert functions == 0
            alembic.command.upgrade(migrate.alembic_config(conn), "head")
    finally:
        eng.dispose()
    with Threadkeep.open(db_url) as tk:
        if tk.dialect == "sqlite":
            with tk.engine.sa_engine.connect() as conn:
                held = conn.exec_driver_sql(
                    "SELECT s.id, t.folded FROM search_titles AS t "
                    "JOIN sessions AS s ON s.rowid = t.rowid ORDER BY s.id"
                ).all()
            assert held == [("s0", "strasse"), ("s1", "strasse plan"), ("s3", "strasse")]
            assert all(c.ok for c in tk.check_search_index())
            found = [s.id for s in tk.list_sessions(me, title_contains="STRASSE").items]
            assert sorted(found) == ["s0", "s1", "s3"]
        else:
            assert [(c.index, c.expected, c.ok) for c in tk.check_search_index()] == [
                ("search_title_grams", 3, True)
            ]
            with pytest.MonkeyPatch.context() as mp:  # every page through the index
                mp.setattr(session_q, "WALK_WINDOW", 0)
                found = [s.id for s in tk.list_sessions(me, title_contains="STRASSE").items]
            assert sorted(found) == ["s1", "s3"]  # lower() leaves ß alone
        tk.update_session(me, "s2", {"title": "a new plan"})  # and the triggers are back
        assert sorted(s.id for s in tk.list_sessions(me, title_contains="PLAN").items) == [
            "s1",
            "s2",
        ]


def test_the_short_title_grams_revision_downgrades_and_upgrades(db_url: str) -> None:
    """0014 (PostgreSQL) adds each title's bigrams and characters to its array;
    down to 0013 rebuilds every array with 0013's function (trigrams only)
    and drops the text's function, up again rebuilds them, and a text of one
    or two characters is then found through the index. On SQLite it changes
    nothing, both ways, and the same texts are found."""
    pg = db_url.startswith("postgresql")
    with Threadkeep.open(db_url) as tk:
        me = Actor(tk.create_user("ada").value.id)
        for i, title in enumerate(["Trip 9z", "Σίσυφος", None, "other"]):
            tk.create_session(me, id=f"s{i}", title=title)

    def short_elements(conn: sa.Connection) -> int:
        return int(
            conn.exec_driver_sql(
                "SELECT count(*) FROM search_title_grams, unnest(grams) AS g "
                "WHERE g LIKE 'b:%%' OR g LIKE 'u::%%'"
            ).scalar_one()
        )

    eng = _sa_engine(db_url)
    try:
        with eng.begin() as conn:
            before = sa.inspect(conn).get_table_names()
            if pg:
                assert short_elements(conn) > 0
            alembic.command.downgrade(migrate.alembic_config(conn), "0013")
            assert sa.inspect(conn).get_table_names() == before
            if pg:
                assert short_elements(conn) == 0
                functions = conn.exec_driver_sql(
                    "SELECT count(*) FROM pg_proc WHERE proname = 'tk_title_text_grams'"
                ).scalar_one()
                assert functions == 0
                # A title written by code of 0013's time.
                conn.execute(
                    tables.sessions.update().where(tables.sessions.c.id == "s2").values(title="Ab")
                )
            alembic.command.upgrade(migrate.alembic_config(conn), "head")
            if pg:
                assert short_elements(conn) > 0
    finally:
        eng.dispose()
    with Threadkeep.open(db_url) as tk, pytest.MonkeyPatch.context() as mp:
        assert all(c.ok for c in tk.check_search_index())
        mp.setattr(session_q, "WALK_WINDOW", 0)  # every page through the index
        titled_ab = ["s2"] if pg else []
        for text, want in [("9Z", ["s0"]), ("ς", ["s1"]), ("ab", titled_ab), ("o", ["s3"])]:
            found = sorted(s.id for s in tk.list_sessions(me, title_contains=text).items)
            assert found == want, text
