"""Which provider does each step, chosen by settings: local, openai, fal, comfyui, or auto (remote when its key is set).

With FALLBACK_TO_LOCAL a failed remote step runs its local implementation and the run records why.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.errors import ProviderError
from pipeline.models import CaptionLength, LyricLine, StyledImage
from pipeline.providers.base import CaptionWriter, ImageMaker, Transcriber, Upscaler, VideoMaker
from pipeline.providers.local import LocalCaptionWriter, LocalImageMaker, LocalVideoMaker
from pipeline.settings import Settings

if TYPE_CHECKING:
    from pipeline.templates import Template
    from pipeline.write_caption import CaptionContext

Step = str  # "transcribe" | "caption" | "image" | "video" | "upscale"

# The remote services that offer each step, in the order `auto` prefers them.
REMOTE_FOR_STEP: dict[Step, tuple[str, ...]] = {
    "transcribe": ("openai", "fal", "comfyui"),
    "caption": ("openai",),
    "image": ("fal", "openai", "comfyui"),
    "video": ("fal", "comfyui"),
    "upscale": ("fal", "comfyui"),
}
NOT_AUTO = {"comfyui"}  # the user's own server runs the models they installed: chosen by name only
# Where each step's choice is recorded in the run's `providers`.
RUN_KEY: dict[Step, str] = {"transcribe": "lyrics", "caption": "caption", "image": "image", "video": "video",
                            "upscale": "upscale"}
KEY_ENV = {"openai": "OPENAI_API_KEY", "fal": "FAL_KEY", "comfyui": "COMFYUI_URL"}


@dataclass
class Providers:
    caption: CaptionWriter
    image: ImageMaker
    video: VideoMaker
    transcriber: Transcriber | None = None  # None: lyrics come from .lrc files only
    upscaler: Upscaler | None = None  # None: `upscale` renders at 2x locally
    fallbacks: dict[str, str] = field(default_factory=dict)  # run providers key -> "local (fallback after ...)"


def has_key(service: str, settings: Settings) -> bool:
    return bool({"openai": settings.openai_api_key, "fal": settings.fal_key, "comfyui": settings.comfyui_url}[service])


def choose_service(step: Step, settings: Settings) -> str:
    """'local', 'openai' or 'fal' for a step, from its *_PROVIDER setting."""
    choice = getattr(settings, f"{step}_provider")
    offered = REMOTE_FOR_STEP[step]
    if choice == "local":
        return "local"
    if choice == "auto":
        return next((s for s in offered if s not in NOT_AUTO and has_key(s, settings)), "local")
    env = f"{step.upper()}_PROVIDER"
    if choice not in offered:
        raise ProviderError(f"{env}={choice} is not available: {choice} offers no {step} model here "
                            f"(choose local, auto or {' or '.join(offered)})")
    if not has_key(choice, settings):
        raise ProviderError(f"{env}={choice} needs {KEY_ENV[choice]} to be set")
    return choice


def chosen_services(settings: Settings) -> dict[Step, str]:
    """Every step's service, without building clients (for estimates and the UI)."""
    return {step: choose_service(step, settings) for step in REMOTE_FOR_STEP}


def fallback_note(remote_name: str, exc: ProviderError, local: str = "local") -> str:
    reason = exc.message if exc.message.startswith(remote_name) else f"{remote_name}: {exc.message}"
    return f"{local} (fallback after {reason})"


@dataclass
class FallbackCaptionWriter:
    remote: CaptionWriter
    local: CaptionWriter
    notes: dict[str, str]

    def __post_init__(self) -> None:
        self.name = self.remote.name

    def write(self, ctx: CaptionContext, length: CaptionLength, rng: random.Random) -> str:
        try:
            return self.remote.write(ctx, length, rng)
        except ProviderError as exc:
            self.name = self.notes["caption"] = fallback_note(self.remote.name, exc)
            return self.local.write(ctx, length, rng)


@dataclass
class FallbackImageMaker:
    remote: ImageMaker
    local: ImageMaker
    notes: dict[str, str]

    def __post_init__(self) -> None:
        self.name = self.remote.name

    def make(self, face_guide: Path | None, template: Template, *, width: int, height: int, rng: random.Random,
             out_path: Path) -> StyledImage:
        try:
            return self.remote.make(face_guide, template, width=width, height=height, rng=rng, out_path=out_path)
        except ProviderError as exc:
            self.name = self.notes["image"] = fallback_note(self.remote.name, exc)
            image = self.local.make(face_guide, template, width=width, height=height, rng=rng, out_path=out_path)
            return dataclasses.replace(image, provider=self.name)


@dataclass
class FallbackVideoMaker:
    remote: VideoMaker
    local: VideoMaker
    notes: dict[str, str]

    def __post_init__(self) -> None:
        self.name = self.remote.name
        self.needs_audio_clip = bool(getattr(self.remote, "needs_audio_clip", False))

    def make(self, image: StyledImage, prompt: str, *, duration: float, audio_clip: Path | None,
             out_path: Path) -> Path | None:
        try:
            made = self.remote.make(image, prompt, duration=duration, audio_clip=audio_clip, out_path=out_path)
            self.name = self.remote.name
            return made
        except ProviderError as exc:
            self.name = self.notes["video"] = fallback_note(self.remote.name, exc)
            return self.local.make(image, prompt, duration=duration, audio_clip=audio_clip, out_path=out_path)


@dataclass
class FallbackTranscriber:
    """No local transcriber exists: on failure the song simply has no timed lyrics (unless it has an .lrc)."""

    remote: Transcriber
    notes: dict[str, str]

    def __post_init__(self) -> None:
        self.name = self.remote.name

    def transcribe(self, path: Path) -> list[LyricLine]:
        try:
            return self.remote.transcribe(path)
        except ProviderError as exc:
            self.name = self.notes["lyrics"] = fallback_note(self.remote.name, exc, local="none")
            return []


@dataclass
class FallbackUpscaler:
    """On failure the input is kept as it is; the renderer still renders at 2x."""

    remote: Upscaler
    notes: dict[str, str]

    def __post_init__(self) -> None:
        self.name = self.remote.name

    def upscale_image(self, image: StyledImage, out_path: Path) -> StyledImage:
        try:
            return self.remote.upscale_image(image, out_path)
        except ProviderError as exc:
            self.name = self.notes["upscale"] = fallback_note(self.remote.name, exc, local="local (rendered at 2x)")
            return image

    def upscale_video(self, video: Path, out_path: Path) -> Path:
        try:
            return self.remote.upscale_video(video, out_path)
        except ProviderError as exc:
            self.name = self.notes["upscale"] = fallback_note(self.remote.name, exc, local="local (rendered at 2x)")
            return video


def _remote(step: Step, service: str, settings: Settings):  # noqa: ANN202 - one of the step protocols
    # Imported here so a keyless install never loads the SDKs.
    if service == "comfyui":
        from pipeline.providers.comfyui import image, transcribe, upscale, video

        return {"transcribe": transcribe.ComfyUITranscriber, "image": image.ComfyUIImageMaker,
                "video": video.ComfyUIVideoMaker, "upscale": upscale.ComfyUIUpscaler}[step](settings)
    if service == "openai":
        from pipeline.providers import openai_provider as op

        return {"transcribe": op.OpenAITranscriber, "caption": op.OpenAICaptionWriter,
                "image": op.OpenAIImageMaker}[step](settings)
    from pipeline.providers import fal_provider as fp

    return {"transcribe": fp.FalTranscriber, "image": fp.FalImageMaker, "video": fp.FalVideoMaker,
            "upscale": fp.FalUpscaler}[step](settings)


def providers_from_settings(settings: Settings) -> Providers:
    """One Providers per run (fallback notes belong to the run)."""
    services = chosen_services(settings)
    notes: dict[str, str] = {}
    fallback = settings.fallback_to_local

    caption: CaptionWriter = LocalCaptionWriter()
    if services["caption"] != "local":
        remote = _remote("caption", services["caption"], settings)
        caption = FallbackCaptionWriter(remote, caption, notes) if fallback else remote
    image: ImageMaker = LocalImageMaker()
    if services["image"] != "local":
        remote = _remote("image", services["image"], settings)
        image = FallbackImageMaker(remote, image, notes) if fallback else remote
    video: VideoMaker = LocalVideoMaker()
    if services["video"] != "local":
        remote = _remote("video", services["video"], settings)
        video = FallbackVideoMaker(remote, video, notes) if fallback else remote
    transcriber: Transcriber | None = None
    if services["transcribe"] != "local":
        remote = _remote("transcribe", services["transcribe"], settings)
        transcriber = FallbackTranscriber(remote, notes) if fallback else remote
    upscaler: Upscaler | None = None
    if services["upscale"] != "local":
        remote = _remote("upscale", services["upscale"], settings)
        upscaler = FallbackUpscaler(remote, notes) if fallback else remote
    return Providers(caption=caption, image=image, video=video, transcriber=transcriber, upscaler=upscaler,
                     fallbacks=notes)
