"""Bad input gets a clear RFC 9457 problem and changes nothing; operations
routes (/healthz, /readyz, /metrics, OpenAPI); request ids and JSON logs."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any, cast

import pytest
import sqlalchemy as sa
from api_helpers import (
    Api,
    Caller,
    api_client,
    api_client_fixture,
    api_store_fixture,
    assert_problem,
    dumps,
    new_caller,
    raw_post,
    writes_nothing,
)
from starlette.requests import Request

from threadkeep import Threadkeep
from threadkeep.api import ApiSettings
from threadkeep.api.logs import JsonFormatter, reset_request_id, set_request_id
from threadkeep.api.problems import problem_for
from threadkeep.errors import StoreClosed, StoreError, VersionConflict

store = api_store_fixture()
api = api_client_fixture()


@pytest.fixture
def me(store: Threadkeep) -> Caller:
    return new_caller(store)


@pytest.fixture
def sid(api: Api, me: Caller) -> str:
    r = api.post("/v1/sessions", json={"title": "t"}, headers=me.headers)
    assert r.status_code == 201
    session_id: str = r.json()["id"]
    return session_id


def nest(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = {"k": value}
    return value


# --- bad bodies: each refused with a problem, nothing written ---------------------

MSG = '{"messages":[{"role":"user","content":%s}]}'

BAD_BODIES: list[tuple[str, bytes, int]] = [
    ("malformed JSON", b'{"messages": [', 400),
    ("trailing garbage", b'{"messages": []} x', 400),
    ("NUL escaped in content", (MSG % '"a\\u0000b"').encode(), 422),
    ("lone surrogate escaped in content", (MSG % '"\\ud800"').encode(), 422),
    ("lone low surrogate escaped", (MSG % '"x\\udfff"').encode(), 422),
    (
        "lone surrogate in a metadata key",
        b'{"messages":[{"role":"user","metadata":{"\\ud800":1}}]}',
        422,
    ),
    ("NUL in a metadata value", b'{"messages":[{"role":"user","metadata":{"k":"\\u0000"}}]}', 422),
    ("invalid UTF-8", (MSG % '"caf\xe9"').encode("latin-1"), 400),
    ("raw NUL byte", b'{"messages":[{"role":"user","content":"a\x00b"}]}', 400),
    ("UTF-16", '{"messages":[]}'.encode("utf-16-le"), 400),
    ("content is a number", (MSG % "5").encode(), 422),
    ("messages is a string", b'{"messages":"hi"}', 422),
    ("unknown role", b'{"messages":[{"role":"wizard"}]}', 422),
    ("unknown field", b'{"messages":[{"role":"user","colour":"red"}]}', 422),
    ("body is a list", b"[]", 422),
    ("nothing to append", b"{}", 422),
    ("NaN", b'{"messages":[{"role":"user","metadata":{"x":NaN}}]}', 400),
    ("Infinity", b'{"messages":[{"role":"user","metadata":{"x":-Infinity}}]}', 400),
    # PostgreSQL's jsonb would print 1e20 back as a 21-digit integer (found by
    # schemathesis); the model refuses it, for the library and the API alike.
    ("a float beyond 64 bits", b'{"messages":[{"role":"user","metadata":{"x":1e20}}]}', 422),
    (
        "a decimal beyond 64 bits",
        b'{"messages":[{"role":"user","metadata":{"x":[-18446744073709552000.0]}}]}',
        422,
    ),
    (
        "nested past the body limit",
        dumps({"messages": [{"role": "user", "metadata": nest(150)}]}),
        400,
    ),
    (
        "nested past the model limit",
        dumps({"messages": [{"role": "user", "metadata": nest(80)}]}),
        422,
    ),
    ("negative token count", b'{"messages":[{"role":"user","input_tokens":-1}]}', 422),
]


@pytest.mark.parametrize(
    ("body", "status"), [(b, s) for _, b, s in BAD_BODIES], ids=[n for n, _, _ in BAD_BODIES]
)
def test_a_bad_append_body_is_refused_with_a_problem_and_writes_nothing(
    api: Api, store: Threadkeep, me: Caller, sid: str, body: bytes, status: int
) -> None:
    with writes_nothing(store):
        r = raw_post(api, f"/v1/sessions/{sid}/messages", body, me.headers)
    problem = assert_problem(r, status)
    if status == 422:
        assert problem["errors"], problem


def test_text_that_looks_like_nan_or_deep_nesting_inside_strings_is_fine(
    api: Api, me: Caller, sid: str
) -> None:
    content = "NaN Infinity " + "[" * 500 + '{ \\" ' + "}" * 10
    r = api.post(
        f"/v1/sessions/{sid}/messages",
        json={"messages": [{"role": "user", "content": content}]},
        headers=me.headers,
    )
    assert r.status_code == 201, r.text
    assert r.json()["messages"][0]["content"] == content


def test_floats_within_64_bits_and_big_numbers_in_strings_are_fine(
    api: Api, me: Caller, sid: str
) -> None:
    metadata = {"big": 1.5e18, "neg": -2.5, "tiny": 1e-30, "text": "1e99", "int": 2**62}
    r = api.post(
        f"/v1/sessions/{sid}/messages",
        json={"messages": [{"role": "user", "metadata": metadata}]},
        headers=me.headers,
    )
    assert r.status_code == 201, r.text
    assert r.json()["messages"][0]["metadata"] == metadata


def test_a_body_that_is_not_json_is_refused(
    api: Api, store: Threadkeep, me: Caller, sid: str
) -> None:
    with writes_nothing(store):
        for content_type in ("text/plain", None):
            headers = dict(me.headers)
            if content_type:
                headers["content-type"] = content_type
            r = api.post(
                f"/v1/sessions/{sid}/messages",
                content=b'{"messages":[{"role":"user"}]}',
                headers=headers,
            )
            assert_problem(r, 422)


def test_an_oversize_body_is_refused_by_content_length_and_when_streamed(
    store: Threadkeep, me: Caller, sid: str
) -> None:
    limits = ApiSettings(max_body_bytes=1000, max_json_depth=100)
    big = dumps({"messages": [{"role": "user", "content": "x" * 2000}]})

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(big), 100):
            yield big[i : i + 100]

    with api_client(store, limits) as small, writes_nothing(store):
        declared = raw_post(small, f"/v1/sessions/{sid}/messages", big, me.headers)
        body = assert_problem(declared, 413)
        assert "1000 bytes" in body["detail"]
        # No Content-Length: the bytes are counted as they arrive.
        streamed = small.post(
            f"/v1/sessions/{sid}/messages",
            content=chunks(),
            headers={**me.headers, "content-type": "application/json"},
        )
        assert "content-length" not in streamed.request.headers
        assert_problem(streamed, 413)


def test_a_message_over_the_stores_size_limit_answers_413(
    store: Threadkeep, me: Caller, sid: str
) -> None:
    over = store.limits.max_message_bytes + 10
    body = {"messages": [{"role": "user", "content": "x" * over}]}
    roomy = ApiSettings(max_body_bytes=over * 2, max_json_depth=100)
    with api_client(store, roomy) as client, writes_nothing(store):
        problem = assert_problem(
            client.post(f"/v1/sessions/{sid}/messages", json=body, headers=me.headers), 413
        )
    assert problem["errors"][0]["type"] == "too_large"


@pytest.mark.parametrize(
    ("url", "params"),
    [
        ("/v1/sessions", {"limit": 0}),
        ("/v1/sessions", {"limit": 10**6}),
        ("/v1/sessions", {"cursor": "not-a-cursor"}),
        ("/v1/sessions", {"starred": "maybe"}),
        ("/v1/sessions", {"q": "a\x00b"}),
        ("/v1/sessions/a%00b", {}),
        ("/v1/sessions/{sid}/messages", {"after_seq": -1}),
        ("/v1/sessions/{sid}/messages", {"limit": "ten"}),
        ("/v1/sessions/{sid}/messages", {"after_seq": 10**19}),
        ("/v1/sessions/{sid}/timeline-events", {"after_seq": 10**19}),
    ],
    ids=[
        "limit-0",
        "limit-huge",
        "cursor",
        "bool",
        "nul-in-query",
        "nul-in-path",
        "seq",
        "int",
        "seq-past-64-bits",
        "event-seq-past-64-bits",
    ],
)
def test_bad_query_and_path_parameters_answer_422(
    api: Api, me: Caller, sid: str, url: str, params: dict[str, Any]
) -> None:
    assert_problem(api.get(url.replace("{sid}", sid), params=params, headers=me.headers), 422)


def test_unknown_routes_and_methods_answer_with_problems(api: Api, me: Caller) -> None:
    assert_problem(api.get("/v1/nothing-here", headers=me.headers), 404)
    assert_problem(api.request("PUT", "/v1/sessions", headers=me.headers), 405)


def test_an_unexpected_error_is_a_500_problem_without_internals(
    api: Api, store: Threadkeep, me: Caller, sid: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("secret internals: password=hunter2")

    monkeypatch.setattr(store, "get_session", boom)
    r = api.get(f"/v1/sessions/{sid}", headers=me.headers)

    body = assert_problem(r, 500)
    assert "hunter2" not in r.text and "RuntimeError" not in r.text
    assert body["request_id"]


def test_the_error_mapping_distinguishes_if_match_store_and_shutdown_errors() -> None:
    def request(headers: dict[str, str]) -> Request:
        raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        return Request({"type": "http", "method": "PATCH", "path": "/x", "headers": raw})

    conflict = VersionConflict("s", 1, 2)
    assert problem_for(conflict, request({"If-Match": '"1"'})).status == 412
    assert problem_for(conflict, request({})).status == 409
    assert problem_for(StoreClosed()).status == 503
    try:
        raise StoreError("database error: could not connect") from sa.exc.OperationalError(
            "SELECT 1", {}, Exception("down")
        )
    except StoreError as exc:
        down = problem_for(exc)
    assert down.status == 503 and "could not connect" not in (down.detail or "")
    assert problem_for(StoreError("database error: SELECT secret")).status == 500


# --- request ids and logs -------------------------------------------------------------


def test_every_response_carries_a_request_id_and_a_sane_one_is_kept(api: Api, me: Caller) -> None:
    ok = api.get("/healthz")
    assert len(ok.headers["x-request-id"]) == 32
    kept = api.get("/healthz", headers={"X-Request-ID": "client-abc.123"})
    assert kept.headers["x-request-id"] == "client-abc.123"
    replaced = api.get("/healthz", headers={"X-Request-ID": "bad id\twith spaces"})
    assert replaced.headers["x-request-id"] != "bad id\twith spaces"
    problem = api.get("/v1/sessions/missing", headers={**me.headers, "X-Request-ID": "r-1"})
    assert assert_problem(problem, 404)["request_id"] == "r-1"


def test_log_lines_are_json_with_the_request_id_and_never_the_query_string(
    api: Api, me: Caller, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="threadkeep.access"):
        api.get(
            "/v1/sessions?token=tk_secret&limit=1", headers={**me.headers, "X-Request-ID": "r-log"}
        )
    records = [r for r in caplog.records if r.name == "threadkeep.access"]
    assert records
    line = json.loads(JsonFormatter().format(records[-1]))
    assert line["request_id"] == "r-log"
    assert line["route"] == "/v1/sessions" and line["status"] == 200
    assert "tk_secret" not in json.dumps(line) and me.token not in json.dumps(line)


def test_the_json_formatter_adds_the_current_request_id_and_exceptions() -> None:
    token = set_request_id("rid-7")
    try:
        try:
            raise ValueError("bad")
        except ValueError:
            record = logging.getLogger("x").makeRecord(
                "x", logging.ERROR, "f.py", 1, "failed %s", ("here",), sys.exc_info()
            )
        line = json.loads(JsonFormatter().format(record))
    finally:
        reset_request_id(token)
    assert line["msg"] == "failed here" and line["level"] == "error"
    assert line["request_id"] == "rid-7" and "ValueError: bad" in line["exc"]


# --- operations ---------------------------------------------------------------------


def test_healthz_and_readyz(api: Api, store: Threadkeep) -> None:
    assert api.get("/healthz").json() == {"status": "ok"}
    ready = api.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "database": store.dialect, "migrations": "current"}


def test_readyz_answers_503_when_the_schema_is_not_current(tk: Threadkeep) -> None:
    with tk.engine.sa_engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = 'not-this-one'"))
    with api_client(tk) as client:
        body = assert_problem(client.get("/readyz"), 503)
    assert "threadkeep migrate" in body["detail"]


def test_metrics_count_requests_by_route_template_and_status_and_count_writes(
    api: Api, me: Caller, sid: str
) -> None:
    api.get(f"/v1/sessions/{sid}", headers=me.headers)
    api.get("/v1/sessions/missing-one", headers=me.headers)
    api.post(
        f"/v1/sessions/{sid}/messages",
        json={"messages": [{"role": "user", "content": "x"}]},
        headers=me.headers,
    )
    r = api.get("/metrics")

    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    route = "/v1/sessions/{session_id}"
    assert (
        f'threadkeep_http_requests_total{{method="GET",route="{route}",status="200"}} 1.0' in text
    )
    assert (
        f'threadkeep_http_requests_total{{method="GET",route="{route}",status="404"}} 1.0' in text
    )
    assert "threadkeep_http_request_duration_seconds_bucket{" in text
    assert 'threadkeep_writes_total{route="/v1/sessions/{session_id}/messages"} 1.0' in text
    assert sid not in text  # ids never become labels


# --- OpenAPI --------------------------------------------------------------------------


@pytest.fixture
def schema(api: Api) -> dict[str, Any]:
    r = api.get("/openapi.json")
    assert r.status_code == 200
    out: dict[str, Any] = r.json()
    return out


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref" and isinstance(v, str):
                yield v
            else:
                yield from _refs(v)
    elif isinstance(node, list):
        for v in node:
            yield from _refs(v)


def test_flat_routes_document_the_api_that_included_routers_would() -> None:
    """create_app adds every module's routes to the app's own router
    (app.add_routes: FastAPI walks an included router on every request).
    Nothing a route module declares may be lost on the way: the OpenAPI
    document is the one ``include_router`` gives, and the route list is flat."""
    from fastapi import FastAPI
    from fastapi.openapi.utils import get_openapi
    from fastapi.routing import APIRoute

    from threadkeep.api import create_app
    from threadkeep.api.app import ROUTE_MODULES

    app = create_app(cast(Threadkeep, None))
    reference = FastAPI()
    modules = list(ROUTE_MODULES)
    for module in modules:
        reference.include_router(module.router)

    def document(routes: Any) -> dict[str, Any]:
        return get_openapi(title="t", version="1", routes=routes)

    ours = [r for r in app.router.routes if isinstance(r, APIRoute)]
    assert len(ours) == sum(len(m.router.routes) for m in modules)
    assert document(ours) == document(reference.routes)
    assert all(type(r).__name__ != "_IncludedRouter" for r in app.router.routes)


def test_openapi_lists_every_route_with_its_error_problems(schema: dict[str, Any]) -> None:
    operations = {
        (method.upper(), path): op
        for path, ops in schema["paths"].items()
        for method, op in ops.items()
    }
    expected = {
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        ("GET", "/metrics"),
        ("GET", "/"),
        ("POST", "/v1/sessions"),
        ("GET", "/v1/sessions"),
        ("GET", "/v1/sessions/{session_id}"),
        ("PATCH", "/v1/sessions/{session_id}"),
        ("DELETE", "/v1/sessions/{session_id}"),
        ("POST", "/v1/sessions/{session_id}/restore"),
        ("POST", "/v1/sessions/{session_id}/purge"),
        ("POST", "/v1/sessions/{session_id}/messages"),
        ("GET", "/v1/sessions/{session_id}/messages"),
        ("POST", "/v1/sessions/{session_id}/messages/stream"),
        ("GET", "/v1/sessions/{session_id}/history"),
        ("GET", "/v1/messages/{message_id}"),
        ("POST", "/v1/messages/{message_id}/finish"),
        ("POST", "/v1/sessions/{session_id}/fork"),
        ("POST", "/v1/sessions/{session_id}/rewind"),
        ("GET", "/v1/sessions/{session_id}/branches"),
        ("POST", "/v1/sessions/{session_id}/tool-events"),
        ("GET", "/v1/sessions/{session_id}/tool-events"),
        ("GET", "/v1/tool-events/{event_id}"),
        ("PATCH", "/v1/tool-events/{event_id}"),
        ("POST", "/v1/tool-events/{event_id}/finish"),
        ("POST", "/v1/sessions/{session_id}/timeline-events"),
        ("GET", "/v1/sessions/{session_id}/timeline-events"),
        ("GET", "/v1/me"),
        ("GET", "/v1/me/export"),
        ("POST", "/v1/me/import"),
        ("DELETE", "/v1/me"),
        ("GET", "/v1/shape"),
        ("GET", "/v1/shapes/{table}"),
        ("GET", "/v1/tokens"),
        ("POST", "/v1/tokens"),
        ("DELETE", "/v1/tokens/{token_id}"),
        # The session record (revision 0003).
        ("PUT", "/v1/sessions/{session_id}/todos"),
        ("GET", "/v1/sessions/{session_id}/repo-bindings/active"),
        ("POST", "/v1/sessions/{session_id}/repo-bindings/unbind"),
        ("PUT", "/v1/sessions/{session_id}/summary"),
        ("GET", "/v1/sessions/{session_id}/summary"),
        ("DELETE", "/v1/sessions/{session_id}/summary"),
        ("POST", "/v1/sessions/{session_id}/uploads"),
        ("GET", "/v1/sessions/{session_id}/uploads"),
        ("GET", "/v1/uploads/{upload_id}"),
        ("GET", "/v1/uploads/{upload_id}/content"),
        ("DELETE", "/v1/uploads/{upload_id}"),
        ("GET", "/v1/search"),
    }
    for collection, key in (
        ("todos", "todo_id"),
        ("misalignments", "misalignment_id"),
        ("hook-decisions", "hook_decision_id"),
        ("repo-bindings", "repo_binding_id"),
        ("snapshots", "snapshot_id"),
        ("checkpoints", "checkpoint_id"),
        ("recordings", "recording_id"),
        ("file-changes", "file_change_id"),
        ("analytics-events", "analytics_event_id"),
    ):
        base = f"/v1/sessions/{{session_id}}/{collection}"
        item = f"{base}/{{{key}}}"
        expected |= {("POST", base), ("GET", base), ("GET", item), ("PATCH", item)}
        expected |= {("DELETE", item)}
    assert set(operations) == expected
    problem_ref = {"$ref": "#/components/schemas/Problem"}
    for key, op in operations.items():
        errors = {int(c): r for c, r in op["responses"].items() if int(c) >= 400}
        if key[1].startswith("/v1"):
            assert {401, 403, 422, 500} <= set(errors), key
            assert op["security"] == [{"token": []}], key
        if key[0] in ("POST", "PUT", "PATCH", "DELETE") and key[1].startswith("/v1"):
            assert {400, 413} <= set(errors), key
        for status, response in errors.items():
            assert response["content"] == {"application/problem+json": {"schema": problem_ref}}, (
                key,
                status,
            )
    components = schema["components"]["schemas"]
    for ref in set(_refs(schema)):
        assert ref.removeprefix("#/components/schemas/") in components, ref
    assert set(components["Problem"]["properties"]) >= {
        "type",
        "title",
        "status",
        "detail",
        "instance",
        "errors",
    }


def test_schema_names_entities_once(schema: dict[str, Any]) -> None:
    components = schema["components"]["schemas"]
    assert {"Session", "Message", "ToolEvent", "TimelineEvent", "NewMessage"} <= set(components)
    assert "txid" in components["SessionWritten"]["required"]


def test_a_commit_in_doubt_is_a_503_that_does_not_say_retry() -> None:
    """Retrying a write whose commit is in doubt could apply it twice."""
    import psycopg

    from threadkeep import CommitInDoubt

    try:
        try:
            raise sa.exc.OperationalError("COMMIT", {}, psycopg.OperationalError("gone"))
        except sa.exc.OperationalError as cause:
            raise CommitInDoubt() from cause
    except CommitInDoubt as exc:
        spec = problem_for(exc)
    assert spec.status == 503
    assert spec.detail is not None and "may or may not have been applied" in spec.detail
    assert "retry later" not in spec.detail
