"""Each fal model's documented limits, as data beside the model settings, and the request fields they decide.

Sources (and prices) per model: docs/PROVIDERS.md. A model not listed here is sent the defaults and no limits.
"""

from __future__ import annotations

from dataclasses import dataclass

# fal's named sizes for models that take a `video_size`; the aspect setting picks one
FAL_SIZE_FOR_ASPECT = {"9:16": "portrait_16_9", "3:4": "portrait_4_3", "1:1": "square_hd",
                       "4:3": "landscape_4_3", "16:9": "landscape_16_9"}


@dataclass(frozen=True)
class ModelLimits:
    durations: tuple[int, ...] = ()  # the clip lengths (seconds) an image-to-video model takes, as "Ns"
    aspect_ratios: tuple[str, ...] = ()  # what its aspect_ratio field takes
    min_audio_seconds: float = 0.0  # a lip-sync model's audio length, as it accepts it
    max_audio_seconds: float | None = None
    sized_by_video_size: bool = False  # it takes `video_size` (fal's named sizes), not `aspect_ratio`
    resolutions: tuple[str, ...] = ()  # what its resolution field takes, the cheapest first
    max_upscale_factor: float | None = None


FAL_MODELS: dict[str, ModelLimits] = {
    "fal-ai/veo3.1/fast/image-to-video": ModelLimits(durations=(4, 6, 8), aspect_ratios=("auto", "16:9", "9:16"),
                                                     resolutions=("720p", "1080p", "4k")),
    "fal-ai/seedvr/upscale/image": ModelLimits(max_upscale_factor=10),
    "fal-ai/seedvr/upscale/video": ModelLimits(max_upscale_factor=10),
    # frames = seconds x 25 fps must lie in num_frames' range, 9..481
    "fal-ai/ltx-2-19b/audio-to-video": ModelLimits(min_audio_seconds=9 / 25, max_audio_seconds=481 / 25,
                                                   sized_by_video_size=True),
    "fal-ai/ltx-2/audio-to-video": ModelLimits(min_audio_seconds=2.0, max_audio_seconds=10.0,
                                               sized_by_video_size=True),
    "fal-ai/nano-banana-2/edit": ModelLimits(aspect_ratios=("auto", "21:9", "16:9", "3:2", "4:3", "5:4", "1:1", "4:5",
                                                            "3:4", "2:3", "9:16")),
    "fal-ai/nano-banana-2": ModelLimits(aspect_ratios=("auto", "21:9", "16:9", "3:2", "4:3", "5:4", "1:1", "4:5",
                                                       "3:4", "2:3", "9:16")),
}


def limits_for(model: str) -> ModelLimits:
    return FAL_MODELS.get(model, ModelLimits())


def clip_duration_field(model: str, wanted_seconds: float) -> str:
    """The duration to ask for: the shortest the model takes that covers `wanted_seconds`, else its longest."""
    durations = limits_for(model).durations
    if not durations:
        return f"{round(wanted_seconds)}s"
    covering = [d for d in sorted(durations) if d >= wanted_seconds - 0.01]
    return f"{covering[0] if covering else max(durations)}s"


def aspect_field(model: str, aspect: str) -> str:
    """The aspect ratio to ask for; one the model does not take falls back to its own choice (auto)."""
    allowed = limits_for(model).aspect_ratios
    return aspect if not allowed or aspect in allowed else "auto"


def video_size_field(aspect: str) -> str:
    """fal's named size for the aspect (portrait for 9:16): the lip-sync model's default is landscape."""
    return FAL_SIZE_FOR_ASPECT.get(aspect, "portrait_16_9")


def resolution_field(model: str, wanted: str) -> str:
    """The resolution to ask for: the setting when the model takes it, else its cheapest."""
    allowed = limits_for(model).resolutions
    return wanted if not allowed or wanted in allowed else allowed[0]


def upscale_factor_field(model: str, wanted: int) -> int:
    """UPSCALE_FACTOR within what the model takes (at least 1)."""
    most = limits_for(model).max_upscale_factor
    return max(1, min(wanted, int(most))) if most else max(1, wanted)
