"""How long a request will take, from the providers the settings choose (the API's and the UI's estimate).

Rough by nature: remote figures are typical queue-plus-inference times, local ones were measured on 2 cores.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from pipeline.providers.registry import chosen_services
from pipeline.settings import Settings

DEFAULT_CLIP_SECONDS = 15.0
LOCAL_PREP_SECONDS = 3.0  # song pick, audio analysis (cached per song), face framing, caption writing
LOCAL_RENDER_SECONDS_PER_CLIP_SECOND = 0.8  # one x264 veryfast graph at 720x1280 on 2 cores
UPSCALED_RENDER_FACTOR = 3.5  # 4x the pixels, a little better than linear
REMOTE_SECONDS: dict[str, float] = {  # typical wall time of one remote call, queue included
    "transcribe": 20.0,
    "caption": 4.0,
    "image:fal": 20.0,
    "image:openai": 45.0,
    "image:comfyui": 40.0,  # the example's Qwen-Image-Edit on one 24 GB GPU, by its model card; not measured here
    "video": 90.0,
    "lipsync": 120.0,
    "upscale_image": 15.0,
    "upscale_video": 120.0,
}


@dataclass(frozen=True)
class Estimate:
    per_video_seconds: float
    total_seconds: float
    steps: dict[str, float] = field(default_factory=dict)  # step -> seconds for one video
    providers: dict[str, str] = field(default_factory=dict)  # step -> local | openai | fal

    def to_dict(self) -> dict:
        return {"per_video_seconds": self.per_video_seconds, "total_seconds": self.total_seconds,
                "steps": self.steps, "providers": self.providers}


def estimate_seconds(settings: Settings, *, lipsync: bool = False, upscale: bool = False, batch: int = 1,
                     clip_seconds: float | None = None) -> Estimate:
    """Seconds for one video and for `batch` of them, with `settings.workers` runs at a time."""
    services = chosen_services(settings)
    clip = clip_seconds or settings.clip_seconds or DEFAULT_CLIP_SECONDS
    steps: dict[str, float] = {"prepare": LOCAL_PREP_SECONDS}
    if services["transcribe"] != "local":
        steps["transcribe"] = REMOTE_SECONDS["transcribe"]  # once per song (cached); counted once per video here
    if services["caption"] != "local":
        steps["caption"] = REMOTE_SECONDS["caption"]
    if services["image"] != "local":
        steps["image"] = REMOTE_SECONDS[f"image:{services['image']}"]
    remote_video = services["video"] != "local"
    if remote_video:
        steps["video"] = REMOTE_SECONDS["lipsync" if lipsync else "video"]
    if upscale and services["upscale"] != "local":
        steps["upscale"] = REMOTE_SECONDS["upscale_video" if remote_video else "upscale_image"]
    render = clip * LOCAL_RENDER_SECONDS_PER_CLIP_SECOND * (UPSCALED_RENDER_FACTOR if upscale else 1.0)
    steps["render"] = round(render, 1)
    per_video = round(sum(steps.values()), 1)
    waves = math.ceil(max(1, batch) / max(1, settings.workers))
    return Estimate(per_video_seconds=per_video, total_seconds=round(per_video * waves, 1), steps=steps,
                    providers=dict(services))
