"""Which provider does each step, chosen by settings (the remote ones arrive with their keys)."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.providers.base import CaptionWriter, ImageMaker, Transcriber, VideoMaker
from pipeline.providers.local import LocalCaptionWriter, LocalImageMaker, LocalVideoMaker
from pipeline.settings import Settings


@dataclass
class Providers:
    caption: CaptionWriter
    image: ImageMaker
    video: VideoMaker
    transcriber: Transcriber | None = None  # None: lyrics come from .lrc files only


def providers_from_settings(settings: Settings) -> Providers:
    return Providers(caption=LocalCaptionWriter(), image=LocalImageMaker(), video=LocalVideoMaker())
