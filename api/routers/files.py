"""A run's video, poster and image (and an artist's face guide), with HTTP Range support.

Served to the run's owner (API key) or to anyone holding a signed, expiring link from the run's output.
Files in S3 storage are streamed through this route (see `stored_file`), never redirected.
"""

from __future__ import annotations

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, Response, StreamingResponse

from api.auth import Unauthorized, account_of, viewer_of
from api.context import ApiContext, Ctx
from api.openapi import errors
from api.shapes import FILE_NAMES
from pipeline.artists import checked_face_guide, find_artist
from pipeline.errors import NotFound
from taskqueue.storage import Storage, parse_range
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


def stored_file(storage: Storage, run_id: str, name: str, request: Request) -> Response:
    """A stored file that is not on this machine's disk, streamed with Range support.

    Streamed rather than answered with a 307 to a presigned URL: the official SDK and JSON clients
    follow no redirects, the bucket's endpoint need not be reachable by callers (a private MinIO),
    and the owner/signed-link checks stay here, in one place. The price is the bytes passing through
    the web server; players fetch ranges, so a seek costs one ranged GET on the bucket.
    """
    size = storage.size(run_id, name)
    if size is None:
        raise NotFound("File not found: the run has no finished output")
    headers = {"Accept-Ranges": "bytes", "Content-Disposition": f'inline; filename="{run_id}-{name}"'}
    media_type = MEDIA_TYPES.get("." + name.rsplit(".", 1)[-1], "application/octet-stream")
    try:
        byte_range = parse_range(request.headers.get("range"), size)
    except ValueError:
        return Response(status_code=416, headers={**headers, "Content-Range": f"bytes */{size}"})
    status = 200 if byte_range is None else 206
    length = size if byte_range is None else byte_range.length
    headers["Content-Length"] = str(length)
    if byte_range is not None:
        headers["Content-Range"] = f"bytes {byte_range.start}-{byte_range.end}/{size}"
    if request.method == "HEAD":
        return Response(status_code=status, headers=headers, media_type=media_type)
    return StreamingResponse(storage.stream(run_id, name, byte_range), status_code=status, headers=headers,
                             media_type=media_type)


FILE_RESPONSES = {
    200: {"description": "The file (Range requests answer 206)",
          "content": {"video/mp4": {"schema": {"type": "string", "format": "binary"}},
                      "image/jpeg": {"schema": {"type": "string", "format": "binary"}}}},
    **errors(401, 404, 429),
}


@router.api_route("/files/{run_id}/{name}", methods=["GET"], summary="Download a run's file",
                  response_class=FileResponse, responses=FILE_RESPONSES)
def run_file(run_id: str, name: str, request: Request, ctx: Ctx, token: str | None = Query(None)) -> Response:
    account = _allowed(request, ctx, token, "run", run_id, name)
    if name not in FILE_NAMES:
        raise NotFound("File not found")
    if account is not None and ctx.store.is_admin_account(account):
        account = None  # an admin's key reads any run's files
    run = ctx.store.get(run_id, owner=account)  # owner None: the signed link already names this run
    if run is None:
        raise NotFound("Run not found", field=["runId"])
    if run.status != COMPLETED:
        raise NotFound("File not found: the run has no finished output")
    storage = ctx.storage
    path = storage.local_path(run.id, name)
    if path is None:
        return stored_file(storage, run.id, name, request)
    media_type = MEDIA_TYPES.get(path.suffix, "application/octet-stream")
    return FileResponse(path, media_type=media_type, filename=f"{run.id}-{name}", content_disposition_type="inline")


@router.api_route("/artists/{account_id}/image", methods=["GET"], summary="An artist's face guide",
                  response_class=FileResponse,
                  responses={200: {"description": "The face guide image",
                                   "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}}},
                             **errors(401, 404, 429)})
def artist_image(account_id: str, request: Request, ctx: Ctx, token: str | None = Query(None)) -> FileResponse:
    account = _allowed(request, ctx, token, "artist", account_id)
    artist = find_artist(ctx.settings, account_id, viewer_of(ctx, account))  # another account's artist: 404
    face = checked_face_guide(artist)  # never a file a workspace symlink points at
    if face is None:
        raise NotFound("The artist has no face guide")
    return FileResponse(face, media_type=MEDIA_TYPES.get(artist.face_guide.suffix, "image/png"))


# HEAD answers like GET without a body; documented once (under GET), so generators see one operation per path
router.add_api_route("/files/{run_id}/{name}", run_file, methods=["HEAD"], include_in_schema=False)
router.add_api_route("/artists/{account_id}/image", artist_image, methods=["HEAD"], include_in_schema=False)
