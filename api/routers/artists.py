"""GET /artists: the artists this installation knows, with readiness and a face-guide link."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from api.auth import require_account
from api.context import ApiContext, get_ctx
from pipeline.artists import check_readiness, list_artists, list_songs
from pipeline.repository import mask_url

router = APIRouter(prefix="/artists", tags=["artists"])


@router.get("", summary="List artists")
def artists(request: Request, _account: str = Depends(require_account), ctx: ApiContext = Depends(get_ctx)) -> dict:
    base = ctx.api_base(request)
    out = []
    for artist in list_artists(ctx.settings):
        missing = check_readiness(artist)
        has_image = artist.face_guide.is_file()
        out.append({
            "account_id": artist.account_id,
            "name": artist.name,
            "slug": artist.slug,
            "image": f"{base}/artists/{artist.account_id}/image?token={ctx.signer.sign('artist', artist.account_id)}"
            if has_image else None,
            "songs": [s.slug for s in list_songs(artist)],
            "repository": mask_url(artist.repository),
            "ready": not any(m.severity == "required" for m in missing),
            "missing": [{"file": m.file, "severity": m.severity, "fix": m.fix} for m in missing],
        })
    return {"status": "success", "artists": out}
