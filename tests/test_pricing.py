"""Prices per model: list prices, MODEL_PRICES over them, local steps free, and the estimate built from them."""

from __future__ import annotations

import pytest

from pipeline.estimate import estimate_request
from pipeline.providers.pricing import DEFAULT_PRICES, run_cost, step_cost
from pipeline.settings import Settings

REMOTE = dict(fal_key="fal-test", openai_api_key="sk-test", image_provider="fal", video_provider="fal",
              caption_provider="openai", transcribe_provider="openai")


def test_every_listed_price_names_its_source() -> None:
    assert all(p.source and p.usd >= 0 and p.unit for p in DEFAULT_PRICES.values())


def test_model_prices_override_the_list_price_and_local_is_free(tmp_path) -> None:
    listed = Settings(data_dir=tmp_path)
    mine = Settings(data_dir=tmp_path, model_prices={"fal-ai/veo3.1/fast/image-to-video": 0.5})
    video = "fal-ai/veo3.1/fast/image-to-video"
    assert step_cost("video", "fal", video, listed, clip_seconds=15).usd == pytest.approx(0.8)  # 8 s x $0.10
    assert step_cost("video", "fal", video, mine, clip_seconds=15).usd == pytest.approx(4.0)
    assert step_cost("video", "local", "local", mine, clip_seconds=15).usd == 0.0


def test_the_estimate_prices_the_chosen_models(tmp_path) -> None:
    settings = Settings(data_dir=tmp_path, workers=1, **REMOTE)
    plain = estimate_request(settings, [], lipsync=False)
    [current] = plain.workflows
    assert {s.step: s.model for s in current.steps} == {
        "transcribe": "whisper-1", "caption": "gpt-4o-mini", "image": "fal-ai/nano-banana-2/edit",
        "video": "fal-ai/veo3.1/fast/image-to-video"}
    assert current.per_video == pytest.approx(0.08 + 0.8 + 0.006 * 15 / 60 + 0.15 * 700 / 1e6, abs=1e-4)
    lipsync = estimate_request(settings, [12.0, 14.0, 40.0], lipsync=True, batch=3, compare=True)
    assert [w.name.split(" (")[0] for w in lipsync.workflows] == ["Current", "Local only", "The original's models"]
    assert lipsync.workflows[1].per_video == 0.0
    assert lipsync.per_video_seconds == 14.0 and lipsync.total_seconds == 42.0  # median of past runs, one worker


def test_a_runs_cost_counts_only_remote_steps(tmp_path) -> None:
    settings = Settings(data_dir=tmp_path)
    cost = run_cost(settings, {"image": "fal:fal-ai/nano-banana-2/edit", "video": "local (camera motion)",
                               "caption": "local (fallback after openai:gpt-4o-mini: refused)", "lyrics": "lrc"},
                    clip_seconds=15)
    assert [s["step"] for s in cost["steps"]] == ["image"] and cost["totalUsd"] == 0.08
