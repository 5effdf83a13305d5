"""The app matches the sync routes first and keeps every request's route.

create_app reorders the route list for matching (api/route_order.py); a
request must still reach exactly the route, or the 405, that the declared
order gives, and the OpenAPI document must keep the declared order.
"""

from __future__ import annotations

import re
from typing import Any, cast

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute, Match, Route

from threadkeep.api import create_app
from threadkeep.api.app import ROUTE_MODULES, add_routes
from threadkeep.api.route_order import MATCH_FIRST, may_overlap, order_for_matching
from threadkeep.library import Threadkeep

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD")


def _declared() -> list[BaseRoute]:
    """The route list in declared order: what create_app built before."""
    reference = FastAPI()
    for module in ROUTE_MODULES:
        add_routes(reference, module.router)
    return list(reference.router.routes)


def _reached(routes: list[BaseRoute], path: str, method: str) -> tuple[str, Any]:
    """What Starlette's scan reaches: the first full match, else the first
    partial one (a 405), else nothing (a 404)."""
    scope = {"type": "http", "path": path, "method": method, "root_path": ""}
    partial = None
    for route in routes:
        match, _ = route.matches(dict(scope))
        if match == Match.FULL:
            return "full", route.path  # type: ignore[attr-defined]
        if match == Match.PARTIAL and partial is None:
            partial = route.path  # type: ignore[attr-defined]
    return ("partial", partial) if partial else ("none", None)


def _example_paths(routes: list[BaseRoute]) -> set[str]:
    """A concrete path for every template, with each parameter filled both
    by a plain value and by the literal segments other routes use there (so
    that '/repo-bindings/{id}' is also tried as '/repo-bindings/active')."""
    literals = {seg for r in routes for seg in r.path.split("/") if seg and "{" not in seg}  # type: ignore[attr-defined]
    paths: set[str] = set()
    for route in routes:
        template = route.path  # type: ignore[attr-defined]
        paths.add(re.sub(r"\{[^}]+\}", "x-1", template))
        for literal in literals:
            paths.add(re.sub(r"\{[^}]+\}", literal, template, count=1))
    return paths


@pytest.fixture(scope="module")
def app() -> FastAPI:
    return create_app(cast(Threadkeep, None))


def test_every_request_reaches_the_route_the_declared_order_gives(app: FastAPI) -> None:
    declared = _declared()
    ours = list(app.router.routes)
    assert ours != declared  # the reordering did happen
    paths = _example_paths(declared) | {"/nowhere", "/v1/shape/extra"}
    for path in sorted(paths):
        for method in METHODS:
            assert _reached(ours, path, method) == _reached(declared, path, method), (path, method)


def test_the_sync_routes_are_tried_first_and_the_docs_pages_last(app: FastAPI) -> None:
    routes = app.router.routes
    first = {r.path for r in routes[: len(MATCH_FIRST)]}  # type: ignore[attr-defined]
    assert first == MATCH_FIRST
    docs = [r for r in routes if isinstance(r, Route) and not isinstance(r, APIRoute)]
    assert docs and routes[-len(docs) :] == docs


def test_the_openapi_document_keeps_the_declared_order(app: FastAPI) -> None:
    declared_paths = list(dict.fromkeys(r.path for r in _declared() if isinstance(r, APIRoute)))
    assert list(app.openapi()["paths"]) == declared_paths


def test_a_move_that_could_change_a_requests_route_is_refused() -> None:
    declared = _declared()
    general = "/v1/sessions/{session_id}/repo-bindings/{repo_binding_id}"
    with pytest.raises(ValueError, match="repo-bindings"):
        order_for_matching(declared, lambda r: 0 if getattr(r, "path", None) == general else 1)


@pytest.mark.parametrize(
    ("a", "b", "overlap"),
    [
        ("/v1/shape", "/v1/shapes/{table}", False),
        ("/v1/sessions/{id}", "/v1/sessions/{id}/messages", False),
        ("/v1/me", "/v1/{anything}", True),
        ("/v1/x/active", "/v1/x/{id}", True),
        ("/v1/x/active", "/v1/y/{id}", False),
        ("/files/{rest:path}", "/files/a/b/c", True),
        (None, "/v1/me", True),
    ],
)
def test_may_overlap(a: str | None, b: str, overlap: bool) -> None:
    assert may_overlap(a, b) is overlap
    assert may_overlap(b, a) is overlap
