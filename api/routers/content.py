"""POST /content/create and the read-only helpers around it: templates, validate, estimate."""

from __future__ import annotations

import hashlib
import json
import math
import statistics
from functools import partial

from fastapi import APIRouter, Depends, Header, Query
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from api.auth import require_account
from api.context import ApiContext, get_ctx
from pipeline.artists import check_readiness, find_artist
from pipeline.errors import BadInput, StudioError
from pipeline.request import CreateContentRequest
from pipeline.templates import get_template_or_404, list_templates
from taskqueue.store import IDEMPOTENCY_MISMATCH, IDEMPOTENCY_PENDING, IDEMPOTENCY_REPLAY
from taskqueue.trigger import check_request, queue_runs, trigger

router = APIRouter(prefix="/content", tags=["content"])


IDEMPOTENCY_KEY_MAX = 200


class IdempotencyConflict(StudioError):
    status_code = 409


def _idempotency_key(value: str | None) -> str | None:
    if value is None:
        return None
    key = value.strip()
    if not key or len(key) > IDEMPOTENCY_KEY_MAX or not key.isprintable():
        raise BadInput(f"Idempotency-Key must be 1 to {IDEMPOTENCY_KEY_MAX} printable characters",
                       field=["Idempotency-Key"])
    return key


def _body_hash(body: CreateContentRequest) -> str:
    # The parsed body, so whitespace or key order in the JSON do not make a retry look different
    canonical = json.dumps(body.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


@router.post("/create", status_code=202, summary="Trigger the content pipeline for an artist")
async def create_content(body: CreateContentRequest, account: str = Depends(require_account),
                         ctx: ApiContext = Depends(get_ctx),
                         idempotency_key: str | None = Header(None, alias="Idempotency-Key",
                                                              description="Retry-safe: the same key and body "
                                                                          "return the first request's runIds")
                         ) -> JSONResponse:
    """Validates the artist's files (unless `songs` URLs or `images` override them), writes `batch` runs
    and queues them. Returns `runIds`; poll each with GET /api/tasks/runs?runId=."""
    key = _idempotency_key(idempotency_key)
    if key is not None:
        return await run_in_threadpool(_create_once, body, account, ctx, key)
    # The check may wait on git (an artist kept in a repository), so it gets a thread of the common pool;
    # the write is short and takes one of the store's writer threads
    artist = await run_in_threadpool(check_request, body, ctx.settings)
    response = await ctx.write(partial(queue_runs, body, artist, account, store=ctx.store, enqueue=ctx.enqueue))
    return JSONResponse(response, status_code=202)


def _create_once(body: CreateContentRequest, account: str, ctx: ApiContext, key: str) -> JSONResponse:
    """The create with an Idempotency-Key: the first request's answer for a retry with the same body."""
    state, previous = ctx.store.begin_idempotent(account, key, _body_hash(body))
    if state == IDEMPOTENCY_REPLAY:
        return JSONResponse(previous, status_code=202, headers={"Idempotent-Replayed": "true"})
    if state == IDEMPOTENCY_MISMATCH:
        raise IdempotencyConflict("This Idempotency-Key was already used with a different request body; "
                                  "use a new key for a new request", field=["Idempotency-Key"])
    if state == IDEMPOTENCY_PENDING:
        raise IdempotencyConflict("A request with this Idempotency-Key is still being handled; retry shortly",
                                  field=["Idempotency-Key"])
    try:
        response = trigger(body, account, settings=ctx.settings, store=ctx.store, enqueue=ctx.enqueue)
    except BaseException:
        ctx.store.release_idempotent(account, key)
        raise
    ctx.store.finish_idempotent(account, key, response)
    return JSONResponse(response, status_code=202)


@router.get("/templates", summary="List templates")
def templates(_account: str = Depends(require_account)) -> dict:
    return {"status": "success",
            "templates": [{"id": t.id, "description": t.description} for t in list_templates()]}


@router.get("/templates/{template_id}", summary="One template, whole")
def template(template_id: str, _account: str = Depends(require_account)) -> dict:
    return {"status": "success", **get_template_or_404(template_id).model_dump(mode="json")}


@router.get("/validate", summary="Is the artist ready for a run?")
def validate(artist_account_id: str | None = Query(None), _account: str = Depends(require_account),
             ctx: ApiContext = Depends(get_ctx)) -> dict:
    if not (artist_account_id or "").strip():
        raise BadInput("artist_account_id is required", field=["artist_account_id"])
    artist = find_artist(ctx.settings, artist_account_id or "")
    missing = check_readiness(artist)
    return {
        "status": "success",
        "artist_account_id": artist.account_id,
        "ready": not any(m.severity == "required" for m in missing),
        "missing": [{"file": m.file, "severity": m.severity, "fix": m.fix} for m in missing],
        "warnings": [m.fix for m in missing if m.severity != "required"],
    }


@router.get("/estimate", summary="Time (and cost) a request will take")
def estimate(lipsync: bool = Query(False), batch: int = Query(1, ge=1, le=30), upscale: bool = Query(False),
             _account: str = Depends(require_account), ctx: ApiContext = Depends(get_ctx)) -> dict:
    """From the durations of past runs on this installation; a model of the chosen providers until then."""
    from pipeline.estimate import estimate_seconds  # imports the providers: only when asked

    guess = estimate_seconds(ctx.settings, lipsync=lipsync, upscale=upscale, batch=batch)
    durations = [] if upscale else ctx.store.recent_durations(lipsync=lipsync)
    if durations:
        per_video, basis = statistics.median(durations), "past runs on this installation"
    else:
        per_video, basis = guess.per_video_seconds, "default guess (no comparable finished runs yet)"
    workers = ctx.settings.cpu_slots
    total = per_video * math.ceil(batch / workers)
    all_local = all(p == "local" for p in guess.providers.values())
    cost = 0.0 if all_local else None  # remote prices vary by plan; not guessed
    return {
        "status": "success",
        "lipsync": lipsync,
        "upscale": upscale,
        "batch": batch,
        "workers": workers,
        "perVideo": {"seconds": round(per_video, 1), "costUsd": cost},
        "total": {"seconds": round(total, 1), "costUsd": None if cost is None else 0.0},
        "basis": basis,
        "sampleSize": len(durations),
        "steps": guess.steps,
        "providers": guess.providers,
    }
