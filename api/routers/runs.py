"""GET /tasks/runs (one run or the caller's newest runs) and POST /tasks/runs/{id}/cancel."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from api import models
from api.auth import ActingFor
from api.context import Ctx
from api.openapi import errors
from api.shapes import shape_run
from pipeline.errors import BadInput, NotFound, StudioError
from taskqueue.store import STATUSES

router = APIRouter(prefix="/tasks", tags=["runs"])


class Conflict(StudioError):
    status_code = 409


def _statuses(value: str | None) -> list[str]:
    wanted = [s.strip().upper() for s in (value or "").split(",") if s.strip()]
    unknown = [s for s in wanted if s not in STATUSES]
    if unknown:
        raise BadInput(f"Unknown status {', '.join(unknown)}; use one of {', '.join(STATUSES)}", field=["status"])
    return wanted


@router.get("/runs", summary="One run (runId) or the caller's runs, newest first", response_model=models.RunsResponse,
            responses=errors(400, 401, 403, 404, 429))
def get_runs(
    request: Request,
    acting: ActingFor,
    ctx: Ctx,
    run_id: Annotated[str | None, Query(alias="runId", description="One run's id")] = None,
    limit: Annotated[int, Query(ge=1, le=100, description="How many runs to list (without runId)")] = 20,
    status: Annotated[str | None, Query(description="Filter: a status, or several separated by commas")] = None,
    artist_account_id: Annotated[str | None, Query(description="Filter: the artist's account id (or slug)")] = None,
) -> dict:
    base = ctx.api_base(request)
    if run_id is not None:
        run = ctx.store.get(run_id.strip(), owner=acting.owner)
        if run is None:
            raise NotFound("Run not found", field=["runId"])
        found = [run]
    else:
        found = ctx.store.list_runs(acting.owner, status=_statuses(status), artist=artist_account_id, limit=limit)
    hooks = ctx.store.webhooks_for_runs([r.id for r in found])
    return {"status": "success", "runs": [shape_run(r, base, ctx.signer, hooks.get(r.id)) for r in found]}


@router.post("/runs/{run_id}/cancel", summary="Cancel a queued or running run", response_model=models.CancelResponse,
             responses=errors(400, 401, 403, 404, 409, 429))
def cancel(run_id: str, request: Request, acting: ActingFor, ctx: Ctx) -> dict:
    before = ctx.store.get(run_id, owner=acting.owner)
    if before is None:
        raise NotFound("Run not found", field=["runId"])
    if before.is_final:
        raise Conflict(f"The run already finished ({before.status}); nothing to cancel")
    run = ctx.cancel(ctx.store, run_id, acting.owner)
    assert run is not None
    hook = ctx.store.webhooks_for_runs([run.id]).get(run.id)
    return {"status": "success", "run": shape_run(run, ctx.api_base(request), ctx.signer, hook)}
