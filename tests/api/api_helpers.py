"""Helpers for the HTTP API tests: a store per engine, an in-process client,
callers with tokens, and the problem-shape check.

The app runs in-process through httpx's ASGI transport, driven from sync
tests through an anyio blocking portal (an event loop in a helper thread), so
requests go through the real middleware stack, routing and thread pool.
"""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from fastapi import FastAPI

from conftest import row_counts, shared_store_fixture
from threadkeep import Actor, Threadkeep
from threadkeep.api import ApiSettings, create_app
from threadkeep.config import Settings

PROBLEM_FIELDS = ("type", "title", "status", "detail", "instance", "request_id")


def api_store_fixture() -> Any:
    """A module-scoped store per engine (see conftest.shared_store_fixture)."""
    return shared_store_fixture("api")


class Api:
    """A sync facade over an httpx.AsyncClient talking to the app in-process."""

    def __init__(self, portal: BlockingPortal, client: httpx.AsyncClient) -> None:
        self.portal = portal
        self.client = client

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        call = functools.partial(self.client.request, method, url, **kwargs)
        return self.portal.call(call)

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)

    def put(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("PUT", url, **kwargs)

    def patch(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("PATCH", url, **kwargs)

    def delete(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("DELETE", url, **kwargs)


@contextmanager
def in_process(app: FastAPI, *, lifespan: bool = False) -> Iterator[Api]:
    """``app`` served in-process through httpx's ASGI transport; with
    ``lifespan``, its lifespan runs around the requests, as a server runs it."""
    with start_blocking_portal() as portal:
        running = (
            portal.wrap_async_context_manager(app.router.lifespan_context(app))
            if lifespan
            else nullcontext()
        )
        with running:
            client = httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://testserver"
            )
            try:
                yield Api(portal, client)
            finally:
                portal.call(client.aclose)


@contextmanager
def api_client(
    tk: Threadkeep, api: ApiSettings | None = None, settings: Settings | None = None
) -> Iterator[Api]:
    app = create_app(
        tk, settings, api=api or ApiSettings(max_body_bytes=256 * 1024, max_json_depth=100)
    )
    with in_process(app) as client:
        try:
            yield client
        finally:
            client.portal.call(app.state.sync.stop)  # the sync hub, if a shape request started it


def api_client_fixture() -> Any:
    @pytest.fixture
    def _api(store: Threadkeep) -> Iterator[Api]:
        with api_client(store) as client:
            yield client

    return _api


@dataclass(frozen=True)
class Caller:
    """A user of the API: its actor, its token, and the headers carrying it."""

    actor: Actor
    token: str
    headers: dict[str, str]


def new_caller(tk: Threadkeep, scopes: tuple[str, ...] = ("read", "write", "admin")) -> Caller:
    user = tk.create_user(f"user-{uuid.uuid4().hex[:8]}").value
    actor = Actor(user.id)
    token = tk.create_token(actor, "test", scopes=scopes).value.token
    return Caller(actor, token, {"Authorization": f"Bearer {token}"})


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    """The response is an RFC 9457 problem with ``status``; returns its body."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"] == "application/problem+json", response.headers
    body: dict[str, Any] = response.json()
    for name in PROBLEM_FIELDS:
        assert name in body, f"problem body lacks {name!r}: {body}"
    assert body["status"] == status
    assert body["type"].startswith("urn:threadkeep:problem:")
    assert isinstance(body["title"], str) and body["title"]
    assert isinstance(body["detail"], str) and body["detail"]
    assert body["instance"] == response.request.url.path
    assert body["request_id"] == response.headers["x-request-id"]
    if "errors" in body:
        for err in body["errors"]:
            assert set(err) == {"loc", "msg", "type"}, err
    return body


@contextmanager
def writes_nothing(tk: Threadkeep) -> Iterator[None]:
    """Row counts of every table (and the change-log offset) are unchanged."""
    before = row_counts(tk)
    yield
    assert row_counts(tk) == before, "a refused request wrote something"


def raw_post(api: Api, url: str, body: bytes, headers: dict[str, str], **kw: Any) -> httpx.Response:
    """POST exact bytes as application/json (httpx's json= would re-encode them)."""
    return api.post(
        url, content=body, headers={**headers, "content-type": "application/json"}, **kw
    )


def dumps(value: Any) -> bytes:
    return json.dumps(value).encode()
