"""The small protocols every provider implements, one per step."""

from __future__ import annotations

import random
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from pipeline.models import CaptionLength, LyricLine, StyledImage

if TYPE_CHECKING:
    from pipeline.templates import Template
    from pipeline.write_caption import CaptionContext


class Transcriber(Protocol):
    name: str

    def transcribe(self, path: Path) -> list[LyricLine]: ...


class CaptionWriter(Protocol):
    name: str

    def write(self, ctx: CaptionContext, length: CaptionLength, rng: random.Random) -> str: ...


class ImageMaker(Protocol):
    name: str

    def make(
        self, face_guide: Path | None, template: Template, *, width: int, height: int, rng: random.Random,
        out_path: Path,
    ) -> StyledImage: ...


class VideoMaker(Protocol):
    """Turns the still into a clip. The local one returns None: the renderer animates the still itself."""

    name: str

    def make(
        self, image: StyledImage, prompt: str, *, duration: float, audio_clip: Path | None, out_path: Path,
    ) -> Path | None: ...
