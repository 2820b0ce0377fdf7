"""Per-step provider selection from settings, the names runs record, and estimates that follow the choice."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.errors import ProviderError
from pipeline.estimate import estimate_seconds
from pipeline.providers.registry import chosen_services, providers_from_settings
from pipeline.settings import Settings


def make(tmp_path: Path, **over) -> Settings:
    return Settings(_env_file=None, data_dir=tmp_path / "data", **over)


def test_local_by_default_and_auto_without_keys_stays_local(tmp_path: Path) -> None:
    for choice in ("local", "auto"):
        steps = {f"{s}_provider": choice for s in ("transcribe", "caption", "image", "video", "upscale")}
        settings = make(tmp_path, openai_api_key=None, fal_key=None, **steps)
        assert set(chosen_services(settings).values()) == {"local"}
        providers = providers_from_settings(settings)
        assert providers.transcriber is None and providers.upscaler is None
        assert providers.caption.name.startswith("local") and providers.video.name.startswith("local")


def test_auto_picks_the_remote_whose_key_is_set_and_names_carry_the_model(tmp_path: Path) -> None:
    auto = {f"{s}_provider": "auto" for s in ("transcribe", "caption", "image", "video", "upscale")}
    only_openai = make(tmp_path, openai_api_key="sk-x", fal_key=None, openai_caption_model="my-llm", **auto)
    assert chosen_services(only_openai) == {"transcribe": "openai", "caption": "openai", "image": "openai",
                                            "video": "local", "upscale": "local"}
    assert providers_from_settings(only_openai).caption.name == "openai:my-llm"
    both = make(tmp_path, openai_api_key="sk-x", fal_key="k", **auto)
    providers = providers_from_settings(both)
    assert chosen_services(both)["image"] == "fal"  # the original's image model comes first
    assert providers.image.name == "fal:fal-ai/nano-banana-2/edit"
    assert providers.video.name == "fal:fal-ai/veo3.1/fast/image-to-video"
    assert providers.transcriber.name == "openai:whisper-1"
    assert providers.upscaler is not None


def test_explicit_choices_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ProviderError, match="VIDEO_PROVIDER=openai is not available"):
        chosen_services(make(tmp_path, openai_api_key="sk", video_provider="openai"))
    with pytest.raises(ProviderError, match="CAPTION_PROVIDER=openai needs OPENAI_API_KEY"):
        chosen_services(make(tmp_path, openai_api_key=None, caption_provider="openai"))
    settings = make(tmp_path, fal_key="k", transcribe_provider="fal", fal_transcribe_model="fal-ai/wizper")
    assert providers_from_settings(settings).transcriber.name == "fal:fal-ai/wizper"


def test_settings_come_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAL_KEY", "env-key")
    monkeypatch.setenv("VIDEO_PROVIDER", "fal")
    monkeypatch.setenv("FAL_LIPSYNC_MODEL", "fal-ai/other/audio-to-video")
    monkeypatch.setenv("FALLBACK_TO_LOCAL", "true")
    settings = make(tmp_path)
    assert settings.fal_key == "env-key" and settings.fallback_to_local
    providers = providers_from_settings(settings)
    assert providers.video.name == "fal:fal-ai/veo3.1/fast/image-to-video"
    assert providers.video.needs_audio_clip and settings.fal_lipsync_model == "fal-ai/other/audio-to-video"


def test_estimate_follows_the_chosen_providers(tmp_path: Path) -> None:
    local = estimate_seconds(make(tmp_path), lipsync=True, upscale=False, batch=1)
    assert set(local.providers.values()) == {"local"} and "video" not in local.steps
    remote_settings = make(tmp_path, fal_key="k", video_provider="fal", upscale_provider="fal", workers=2)
    remote = estimate_seconds(remote_settings, lipsync=True, upscale=True, batch=3)
    assert remote.providers["video"] == "fal" and remote.steps["video"] > 60 and remote.steps["upscale"] > 60
    assert remote.per_video_seconds > local.per_video_seconds + 100
    assert remote.total_seconds == pytest.approx(remote.per_video_seconds * 2)  # 3 runs on 2 workers
    no_lipsync = estimate_seconds(remote_settings, lipsync=False, upscale=True, batch=1)
    assert no_lipsync.steps["video"] < remote.steps["video"]
    assert set(remote.to_dict()) == {"per_video_seconds", "total_seconds", "steps", "providers"}
