"""Which provider does each step, chosen by settings: local, openai, fal, comfyui, or auto (remote when its key is set).

With FALLBACK_TO_LOCAL a failed remote step runs its local implementation and the run records why.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pipeline.errors import ProviderError
from pipeline.providers.base import CaptionWriter, ImageMaker, Transcriber, Upscaler, VideoMaker
from pipeline.providers.local import LocalCaptionWriter, LocalImageMaker, LocalVideoMaker
from pipeline.settings import Settings

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


class WithFallback:
    """A remote provider whose failed calls run `instead` (the local way), with the reason in the run's notes.

    Every attribute is the remote one's; a method that raises ProviderError returns instead(method, args,
    kwargs, note).
    """

    def __init__(self, remote: Any, notes: dict[str, str], run_key: str, instead: Callable[..., Any],
                 local_label: str = "local"):
        self.remote, self.notes, self.run_key = remote, notes, run_key
        self.instead, self.local_label = instead, local_label
        self.name: str = remote.name

    def __getattr__(self, attr: str) -> Any:
        value = getattr(self.remote, attr)
        if attr.startswith("_") or not callable(value):
            return value

        def guarded(*args: Any, **kwargs: Any) -> Any:
            try:
                result = value(*args, **kwargs)
            except ProviderError as exc:
                self.name = self.notes[self.run_key] = fallback_note(self.remote.name, exc, self.local_label)
                return self.instead(attr, args, kwargs, self.name)
            self.name = self.remote.name
            return result

        return guarded


def _instead(step: Step) -> tuple[Callable[..., Any], str]:
    """What a failed remote call of `step` does instead, and how the run names it."""
    if step == "caption":
        return (lambda method, args, kwargs, note: LocalCaptionWriter().write(*args, **kwargs)), "local"
    if step == "image":
        return (lambda method, args, kwargs, note: dataclasses.replace(LocalImageMaker().make(*args, **kwargs),
                                                                       provider=note)), "local"
    if step == "video":  # the local maker moves the still; a chained fill that fails simply ends there
        return (lambda method, args, kwargs, note: LocalVideoMaker().make(*args, **kwargs)
                if method == "make" else None), "local"
    if step == "transcribe":  # no local transcriber: no timed lyrics (unless the song has an .lrc)
        return (lambda method, args, kwargs, note: []), "none"
    # upscale: the input is kept as it is, and the renderer still renders at 2x
    return (lambda method, args, kwargs, note: args[0]), "local (rendered at 2x)"


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

    def chosen(step: Step) -> Any:
        remote = _remote(step, services[step], settings)
        if not fallback:
            return remote
        instead, label = _instead(step)
        return WithFallback(remote, notes, RUN_KEY[step], instead, label)

    caption: CaptionWriter = LocalCaptionWriter() if services["caption"] == "local" else chosen("caption")
    image: ImageMaker = LocalImageMaker() if services["image"] == "local" else chosen("image")
    video: VideoMaker = LocalVideoMaker() if services["video"] == "local" else chosen("video")
    transcriber: Transcriber | None = None if services["transcribe"] == "local" else chosen("transcribe")
    upscaler: Upscaler | None = None if services["upscale"] == "local" else chosen("upscale")
    return Providers(caption=caption, image=image, video=video, transcriber=transcriber, upscaler=upscaler,
                     fallbacks=notes)
