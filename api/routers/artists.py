"""GET /artists: the artists the caller's account may use (its own and the shared ones), with readiness and a
face-guide link."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from api import models
from api.auth import ActingFor, check_org
from api.context import Ctx
from api.openapi import errors
from pipeline.artists import check_readiness, list_artists, list_songs
from pipeline.repository import mask_url

router = APIRouter(prefix="/artists", tags=["artists"])


@router.get("", summary="List artists", response_model=models.ArtistsResponse,
            responses=errors(400, 401, 403, 429))
def artists(
    request: Request,
    acting: ActingFor,
    ctx: Ctx,
    org_id: Annotated[str | None, Query(description="Artists of an organization (none exist here yet)")] = None,
) -> dict:
    check_org(org_id)
    base = ctx.api_base(request)
    out = []
    for artist in list_artists(ctx.settings, acting.viewer):
        missing = check_readiness(artist)
        has_image = artist.face_guide.is_file()
        out.append({
            "account_id": artist.account_id,
            "name": artist.name,
            "image": f"{base}/artists/{artist.account_id}/image?token={ctx.signer.sign('artist', artist.account_id)}"
            if has_image else None,
            "pinned": False,
            "socials": [],
            "slug": artist.slug,
            "songs": [s.slug for s in list_songs(artist)],
            "repository": mask_url(artist.repository),
            "ready": not any(m.severity == "required" for m in missing),
            "missing": [m.to_dict() for m in missing],
        })
    return {"status": "success", "artists": out}
