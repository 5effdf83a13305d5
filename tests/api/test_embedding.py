"""threadkeep's API mounted in the user's own FastAPI app, as docs/embedding.md
shows: under a path prefix, with threadkeep's lifespan run by the parent's.

Starlette runs no lifespan of a mounted app, so the recipe enters it from
the parent's; and the routes that stream their body must still be
recognised below the prefix (the body guard used to see the full path and
refuse a mounted upload over the general body limit).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Iterator

import pytest
from api_helpers import Api, api_store_fixture, in_process, new_caller
from fastapi import FastAPI

from conftest import row_counts
from threadkeep import Threadkeep
from threadkeep.api import ApiSettings, create_app
from threadkeep.config import Settings

store = api_store_fixture()

BODY_LIMIT = 64 * 1024


def embedding_app(tk: Threadkeep) -> tuple[FastAPI, FastAPI]:
    """The recipe of docs/embedding.md: (the user's app, threadkeep's)."""
    chat = create_app(tk, Settings(), api=ApiSettings(max_body_bytes=BODY_LIMIT))

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with chat.router.lifespan_context(chat):
            yield

    app = FastAPI(lifespan=lifespan)

    @app.get("/hello")
    async def hello() -> dict[str, str]:
        return {"hello": "world"}

    app.mount("/chat", chat)
    return app, chat


@pytest.fixture
def embedded(store: Threadkeep) -> Iterator[tuple[Api, FastAPI]]:
    app, chat = embedding_app(store)
    with in_process(app, lifespan=True) as client:
        yield client, chat


def test_the_api_answers_below_the_prefix_beside_the_apps_own_routes(
    embedded: tuple[Api, FastAPI], store: Threadkeep
) -> None:
    client, _ = embedded
    me = new_caller(store)
    assert client.get("/hello").json() == {"hello": "world"}
    r = client.post("/chat/v1/sessions", json={"title": "embedded"}, headers=me.headers)
    assert r.status_code == 201, r.text
    sid = r.json()["id"]
    r = client.post(
        f"/chat/v1/sessions/{sid}/messages",
        json={"messages": [{"role": "user", "content": "hi"}]},
        headers=me.headers,
    )
    assert r.status_code == 201, r.text
    got = client.get(f"/chat/v1/sessions/{sid}/messages", headers=me.headers).json()
    assert [m["content"] for m in got["items"]] == ["hi"]
    missing = client.get("/chat/v1/sessions/nope", headers=me.headers)
    assert missing.status_code == 404
    assert missing.json()["instance"] == "/chat/v1/sessions/nope"
    assert client.get("/chat/v1/sessions").status_code == 401  # no token
    index = client.get("/chat/").json()
    assert (index["api"], index["openapi"], index["docs"]) == (
        "/chat/v1",
        "/chat/openapi.json",
        "/chat/docs",
    )
    schema = client.get(index["openapi"])
    assert schema.status_code == 200 and "/v1/sessions" in schema.json()["paths"]
    assert client.get(index["docs"]).status_code == 200


def test_streamed_bodies_pass_the_body_limit_below_the_prefix(
    embedded: tuple[Api, FastAPI], store: Threadkeep
) -> None:
    """An upload four times the general body limit is streamed to its route
    (which applies the upload limit), mounted as at the root; an ordinary
    JSON body over the limit is still refused, with nothing written."""
    client, _ = embedded
    me = new_caller(store)
    sid = client.post("/chat/v1/sessions", json={}, headers=me.headers).json()["id"]
    data = os.urandom(4 * BODY_LIMIT)
    r = client.post(
        f"/chat/v1/sessions/{sid}/uploads",
        content=data,
        params={"filename": "big.bin"},
        headers={**me.headers, "content-type": "application/octet-stream"},
    )
    assert r.status_code == 201, r.text
    upload = r.json()["id"]
    assert client.get(f"/chat/v1/uploads/{upload}/content", headers=me.headers).content == data

    before = row_counts(store)
    r = client.post(
        f"/chat/v1/sessions/{sid}/messages",
        json={"messages": [{"role": "user", "content": "x" * (2 * BODY_LIMIT)}]},
        headers=me.headers,
    )
    assert r.status_code == 413, r.text
    assert row_counts(store) == before


def test_the_parent_lifespan_starts_and_stops_threadkeeps(store: Threadkeep) -> None:
    """Sync is running before the first shape request (so this instance's
    commits wake other instances' readers), a shape answers below the
    prefix, and leaving the parent's lifespan stops sync."""
    app, chat = embedding_app(store)
    me = new_caller(store)
    with in_process(app, lifespan=True) as client:
        assert chat.state.sync.hub.started
        sid = client.post("/chat/v1/sessions", json={}, headers=me.headers).json()["id"]
        r = client.get(
            "/chat/v1/shape",
            params={"table": "sessions", "offset": "-1"},
            headers=me.headers,
        )
        assert r.status_code == 200, r.text
        assert r.headers["electric-handle"]
        assert sid in r.text
    assert not chat.state.sync.hub.started


def test_the_index_names_root_paths_when_not_mounted(store: Threadkeep) -> None:
    with in_process(create_app(store, Settings()), lifespan=True) as client:
        index = client.get("/").json()
        assert (index["api"], index["openapi"], index["docs"]) == ("/v1", "/openapi.json", "/docs")
