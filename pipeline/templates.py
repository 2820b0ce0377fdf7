"""Templates: the scene, motion, caption guide and edit defaults of a kind of video.

Each template is `assets/templates/<id>/template.json`. No template means malleable mode,
which uses `malleable_template()`.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from pipeline.errors import BadInput, NotFound
from pipeline.models import LyricsMode
from pipeline.settings import TEMPLATES_DIR

MotionStyle = Literal["push-in", "pull-out", "pan-left", "pan-right", "tilt-up", "tilt-down", "drift", "handheld"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StyleRules(_Strict):
    camera: str = ""
    environment: str = ""
    subject: str = ""
    realism: str = ""


class GradeSpec(_Strict):
    brightness: float = Field(0.0, ge=-1, le=1)
    contrast: float = Field(1.0, ge=0.2, le=3)
    saturation: float = Field(1.0, ge=0, le=3)
    warmth: float = Field(0.0, ge=-1, le=1)
    vignette: float = Field(0.0, ge=0, le=1)


class ImageSpec(_Strict):
    prompt: str
    reference_images: list[str] = []
    style_rules: StyleRules = StyleRules()
    uses_face_guide: bool = True
    grade: GradeSpec = GradeSpec()
    background: Literal["blur", "gradient", "color"] = "blur"
    background_color: str = "#101014"
    lighting: Literal["none", "stage-beams", "fairy-lights", "golden-hour", "film"] = "none"  # local scene light
    # where the face should sit in the 9:16 frame (centre, fractions of width/height)
    face_anchor: tuple[float, float] = (0.5, 0.38)


class Movement(_Strict):
    prompt: str  # words for an image-to-video model
    style: MotionStyle  # what the local renderer does


class Mood(_Strict):
    name: str
    energy: float = Field(0.5, ge=0, le=1)  # scales motion amplitude and speed


class VideoSpec(_Strict):
    moods: list[Mood] = Field(min_length=1)
    movements: list[Movement] = Field(min_length=1)


class CaptionGuide(_Strict):
    templateStyle: str = ""
    captionRole: str = ""
    tone: str = ""
    rules: list[str] = []
    formats: list[str] = []


class CaptionStyleSpec(_Strict):
    font: str = "Inter-ExtraBold.otf"  # a file in assets/fonts
    max_size: int = 64  # px at 1280 px frame height
    min_size: int = 34
    primary_colour: str = "#FFFFFF"
    outline_colour: str = "#000000"
    outline: float = 4.0
    placement: Literal["bottom", "center", "top"] = "bottom"
    uppercase: bool = False


class CaptionSpec(_Strict):
    guide: CaptionGuide = CaptionGuide()
    examples: list[str] = []
    style: CaptionStyleSpec = CaptionStyleSpec()


class EditSpec(_Strict):
    crop: Literal["9:16"] = "9:16"
    clip_seconds: float = Field(15.0, ge=3, le=60)
    fade_in: float = Field(0.4, ge=0, le=3)
    fade_out: float = Field(0.8, ge=0, le=3)
    audio: Literal["song", "video"] = "song"  # with lip-sync the video's own audio may be used
    lyrics: LyricsMode = "none"  # lyrics on screen unless the request says otherwise
    punch: float = Field(0.5, ge=0, le=1)  # how readily the camera punches in on accented beats (times the mood)
    highlight_colour: str = "#FFD84D"  # the word being sung, in karaoke lyrics


class Template(_Strict):
    id: str
    description: str
    image: ImageSpec
    video: VideoSpec
    caption: CaptionSpec = CaptionSpec()
    edit: EditSpec = EditSpec()

    def motion_prompt(self, movement: Movement, mood: Mood) -> str:
        return f"Static camera. Movement: {movement.prompt}. Energy: {mood.name}. Shot on phone."


class UnknownTemplate(BadInput):
    """No template has this id; the answer lists the ones there are (as the original's spec promises)."""

    def __init__(self, template_id: str, available: list[str]):
        super().__init__(f"Unsupported template: {template_id}", field=["template"])
        self.available = available

    def to_dict(self) -> dict:
        return {**super().to_dict(), "available_templates": self.available}


_TEMPLATE_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")


def template_ids(templates_dir: Path = TEMPLATES_DIR) -> list[str]:
    return sorted(p.parent.name for p in templates_dir.glob("*/template.json"))


@lru_cache(maxsize=64)
def _load(path: Path, mtime: float) -> Template:
    return Template.model_validate(json.loads(path.read_text(encoding="utf-8")))


def load_template(template_id: str, templates_dir: Path = TEMPLATES_DIR) -> Template:
    """The template with this id; `BadInput("Unsupported template: X")` when there is none."""
    path = templates_dir / (template_id or "") / "template.json"
    try:  # the id pattern keeps the path inside templates_dir; one stat instead of listing the folder
        mtime = path.stat().st_mtime if _TEMPLATE_ID.match(template_id or "") else None
    except OSError:
        mtime = None
    if mtime is None:
        raise UnknownTemplate(template_id, template_ids(templates_dir))
    return _load(path, mtime)


def get_template_or_404(template_id: str, templates_dir: Path = TEMPLATES_DIR) -> Template:
    try:
        return load_template(template_id, templates_dir)
    except BadInput:
        raise NotFound("Template not found") from None


def list_templates(templates_dir: Path = TEMPLATES_DIR) -> list[Template]:
    return [load_template(t, templates_dir) for t in template_ids(templates_dir)]


def malleable_template() -> Template:
    """Sensible defaults for a run without a template (the original's malleable mode crashes; ours works)."""
    return Template(
        id="malleable",
        description="No template: a clean portrait of the artist with gentle motion and a plain caption.",
        image=ImageSpec(
            prompt="A natural portrait of the artist, soft light, shallow depth of field.",
            style_rules=StyleRules(
                camera="phone camera, eye level",
                environment="keep the original background",
                subject="the artist, face clearly visible",
                realism="photorealistic, no filters",
            ),
            grade=GradeSpec(contrast=1.05, saturation=1.05),
        ),
        video=VideoSpec(
            moods=[
                Mood(name="calm", energy=0.3),
                Mood(name="confident", energy=0.5),
                Mood(name="euphoric", energy=0.8),
            ],
            movements=[
                Movement(prompt="slow push in toward the face", style="push-in"),
                Movement(prompt="slow pull back revealing the scene", style="pull-out"),
                Movement(prompt="gentle drift", style="drift"),
            ],
        ),
        caption=CaptionSpec(
            guide=CaptionGuide(
                templateStyle="plain",
                captionRole="say what the song feels like",
                tone="honest, lowercase, no hashtags",
                rules=["no emojis", "no hashtags", "never name the platform"],
                formats=["a line from the lyric", "a feeling in few words"],
            ),
            examples=["this one is for the late drives", "you already know the words"],
        ),
    )
