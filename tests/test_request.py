"""The request model is the seed page's contract: names, defaults, bounds; unknown fields ignored but named."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from pipeline.request import CreateContentRequest

AID = "1873859c-dd37-4e9a-9bac-80d3558527a9"


def test_defaults_match_the_seed_page() -> None:
    req = CreateContentRequest(artist_account_id=AID)
    assert (req.template, req.lipsync, req.caption_length, req.upscale, req.batch, req.songs, req.images) == (
        None, False, "none", False, 1, None, None)


def test_full_example_from_the_seed_page() -> None:
    req = CreateContentRequest.model_validate({
        "artist_account_id": AID, "template": "artist-caption-stage", "lipsync": False, "caption_length": "short",
        "upscale": False, "batch": 30, "songs": ["hiccups", "https://example.com/unreleased-track.mp3"],
        "images": ["https://example.com/face.png"]})
    assert req.batch == 30 and req.songs == ["hiccups", "https://example.com/unreleased-track.mp3"]


@pytest.mark.parametrize("patch, loc", [
    ({"batch": 0}, "batch"), ({"batch": 31}, "batch"), ({"batch": -1}, "batch"), ({"batch": "3"}, "batch"),
    ({"batch": 1.5}, "batch"), ({"caption_length": "huge"}, "caption_length"), ({"lipsync": "yes"}, "lipsync"),
    ({"artist_account_id": "not-a-uuid"}, "artist_account_id"), ({"songs": [""]}, "songs"),
    ({"images": ["ftp://x/y.png"]}, "images"), ({"images": ["file:///etc/passwd"]}, "images"),
    ({"surprise": 1, "batch": "3"}, "batch"),
])
def test_bad_values_are_rejected_with_their_field(patch: dict, loc: str) -> None:
    with pytest.raises(ValidationError) as info:
        CreateContentRequest.model_validate({"artist_account_id": AID, **patch})
    assert info.value.errors()[0]["loc"][0] == loc


def test_artist_account_id_is_required() -> None:
    with pytest.raises(ValidationError) as info:
        CreateContentRequest.model_validate({})
    assert info.value.errors()[0]["loc"] == ("artist_account_id",)


def test_unknown_fields_are_ignored_and_named() -> None:
    req = CreateContentRequest.model_validate({"artist_account_id": AID, "surprise": 1, "Batch": 3})
    assert req.unknown_fields == ["surprise", "Batch"] and req.batch == 1
    assert req.warnings() == ["Unknown field ignored: surprise", "Unknown field ignored: Batch"]
    assert "unknown_fields" not in req.model_dump() and "surprise" not in req.model_dump()
    # the name of the bookkeeping field itself is not a way in
    assert CreateContentRequest.model_validate({"artist_account_id": AID, "unknown_fields": []}).unknown_fields == [
        "unknown_fields"]
    assert "unknown_fields" not in CreateContentRequest.model_json_schema()["properties"]
