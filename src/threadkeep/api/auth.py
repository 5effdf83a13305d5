"""Bearer-token auth: ``Authorization: Bearer tk_...`` on every route but health.

A route declares the scope it needs with one of the ``Reader``, ``Writer`` or
``Admin`` annotations and receives the :class:`Principal` it acts for. The
token itself is checked by :meth:`Threadkeep.authenticate` (hash lookup,
revocation, expiry, disabled user); a missing or bad token answers 401, a
token without the scope 403.

Why the check is split in two. The dependency runs on the event loop and
only reads the header; the lookup in the store runs in the worker thread that
runs the route itself (:func:`checked_endpoint`, applied to every route by
``app.add_routes``). A sync dependency would cost its own hop to the thread
pool, and on a 2-core machine each hop costs 100-200 µs of CPU, more than
the lookup and a small route together (docs/performance.md, "One thread hop
per request"). The price: a request with a body the route's schema refuses
answers 422 before its token is looked up (a missing token still answers 401
first). Until the check has passed, a Principal refuses to say who it is, so
no route can act for a token nobody checked.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from threadkeep.api.problems import ApiProblem
from threadkeep.library import Threadkeep
from threadkeep.model.common import Actor
from threadkeep.service.tokens import ApiToken, Scope

_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="token",
    description=(
        "An API token (tk_...). `threadkeep serve` prints one on first start; "
        "create more with `threadkeep token create`."
    ),
)


class UncheckedPrincipal(RuntimeError):
    """A route asked who a request acts for before its token was checked: a
    route added without :func:`checked_endpoint`. A bug, answered with 500."""


class Principal:
    """Who a request acts for, and with which token, once :meth:`check` passed."""

    __slots__ = ("_scope", "_secret", "_tk", "_token")

    def __init__(self, tk: Threadkeep, secret: str, scope: Scope) -> None:
        self._tk = tk
        self._secret = secret
        self._scope = scope
        self._token: ApiToken | None = None

    def check(self) -> None:
        """Look the token up and check its scope (blocking: the store is read).

        Raises:
            InvalidToken: unknown, revoked, expired, or its user disabled (401).
            ApiProblem: a live token without the route's scope (403).
        """
        if self._token is not None:
            return
        token = self._tk.authenticate(self._secret)
        scope = self._scope
        if scope not in token.scopes:
            raise ApiProblem(
                403,
                "insufficient-scope",
                "Forbidden",
                f"this token lacks the {scope.value!r} scope; create one that has it with "
                f"`threadkeep token create --scopes {scope.value}`",
                {"WWW-Authenticate": f'Bearer error="insufficient_scope", scope="{scope.value}"'},
            )
        self._token = token

    @property
    def token(self) -> ApiToken:
        if self._token is None:
            raise UncheckedPrincipal("the request's token has not been checked")
        return self._token

    @property
    def actor(self) -> Actor:
        return Actor(self.token.user_id)


# The trivial dependencies are coroutines: a sync one would cost a hop to the
# thread pool per request.
async def get_tk(request: Request) -> Threadkeep:
    tk: Threadkeep = request.app.state.tk
    return tk


def _unauthorized(detail: str) -> ApiProblem:
    return ApiProblem(401, "unauthorized", "Unauthorized", detail, {"WWW-Authenticate": "Bearer"})


def _principal(scope: Scope) -> Callable[..., Any]:
    async def principal(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Principal:
        if credentials is None:
            raise _unauthorized(
                "send an API token as `Authorization: Bearer tk_...`; "
                "create one with `threadkeep token create`"
            )
        return Principal(request.app.state.tk, credentials.credentials, scope)

    return principal


def _check_all(principals: list[Principal]) -> None:
    for principal in principals:
        principal.check()


def checked_endpoint(endpoint: Callable[..., Any]) -> Callable[..., Any]:
    """``endpoint``, checking every :class:`Principal` it is given before it runs.

    A sync endpoint checks in its own worker thread (one hop for both); a
    coroutine endpoint awaits the check in the thread pool first. FastAPI
    reads the signature through ``__wrapped__``, so the route, its
    parameters and its OpenAPI entry are unchanged.
    """
    if inspect.iscoroutinefunction(endpoint):

        @functools.wraps(endpoint)
        async def checked_async(*args: Any, **kwargs: Any) -> Any:
            principals = [v for v in kwargs.values() if isinstance(v, Principal)]
            if principals:
                await run_in_threadpool(_check_all, principals)
            return await endpoint(*args, **kwargs)

        return checked_async

    @functools.wraps(endpoint)
    def checked(*args: Any, **kwargs: Any) -> Any:
        _check_all([v for v in kwargs.values() if isinstance(v, Principal)])
        return endpoint(*args, **kwargs)

    return checked


Reader = Annotated[Principal, Depends(_principal(Scope.READ))]
Writer = Annotated[Principal, Depends(_principal(Scope.WRITE))]
Admin = Annotated[Principal, Depends(_principal(Scope.ADMIN))]
TK = Annotated[Threadkeep, Depends(get_tk)]
