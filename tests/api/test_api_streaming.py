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
    writes_nothing,
)

from threadkeep import MessageStatus, Threadkeep
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


def test_a_real_stream_gets_its_events_as_the_deltas_arrive(
    store: Threadkeep, me: Caller, served: tuple[str, int]
) -> None:
    host, port = served
    sid = store.create_session(me.actor).value.id
    seen: list[str] = []

    def body() -> Iterator[bytes]:
        yield ndjson({"role": "assistant"}, {"delta": "a"})
        # Wait until the server has stored the first batch (within ~50 ms) before
        # sending more: the text is durable while the stream is still open.
        deadline = time.monotonic() + 5
        while [m.content for m in store.get_messages(me.actor, sid)] != ["a"]:
            assert time.monotonic() < deadline, "the first delta was not written"
            time.sleep(0.01)
        assert store.get_messages(me.actor, sid)[0].status is MessageStatus.STREAMING
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
