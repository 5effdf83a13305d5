"""The shape endpoint's protocol edges, in-process on both engines: refusals
(400 problem bodies that write nothing), the long-poll timeout, ``offset=now``,
CORS on 200 and 409, pruning and must-refetch, per-session shapes, rewinds."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "api"))

from api_helpers import Api, api_client, assert_problem, in_process
from sync_helpers import new_caller

from conftest import apply_changes, row_counts
from threadkeep import Threadkeep
from threadkeep.api import create_app
from threadkeep.config import SyncSettings, load_settings

SETTINGS = load_settings(
    sync=SyncSettings(long_poll_seconds=1.0, poll_seconds=0.2, cors_origins=["http://ui.example"])
)


@pytest.fixture
def api(tk: Threadkeep) -> Iterator[Api]:
    with api_client(tk, settings=SETTINGS) as client:
        yield client


def _get(api: Api, headers: dict[str, str], **params: Any) -> Any:
    return api.get("/v1/shape", params=params, headers=headers)


def _follow(
    api: Api, headers: dict[str, str], table: str, **extra: Any
) -> tuple[str, str, list[Any]]:
    r = _get(api, headers, table=table, offset="-1", **extra)
    assert r.status_code == 200, r.text
    return r.headers["electric-handle"], r.headers["electric-offset"], r.json()


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"table": "messages"}, "offset"),
        ({"table": "messages", "offset": "soon"}, "offset"),
        ({"table": "messages", "offset": "1_x"}, "offset"),
        ({"table": "messages", "offset": "-1", "live": "true"}, "live"),
        ({"table": "messages", "offset": "now", "live": "true"}, "live"),
        ({"table": "messages", "offset": "-1", "live": "maybe"}, "live"),
        ({"table": "messages", "offset": "0_0"}, "handle"),
        ({"table": "messages", "offset": "-1", "live_sse": "true"}, "live_sse"),
        ({"table": "messages", "offset": "-1", "log": "some"}, "log"),
        ({"table": "messages", "offset": "-1", "subset__limit": "5"}, "subset"),
        ({"table": "users", "offset": "-1"}, "table"),
        ({"table": "api_tokens", "offset": "-1"}, "table"),
        ({"table": "changes", "offset": "-1"}, "table"),
    ],
)
def test_malformed_requests_get_400_naming_the_parameter_and_write_nothing(
    tk: Threadkeep, api: Api, params: dict[str, str], field: str
) -> None:
    me = new_caller(tk)
    before = row_counts(tk)
    body = assert_problem(_get(api, me.headers, **params), 400)
    assert body["errors"][0]["loc"] == ["query", field]
    assert row_counts(tk) == before


def test_an_offset_beyond_the_head_is_out_of_bounds(tk: Threadkeep, api: Api) -> None:
    me = new_caller(tk)
    handle, offset, _ = _follow(api, me.headers, "sessions")
    far = f"{int(offset.split('_')[0]) + 1000}_0"
    body = assert_problem(_get(api, me.headers, table="sessions", offset=far, handle=handle), 400)
    assert "out of bounds" in body["detail"]


def test_out_of_bounds_live_is_400_at_once_and_a_stale_handle_there_is_409(
    tk: Threadkeep, api: Api
) -> None:
    """The bounds and the handle are checked on the poll's one read of the
    log: a live request beyond the head is not held, and a handle that can
    no longer be served answers 409 first, wherever its offset points."""
    me = new_caller(tk)
    handle, offset, _ = _follow(api, me.headers, "sessions")
    far = f"{int(offset.split('_')[0]) + 1000}_0"
    started = time.monotonic()
    r = _get(api, me.headers, table="sessions", offset=far, handle=handle, live="true")
    assert "out of bounds" in assert_problem(r, 400)["detail"]
    assert time.monotonic() - started < SETTINGS.sync.long_poll_seconds / 2
    stale = _get(api, me.headers, table="sessions", offset=far, handle="garbage-1")
    assert stale.status_code == 409 and stale.headers["electric-handle"] == handle


def test_a_caught_up_poll_reads_the_log_once(tk: Threadkeep) -> None:
    """Every connected client renews each of its shapes every long-poll
    period, so a caught-up poll is the most frequent request of a synced
    deployment: one read of the log (its state and the shape's changes
    together), not a separate read of the state first. Counted on the
    emulator's calls into the store (the hub's own reads are not its)."""

    class Counting:
        def __init__(self, inner: Threadkeep) -> None:
            self.inner, self.calls = inner, []

        def __getattr__(self, name: str) -> Any:
            attr = getattr(self.inner, name)
            if not callable(attr):
                return attr

            def call(*args: Any, **kwargs: Any) -> Any:
                self.calls.append(name)
                return attr(*args, **kwargs)

            return call

    app = create_app(tk, SETTINGS)
    with in_process(app) as api:
        try:
            me = new_caller(tk)
            handle, offset, _ = _follow(api, me.headers, "sessions")
            counting = Counting(tk)
            app.state.sync.emulator.tk = counting
            r = _get(api, me.headers, table="sessions", offset=offset, handle=handle)
            assert r.json()[-1]["headers"]["control"] == "up-to-date"
        finally:
            api.portal.call(app.state.sync.stop)
    assert counting.calls == ["shape_changes"]


def test_another_users_session_is_not_found_and_a_missing_token_is_401(
    tk: Threadkeep, api: Api
) -> None:
    me, other = new_caller(tk), new_caller(tk)
    theirs = tk.create_session(other.actor).value
    assert_problem(_get(api, me.headers, table="messages", offset="-1", session_id=theirs.id), 404)
    assert_problem(_get(api, {}, table="messages", offset="-1"), 401)


def test_a_live_request_with_nothing_new_answers_up_to_date_when_the_long_poll_ends(
    tk: Threadkeep, api: Api
) -> None:
    """§8.6: same offset, a cursor, no schema on a live answer."""
    me = new_caller(tk)
    handle, offset, _ = _follow(api, me.headers, "messages")
    t0 = time.monotonic()
    r = _get(
        api, me.headers, table="messages", offset=offset, handle=handle, live="true", cursor=""
    )
    assert 0.9 <= time.monotonic() - t0 < 5
    assert r.status_code == 200
    assert r.json() == [
        {"headers": {"control": "up-to-date", "global_last_seen_lsn": offset.split("_")[0]}}
    ]
    assert r.headers["electric-offset"] == offset and r.headers["electric-handle"] == handle
    assert int(r.headers["electric-cursor"]) > 0 and "electric-schema" not in r.headers
    again = _get(
        api,
        me.headers,
        table="messages",
        offset=offset,
        handle=handle,
        live="true",
        cursor=r.headers["electric-cursor"],
    )
    assert int(again.headers["electric-cursor"]) > int(r.headers["electric-cursor"])


def test_a_non_live_request_at_the_head_is_up_to_date_and_now_starts_at_the_head(
    tk: Threadkeep, api: Api
) -> None:
    """§8.18: never a non-live answer that neither advances nor says up-to-date."""
    me = new_caller(tk)
    tk.create_session(me.actor)
    handle, offset, _ = _follow(api, me.headers, "sessions")
    r = _get(api, me.headers, table="sessions", offset=offset, handle=handle)
    assert r.json()[-1]["headers"]["control"] == "up-to-date" and "electric-schema" in r.headers
    now = _get(api, me.headers, table="sessions", offset="now")
    assert now.headers["electric-offset"] == offset and now.headers["electric-handle"] == handle
    assert [m["headers"]["control"] for m in now.json()] == ["up-to-date"]


def test_cors_exposes_the_electric_headers_on_200_and_409(tk: Threadkeep, api: Api) -> None:
    """§8.17: a browser on another origin can read electric-handle, also on a 409."""
    me = new_caller(tk)
    origin = {"Origin": "http://ui.example"}
    r = _get(api, {**me.headers, **origin}, table="sessions", offset="-1")
    exposed = {h.strip() for h in r.headers["access-control-expose-headers"].split(",")}
    assert {
        "electric-handle",
        "electric-offset",
        "electric-schema",
        "electric-cursor",
        "electric-up-to-date",
    } <= exposed
    stale = _get(
        api, {**me.headers, **origin}, table="sessions", offset="0_0", handle="0123456789abcdef-1"
    )
    assert stale.status_code == 409
    assert stale.headers["access-control-allow-origin"] == "http://ui.example"
    assert "electric-handle" in stale.headers["access-control-expose-headers"]
    pre = api.request(
        "OPTIONS",
        "/v1/shape",
        headers={
            **origin,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization",
        },
    )
    assert (
        pre.status_code == 200
        and "authorization" in pre.headers["access-control-allow-headers"].lower()
    )


def test_pruning_sends_readers_behind_it_back_to_a_new_snapshot(tk: Threadkeep, api: Api) -> None:
    me = new_caller(tk)
    s = tk.create_session(me.actor).value
    handle, offset, _ = _follow(api, me.headers, "messages")
    tk.append_messages(me.actor, s.id, [{"role": "user", "content": "a"}])
    tk.sync_state()  # PostgreSQL numbers the log on reads: do it before counting
    before = row_counts(tk)
    dry = tk.prune_changes(timedelta(0), dry_run=True)
    assert dry.dry_run and dry.deleted > 0 and row_counts(tk) == before
    done = tk.prune_changes(timedelta(0))
    assert done.deleted == dry.deleted and done.pruned_offset == tk.sync_state().last_offset
    stale = _get(api, me.headers, table="messages", offset=offset, handle=handle)
    assert stale.status_code == 409 and stale.json() == [{"headers": {"control": "must-refetch"}}]
    new_handle = stale.headers["electric-handle"]
    assert new_handle != handle
    fresh, new_offset, rows = _follow(api, me.headers, "messages")
    assert fresh == new_handle and [m["value"]["content"] for m in rows if "key" in m] == ["a"]
    # A reader at the head after the prune is served with its handle.
    ok = _get(api, me.headers, table="messages", offset=new_offset, handle=fresh)
    assert ok.status_code == 200


def test_pruning_never_passes_a_live_reader(tk: Threadkeep) -> None:
    me = new_caller(tk)
    s = tk.create_session(me.actor).value
    tk.append_messages(me.actor, s.id, [{"role": "user", "content": "a"}])
    reader_at = tk.sync_state().last_offset
    tk.report_sync_readers("instance-1", reader_at - 1)
    tk.append_messages(me.actor, s.id, [{"role": "user", "content": "b"}])
    done = tk.prune_changes(timedelta(0))
    assert done.held_back_by_readers and done.pruned_offset == reader_at - 1
    assert tk.read_changes(me.actor, 0)[0].offset == reader_at
    tk.report_sync_readers("instance-1", None)
    assert tk.prune_changes(timedelta(0)).pruned_offset == tk.sync_state().last_offset


def test_per_session_shapes_see_a_rewind_as_a_move(tk: Threadkeep, api: Api) -> None:
    me = new_caller(tk)
    s = tk.create_session(me.actor).value
    tk.append_messages(me.actor, s.id, [{"role": "user", "content": f"m{i}"} for i in range(4)])
    handle, offset, snap = _follow(api, me.headers, "messages", session_id=s.id)
    state: dict[str, dict[str, Any]] = {}
    apply_changes(state, snap)
    branch = tk.rewind_session(me.actor, s.id, to_seq=2).value.branch
    r = _get(api, me.headers, table="messages", offset=offset, handle=handle, session_id=s.id)
    apply_changes(state, r.json())
    assert sorted(v["content"] for v in state.values()) == ["m0", "m1"]
    assert branch is not None
    _, _, moved = _follow(api, me.headers, "messages", session_id=branch.id)
    assert sorted(m["value"]["content"] for m in moved if "key" in m) == ["m2", "m3"]


def test_a_definition_hash_from_another_shape_gets_409(tk: Threadkeep, api: Api) -> None:
    me = new_caller(tk)
    handle, offset, _ = _follow(api, me.headers, "sessions")
    r = _get(api, me.headers, table="messages", offset=offset, handle=handle)
    assert r.status_code == 409 and r.headers["electric-handle"] != handle
