"""What a request will cost and how long it will take (the one estimate of the API and the UI).

Rough by nature: remote figures are typical queue-plus-inference times, local ones were measured on 2 cores;
prices come from pipeline/providers/pricing.py.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

from pipeline.providers.pricing import StepCost, model_for, step_cost
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
    """Seconds for one video and for `batch` of them, with `settings.cpu_slots` runs at a time."""
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
    waves = math.ceil(max(1, batch) / settings.cpu_slots)
    return Estimate(per_video_seconds=per_video, total_seconds=round(per_video * waves, 1), steps=steps,
                    providers=dict(services))


# --- the whole estimate: cost per workflow (the original's shape) and time (ours) ------------------------------

COST_STEPS = ("transcribe", "caption", "image", "video", "upscale")
ORIGINALS_SERVICES = {"transcribe": "fal", "caption": "openai", "image": "fal", "video": "fal", "upscale": "fal"}


@dataclass(frozen=True)
class Workflow:
    name: str
    steps: list[StepCost]

    @property
    def per_video(self) -> float:
        return round(sum(s.usd for s in self.steps), 4)


@dataclass(frozen=True)
class RequestEstimate:
    workflows: list[Workflow]  # the first is what this installation would run
    per_video_seconds: float
    total_seconds: float
    basis: str
    sample_size: int
    workers: int
    seconds_by_step: dict[str, float]


def workflow(name: str, services: dict[str, str], settings: Settings, *, lipsync: bool, upscale: bool,
             clip_seconds: float) -> Workflow:
    remote_video = services["video"] != "local"
    steps = []
    for step in COST_STEPS:
        if step == "upscale" and not upscale:
            continue
        service = services[step]
        model = model_for(step, service, settings, lipsync=lipsync, remote_video=remote_video)
        steps.append(step_cost(step, service, model, settings, clip_seconds=clip_seconds))
    return Workflow(name, steps)


def estimate_request(settings: Settings, durations: list[float], *, lipsync: bool = False, upscale: bool = False,
                     batch: int = 1, compare: bool = False) -> RequestEstimate:
    """The one estimate the API and the UI show: the cost of each workflow and the time this request will take.

    Time is the median of `durations` (past comparable runs here) when there are any, else the provider model.
    """
    clip = settings.clip_seconds or DEFAULT_CLIP_SECONDS
    guess = estimate_seconds(settings, lipsync=lipsync, upscale=upscale, batch=batch)
    mode = "audio-to-video" if lipsync else "image-to-video"
    flows = [workflow(f"Current ({mode}, this installation's providers)", guess.providers, settings,
                      lipsync=lipsync, upscale=upscale, clip_seconds=clip)]
    if compare:
        local = {step: "local" for step in COST_STEPS}
        flows.append(workflow(f"Local only ({mode})", local, settings, lipsync=lipsync, upscale=upscale,
                              clip_seconds=clip))
        flows.append(workflow(f"The original's models ({mode})", ORIGINALS_SERVICES, settings, lipsync=lipsync,
                              upscale=upscale, clip_seconds=clip))
    if durations:
        per_video = statistics.median(durations)
        basis = f"the median of the last {len(durations)} comparable runs here"
    else:
        per_video, basis = guess.per_video_seconds, "a first guess from the chosen providers (no comparable runs yet)"
    workers = settings.cpu_slots
    total = per_video * math.ceil(max(1, batch) / workers)
    return RequestEstimate(workflows=flows, per_video_seconds=round(per_video, 1), total_seconds=round(total, 1),
                           basis=basis, sample_size=len(durations), workers=workers, seconds_by_step=guess.steps)
