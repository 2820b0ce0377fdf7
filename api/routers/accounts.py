"""GET /accounts/id: who the caller's key belongs to (what the official SDK's get_account_id() calls)."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from api.auth import require_account

router = APIRouter(prefix="/accounts", tags=["accounts"])


@router.get("/id", summary="The account of the caller's API key")
def account_id(account: str = Depends(require_account)) -> dict:
    return {"status": "success", "accountId": account}
