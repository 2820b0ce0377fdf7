"""How a stored run looks to API callers: the original's field names, ISO times, downloadable URLs."""

from __future__ import annotations

from datetime import UTC, datetime

from api.context import UrlSigner
from taskqueue.store import COMPLETED, Run

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


def shape_run(run: Run, api_base: str, signer: UrlSigner) -> dict:
    duration = (run.finished_at - run.started_at) if run.finished_at and run.started_at else None
    return {
        "id": run.id,
        "batchId": run.batch_id,
        "status": run.status,
        "step": run.step,
        "progress": run.progress,
        "artist_account_id": run.artist_account_id,
        "artistSlug": run.artist_slug,
        "template": run.template,
        "seed": run.seed,
        "request": run.request,
        "attempts": run.attempts,
        "cancelRequested": run.cancel_requested,
        "isFinal": run.is_final,
        "createdAt": iso(run.created_at),
        "startedAt": iso(run.started_at),
        "finishedAt": iso(run.finished_at),
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
        "error": run.error,
        "output": shape_output(run, api_base, signer),
    }
