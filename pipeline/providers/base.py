"""The small protocols every provider implements, one per step."""

from __future__ import annotations

import random
from collections.abc import Sequence
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
    """Turns the still into a clip. The local one returns None: the renderer animates the still itself.

    A maker with `needs_audio_clip = True` gets the clip's audio (only the clip, cut from the song) on lip-sync
    runs and should make the lips follow it. `cut_points` (seconds into the clip: lyric-line starts, beats) are
    where a clip the model cannot take whole may be cut.
    """

    name: str

    def make(
        self, image: StyledImage, prompt: str, *, duration: float, audio_clip: Path | None, out_path: Path,
        cut_points: Sequence[float] = (),
    ) -> Path | None: ...


class Upscaler(Protocol):
    """Model upscaling for `upscale` runs: the still (when the renderer moves it) or the model's clip.

    Without one (local), the renderer simply renders at 2x.
    """

    name: str

    def upscale_image(self, image: StyledImage, out_path: Path) -> StyledImage: ...

    def upscale_video(self, video: Path, out_path: Path) -> Path: ...


def wants_audio_clip(video: VideoMaker) -> bool:
    """Whether a video maker lip-syncs to the clip's audio (remote ones do; the local one moves the still)."""
    return bool(getattr(video, "needs_audio_clip", False))
