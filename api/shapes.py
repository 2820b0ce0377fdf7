"""How a stored run looks to API callers: the original's field names, ISO times, downloadable URLs."""

from __future__ import annotations

from datetime import UTC, datetime

from api.context import UrlSigner
from taskqueue.store import CANCELED, COMPLETED, EXECUTING, QUEUED, Run

FILE_NAMES = ("video.mp4", "poster.jpg", "image.jpg")


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def file_url(api_base: str, signer: UrlSigner, run_id: str, name: str) -> str:
    return f"{api_base}/files/{run_id}/{name}?token={signer.sign('run', run_id, name)}"


def shape_output(run: Run, api_base: str, signer: UrlSigner) -> dict | None:
    """A completed run's output: the pipeline's record plus signed URLs (`video.url` is never null)."""
    if run.status != COMPLETED or not run.output:
        return None
    output = {k: v for k, v in run.output.items() if k != "files"}
    files = run.output.get("files") or {}
    video_url = file_url(api_base, signer, run.id, "video.mp4")
    poster_url = file_url(api_base, signer, run.id, "poster.jpg") if "poster" in files else None
    image_url = file_url(api_base, signer, run.id, "image.jpg") if "image" in files else None
    audio = output.get("audio") or {}
    output.update({
        "videoSourceUrl": video_url,
        "video": {
            "url": video_url,
            "posterUrl": poster_url,
            "contentType": "video/mp4",
            "width": output.get("width"),
            "height": output.get("height"),
            "durationSeconds": audio.get("durationSeconds"),
        },
        "imageUrl": image_url,
        "posterUrl": poster_url,
    })
    return output


TASK_IDENTIFIER = "create-content"  # the original's Trigger.dev task id for this pipeline
VERSION = "0.1.0"

# How a run's status reads for its current attempt (Trigger.dev's attempt statuses)
_ATTEMPT_STATUS = {EXECUTING: "EXECUTING", COMPLETED: "COMPLETED", CANCELED: "CANCELED"}


def _attempts(run: Run) -> list[dict]:
    """The attempt history as Trigger.dev lists it. Only the count of earlier attempts is stored, so
    they carry no times; the current (or last) one has the run's start and end."""
    out = []
    for n in range(1, run.attempts + 1):
        last = n == run.attempts and run.status != QUEUED
        status = _ATTEMPT_STATUS.get(run.status, "FAILED") if last else "FAILED"
        out.append({"id": f"attempt_{run.id.removeprefix('run_')}_{n}", "status": status,
                    "createdAt": iso(run.started_at) if last else None,
                    "updatedAt": iso(run.finished_at or run.heartbeat_at) if last else None,
                    "startedAt": iso(run.started_at) if last else None,
                    "completedAt": iso(run.finished_at) if last else None})
    return out


def _cost_cents(run: Run) -> float:
    cost = (run.output or {}).get("cost") or {}
    return round(float(cost.get("totalUsd") or 0.0) * 100, 4)


def shape_webhook(row: dict | None) -> dict | None:
    """A run's webhook: where it goes, and each try of its delivery (the id stays the same across tries)."""
    if row is None:
        return None
    return {"url": row["url"], "deliveries": [
        {"id": row["id"], "event": row["event"], "attempt": h["attempt"], "at": iso(h["at"]), "status": h["status"],
         "error": h["error"]} for h in row["history"] or []]}


def shape_run(run: Run, api_base: str, signer: UrlSigner, webhook: dict | None = None) -> dict:
    """The run as the original's Trigger.dev run object, with our progress fields beside it.

    Long because it is one flat literal: every field of the answer in one place, in the order clients see them.
    """
    duration = (run.finished_at - run.started_at) if run.finished_at and run.started_at else None
    updated = max(t for t in (run.created_at, run.started_at, run.finished_at, run.heartbeat_at) if t is not None)
    error = None
    if run.error:
        error = {**run.error, "message": str(run.error.get("message") or ""), "name": run.error.get("stage")}
    return {
        "id": run.id,
        "status": run.status,
        "taskIdentifier": TASK_IDENTIFIER,
        "idempotencyKey": None,
        "version": VERSION,
        "isTest": False,
        "createdAt": iso(run.created_at),
        "updatedAt": iso(updated),
        "startedAt": iso(run.started_at),
        "finishedAt": iso(run.finished_at),
        "delayedUntil": None,
        "expiredAt": None,
        "ttl": None,
        "tags": [f"account:{run.owner}", f"artist:{run.artist_account_id}"],
        "metadata": {"step": run.step, "progress": run.progress},
        "costInCents": _cost_cents(run),
        "baseCostInCents": 0.0,
        "durationMs": round(duration * 1000, 1) if duration is not None else 0.0,
        "env": {"id": "studio", "name": "self-hosted", "user": None},
        "depth": 0,
        "batchId": run.batch_id,
        "triggerFunction": "trigger",
        "payload": run.request,
        "attempts": _attempts(run),
        "step": run.step,
        "progress": run.progress,
        "artist_account_id": run.artist_account_id,
        "artistSlug": run.artist_slug,
        "template": run.template,
        "seed": run.seed,
        "request": run.request,
        "attemptCount": run.attempts,
        "cancelRequested": run.cancel_requested,
        "isFinal": run.is_final,
        "heartbeatAt": iso(run.heartbeat_at),
        "worker": run.worker,  # host:pid of the worker process that claimed (rendered) it
        "durationSeconds": round(duration, 3) if duration is not None else None,
        "timeline": [
            {
                "step": entry.get("step"),
                "startedAt": iso(entry.get("started_at")),
                "finishedAt": iso(entry.get("finished_at")),
                "seconds": round(entry["finished_at"] - entry["started_at"], 3)
                if entry.get("finished_at") and entry.get("started_at") else None,
            }
            for entry in run.timeline
        ],
        "error": error,
        "output": shape_output(run, api_base, signer),
        "webhook": shape_webhook(webhook),
    }
