"""Uploads over HTTP: the raw body streamed in (past the API's general body
limit, up to the upload limit), the bytes streamed out, problems for every
refusal with nothing written, and another user's uploads answering 404."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from typing import Any

import pytest
from api_helpers import (
    Api,
    Caller,
    api_client_fixture,
    api_store_fixture,
    assert_problem,
    new_caller,
)

from conftest import row_counts
from threadkeep import Threadkeep
from threadkeep.config import Limits

store = api_store_fixture()
api = api_client_fixture()


@pytest.fixture
def me(store: Threadkeep) -> Caller:
    return new_caller(store)


@pytest.fixture
def sid(api: Api, me: Caller) -> str:
    r = api.post("/v1/sessions", json={"title": "files"}, headers=me.headers)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def state(tk: Threadkeep) -> tuple[dict[str, int], list[str]]:
    return row_counts(tk), sorted(k for k, _ in tk.blobs.list_blobs())


def post(api: Api, me: Caller, sid: str, body: Any, **params: Any) -> Any:
    headers = {**me.headers, "content-type": params.pop("media_type", "application/pdf")}
    return api.post(f"/v1/sessions/{sid}/uploads", content=body, params=params, headers=headers)


async def chunked(data: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    """A body sent in chunks, without a Content-Length."""
    for i in range(0, len(data), size):
        yield data[i : i + size]


def test_upload_download_list_and_delete(api: Api, me: Caller, sid: str) -> None:
    # Bigger than the API's general body limit (256 KiB here): uploads have their own.
    data = os.urandom(1024 * 1024 + 5)
    r = post(api, me, sid, data, filename="résumé.pdf")
    assert r.status_code == 201, r.text
    up = r.json()
    assert isinstance(up["txid"], int)
    assert (up["filename"], up["media_type"], up["size"], up["sha256"]) == (
        "résumé.pdf",
        "application/pdf",
        len(data),
        sha(data),
    )
    meta = api.get(f"/v1/uploads/{up['id']}", headers=me.headers)
    assert meta.status_code == 200 and meta.json() == {k: v for k, v in up.items() if k != "txid"}
    listed = api.get(f"/v1/sessions/{sid}/uploads", headers=me.headers)
    assert [u["id"] for u in listed.json()["items"]] == [up["id"]]
    got = api.get(f"/v1/uploads/{up['id']}/content", headers=me.headers)
    assert got.status_code == 200 and got.content == data
    assert got.headers["content-type"] == "application/pdf"
    assert got.headers["content-length"] == str(len(data))
    assert got.headers["etag"] == f'"{sha(data)}"'
    assert got.headers["content-disposition"].startswith("attachment;")
    assert "filename*=UTF-8''r%C3%A9sum%C3%A9.pdf" in got.headers["content-disposition"]
    assert got.headers["x-content-type-options"] == "nosniff"
    gone = api.delete(f"/v1/uploads/{up['id']}", headers=me.headers)
    assert gone.status_code == 200 and isinstance(gone.json()["txid"], int)
    assert_problem(api.get(f"/v1/uploads/{up['id']}", headers=me.headers), 404)
    assert_problem(api.get(f"/v1/uploads/{up['id']}/content", headers=me.headers), 404)
    assert_problem(api.delete(f"/v1/uploads/{up['id']}", headers=me.headers), 404)


def test_a_chunked_body_is_streamed_and_identical_bytes_share_a_blob(
    api: Api, me: Caller, sid: str, store: Threadkeep
) -> None:
    data = os.urandom(3 * 1024 * 1024)
    first = post(api, me, sid, chunked(data), filename="a.bin", sha256=sha(data))
    assert first.status_code == 201, first.text
    second = post(api, me, sid, chunked(data), filename="b.bin")
    assert second.status_code == 201, second.text
    assert first.json()["sha256"] == second.json()["sha256"] == sha(data)
    assert sum(1 for k, _ in store.blobs.list_blobs() if k == sha(data)) == 1


def test_over_the_upload_limit_is_413_with_nothing_written(
    api: Api, me: Caller, sid: str, store: Threadkeep
) -> None:
    saved = store.limits
    store.limits = Limits(max_upload_bytes=100_000)
    try:
        before = state(store)
        declared = post(api, me, sid, b"x" * 100_001, filename="big")  # by Content-Length
        body = assert_problem(declared, 413)
        assert "100000" in body["detail"]
        streamed = post(api, me, sid, chunked(b"x" * 300_000, 10_000), filename="big")
        assert_problem(streamed, 413)
        assert state(store) == before
        assert post(api, me, sid, b"x" * 100_000, filename="fits").status_code == 201
    finally:
        store.limits = saved


def test_refused_uploads_are_problems_with_nothing_written(
    api: Api, me: Caller, sid: str, store: Threadkeep
) -> None:
    reader = new_caller(store, scopes=("read",))
    before = state(store)
    wrong = post(api, me, sid, b"bytes", filename="f", sha256=sha(b"other"))
    assert "nothing was stored" in assert_problem(wrong, 422)["detail"]
    assert_problem(post(api, me, sid, b"bytes", filename="f", sha256="abc"), 422)
    assert_problem(post(api, me, sid, b"bytes"), 422)  # no filename
    assert_problem(post(api, me, sid, b"bytes", filename="a\nb"), 422)
    assert_problem(post(api, me, sid, b"bytes", filename="f", media_type="not a type"), 422)
    assert_problem(post(api, me, "missing-session", b"bytes", filename="f"), 404)
    assert_problem(post(api, reader, sid, b"bytes", filename="f"), 403)
    nobody = api.post(f"/v1/sessions/{sid}/uploads", content=b"x", params={"filename": "f"})
    assert_problem(nobody, 401)
    assert state(store) == before


def test_another_users_uploads_answer_404(
    api: Api, me: Caller, sid: str, store: Threadkeep
) -> None:
    up = post(api, me, sid, b"private bytes", filename="secret.txt").json()
    them = new_caller(store)
    before = state(store)
    for r in (
        api.get(f"/v1/uploads/{up['id']}", headers=them.headers),
        api.get(f"/v1/uploads/{up['id']}/content", headers=them.headers),
        api.delete(f"/v1/uploads/{up['id']}", headers=them.headers),
        api.get(f"/v1/sessions/{sid}/uploads", headers=them.headers),
        post(api, them, sid, b"intruder", filename="x"),
    ):
        assert_problem(r, 404)
    assert state(store) == before


def test_a_client_that_goes_away_mid_upload_leaves_nothing(
    store: Threadkeep, me: Caller, sid: str
) -> None:
    """Drive the ASGI app by hand: part of the body, then a disconnect."""
    import anyio

    from threadkeep.api import ApiSettings, create_app

    app = create_app(store, api=ApiSettings())
    before = state(store)
    incoming = [
        {"type": "http.request", "body": b"x" * 100_000, "more_body": True},
        {"type": "http.request", "body": b"y" * 100_000, "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if incoming:
            return incoming.pop(0)
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": f"/v1/sessions/{sid}/uploads",
        "raw_path": f"/v1/sessions/{sid}/uploads".encode(),
        "query_string": b"filename=cut.bin",
        "headers": [
            (b"authorization", me.headers["Authorization"].encode()),
            (b"content-type", b"application/octet-stream"),
        ],
        "client": ("127.0.0.1", 1),
        "server": ("testserver", 80),
    }
    anyio.run(app, scope, receive, send)
    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 400
    assert state(store) == before
