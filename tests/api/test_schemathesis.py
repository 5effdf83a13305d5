"""Property-based fuzzing of the whole HTTP API from its OpenAPI schema.

schemathesis reads ``/openapi.json`` from the app (in-process, over ASGI) and
generates requests for every operation: valid ones from the schema, and
invalid ones (wrong types, out-of-range numbers, odd strings) beside them.
Every answer must be below 500, and every 4xx must be an RFC 9457
``application/problem+json`` body.

The requests carry a real token (read, write, admin) of a fresh user. Ids in
the path are random strings, so most would only reach the 404 branch: for
half of the generated cases (chosen from the case itself, so a failure
replays) the session / message / tool-event id is swapped for one of a real
row of the caller, made fresh for that case, so the routes' success paths see
the generated bodies and parameters too.

Bounded for CI: a few examples per operation, no deadline (the shared 2-core
machine is noisy), and the speed health checks off.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import cast

import pytest
import schemathesis
from api_helpers import api_store_fixture, new_caller
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.generation.case import Case

from threadkeep import Actor, Threadkeep
from threadkeep.api import ApiSettings, create_app
from threadkeep.model.messages import NewMessage

store = api_store_fixture()

MAX_EXAMPLES = int(os.environ.get("THREADKEEP_FUZZ_EXAMPLES", "15"))


@dataclass(frozen=True)
class Target:
    tk: Threadkeep
    actor: Actor
    headers: dict[str, str]


@pytest.fixture(scope="module")
def target(store: Threadkeep) -> Target:
    caller = new_caller(store)
    return Target(store, caller.actor, caller.headers)


@pytest.fixture(scope="module")
def app(store: Threadkeep) -> FastAPI:
    return create_app(store, api=ApiSettings(max_body_bytes=256 * 1024, max_json_depth=100))


# The schema does not depend on the store, so it is read once at import from an
# app over no store (create_app only keeps a reference to it), which lets
# schemathesis make one pytest item per operation; each item then sends its
# requests to the app of the engine under test.
schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(cast(Threadkeep, None)))
# POST /v1/me/import takes a zip. What a fuzzer can send it: any bytes, and a
# zip that holds nothing (no manifest), each to be refused with a 4xx problem.
_EMPTY_ZIP = b"PK\x05\x06" + b"\x00" * 18
schemathesis.openapi.media_type(
    "application/zip", st.one_of(st.binary(max_size=512), st.just(_EMPTY_ZIP))
)
# The stateful phase (following links between operations) is out of scope for
# a bounded CI run.
schema.config.phases.update(phases=["examples", "coverage", "fuzzing"])


def _use_real_ids(case: Case, target: Target) -> None:
    """For half of the cases, point the path at real rows of the caller."""
    params = case.path_parameters or {}
    if not params:
        return
    digest = hashlib.sha256(repr(sorted(params.items())).encode()).digest()
    if digest[0] % 2:
        return
    tk, actor = target.tk, target.actor
    session = tk.create_session(actor, title="fuzz").value
    done = tk.append(
        actor,
        session.id,
        [NewMessage(role="user", content="hello"), NewMessage(role="assistant", content="hi")],
    ).value
    if "session_id" in params:
        params["session_id"] = session.id
    if "message_id" in params:
        params["message_id"] = done.messages[0].id
    if "event_id" in params:
        event = tk.start_tool_event(actor, session.id, {"name": "grep", "input": {"q": "x"}}).value
        params["event_id"] = event.id


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    database=None,
)
def test_no_server_error_and_every_error_is_a_problem(
    case: Case, app: FastAPI, target: Target
) -> None:
    _use_real_ids(case, target)
    headers = target.headers
    if case.operation.path == "/v1/me/export":
        # The export holds all of the caller's data, and the module's caller
        # has hundreds of sessions from the other operations by then (this one
        # item took ~30 s). A fresh caller with one conversation keeps the
        # success path covered.
        caller = new_caller(target.tk)
        sid = target.tk.create_session(caller.actor, title="export me").value.id
        target.tk.append_message(caller.actor, sid, NewMessage(role="user", content="hi"))
        headers = caller.headers
    response = case.call(app=app, headers=headers)
    assert response.status_code < 500, (
        f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:500]}"
    )
    if response.status_code >= 400:
        content_type = response.headers.get("content-type", [""])[0]
        assert content_type == "application/problem+json", (
            f"{case.method} {case.formatted_path} -> {response.status_code} "
            f"as {content_type!r}: {response.text[:300]}"
        )
        body = response.json()
        assert body["status"] == response.status_code
        assert body["type"].startswith("urn:threadkeep:problem:")
