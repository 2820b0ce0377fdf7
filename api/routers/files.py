"""A run's video, poster and image (and an artist's face guide), with HTTP Range support.

Served to the run's owner (API key) or to anyone holding a signed, expiring link from the run's output.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse

from api.auth import Unauthorized, account_of
from api.context import ApiContext, get_ctx
from api.shapes import FILE_NAMES
from pipeline.artists import find_artist
from pipeline.errors import NotFound
from taskqueue.store import COMPLETED

router = APIRouter(tags=["files"])

MEDIA_TYPES = {".mp4": "video/mp4", ".jpg": "image/jpeg", ".png": "image/png"}


def _allowed(request: Request, ctx: ApiContext, token: str | None, *parts: str) -> str | None:
    """The caller's account (None for a valid signed link); Unauthorized when neither key nor link."""
    if token is not None:
        if ctx.signer.verify(token, *parts):
            return None
        if request.headers.get("x-api-key") is None and request.headers.get("authorization") is None:
            raise Unauthorized("This download link is invalid or has expired; get a fresh one from the run")
    account = account_of(request, ctx)
    if account is None:
        raise Unauthorized("Missing API key or signed download link")
    return account


@router.api_route("/files/{run_id}/{name}", methods=["GET", "HEAD"], summary="Download a run's file",
                  response_class=FileResponse)
def run_file(run_id: str, name: str, request: Request, token: str | None = Query(None),
             ctx: ApiContext = Depends(get_ctx)) -> FileResponse:
    account = _allowed(request, ctx, token, "run", run_id, name)
    if name not in FILE_NAMES:
        raise NotFound("File not found")
    run = ctx.store.get(run_id, owner=account)  # owner None: the signed link already names this run
    if run is None:
        raise NotFound("Run not found", field=["runId"])
    path = ctx.settings.runs_dir / run.id / name
    if run.status != COMPLETED or not path.is_file():
        raise NotFound("File not found: the run has no finished output")
    media_type = MEDIA_TYPES.get(path.suffix, "application/octet-stream")
    return FileResponse(path, media_type=media_type, filename=f"{run.id}-{name}", content_disposition_type="inline")


@router.api_route("/artists/{account_id}/image", methods=["GET", "HEAD"], summary="An artist's face guide",
                  response_class=FileResponse)
def artist_image(account_id: str, request: Request, token: str | None = Query(None),
                 ctx: ApiContext = Depends(get_ctx)) -> FileResponse:
    _allowed(request, ctx, token, "artist", account_id)
    artist = find_artist(ctx.settings, account_id)
    if not artist.face_guide.is_file():
        raise NotFound("The artist has no face guide")
    return FileResponse(artist.face_guide, media_type=MEDIA_TYPES.get(artist.face_guide.suffix, "image/png"))
