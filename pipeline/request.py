"""The content-create request, exactly as the public API page defines it (the contract)."""

from __future__ import annotations

import uuid
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StringConstraints,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema

from pipeline.edit.frame_format import AspectRatio
from pipeline.models import CaptionLength, LyricsMode


def _uuid(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError as exc:
        raise ValueError("artist_account_id must be a UUID") from exc


def _http_url(value: str) -> str:
    if not value.lower().startswith(("http://", "https://")) or len(value) < 9:
        raise ValueError("must be an http(s) URL")
    return value


def _slug_or_http_url(value: str) -> str:
    # Anything with a scheme is fetched, so only http(s) may have one (file://, ftp://, gopher://... are refused here)
    if "://" in value or value.lower().startswith(("file:", "data:", "javascript:")):
        return _http_url(value)
    return value


NonEmpty = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2048)]


class CreateContentRequest(BaseModel):
    """Body of POST /api/content/create.

    Unknown fields are accepted and ignored, as the original's parser (zod `z.object`) does, and named in
    `unknown_fields` so the 202 answer can warn about them (a typo stays visible).
    """

    model_config = ConfigDict(extra="ignore")

    artist_account_id: Annotated[str, AfterValidator(_uuid)] = Field(
        description="UUID of the artist account to create content for.",
        examples=["1873859c-dd37-4e9a-9bac-80d3558527a9"],
    )
    template: str | None = Field(
        default=None,
        max_length=100,
        description="Template id; omitted means malleable mode.",
        examples=["artist-caption-stage"],
    )
    lipsync: StrictBool = Field(default=False, description="Bake the song clip into the video so lips move.")
    caption_length: CaptionLength = Field(default="none")
    upscale: StrictBool = Field(default=False, description="Render at 2x resolution.")
    lyrics: LyricsMode | None = Field(
        default=None, description="Lyrics on screen: the sung line, or the line with each word lit as it is "
        "sung (karaoke). Omitted: the template's default.")
    aspect_ratio: AspectRatio = Field(
        default="9:16", description="Frame format: 9:16 720x1280, 4:5 864x1080, 1:1 1080x1080, 16:9 1280x720 "
        "(upscale doubles each).")
    batch: StrictInt = Field(default=1, ge=1, le=30, description="Number of independent videos.")
    songs: list[Annotated[NonEmpty, AfterValidator(_slug_or_http_url)]] | None = Field(
        default=None, max_length=50, description="Song slugs or public URLs.", examples=[["hiccups"]]
    )
    images: list[Annotated[NonEmpty, AfterValidator(_http_url)]] | None = Field(
        default=None, max_length=20, description="Public image URLs to use as face guides."
    )
    webhook_url: Annotated[NonEmpty, AfterValidator(_http_url)] | None = Field(
        default=None, description="(studio extension) Where to POST each run's final state and the batch's end; "
                                  "overrides the installation's WEBHOOK_URL. Signed with X-Studio-Signature.",
        examples=["https://example.com/hooks/studio"])
    unknown_fields: SkipJsonSchema[list[str]] = Field(default_factory=list, exclude=True, repr=False)

    @model_validator(mode="before")
    @classmethod
    def _note_unknown_fields(cls, data: object) -> object:
        if isinstance(data, dict):
            known = set(cls.model_fields) - {"unknown_fields"}
            data = {**{k: v for k, v in data.items() if k in known},
                    "unknown_fields": [str(k) for k in data if k not in known]}
        return data

    def warnings(self) -> list[str]:
        return [f"Unknown field ignored: {name}" for name in self.unknown_fields]


def _field_path(loc: tuple | list) -> list:
    # FastAPI prefixes where the value came from; the caller only knows the field's own path
    parts = list(loc)
    if parts and parts[0] in ("body", "query", "path", "header", "cookie"):
        parts = parts[1:]
    return parts


def readable_validation_error(error: dict) -> tuple[str, list]:
    """One pydantic error (of this request or of a query) as a sentence and the field path it is about."""
    path = _field_path(error.get("loc", ()))
    name = ".".join(str(p) for p in path)
    kind = error.get("type", "")
    msg = str(error.get("msg", "is invalid"))
    if kind == "json_invalid":
        return "Request body is not valid JSON", []
    if kind == "missing":
        if not path:  # no body at all: the one required field is what is missing
            return "artist_account_id is required", ["artist_account_id"]
        return f"{name} is required", path
    if kind == "extra_forbidden":
        return f"Unknown field: {name}", path
    if not path and kind in ("model_attributes_type", "dict_type", "model_type"):
        return "Request body must be a JSON object", []
    msg = msg.removeprefix("Value error, ")
    return (f"{name}: {msg}" if name else msg), path
