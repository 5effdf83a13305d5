"""The order in which a request is matched against the app's routes.

Starlette finds a request's route by trying every route in list order until
one matches the path and method, a regular expression and some bookkeeping
each: about 2 µs per route on the reference machine. The list holds about a
hundred routes in the order the modules declare them, and the sync routes
come late, so every live long-poll (the most frequent request of a synced
deployment: each change answers every held poll, and each client asks again
at once) tried about 85 routes first, about 0.2 ms of the event loop's time
per poll (docs/performance.md, "The HTTP layer").

The order only matters between routes that could match the same path; any
other pair may swap without changing what a request reaches.
:func:`order_for_matching` moves routes and checks exactly that, so that a
mistake fails at start-up rather than sending a request to the wrong route.
The OpenAPI document keeps the declared order (``api/app.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from starlette.routing import BaseRoute

# Path templates matched before the others (the sync protocol's long-polls).
MATCH_FIRST = frozenset({"/v1/shape", "/v1/shapes/{table}"})


def order_for_matching(
    routes: Sequence[BaseRoute], rank: Callable[[BaseRoute], int]
) -> list[BaseRoute]:
    """``routes`` sorted by ``rank`` (lower first, declared order within a
    rank), refusing a move that could change which route a request reaches:
    two routes that may match a common path must keep their declared order.

    Raises:
        ValueError: the ranks would reorder such a pair.
    """
    ordered = sorted(routes, key=rank)  # stable: declared order within a rank
    position = {id(route): i for i, route in enumerate(ordered)}
    for i, earlier in enumerate(routes):
        for later in routes[i + 1 :]:
            if position[id(earlier)] > position[id(later)] and may_overlap(
                _path(earlier), _path(later)
            ):
                raise ValueError(
                    f"matching {_path(later)!r} before {_path(earlier)!r} could send "
                    "a request to another route than the declared order does"
                )
    return ordered


def may_overlap(a: str | None, b: str | None) -> bool:
    """Whether some path could match both templates. Conservative: a route
    without a plain path template, or with a ``{name:path}`` parameter (which
    spans slashes), may overlap anything."""
    if a is None or b is None or ":path}" in a or ":path}" in b:
        return True
    parts_a, parts_b = a.split("/"), b.split("/")
    if len(parts_a) != len(parts_b):
        return False
    return all(x == y or "{" in x or "{" in y for x, y in zip(parts_a, parts_b, strict=True))


def _path(route: BaseRoute) -> str | None:
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else None
