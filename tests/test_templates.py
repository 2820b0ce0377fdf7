"""Templates: the five bundled ids load and validate, bad ids fail with the original's messages, malleable works."""

from __future__ import annotations

import json
import re

import pytest

from pipeline.errors import BadInput, NotFound
from pipeline.settings import FONTS_DIR, TEMPLATES_DIR
from pipeline.templates import Template, get_template_or_404, list_templates, load_template, malleable_template

TEMPLATE_IDS = (
    "artist-caption-bedroom",
    "artist-caption-outside",
    "artist-caption-stage",
    "album-record-store",
    "artist-release-editorial",
)


def test_the_five_templates_are_bundled() -> None:
    assert {t.id for t in list_templates()} == set(TEMPLATE_IDS)


@pytest.mark.parametrize("template_id", TEMPLATE_IDS)
def test_template_loads_and_is_complete(template_id: str) -> None:
    t = load_template(template_id)
    assert t.id == template_id
    assert len(t.description) > 40
    rules = t.image.style_rules
    assert all(len(x) > 20 for x in (rules.camera, rules.environment, rules.subject, rules.realism))
    assert 4 <= len(t.video.moods) <= 6 and 4 <= len(t.video.movements) <= 6
    assert len({m.name for m in t.video.moods}) == len(t.video.moods)
    assert len({m.style for m in t.video.movements}) >= 4  # the local renderer gets real variety
    guide = t.caption.guide
    assert guide.templateStyle and guide.captionRole and guide.tone and guide.rules and guide.formats
    assert 4 <= len(t.caption.examples) <= 8
    assert (FONTS_DIR / t.caption.style.font).is_file()
    assert t.caption.style.min_size <= t.caption.style.max_size
    assert t.edit.clip_seconds == 15.0


def test_template_files_match_their_folder_and_the_model_strictly() -> None:
    for template_id in TEMPLATE_IDS:
        raw = json.loads((TEMPLATES_DIR / template_id / "template.json").read_text(encoding="utf-8"))
        assert raw["id"] == template_id
        Template.model_validate(raw)  # extra keys would be rejected here


def test_each_template_has_its_own_grade() -> None:
    grades = {t.id: t.image.grade for t in list_templates()}
    assert len({g.model_dump_json() for g in grades.values()}) == len(TEMPLATE_IDS)
    assert grades["artist-caption-bedroom"].warmth > 0.2  # warm, soft
    assert grades["artist-caption-bedroom"].contrast < 1.0
    assert grades["artist-caption-outside"].brightness > 0 and grades["artist-caption-outside"].saturation > 1
    assert grades["artist-caption-stage"].warmth < 0 and grades["artist-caption-stage"].contrast > 1.2
    assert grades["artist-caption-stage"].saturation > 1.2
    assert grades["album-record-store"].warmth > 0.3 and grades["album-record-store"].saturation < 1
    assert grades["artist-release-editorial"].contrast > 1.2 and grades["artist-release-editorial"].saturation < 0.8


def test_album_record_store_does_not_use_the_face_guide() -> None:
    t = load_template("album-record-store")
    assert t.image.uses_face_guide is False
    assert t.image.background in ("gradient", "color")
    others = [load_template(i) for i in TEMPLATE_IDS if i != "album-record-store"]
    assert all(o.image.uses_face_guide for o in others)


def test_editorial_uses_bebas_uppercase() -> None:
    style = load_template("artist-release-editorial").caption.style
    assert style.font == "BebasNeue-Bold.otf" and style.uppercase


@pytest.mark.parametrize("bad", ["nope", "ARTIST-CAPTION-BEDROOM", "../fonts", "", "a" * 80])
def test_unknown_template_is_bad_input(bad: str) -> None:
    with pytest.raises(BadInput, match=re.escape(f"Unsupported template: {bad}")) as info:
        load_template(bad)
    assert info.value.field == ["template"]


def test_get_template_or_404() -> None:
    assert get_template_or_404("artist-caption-stage").id == "artist-caption-stage"
    with pytest.raises(NotFound, match="Template not found") as info:
        get_template_or_404("nope")
    assert info.value.status_code == 404


def test_malleable_template_is_valid() -> None:
    t = malleable_template()
    again = Template.model_validate(t.model_dump())
    assert again == t and t.id == "malleable"
    assert t.video.moods and t.video.movements and (FONTS_DIR / t.caption.style.font).is_file()


def test_motion_prompt_reads_like_the_original() -> None:
    t = load_template("artist-caption-outside")
    movement, mood = t.video.movements[0], t.video.moods[0]
    prompt = t.motion_prompt(movement, mood)
    assert prompt == f"Static camera. Movement: {movement.prompt}. Energy: {mood.name}. Shot on phone."
    assert re.fullmatch(r"Static camera\. Movement: [^.]+\. Energy: \w+\. Shot on phone\.", prompt)
