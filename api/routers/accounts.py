"""GET /accounts/id: who the caller's key belongs to (what the official SDK's get_account_id() calls)."""

from __future__ import annotations

from fastapi import APIRouter

from api import models
from api.auth import Account
from api.openapi import errors

router = APIRouter(prefix="/accounts", tags=["accounts"])


@router.get("/id", summary="The account of the caller's API key", response_model=models.AccountIdResponse,
            responses=errors(401, 429))
def account_id(account: Account) -> dict:
    return {"status": "success", "accountId": account}
