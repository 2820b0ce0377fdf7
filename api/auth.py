"""The API key check: exactly one of `x-api-key` or `Authorization: Bearer`, resolved to an account."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Query, Request, Security
from fastapi.security import APIKeyHeader, HTTPBearer
from starlette.concurrency import run_in_threadpool

from api.context import Ctx
from pipeline.artists import Viewer
from pipeline.errors import BadInput, StudioError
from taskqueue.keys import account_for_key, configured_account

if TYPE_CHECKING:
    from api.context import ApiContext

# Declared for the OpenAPI page only; the header rules below are stricter than FastAPI's defaults.
api_key_scheme = APIKeyHeader(name="x-api-key", auto_error=False, description="Your API key")
bearer_scheme = HTTPBearer(auto_error=False, description="Your API key as a bearer token")


class Unauthorized(StudioError):
    status_code = 401


def presented_key(request: Request) -> str | None:
    """The key the caller sent, None when it sent none; Unauthorized for an ambiguous or malformed header."""
    api_key = request.headers.get("x-api-key")
    authorization = request.headers.get("authorization")
    if api_key is not None and authorization is not None:
        raise Unauthorized("Send exactly one of x-api-key or Authorization: Bearer, not both")
    if authorization is not None:
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("Authorization header must be 'Bearer <API key>'")
        return token.strip()
    if api_key is not None:
        return api_key.strip()
    return None


def account_of(request: Request, ctx: ApiContext) -> str | None:
    """The caller's account, None when no key was sent; Unauthorized for a wrong key."""
    key = presented_key(request)
    if key is None:
        return None
    account = account_for_key(key, ctx.settings, ctx.store)
    if account is None:
        raise Unauthorized("Invalid API key")
    return account


async def require_account(
    request: Request,
    ctx: Ctx,
    _key: Annotated[str | None, Security(api_key_scheme)],
    _bearer: Annotated[object, Security(bearer_scheme)],
) -> str:
    key = presented_key(request)
    if key is None:
        raise Unauthorized("Missing API key: send it in the x-api-key header or as Authorization: Bearer <key>")
    # A key from API_KEYS needs no I/O, so it is checked on the event loop (no thread hop per request);
    # any other key is a database read, on a thread
    account = configured_account(key, ctx.settings) or await run_in_threadpool(account_of, request, ctx)
    if account is None:
        raise Unauthorized("Invalid API key")
    return account


Account = Annotated[str, Depends(require_account)]  # the caller's account, from its key


class Forbidden(StudioError):
    status_code = 403


class BadQuery(BadInput):
    """A malformed query parameter; the answer also names it `message`, as the original's artists API does."""

    def to_dict(self) -> dict:
        return {**super().to_dict(), "message": self.message}


def uuid_param(name: str, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return str(uuid.UUID(value.strip()))
    except ValueError:
        raise BadQuery(f"{name} must be a UUID", field=[name]) from None


@dataclass(frozen=True)
class Acting:
    """Whom a request acts for: `account`, and which runs it sees (`owner`: None is every account's)."""

    account: str
    admin: bool  # the caller's key belongs to an admin's account
    owner: str | None

    @property
    def viewer(self) -> Viewer:
        # An admin acting for an account sees what that account sees; without account_id, every artist
        return Viewer(self.account, admin=self.owner is None)


def acting_for(
    ctx: Ctx,
    account: Account,
    account_id: Annotated[str | None, Query(description="Act for this account: an admin's key may act for any "
                                                       "account; any other key only for its own")] = None,
) -> Acting:
    """The account a request acts for: the key's own, or `account_id` when the key is an admin's."""
    wanted = uuid_param("account_id", account_id)
    admin = ctx.store.is_admin_account(account)
    if wanted is not None and wanted != account:
        if not admin:
            raise Forbidden("This API key may not act for that account_id", field=["account_id"])
        return Acting(wanted, admin, wanted)
    # An admin without account_id sees every account's runs; anyone else their own
    return Acting(account, admin, None if admin and wanted is None else account)


async def acting_account(acting: Annotated[Acting, Depends(acting_for)]) -> str:
    return acting.account


def check_org(org_id: str | None) -> None:
    """`org_id`: no organizations exist here yet, so any well-formed one is an organization the key is not in."""
    if uuid_param("org_id", org_id) is not None:
        raise Forbidden("This API key is not a member of that organization", field=["org_id"])


ActingAccount = Annotated[str, Depends(acting_account)]
ActingFor = Annotated[Acting, Depends(acting_for)]


def viewer_of(ctx: ApiContext, account: str | None) -> Viewer | None:
    """What a key's account may see (an admin's: every artist); None for a signed link, which names its thing."""
    if account is None:
        return None
    return Viewer(account, admin=ctx.store.is_admin_account(account))
