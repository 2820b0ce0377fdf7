"""GET /health: liveness for a load balancer without a key; queue depth, runs by status and live workers with one.

Unauthenticated callers (load balancer probes, uptime checks) learn only whether this server can reach
its run store; the queue and worker details are operational data, so they need an API key.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from api.auth import account_of
from api.context import Ctx
from api.models import HealthResponse
from api.openapi import errors
from api.shapes import iso
from pipeline.providers.overview import provider_overview

router = APIRouter(tags=["health"])
log = logging.getLogger("api.health")


def queue_depth() -> dict[str, int | None]:
    """Huey's pending (ready) and scheduled (delayed retries) message counts; None when unreachable."""
    from taskqueue.huey_app import huey

    try:
        return {"pending": huey.pending_count(), "scheduled": huey.scheduled_count()}
    except Exception:
        log.exception("could not read the queue's length")
        return {"pending": None, "scheduled": None}


@router.get("/health", summary="Liveness; with an API key also queue length, runs by status and live workers",
            response_model=HealthResponse, responses=errors(401, 429, 503))
def health(request: Request, ctx: Ctx) -> JSONResponse:
    account = account_of(request, ctx)
    try:
        by_status = ctx.store.count_by_status()
    except Exception:
        log.exception("health: the run store is unreachable")
        return JSONResponse({"status": "error", "ok": False, "error": "The run store is unreachable"},
                            status_code=503)
    if account is None:
        return JSONResponse({"status": "ok", "ok": True})
    # A worker is live while its heartbeat is younger than the reaper's crash threshold.
    live = ctx.store.live_workers(ctx.settings.crash_after_seconds)
    # Another account's run id is not this caller's to see (an admin sees them all)
    admin = ctx.store.is_admin_account(account)
    shown = {w["current_run"] for w in live if w["current_run"]
             and (admin or ctx.store.get(w["current_run"], owner=account) is not None)}
    queue = queue_depth()
    return JSONResponse({
        "status": "ok",
        "ok": True,
        "queue": {**queue, "name": ctx.settings.queue_name, "backend": "redis" if ctx.settings.redis_url else "sqlite"},
        "runs": by_status,
        "workers": [
            {"name": w["name"], "host": w["host"], "pid": w["pid"], "startedAt": iso(w["started_at"]),
             "heartbeatAt": iso(w["heartbeat_at"]),
             "currentRun": w["current_run"] if w["current_run"] in shown else None}
            for w in live
        ],
        "liveWorkers": len(live),
        "providers": provider_overview(ctx.settings),  # per step who runs it; whether ComfyUI answers
    })
