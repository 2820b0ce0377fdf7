"""The offline default for every step: real results made here, honest about what they are."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pipeline.make_image import make_image
from pipeline.models import CaptionLength, StyledImage
from pipeline.templates import Template
from pipeline.write_caption import CaptionContext, write_caption


@dataclass
class LocalCaptionWriter:
    name: str = "local (template-guided writer)"

    def write(self, ctx: CaptionContext, length: CaptionLength, rng: random.Random) -> str:
        return write_caption(ctx, length, rng)


@dataclass
class LocalImageMaker:
    name: str = "local (face framing and colour grade)"

    def make(self, face_guide: Path | None, template: Template, *, width: int, height: int, rng: random.Random,
             out_path: Path) -> StyledImage:
        return make_image(face_guide, template, width=width, height=height, rng=rng, out_path=out_path)


@dataclass
class LocalVideoMaker:
    """No model here: the renderer moves the still (Ken Burns, or audio-reactive for lip-sync)."""

    name: str = "local (camera motion on the still)"

    def make(self, image: StyledImage, prompt: str, *, duration: float, audio_clip: Path | None,
             out_path: Path, cut_points: Sequence[float] = ()) -> Path | None:
        return None
