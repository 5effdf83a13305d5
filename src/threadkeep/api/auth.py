"""Bearer-token auth: ``Authorization: Bearer tk_...`` on every route but health.

A route declares the scope it needs with one of the ``Reader``, ``Writer`` or
``Admin`` annotations and receives the :class:`Principal` it acts for. The
token itself is checked by :meth:`Threadkeep.authenticate` (hash lookup,
revocation, expiry, disabled user); a missing or bad token answers 401, a
token without the scope 403.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

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


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request acts for, and with which token."""

    actor: Actor
    token: ApiToken


# The trivial dependencies are coroutines: a sync one would cost a hop to the
# thread pool per request. ``authenticated`` reads the database, so it is sync.
async def get_tk(request: Request) -> Threadkeep:
    tk: Threadkeep = request.app.state.tk
    return tk


def _unauthorized(detail: str) -> ApiProblem:
    return ApiProblem(401, "unauthorized", "Unauthorized", detail, {"WWW-Authenticate": "Bearer"})


def authenticated(
    tk: Annotated[Threadkeep, Depends(get_tk)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None:
        raise _unauthorized(
            "send an API token as `Authorization: Bearer tk_...`; "
            "create one with `threadkeep token create`"
        )
    token = tk.authenticate(credentials.credentials)  # InvalidToken -> 401
    return Principal(Actor(token.user_id), token)


def require(scope: Scope) -> Callable[[Principal], Awaitable[Principal]]:
    async def check(principal: Annotated[Principal, Depends(authenticated)]) -> Principal:
        if scope not in principal.token.scopes:
            raise ApiProblem(
                403,
                "insufficient-scope",
                "Forbidden",
                f"this token lacks the {scope.value!r} scope; create one that has it with "
                f"`threadkeep token create --scopes {scope.value}`",
                {"WWW-Authenticate": f'Bearer error="insufficient_scope", scope="{scope.value}"'},
            )
        return principal

    return check


Reader = Annotated[Principal, Depends(require(Scope.READ))]
Writer = Annotated[Principal, Depends(require(Scope.WRITE))]
Admin = Annotated[Principal, Depends(require(Scope.ADMIN))]
TK = Annotated[Threadkeep, Depends(get_tk)]
