"""The rest of the session record: todos, misalignments, hook decisions, repo
bindings, snapshots, checkpoints, summaries, recordings, file changes and
analytics events.

The kinds behave alike, so one table (``KINDS``) says how to create, update,
read and delete each, and the same tests run over every kind: the full life
cycle with its change-log rows, scoping, bad input that writes nothing. The
cases share one database per engine (each makes its own user and session);
what is particular to a kind (the todo list, the one active repo binding,
one summary per session) has its own tests below.
"""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from contract_helpers import missing_id, writes_nothing

from conftest import row_counts, shared_store_fixture
from record_kinds import BAD, IDS, KINDS, NUL, Ctx, Kind, make_ctx
from threadkeep import (
    Actor,
    AlreadyExists,
    InvalidInput,
    InvalidState,
    InvalidText,
    MessageNotFound,
    NotFound,
    SessionNotFound,
    Threadkeep,
    ThreadkeepError,
    TodoStatus,
    ToolEventNotFound,
)
from threadkeep.config import Limits
from threadkeep.store import tables

store = shared_store_fixture("record")


@pytest.fixture
def ctx(store: Threadkeep) -> Ctx:
    return make_ctx(store)


SMALL = Limits(max_message_bytes=1_000, max_json_bytes=1_000)


def _small(c: Ctx) -> Ctx:
    """The same database and user, with small size limits."""
    return Ctx(Threadkeep(c.tk.engine, SMALL), c.actor, c.sid, c.message_id, c.tool_event_id)


def _logged(tk: Threadkeep, actor: Actor, txid: int) -> list[tuple[str, str, str]]:
    return [(ch.table, ch.key, ch.op.value) for ch in tk.read_changes(actor, 0) if ch.txid == txid]


def test_every_record_table_is_synced_and_purged() -> None:
    record = {t.name for t in tables.SESSION_RECORD_TABLES}
    assert record == {k.table for k in KINDS} | {"summaries"}
    assert record <= set(tables.SYNCED_TABLES)


@pytest.mark.parametrize("k", KINDS, ids=IDS)
def test_create_read_update_delete_each_logged_with_its_txid(ctx: Ctx, k: Kind) -> None:
    tk, me = ctx.tk, ctx.actor
    done = k.create(ctx, {"id": f"{k.table}-{missing_id()}"})
    row = done.value
    assert row.id.startswith(k.table) and row.owner_id == me.user_id and row.session_id == ctx.sid
    assert k.get(ctx, row.id) == row
    # Rows read back skip validation (model/trusted.py): they must still be
    # what validation would build (enums, nested evidence).
    assert type(row).model_validate(row.model_dump()) == row == k.list(ctx)[0]
    assert k.list(ctx) == [row]
    assert _logged(tk, me, done.txid) == [(k.table, row.id, "insert")]
    insert = next(ch for ch in tk.read_changes(me, 0) if ch.txid == done.txid)
    assert insert.session_id == ctx.sid and insert.row is not None and insert.row["id"] == row.id

    changed = k.patch(ctx, row.id, k.update)
    for name, value in k.update.items():
        got = getattr(changed.value, name)
        assert (got.value if hasattr(got, "value") else got) == value, name
    assert changed.value.updated_at >= row.updated_at
    assert k.get(ctx, row.id) == changed.value
    assert _logged(tk, me, changed.txid) == [(k.table, row.id, "update")]

    gone = k.delete(ctx, row.id)
    assert _logged(tk, me, gone.txid) == [(k.table, row.id, "delete")]
    assert k.list(ctx) == []
    with pytest.raises(NotFound):
        k.get(ctx, row.id)
    with writes_nothing(tk), pytest.raises(NotFound):
        k.delete(ctx, row.id)
    with writes_nothing(tk), pytest.raises(NotFound):
        k.patch(ctx, row.id, k.update)


@pytest.mark.parametrize("k", KINDS, ids=IDS)
def test_another_user_can_neither_read_nor_write_them(store: Threadkeep, k: Kind) -> None:
    owner = make_ctx(store)
    row = k.create(owner, {}).value
    intruder = make_ctx(store)
    # The intruder names the owner's session, or its own session with the owner's row.
    theirs = Ctx(store, intruder.actor, owner.sid, owner.message_id, owner.tool_event_id)
    for c in (theirs, intruder):
        with writes_nothing(store):
            with pytest.raises(NotFound):
                k.get(c, row.id)
            with pytest.raises(NotFound):
                k.patch(c, row.id, k.update)
            with pytest.raises(NotFound):
                k.delete(c, row.id)
    with writes_nothing(store):
        with pytest.raises(SessionNotFound):
            k.list(theirs)
        with pytest.raises(SessionNotFound):
            k.create(theirs, {})
    assert k.list(intruder) == []
    assert k.get(owner, row.id) == row


@pytest.mark.parametrize(
    ("k", "case", "extra", "error"), BAD, ids=[f"{k.table}-{name}" for k, name, _, _ in BAD]
)
def test_bad_input_raises_a_typed_error_and_writes_nothing(
    ctx: Ctx, k: Kind, case: str, extra: dict[str, Any], error: type[ThreadkeepError]
) -> None:
    before = row_counts(ctx.tk)
    with pytest.raises(error):
        k.create(_small(ctx), extra)
    assert row_counts(ctx.tk) == before


@pytest.mark.parametrize("k", KINDS, ids=IDS)
def test_a_dangling_or_foreign_reference_and_a_taken_id_write_nothing(
    store: Threadkeep, k: Kind
) -> None:
    """References to another session's (or user's) rows are dangling too."""
    mine = make_ctx(store)
    other = make_ctx(store)
    taken = k.create(other, {}).value.id
    borrowed = Ctx(store, mine.actor, mine.sid, other.message_id, other.tool_event_id)
    fields = k.fields(borrowed)
    if "message_id" in fields or "tool_event_id" in fields or "evidence" in fields:
        with writes_nothing(store), pytest.raises((MessageNotFound, ToolEventNotFound)):
            k.create(borrowed, {})
    with writes_nothing(store), pytest.raises(AlreadyExists):
        k.create(mine, {"id": taken})


@pytest.mark.parametrize("k", KINDS, ids=IDS)
def test_writes_to_a_session_in_the_trash_are_refused(store: Threadkeep, k: Kind) -> None:
    c = make_ctx(store)
    row = k.create(c, {}).value
    store.delete_session(c.actor, c.sid)
    with writes_nothing(store):
        with pytest.raises(InvalidState):
            k.create(c, {})
        with pytest.raises(InvalidState):
            k.patch(c, row.id, k.update)
        with pytest.raises(InvalidState):
            k.delete(c, row.id)
    assert k.get(c, row.id) == row  # still readable, restorable with the session


# --- todos ---------------------------------------------------------------------------


def test_replacing_the_todo_list_logs_inserts_updates_and_deletes(ctx: Ctx) -> None:
    tk, me, sid = ctx.tk, ctx.actor, ctx.sid
    first = tk.replace_todos(
        me,
        sid,
        [
            {"id": "t-a", "content": "plan"},
            {"id": "t-b", "content": "build", "status": "in_progress", "active_form": "Building"},
            {"id": "t-c", "content": "ship"},
        ],
    )
    assert [(t.id, t.position, t.status) for t in first.value] == [
        ("t-a", 0, TodoStatus.PENDING),
        ("t-b", 1, TodoStatus.IN_PROGRESS),
        ("t-c", 2, TodoStatus.PENDING),
    ]
    second = tk.replace_todos(
        me,
        sid,
        [
            {"id": "t-b", "content": "build", "status": "completed", "active_form": "Building"},
            {"id": "t-a", "content": "plan"},  # moved: position 0 -> 1
            {"content": "celebrate"},
        ],
    )
    new_id = second.value[2].id
    assert [(t.id, t.position, t.status.value) for t in second.value] == [
        ("t-b", 0, "completed"),
        ("t-a", 1, "pending"),
        (new_id, 2, "pending"),
    ]
    assert tk.list_todos(me, sid) == second.value
    assert sorted(_logged(tk, me, second.txid)) == sorted(
        [
            ("todos", "t-c", "delete"),
            ("todos", "t-b", "update"),
            ("todos", "t-a", "update"),
            ("todos", new_id, "insert"),
        ]
    )
    # The same list again changes nothing, and logs nothing.
    same = [{"id": t.id, "content": t.content, "status": t.status, "active_form": t.active_form}
            for t in second.value]  # fmt: skip
    again = tk.replace_todos(me, sid, same)
    assert again.value == second.value
    # ... but its txid shows up in the change stream, on the session's key.
    assert _logged(tk, me, again.txid) == [("sessions", sid, "update")]
    cleared = tk.replace_todos(me, sid, [])
    assert cleared.value == [] and tk.list_todos(me, sid) == []
    assert len(_logged(tk, me, cleared.txid)) == 3


def test_a_bad_item_anywhere_in_the_list_leaves_the_whole_list_as_it_was(ctx: Ctx) -> None:
    tk, me, sid = ctx.tk, ctx.actor, ctx.sid
    kept = tk.replace_todos(me, sid, [{"content": "a"}, {"content": "b"}]).value
    bad_lists = {
        "enum": [{"content": "x"}, {"content": "y", "status": "nearly"}],
        "nul": [{"content": "x"}, {"content": NUL}],
        "duplicate_id": [{"id": "d", "content": "x"}, {"id": "d", "content": "y"}],
        "not_a_list": {"content": "x"},
    }
    for name, items in bad_lists.items():
        with writes_nothing(tk), pytest.raises(InvalidInput):
            tk.replace_todos(me, sid, items)  # type: ignore[arg-type]
        assert tk.list_todos(me, sid) == kept, name


def test_single_todo_updates_keep_the_order_and_add_appends(ctx: Ctx) -> None:
    tk, me, sid = ctx.tk, ctx.actor, ctx.sid
    a, b = tk.replace_todos(me, sid, [{"content": "a"}, {"content": "b"}]).value
    started = tk.update_todo(me, sid, b.id, {"status": "in_progress", "active_form": "Doing b"})
    assert (started.value.position, started.value.status) == (1, TodoStatus.IN_PROGRESS)
    c = tk.add_todo(me, sid, {"content": "c"}).value
    assert c.position == 2
    tk.delete_todo(me, sid, a.id)
    assert [t.content for t in tk.list_todos(me, sid)] == ["b", "c"]
    with writes_nothing(tk), pytest.raises(InvalidInput):
        tk.update_todo(me, sid, b.id, {"content": None})
    with writes_nothing(tk), pytest.raises(InvalidInput):
        tk.update_todo(me, sid, b.id, {"position": 0})


# --- misalignments -----------------------------------------------------------------


def test_a_misalignment_is_resolved_and_reopened(ctx: Ctx) -> None:
    tk, me, sid = ctx.tk, ctx.actor, ctx.sid
    m = tk.record_misalignment(me, sid, {"kind": "k", "description": "d"}).value
    assert m.resolved_at is None and m.evidence == []
    resolved = tk.resolve_misalignment(me, sid, m.id, "asked the user").value
    assert resolved.resolution == "asked the user" and resolved.resolved_at is not None
    assert tk.list_misalignments(me, sid, unresolved=True) == []
    reopened = tk.update_misalignment(me, sid, m.id, {"resolved_at": None}).value
    assert reopened.resolution is None and reopened.resolved_at is None
    assert tk.list_misalignments(me, sid, unresolved=True) == [reopened]


# --- repo bindings -------------------------------------------------------------------


def test_binding_a_repo_ends_the_active_binding_and_keeps_the_history(ctx: Ctx) -> None:
    tk, me, sid = ctx.tk, ctx.actor, ctx.sid
    assert tk.get_active_repo_binding(me, sid) is None
    first = tk.bind_repo(me, sid, {"path": "/a", "branch": "main"}).value
    second = tk.bind_repo(me, sid, {"remote_url": "https://git.example/b.git"})
    history = tk.list_repo_bindings(me, sid)
    assert [b.id for b in history] == [first.id, second.value.id]
    assert history[0].unbound_at == second.value.bound_at and not history[0].active
    assert tk.get_active_repo_binding(me, sid) == second.value
    assert sorted(op for _, _, op in _logged(tk, me, second.txid)) == ["insert", "update"]
    ended = tk.unbind_repo(me, sid).value
    assert ended is not None and ended.id == second.value.id and ended.unbound_at is not None
    assert tk.get_active_repo_binding(me, sid) is None
    nothing = tk.unbind_repo(me, sid)
    assert nothing.value is None
    assert _logged(tk, me, nothing.txid) == [("sessions", sid, "update")]
    assert len(tk.list_repo_bindings(me, sid)) == 2


def _raw_insert(tk: Threadkeep, table: sa.Table, **values: Any) -> None:
    with tk.engine.sa_engine.begin() as conn:
        conn.execute(table.insert().values(**values))


def test_the_database_itself_refuses_a_second_active_binding_and_summary(ctx: Ctx) -> None:
    """Bypassing the library: the constraints are in the schema."""
    tk, me, sid = ctx.tk, ctx.actor, ctx.sid
    active = tk.bind_repo(me, sid, {"path": "/a"}).value
    tk.set_summary(me, sid, {"summary": "done"})
    now = active.bound_at
    common = {"owner_id": me.user_id, "session_id": sid, "created_at": now, "updated_at": now}
    before = row_counts(tk)
    with pytest.raises(sa.exc.IntegrityError):
        _raw_insert(tk, tables.repo_bindings, id=missing_id(), path="/b", bound_at=now, **common)
    with pytest.raises(sa.exc.IntegrityError):
        _raw_insert(
            tk,
            tables.summaries,
            id=missing_id(),
            summary="again",
            key_decisions=[],
            artifacts=[],
            final_message_count=0,
            **common,
        )
    with pytest.raises(sa.exc.IntegrityError):  # enums are CHECK constraints too
        _raw_insert(
            tk,
            tables.todos,
            id=missing_id(),
            position=0,
            content="x",
            status="someday",
            **common,
        )
    assert row_counts(tk) == before
    # An ended binding does not count: history rows are unconstrained.
    _raw_insert(
        tk, tables.repo_bindings, id=missing_id(), path="/old", bound_at=now, unbound_at=now,
        **common,
    )  # fmt: skip
    assert tk.get_active_repo_binding(me, sid) == active


# --- summaries -------------------------------------------------------------------------


def test_one_summary_per_session_set_again_replaces_it(ctx: Ctx) -> None:
    tk, me, sid = ctx.tk, ctx.actor, ctx.sid
    with pytest.raises(NotFound):
        tk.get_summary(me, sid)
    first = tk.set_summary(
        me, sid, {"title": "T", "summary": "did it", "key_decisions": ["use X"], "artifacts": []}
    )
    assert first.value.final_message_count == 1  # the session's message count
    second = tk.set_summary(me, sid, {"summary": "did more", "final_message_count": 7}).value
    assert second.id == first.value.id and second.title is None
    assert tk.get_summary(me, sid) == second
    assert _logged(tk, me, first.txid) == [("summaries", second.id, "insert")]
    with writes_nothing(tk), pytest.raises(InvalidText):
        tk.set_summary(me, sid, {"summary": NUL})
    eve = Actor(tk.create_user("eve").value.id)
    with pytest.raises(SessionNotFound):
        tk.get_summary(eve, sid)
    tk.delete_summary(me, sid)
    with writes_nothing(tk), pytest.raises(NotFound):
        tk.delete_summary(me, sid)


# --- across the record -----------------------------------------------------------------


def _fill(c: Ctx) -> dict[str, Any]:
    for k in KINDS:
        k.create(c, {})
    c.tk.set_summary(c.actor, c.sid, {"summary": "s", "artifacts": [{"path": "a.py"}]})
    return _read_all(c)


def _read_all(c: Ctx) -> dict[str, Any]:
    out = {k.table: k.list(c) for k in KINDS}
    out["summary"] = c.tk.get_summary(c.actor, c.sid)
    return out


def test_everything_survives_close_and_reopen(db_url: str) -> None:
    tk = Threadkeep.open(db_url)
    c = make_ctx(tk)
    written = _fill(c)
    assert all(written.values())
    tk.close()
    with Threadkeep.open(db_url) as again:
        assert _read_all(Ctx(again, c.actor, c.sid, c.message_id, c.tool_event_id)) == written


def test_purging_a_session_deletes_its_record_and_tells_sync(store: Threadkeep) -> None:
    c = make_ctx(store)
    _fill(c)
    done = store.purge_session(c.actor, c.sid)
    dropped = {t for t, _, op in _logged(store, c.actor, done.txid) if op == "delete"}
    assert {t.name for t in tables.SESSION_RECORD_TABLES} <= dropped
    with store.engine.sa_engine.connect() as conn:
        for t in tables.SESSION_RECORD_TABLES:
            n = conn.execute(
                sa.select(sa.func.count()).select_from(t).where(t.c.session_id == c.sid)
            ).scalar_one()
            assert n == 0, t.name


def test_filters_on_the_lists(ctx: Ctx) -> None:
    tk, me, sid = ctx.tk, ctx.actor, ctx.sid
    tk.create_snapshot(me, sid, {"kind": "auto"})
    starred = tk.create_snapshot(me, sid, {"kind": "manual", "starred": True}).value
    assert tk.list_snapshots(me, sid, starred=True) == [starred]
    assert [s.kind.value for s in tk.list_snapshots(me, sid, kind="auto")] == ["auto"]
    assert len(tk.list_snapshots(me, sid, limit=1)) == 1
    tk.record_hook_decision(me, sid, {"rule_id": "r", "event": "stop", "decision": "warn"})
    assert tk.list_hook_decisions(me, sid, decision="block") == []
    assert len(tk.list_hook_decisions(me, sid, decision="warn")) == 1
    tk.record_file_change(me, sid, {"path": "a.py"})
    tk.record_file_change(me, sid, {"path": "b.py", "tool_event_id": ctx.tool_event_id})
    assert [f.path for f in tk.list_file_changes(me, sid, path="b.py")] == ["b.py"]
    by_event = tk.list_file_changes(me, sid, tool_event_id=ctx.tool_event_id)
    assert [f.path for f in by_event] == ["b.py"]
    with writes_nothing(tk), pytest.raises(InvalidInput):
        tk.record_analytics_events(
            me, sid, [{"event_type": "a", "id": "twice"}, {"event_type": "b", "id": "twice"}]
        )
    tk.record_analytics_events(me, sid, [{"event_type": "a"}, {"event_type": "b"}])
    assert [e.event_type for e in tk.list_analytics_events(me, sid, event_type="b")] == ["b"]
    with writes_nothing(tk):
        for call in (
            lambda: tk.list_snapshots(me, sid, kind="weekly"),
            lambda: tk.list_hook_decisions(me, sid, decision="perhaps"),
            lambda: tk.list_file_changes(me, sid, path=NUL),
            lambda: tk.record_analytics_events(me, sid, []),
        ):
            with pytest.raises(InvalidInput):
                call()


def test_concurrent_binds_leave_one_active_binding_and_the_whole_history(ctx: Ctx) -> None:
    import threading

    tk, me, sid = ctx.tk, ctx.actor, ctx.sid
    errors: list[BaseException] = []

    def bind(i: int) -> None:
        try:
            tk.bind_repo(me, sid, {"path": f"/repo/{i}"})
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=bind, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    history = tk.list_repo_bindings(me, sid)
    assert len(history) == 8
    assert [b for b in history if b.active] == [tk.get_active_repo_binding(me, sid)]


def test_a_branch_whose_messages_the_parents_record_names_can_still_be_purged(ctx: Ctx) -> None:
    """Rewinding moves the messages after the rewind point (and their tool
    events) to a new branch; the parent's checkpoints, hook decisions and file
    changes may name them. Purging that branch must not be blocked by them."""
    tk, me, sid = ctx.tk, ctx.actor, ctx.sid
    later = tk.append_message(me, sid, {"role": "assistant", "content": "later"}).value
    ev = tk.start_tool_event(me, sid, {"name": "edit", "message_id": later.id}).value
    tk.create_checkpoint(me, sid, {"message_id": later.id})
    tk.record_hook_decision(
        me, sid, {"rule_id": "r", "event": "tool_call", "decision": "allow", "tool_event_id": ev.id}
    )
    tk.record_file_change(me, sid, {"path": "a.py", "tool_event_id": ev.id})
    branch = tk.rewind_session(me, sid, to_seq=1).value.branch
    assert branch is not None
    tk.purge_session(me, branch.id)
    assert [c.message_id for c in tk.list_checkpoints(me, sid)] == [later.id]
    assert len(tk.list_file_changes(me, sid)) == 1
