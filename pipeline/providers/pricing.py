"""What remote models cost: public list prices per model (overridable with MODEL_PRICES), local steps free.

One place for the numbers: the estimate (GET /api/content/estimate, the UI) and each run's recorded
`output.cost` both price steps with `step_cost`.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.settings import Settings

# The step names the original's estimate uses, by our step
STEP_NAMES = {"transcribe": "Transcribe Song", "caption": "Write Caption", "image": "Generate Image",
              "video": "Generate Video", "upscale": "Upscale", "render": "Render (ffmpeg)"}


@dataclass(frozen=True)
class Price:
    usd: float  # per unit
    unit: str
    source: str


# List prices as published by the providers (read 2026-12-01); a price that changes is one MODEL_PRICES away.
# Not listed (no published price found): fal-ai/seedvr/upscale/image and /video, gpt-image-2; they count 0 with a
# note saying so until MODEL_PRICES names them.
DEFAULT_PRICES: dict[str, Price] = {
    # https://fal.ai/models/fal-ai/nano-banana-2/edit/llms.txt: "$0.08 per image" (1K output)
    "fal-ai/nano-banana-2/edit": Price(0.08, "images", "fal.ai/models/fal-ai/nano-banana-2/edit"),
    "fal-ai/nano-banana-2": Price(0.08, "images", "fal.ai/models/fal-ai/nano-banana-2 (same family price)"),
    # https://fal.ai/models/fal-ai/veo3.1/fast/first-last-frame-to-video/llms.txt: Veo 3.1 Fast, "$0.10" per
    # second without audio at 720p/1080p (we ask for no audio: the song is laid under the clip)
    "fal-ai/veo3.1/fast/image-to-video": Price(0.10, "seconds", "fal.ai/models/fal-ai/veo3.1/fast"),
    # https://fal.ai/models/fal-ai/ltx-2-19b/image-to-video/llms.txt: "$0.0018 per megapixel of generated video
    # data (width x height x frames)"; the audio-to-video endpoint is the same LTX-2 19B model
    "fal-ai/ltx-2-19b/audio-to-video": Price(0.0018, "megapixels", "fal.ai/models/fal-ai/ltx-2-19b"),
    # https://fal.ai/models/fal-ai/whisper/llms.txt: "$0 per compute seconds"
    "fal-ai/whisper": Price(0.0, "seconds", "fal.ai/models/fal-ai/whisper"),
    # openai.com/api/pricing: gpt-4o-mini $0.15 per 1M input tokens ($0.60 output), as quoted by
    # promptunit.ai/blog/gpt-4o-mini-pricing-guide; whisper-1 $0.006 per minute is OpenAI's long-standing list
    # price (not re-read today: check it, and set MODEL_PRICES if it moved)
    "gpt-4o-mini": Price(0.15, "1M tokens", "openai.com/api/pricing"),
    "whisper-1": Price(0.006, "minutes", "openai.com/api/pricing"),
}
_SINGULAR = {"images": "image", "seconds": "second", "minutes": "minute", "megapixels": "megapixel"}
CAPTION_TOKENS = 700  # guide, context and lyrics in, one caption out: the order of one caption request
LOCAL = "local"


@dataclass(frozen=True)
class StepCost:
    step: str
    provider: str  # local | openai | fal
    model: str  # the model id, or "local"
    units: float
    unit: str | None
    unit_price: float | None  # None: free (local) or no known price
    usd: float
    note: str

    def to_dict(self) -> dict:
        return {"step": self.step, "provider": self.provider, "model": self.model, "units": round(self.units, 4),
                "unit": self.unit, "unitPrice": self.unit_price, "usd": round(self.usd, 4), "note": self.note}


def price_of(model: str, settings: Settings) -> Price | None:
    """The price of a model: MODEL_PRICES (USD per the model's unit) first, then the list price."""
    listed = DEFAULT_PRICES.get(model)
    if model in settings.model_prices:
        return Price(float(settings.model_prices[model]), listed.unit if listed else "calls", "MODEL_PRICES")
    return listed


def model_for(step: str, service: str, settings: Settings, *, lipsync: bool, remote_video: bool) -> str:
    """The model a remote service runs for a step, as the settings name it."""
    if service == LOCAL:
        return LOCAL
    models = {
        ("transcribe", "openai"): settings.openai_transcribe_model,
        ("transcribe", "fal"): settings.fal_transcribe_model,
        ("caption", "openai"): settings.openai_caption_model,
        ("image", "openai"): settings.openai_image_model,
        ("image", "fal"): settings.fal_image_model,
        ("video", "fal"): settings.fal_lipsync_model if lipsync else settings.fal_video_model,
        ("upscale", "fal"): settings.fal_upscale_video_model if remote_video else settings.fal_upscale_image_model,
    }
    return models.get((step, service), service)


def _units(unit: str, step: str, settings: Settings, clip_seconds: float) -> tuple[float, str]:
    """How many billing units one video's step uses, and the note that says how that was counted."""
    frames = clip_seconds * 24  # remote video models generate at 24 fps
    pixels = 1280 * 720 * (settings.upscale_factor ** 2 if step == "upscale" else 1)
    if unit == "images":
        return 1.0, "1 image"
    if unit == "seconds":
        seconds = float(settings.remote_video_seconds) if step == "video" else clip_seconds
        return seconds, f"{seconds:g} s"
    if unit == "minutes":
        return clip_seconds / 60, f"{clip_seconds:g} s of audio"
    if unit == "megapixels":
        mp = pixels * frames / 1e6
        return mp, f"{mp:.0f} MP ({frames:.0f} frames)"
    if unit == "1M tokens":
        return CAPTION_TOKENS / 1e6, f"about {CAPTION_TOKENS} tokens"
    return 1.0, "1 call"


def step_cost(step: str, service: str, model: str, settings: Settings, *, clip_seconds: float) -> StepCost:
    """What one video's step costs with this service and model."""
    if service == LOCAL or model == LOCAL:
        return StepCost(step, LOCAL, LOCAL, 0.0, None, None, 0.0, "runs here, free")
    price = price_of(model, settings)
    if price is None:
        return StepCost(step, service, model, 1.0, None, None, 0.0,
                        f"no known price for {model}: set MODEL_PRICES to count it")
    units, note = _units(price.unit, step, settings, clip_seconds)
    return StepCost(step, service, model, units, price.unit, price.usd, units * price.usd,
                    f"{note} x ${price.usd:g} per {_SINGULAR.get(price.unit, price.unit)}")


# Where each step's provider is recorded in a run's output (`providers`), and its value "service:model"
RUN_PROVIDER_KEYS = {"transcribe": "lyrics", "caption": "caption", "image": "image", "video": "video",
                     "upscale": "upscale"}


def run_cost(settings: Settings, providers: dict[str, str], *, clip_seconds: float) -> dict:
    """What a finished run's remote steps cost, from the providers it recorded ("fal:<model>", "local ...")."""
    steps = []
    for step, key in RUN_PROVIDER_KEYS.items():
        recorded = providers.get(key) or ""
        service, _, model = recorded.partition(":")
        if service not in ("openai", "fal") or not model:
            continue  # local, none, lrc, or a fallback to local: free
        steps.append(step_cost(step, service, model, settings, clip_seconds=clip_seconds).to_dict())
    return {"currency": "USD", "steps": steps, "totalUsd": round(sum(s["usd"] for s in steps), 4)}
