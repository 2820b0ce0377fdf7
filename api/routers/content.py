"""POST /content/create and the read-only helpers around it: templates, validate, estimate."""

from __future__ import annotations

import hashlib
import json
from functools import partial
from typing import Annotated

from fastapi import APIRouter, Body, Header, Query, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from api import models
from api.auth import Account, viewer_of
from api.context import ApiContext, Ctx
from api.limits import charge_batch
from api.openapi import errors
from pipeline.artists import check_readiness, find_artist, list_songs
from pipeline.errors import BadInput, NotFound, StudioError
from pipeline.models import Artist
from pipeline.providers.pricing import STEP_NAMES
from pipeline.request import CreateContentRequest
from pipeline.templates import Template, get_template_or_404, list_templates, template_ids
from taskqueue.store import IDEMPOTENCY_MISMATCH, IDEMPOTENCY_PENDING, IDEMPOTENCY_REPLAY
from taskqueue.trigger import check_request, queue_runs, trigger, webhook_target

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


CREATE_EXAMPLES = {
    "seed page": {"summary": "The seed page's example",
                  "value": {"artist_account_id": "1873859c-dd37-4e9a-9bac-80d3558527a9",
                            "template": "artist-caption-stage", "caption_length": "short", "batch": 2}},
    "malleable": {"summary": "No template, a song by URL",
                  "value": {"artist_account_id": "1873859c-dd37-4e9a-9bac-80d3558527a9",
                            "songs": ["https://example.com/unreleased-track.mp3"]}},
}


@router.post("/create", status_code=202, summary="Trigger the content pipeline for an artist",
             response_model=models.CreateResponse,
             responses=errors(400, 401, 404, 409, 413, 429, 503, bad_input=models.CreateErrorResponse))
async def create_content(
    request: Request,
    body: Annotated[CreateContentRequest, Body(openapi_examples=CREATE_EXAMPLES)],
    account: Account,
    ctx: Ctx,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key",
                                                  description="Retry-safe: the same key and body return the "
                                                              "first request's runIds")] = None,
) -> JSONResponse:
    """Validates the artist's files (unless `songs` URLs or `images` override them), writes `batch` runs
    and queues them. Returns `runIds`; poll each with GET /api/tasks/runs?runId=. Unknown body fields are
    ignored (as the original does) and named in `warnings`."""
    key = _idempotency_key(idempotency_key)
    if key is None:
        charge_batch(request.app.state, account, body.batch)  # the rate limit counts the batch's runs, not 1
    synced = await _fetched_artist(body, ctx, account)
    if key is not None:  # charged there: a replay costs one request
        return await run_in_threadpool(_create_once, body, account, ctx, key, request.app.state, synced)
    # the write is short and takes one of the store's writer threads
    artist = await run_in_threadpool(lambda: check_request(body, ctx.settings, viewer_of(ctx, account),
                                                           synced=synced))
    response = await ctx.write(partial(queue_runs, body, artist, account, store=ctx.store, enqueue=ctx.enqueue,
                                       webhook_url=webhook_target(body, ctx.settings),
                                       max_active=ctx.settings.max_active_runs_per_account))
    return JSONResponse(response, status_code=202)


async def _fetched_artist(body: CreateContentRequest, ctx: ApiContext, account: str) -> Artist | None:
    """The request's artist, its repository fetched on the gate's own threads (api/repository_gate.py): a slow
    git server then never holds a thread of the common pool that every other create needs. None when the
    artist is not found (or not this account's to use): check_request then says so, after the errors it
    checks first."""
    try:
        found = await run_in_threadpool(find_artist, ctx.settings, body.artist_account_id, viewer_of(ctx, account))
    except NotFound:
        return None
    return await ctx.repositories.sync(found, ctx.settings)


def _create_once(body: CreateContentRequest, account: str, ctx: ApiContext, key: str,
                 app_state: object, synced: Artist | None) -> JSONResponse:
    """The create with an Idempotency-Key: the first request's answer for a retry with the same body (a replay
    costs one request of the rate limit, not the batch's runs again)."""
    state, previous = ctx.store.begin_idempotent(account, key, _body_hash(body),
                                                 ttl=ctx.settings.idempotency_ttl_seconds,
                                                 pending_timeout=ctx.settings.idempotency_pending_seconds)
    if state == IDEMPOTENCY_REPLAY:
        return JSONResponse(previous, status_code=202, headers={"Idempotent-Replayed": "true"})
    if state == IDEMPOTENCY_MISMATCH:
        raise IdempotencyConflict("This Idempotency-Key was already used with a different request body; "
                                  "use a new key for a new request", field=["Idempotency-Key"])
    if state == IDEMPOTENCY_PENDING:
        raise IdempotencyConflict("A request with this Idempotency-Key is still being handled; retry shortly",
                                  field=["Idempotency-Key"])
    try:
        charge_batch(app_state, account, body.batch)
        response = trigger(body, account, settings=ctx.settings, store=ctx.store, enqueue=ctx.enqueue,
                           viewer=viewer_of(ctx, account), synced=synced)
    except BaseException:
        ctx.store.release_idempotent(account, key)
        raise
    ctx.store.finish_idempotent(account, key, response)
    return JSONResponse(response, status_code=202)


@router.get("/templates", summary="List templates", response_model=models.TemplatesResponse,
            responses=errors(401, 429))
def templates(_account: Account) -> dict:
    return {"status": "success",
            "templates": [{"id": t.id, "description": t.description} for t in list_templates()]}


def template_detail(template: Template) -> dict:
    """The whole template in the original's shape (moods and movements as strings, the edit as operations),
    with our richer data beside it under names of our own."""
    data = template.model_dump(mode="json")
    video = data["video"]
    data["video"] = {"moods": [m["name"] for m in video["moods"]],
                     "movements": [m["prompt"] for m in video["movements"]],
                     "moodDetails": video["moods"], "movementDetails": video["movements"]}
    edit, style = data["edit"], data["caption"]["style"]
    data["edit"] = {**edit, "operations": [
        {"type": "crop", "aspect": edit["crop"]},
        {"type": "trim", "start": 0, "duration": edit["clip_seconds"]},
        {"type": "overlay_text", "font": style["font"], "color": style["primary_colour"],
         "stroke_color": style["outline_colour"], "max_font_size": style["max_size"], "position": style["placement"]},
        {"type": "mux_audio", "replace": edit["audio"] == "song"},
    ]}
    return {"status": "success", **data}


@router.get("/templates/{template_id}", summary="One template, whole", response_model=models.TemplateDetail,
            responses=errors(401, 404, 429))
def template(template_id: str, _account: Account) -> dict:
    return template_detail(get_template_or_404(template_id))


def _check(ok: bool, warn: bool = False) -> dict:
    return {"status": "ok" if ok else ("warning" if warn else "missing")}


@router.get("/validate", summary="Is the artist ready for a run?", response_model=models.ValidateResponse,
            responses=errors(400, 401, 404, 429))
def validate(
    account: Account,
    ctx: Ctx,
    artist_account_id: Annotated[str | None, Query(description="The artist's account id (see GET /api/artists)",
                                                   examples=["1873859c-dd37-4e9a-9bac-80d3558527a9"])] = None,
) -> dict:
    if not (artist_account_id or "").strip():
        raise BadInput("artist_account_id is required", field=["artist_account_id"])
    artist = find_artist(ctx.settings, artist_account_id or "", viewer_of(ctx, account))
    missing = check_readiness(artist)
    songs = len(list_songs(artist))
    return {
        "status": "success",
        "artist_account_id": artist.account_id,
        "ready": not any(m.severity == "required" for m in missing),
        "songs": songs,
        "templates": template_ids(),
        "checks": {
            "face_guide": _check(artist.face_guide.is_file()),
            "artist_context": _check(artist.artist_context.is_file(), warn=True),
            "audience_context": _check(artist.audience_context.is_file(), warn=True),
            "songs": {**_check(songs > 0), "count": songs},
        },
        "missing": [m.to_dict() for m in missing],
        "warnings": [m.fix for m in missing if m.severity != "required"],
    }


def estimate_answer(ctx: ApiContext, *, lipsync: bool, batch: int, upscale: bool, compare: bool) -> dict:
    from pipeline.estimate import estimate_request  # imports the providers: only when asked

    durations = [] if upscale else ctx.store.recent_durations(lipsync=lipsync)
    plan = estimate_request(ctx.settings, durations, lipsync=lipsync, upscale=upscale, batch=batch, compare=compare)
    flows = []
    for flow in plan.workflows:
        steps = [{"name": STEP_NAMES[s.step], "model": s.model, "cost": round(s.usd, 4), "unit": s.unit,
                  "unitPrice": s.unit_price, "note": s.note, "provider": s.provider,
                  "seconds": plan.seconds_by_step.get(s.step)} for s in flow.steps]
        dearest = max(flow.steps, key=lambda s: s.usd, default=None)
        breakdown = None
        if dearest is not None and flow.per_video > 0:
            breakdown = {"mostExpensiveStep": STEP_NAMES[dearest.step],
                         "mostExpensivePercent": round(100 * dearest.usd / flow.per_video)}
        flows.append({"name": flow.name, "perVideo": round(flow.per_video, 4), "steps": steps,
                      "costBreakdown": breakdown})
    cheapest = min(flows, key=lambda f: f["perVideo"])
    dearest_flow = max(flows, key=lambda f: f["perVideo"])
    answer: dict = {"status": "success", "workflows": flows, "time": {
        "perVideoSeconds": plan.per_video_seconds, "totalSeconds": plan.total_seconds, "workers": plan.workers,
        "basis": plan.basis, "sampleSize": plan.sample_size}}
    if compare and len(flows) > 1:
        top = dearest_flow["perVideo"]
        answer["comparison"] = {
            "cheapest": cheapest["name"], "cheapestPerVideo": cheapest["perVideo"],
            "mostExpensive": dearest_flow["name"], "mostExpensivePerVideo": top,
            "savingsPercent": round(100 * (top - cheapest["perVideo"]) / top) if top > 0 else 0}
    if batch > 1:
        answer["batch"] = {"count": batch, "cheapestTotal": round(cheapest["perVideo"] * batch, 4),
                           "mostExpensiveTotal": round(dearest_flow["perVideo"] * batch, 4)}
    return answer


@router.get("/estimate", summary="What a request will cost, and how long it will take",
            response_model=models.EstimateResponse, response_model_exclude_none=True,
            responses=errors(400, 401, 429))
def estimate(
    _account: Account,
    ctx: Ctx,
    lipsync: Annotated[bool, Query(description="Estimate the audio-to-video (lip-sync) workflow")] = False,
    batch: Annotated[int, Query(ge=1, description="Number of videos to project costs for")] = 1,
    upscale: Annotated[bool, Query(description="(studio) Include the upscale step")] = False,
    compare: Annotated[bool, Query(description="Also estimate the other workflows, side by side")] = False,
) -> dict:
    """Cost per step from the models this installation's settings choose (local steps are free, remote ones
    at their list prices or MODEL_PRICES), and time from the durations of past runs here."""
    return estimate_answer(ctx, lipsync=lipsync, batch=batch, upscale=upscale, compare=compare)
