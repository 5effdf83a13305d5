"""POST /v1/sessions/{id}/messages/stream: NDJSON in, server-sent events out.

In-process tests (httpx over ASGI) cover the protocol; a real uvicorn server on
a socket covers what only a network can do: a client that vanishes mid-stream.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from api_helpers import (
    Api,
    Caller,
    api_client_fixture,
    api_store_fixture,
    assert_problem,
    new_caller,
    raw_post,
    writes_nothing,
)

from threadkeep import InvalidState, Message, MessageStatus, Threadkeep
from threadkeep.api import ApiSettings, create_app

store = api_store_fixture()
api = api_client_fixture()
NDJSON = {"content-type": "application/x-ndjson"}


@pytest.fixture
def me(store: Threadkeep) -> Caller:
    return new_caller(store)


def ndjson(*items: Any) -> bytes:
    return b"".join(json.dumps(i).encode() + b"\n" for i in items)


def events(text: str) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        out.append((fields["event"], json.loads(fields["data"])))
    return out


def session(api: Api, me: Caller) -> str:
    r = api.post("/v1/sessions", json={}, headers=me.headers)
    assert r.status_code == 201, r.text
    sid: str = r.json()["id"]
    return sid


def stream(api: Api, me: Caller, sid: str, body: bytes) -> httpx.Response:
    return api.post(
        f"/v1/sessions/{sid}/messages/stream", content=body, headers={**me.headers, **NDJSON}
    )


def test_a_full_stream_stores_a_complete_message(api: Api, me: Caller) -> None:
    sid = session(api, me)
    body = ndjson(
        {"role": "assistant", "model": "gpt-x"},
        {"delta": "Hel"},
        {"delta": "lo, "},
        {"delta": "wörld 👋"},
        {"done": True, "input_tokens": 3, "output_tokens": 4},
    )
    r = stream(api, me, sid, body)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/event-stream")
    got = events(r.text)
    names = [e for e, _ in got]
    assert names[0] == "started" and names[-1] == "finished"
    assert set(names[1:-1]) == {"appended"}
    started, finished = got[0][1], got[-1][1]
    assert started["seq"] == 1 and isinstance(started["txid"], int)
    message = finished["message"]
    assert message["id"] == started["id"]
    assert message["status"] == "complete" and message["content"] == "Hello, wörld 👋"
    assert finished["txid"] > started["txid"]
    stored = api.get(f"/v1/messages/{started['id']}", headers=me.headers).json()
    assert stored["status"] == "complete" and stored["content"] == "Hello, wörld 👋"
    assert (stored["model"], stored["input_tokens"], stored["output_tokens"]) == ("gpt-x", 3, 4)
    assert api.get(f"/v1/sessions/{sid}", headers=me.headers).json()["output_tokens"] == 4


def test_deltas_are_written_in_batches_not_one_commit_per_token(api: Api, me: Caller) -> None:
    sid = session(api, me)
    tokens = [{"delta": f"t{i} "} for i in range(2000)]
    r = stream(api, me, sid, ndjson({"role": "assistant"}, *tokens, {"done": True}))
    got = events(r.text)
    appended = [d for e, d in got if e == "appended"]
    assert 1 < len(appended) < 20  # 4 KiB batches, not 2000 writes
    assert [d["length"] for d in appended] == sorted(d["length"] for d in appended)
    text = "".join(t["delta"] for t in tokens)
    assert got[-1][1]["message"]["content"] == text


def test_done_with_content_replaces_the_streamed_text(api: Api, me: Caller) -> None:
    sid = session(api, me)
    body = ndjson({"role": "assistant"}, {"delta": "draft"}, {"done": True, "content": "final"})
    got = events(stream(api, me, sid, body).text)
    assert got[-1][1]["message"]["content"] == "final"


def test_a_body_that_ends_without_done_leaves_an_incomplete_message(api: Api, me: Caller) -> None:
    sid = session(api, me)
    r = stream(api, me, sid, ndjson({"role": "assistant"}, {"delta": "half a "}, {"delta": "th"}))
    got = events(r.text)
    assert [e for e, _ in got] == ["started", "appended", "finished"]
    assert got[-1][1]["message"]["status"] == "incomplete"
    mid = got[0][1]["id"]
    stored = api.get(f"/v1/messages/{mid}", headers=me.headers).json()
    assert (stored["status"], stored["content"]) == ("incomplete", "half a th")


@pytest.mark.parametrize(
    "bad",
    [
        b'{"delta": "a\\u0000b"}\n',  # a NUL no engine stores
        b'{"delta": "\\ud800"}\n',  # a lone surrogate
        b'{"delta": 3}\n',
        b'{"what": "ever"}\n',
        b"[1, 2]\n",
        b"{not json\n",
        b'{"done": true, "content": "\\u0000"}\n',
    ],
)
def test_a_bad_line_mid_stream_keeps_the_good_text_and_ends_incomplete(
    api: Api, me: Caller, bad: bytes
) -> None:
    sid = session(api, me)
    body = ndjson({"role": "assistant"}, {"delta": "good"}) + bad + ndjson({"delta": "never"})
    got = events(stream(api, me, sid, body).text)
    names = [e for e, _ in got]
    assert names == ["started", "appended", "error", "finished"], got
    error = got[2][1]
    assert error["status"] in (400, 422) and error["type"].startswith("urn:threadkeep:problem:")
    final = got[-1][1]["message"]
    assert (final["status"], final["content"]) == ("incomplete", "good")


def test_text_over_the_size_limit_ends_the_stream_incomplete(
    store: Threadkeep, api: Api, me: Caller
) -> None:
    sid = session(api, me)
    old = store.limits
    store.limits = old.model_copy(update={"max_message_bytes": 5000})
    try:
        body = ndjson({"role": "assistant"}, {"delta": "a" * 4096}, {"delta": "b" * 4096})
        got = events(stream(api, me, sid, body).text)
    finally:
        store.limits = old
    assert [e for e, _ in got] == ["started", "appended", "error", "finished"]
    assert got[2][1]["status"] == 413
    assert got[-1][1]["message"]["content"] == "a" * 4096


def test_problems_with_the_first_line_answer_before_anything_is_written(
    store: Threadkeep, api: Api, me: Caller
) -> None:
    sid = session(api, me)
    other = new_caller(store)
    foreign = session(api, other)
    reader = new_caller(store, scopes=("read",))
    url = f"/v1/sessions/{sid}/messages/stream"
    msg = ndjson({"role": "assistant"}, {"delta": "x"})
    with writes_nothing(store):
        assert_problem(stream(api, me, "missing-session", msg), 404)
        assert_problem(stream(api, me, foreign, msg), 404)
        assert_problem(stream(api, me, sid, ndjson({"delta": "x"})), 422)
        assert_problem(stream(api, me, sid, ndjson({"role": "robot"})), 422)
        assert_problem(stream(api, me, sid, ndjson({"role": "assistant", "content": "\x00"})), 422)
        assert_problem(stream(api, me, sid, ndjson(["role"])), 422)
        assert_problem(stream(api, me, sid, b"{nope\n"), 400)
        assert_problem(stream(api, me, sid, b""), 422)
        r = api.post(url, content=msg, headers={**me.headers, "content-type": "application/json"})
        assert_problem(r, 415)
        assert_problem(api.post(url, content=msg, headers=NDJSON), 401)
        assert_problem(api.post(url, content=msg, headers={**reader.headers, **NDJSON}), 403)


def test_an_oversize_line_is_refused_first_or_mid_stream(api: Api, me: Caller) -> None:
    sid = session(api, me)
    huge = "x" * (256 * 1024)  # the app's max_body_bytes, per line here
    store_before = api.get(f"/v1/sessions/{sid}", headers=me.headers).json()["head_seq"]
    first = stream(api, me, sid, ndjson({"role": "assistant", "content": huge}))
    assert_problem(first, 413)
    assert api.get(f"/v1/sessions/{sid}", headers=me.headers).json()["head_seq"] == store_before
    got = events(stream(api, me, sid, ndjson({"role": "assistant"}, {"delta": huge})).text)
    assert [e for e, _ in got] == ["started", "error", "finished"]
    assert got[1][1]["status"] == 413
    assert got[-1][1]["message"]["status"] == "incomplete"


def test_a_trashed_session_refuses_a_stream(api: Api, me: Caller) -> None:
    sid = session(api, me)
    assert api.delete(f"/v1/sessions/{sid}", headers=me.headers).status_code in (200, 204)
    assert_problem(stream(api, me, sid, ndjson({"role": "assistant"})), 409)


# --- finishing a stream whose writer is gone ---------------------------------------


def orphan(store: Threadkeep, me: Caller, sid: str) -> str:
    """A message left streaming, as a writer that died mid-reply leaves it."""
    mid = store.start_message(me.actor, sid, {"role": "assistant", "content": "half a "}).value.id
    store.extend_message(me.actor, mid, "reply")
    return mid


def finish(api: Api, caller: Caller, mid: str, body: Any) -> httpx.Response:
    return api.post(f"/v1/messages/{mid}/finish", json=body, headers=caller.headers)


def test_an_app_finishes_a_stream_left_open_keeping_its_text(
    store: Threadkeep, api: Api, me: Caller
) -> None:
    sid = session(api, me)
    mid = orphan(store, me, sid)
    start = store.last_offset()

    r = finish(api, me, mid, {"status": "incomplete"})

    assert r.status_code == 200, r.text
    done = r.json()
    txid = done.pop("txid")
    assert (done["id"], done["status"], done["content"]) == (mid, "incomplete", "half a reply")
    assert api.get(f"/v1/messages/{mid}", headers=me.headers).json() == done
    logged = [c for c in store.read_changes(me.actor, start) if c.key == mid]
    assert [(c.op, c.txid, c.row["status"]) for c in logged] == [  # type: ignore[index]
        ("update", txid, "incomplete")
    ]
    assert {h.id for h in store.search(me.actor, "reply", kinds=["messages"]).items} == {mid}
    with pytest.raises(InvalidState):  # the writer, back after all, is told
        store.extend_message(me.actor, mid, " more")
    with writes_nothing(store):  # and so is a second finish: the first one stands
        assert_problem(finish(api, me, mid, {"status": "complete"}), 409)
    assert store.get_message(me.actor, mid).status is MessageStatus.INCOMPLETE


def test_a_finish_sets_the_fields_it_gives_as_the_done_line_does(
    store: Threadkeep, api: Api, me: Caller
) -> None:
    sid = session(api, me)
    mid = orphan(store, me, sid)
    before = api.get(f"/v1/sessions/{sid}", headers=me.headers).json()
    body = {
        "content": "the exact reply",
        "input_tokens": 3,
        "output_tokens": 5,
        "model": "m-1",
        "metadata": {"stop": "length"},
    }

    done = finish(api, me, mid, body).json()

    assert done["status"] == "complete"  # the default, as for the done line
    assert {k: done[k] for k in body} == body
    after = api.get(f"/v1/sessions/{sid}", headers=me.headers).json()
    assert after["input_tokens"] - before["input_tokens"] == 3
    assert after["output_tokens"] - before["output_tokens"] == 5


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"status": "streaming"}, 422),
        ({"status": "done"}, 422),
        ({"content": "a\u0000b"}, 422),
        (b'{"content": "\\ud800"}', 422),  # a lone surrogate, escaped as JSON sends it
        ({"content": "x" * 5001}, 413),  # over the limit the test sets
        ({"input_tokens": -1}, 422),
        ({"output_tokens": 2**63}, 422),
        ({"model": "m" * 201}, 422),
        ({"metadata": ["not", "an", "object"]}, 422),
        ({"metadata": {"k": "\u0000"}}, 422),
        ({"surprise": True}, 422),
        (b"{nope", 400),
        (b"[]", 422),
    ],
)
def test_a_bad_finish_is_refused_and_the_stream_stays_open_as_it_was(
    store: Threadkeep, api: Api, me: Caller, body: Any, status: int
) -> None:
    sid = session(api, me)
    mid = orphan(store, me, sid)
    old = store.limits
    store.limits = old.model_copy(update={"max_message_bytes": 5000})
    try:
        with writes_nothing(store):
            if isinstance(body, bytes):
                r = raw_post(api, f"/v1/messages/{mid}/finish", body, me.headers)
            else:
                r = finish(api, me, mid, body)
            assert_problem(r, status)
    finally:
        store.limits = old
    got = store.get_message(me.actor, mid)
    assert (got.status, got.content) == (MessageStatus.STREAMING, "half a reply")


def test_only_the_owner_with_a_write_token_finishes_a_stream(
    store: Threadkeep, api: Api, me: Caller
) -> None:
    sid = session(api, me)
    mid = orphan(store, me, sid)
    other = new_caller(store)
    reader = Caller(
        me.actor,
        token := store.create_token(me.actor, "ro", scopes=["read"]).value.token,
        {"Authorization": f"Bearer {token}"},
    )
    body = {"status": "incomplete"}
    with writes_nothing(store):
        foreign = assert_problem(finish(api, other, mid, body), 404)
        missing = assert_problem(finish(api, me, "no-such-message", body), 404)
        assert foreign["title"] == missing["title"]  # no hint that it exists
        assert_problem(finish(api, reader, mid, body), 403)
        assert_problem(api.post(f"/v1/messages/{mid}/finish", json=body), 401)
    assert store.get_message(me.actor, mid).status is MessageStatus.STREAMING


# --- a real server, a real disconnect --------------------------------------------


@pytest.fixture
def served(store: Threadkeep) -> Iterator[tuple[str, int]]:
    """The app on a real socket (uvicorn, as `threadkeep serve` runs it)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        create_app(store, api=ApiSettings()), log_config=None, access_log=False, lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield sock.getsockname()
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def _chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def test_a_client_that_disconnects_mid_stream_leaves_an_incomplete_message(
    store: Threadkeep, me: Caller, served: tuple[str, int]
) -> None:
    host, port = served
    sid = store.create_session(me.actor).value.id
    with socket.create_connection((host, port), timeout=10) as conn:
        conn.sendall(
            (
                f"POST /v1/sessions/{sid}/messages/stream HTTP/1.1\r\n"
                f"Host: {host}:{port}\r\nAuthorization: Bearer {me.token}\r\n"
                "Content-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n"
            ).encode()
        )
        conn.sendall(_chunk(ndjson({"role": "assistant"}, {"delta": "the first "})))
        conn.sendall(_chunk(ndjson({"delta": "tokens"})))
        received = b""
        while b"event: appended" not in received:  # the batch is stored (after 50 ms)
            data = conn.recv(65536)
            assert data, received
            received += data
        assert b"event: started" in received
        # ...and the client goes away mid-body, without a last chunk.
    assert b'"length":16' in received  # both deltas, in one batch
    deadline = time.monotonic() + 5
    while True:
        messages = store.get_messages(me.actor, sid)
        assert len(messages) == 1
        if messages[0].status is not MessageStatus.STREAMING:
            break
        assert time.monotonic() < deadline, "the message was left streaming"
        time.sleep(0.05)
    assert messages[0].status is MessageStatus.INCOMPLETE
    assert messages[0].content == "the first tokens"


def _stored_text(store: Threadkeep, me: Caller, sid: str, text: str) -> Message:
    """The session's one message once the server has stored ``text`` in it
    (a live stream's first delta), waiting up to 5 s."""
    deadline = time.monotonic() + 5
    while [m.content for m in store.get_messages(me.actor, sid)] != [text]:
        assert time.monotonic() < deadline, f"{text!r} was not written"
        time.sleep(0.01)
    return store.get_messages(me.actor, sid)[0]


def test_a_real_stream_gets_its_events_as_the_deltas_arrive(
    store: Threadkeep, me: Caller, served: tuple[str, int]
) -> None:
    host, port = served
    sid = store.create_session(me.actor).value.id
    seen: list[str] = []

    def body() -> Iterator[bytes]:
        yield ndjson({"role": "assistant"}, {"delta": "a"})
        # The server stores the first batch (within ~50 ms) before more is
        # sent: the text is durable while the stream is still open.
        assert _stored_text(store, me, sid, "a").status is MessageStatus.STREAMING
        yield ndjson({"delta": "b"}, {"done": True})

    with (
        httpx.Client(base_url=f"http://{host}:{port}", headers=me.headers, timeout=10) as client,
        client.stream(
            "POST", f"/v1/sessions/{sid}/messages/stream", content=body(), headers=NDJSON
        ) as r,
    ):
        assert r.status_code == 200
        for line in r.iter_lines():
            if line.startswith("event: "):
                seen.append(line[7:])
    assert seen == ["started", "appended", "appended", "finished"]
    final = store.get_messages(me.actor, sid)[0]
    assert (final.status, final.content) == (MessageStatus.COMPLETE, "ab")


def test_a_finish_cuts_off_a_stream_still_live_and_the_stream_says_so(
    store: Threadkeep, me: Caller, served: tuple[str, int]
) -> None:
    """An app that finishes a message while its stream still runs has chosen
    to stop it: the stream's next piece is refused (an ``error`` event, 409)
    and the message stays as the finish left it."""
    host, port = served
    sid = store.create_session(me.actor).value.id
    base = f"http://{host}:{port}"

    def body() -> Iterator[bytes]:
        yield ndjson({"role": "assistant"}, {"delta": "kept"})
        mid = _stored_text(store, me, sid, "kept").id
        with httpx.Client(base_url=base, headers=me.headers, timeout=10) as app:
            r = app.post(f"/v1/messages/{mid}/finish", json={"status": "incomplete"})
            assert r.status_code == 200, r.text
        yield ndjson({"delta": " lost"}, {"done": True})

    with (
        httpx.Client(base_url=base, headers=me.headers, timeout=10) as client,
        client.stream(
            "POST", f"/v1/sessions/{sid}/messages/stream", content=body(), headers=NDJSON
        ) as r,
    ):
        assert r.status_code == 200
        lines = list(r.iter_lines())
    seen = [line[7:] for line in lines if line.startswith("event: ")]
    assert seen == ["started", "appended", "error"], lines
    assert '"status":409' in "".join(lines)
    final = store.get_messages(me.actor, sid)[0]
    assert (final.status, final.content) == (MessageStatus.INCOMPLETE, "kept")
