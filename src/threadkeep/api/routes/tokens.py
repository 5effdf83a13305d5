"""The token's own user (/v1/me) and token management (admin scope)."""

from __future__ import annotations

from fastapi import APIRouter

from threadkeep.api.auth import TK, Admin, Reader
from threadkeep.api.problems import error_responses
from threadkeep.api.routes._params import TokenId
from threadkeep.api.schemas import Me, TokenCreate, TokenIssued, TokenList, TokenWritten

router = APIRouter(tags=["tokens"])


@router.get("/v1/me", summary="Who this token is", responses=error_responses())
def me(principal: Reader, tk: TK) -> Me:
    """The token's user and the token itself (scopes, expiry)."""
    return Me(user=tk.get_user(principal.actor.user_id), token=principal.token)


@router.get("/v1/tokens", summary="List tokens", responses=error_responses())
def list_tokens(principal: Admin, tk: TK) -> TokenList:
    """The user's tokens, revoked and expired ones included (never the secrets)."""
    return TokenList(items=tk.list_tokens(principal.actor))


@router.post(
    "/v1/tokens",
    status_code=201,
    summary="Create a token",
    responses=error_responses(body=True),
)
def create_token(body: TokenCreate, principal: Admin, tk: TK) -> TokenIssued:
    """A new token for the same user; ``token`` appears only in this answer."""
    done = tk.create_token(
        principal.actor, body.name, scopes=body.scopes, expires_at=body.expires_at
    )
    return TokenIssued(**done.value.model_dump(), txid=done.txid)


@router.delete(
    "/v1/tokens/{token_id}", summary="Revoke a token", responses=error_responses(404, body=True)
)
def revoke_token(token_id: TokenId, principal: Admin, tk: TK) -> TokenWritten:
    """Revoke one of the user's tokens; it stops working at once."""
    done = tk.revoke_token(principal.actor, token_id)
    return TokenWritten(**done.value.model_dump(), txid=done.txid)
