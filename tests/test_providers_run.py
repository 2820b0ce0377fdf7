"""Whole runs with every AI step remote (OpenAI and fal fakes on loopback), and with remote failures falling back."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.artists import find_artist
from pipeline.errors import ProviderError
from pipeline.ffmpeg import probe
from pipeline.models import RunPlan
from pipeline.run_video import run_video
from pipeline.settings import Settings
from tests.fake_remote import Answer, FakeRemote, make_still, remote_settings, words_transcript
from tests.media import ffmpeg_make

SONG_SECONDS = 8.0
CLIP_SECONDS = 3.0
ALL_REMOTE = dict(transcribe_provider="openai", caption_provider="openai", image_provider="fal",
                  video_provider="fal", upscale_provider="fal")
# one lyric line every second, so any clip has some
TRANSCRIPT = words_transcript([[(i + 0.1, i + 0.5, f"line{i}"), (i + 0.5, i + 0.9, "neon")] for i in range(8)])


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeRemote]:
    with FakeRemote(tmp_path / "fake") as server:
        server.transcript = TRANSCRIPT
        server.captions = ["sing it back loud"]
        yield server


def workspace(settings: Settings, slug: str = "ana") -> str:
    root = settings.artists_dir / slug
    (root / "context" / "images").mkdir(parents=True)
    aid = str(uuid.uuid4())
    (root / "artist.json").write_text(json.dumps({"account_id": aid, "name": "Ana Lua"}))
    (root / "context" / "images" / "face-guide.png").write_bytes(make_still(480, 640, seed=4))
    (root / "context" / "artist.md").write_text("Ana Lua writes bedroom pop about night buses.")
    (root / "context" / "audience.md").write_text("Students who study with headphones on.")
    song = root / "songs" / "hiccups" / "hiccups.mp3"
    song.parent.mkdir(parents=True)
    ffmpeg_make("-f", "lavfi", "-i", f"sine=frequency=220:duration={SONG_SECONDS}", "-f", "lavfi", "-i",
                f"sine=frequency=331:duration={SONG_SECONDS}", "-filter_complex", "amix=inputs=2,tremolo=f=2:d=0.6",
                str(song))
    return aid


def plan(settings: Settings, aid: str, run_id: str = "run_remote", **kw) -> RunPlan:
    return RunPlan(run_id=run_id, artist=find_artist(settings, aid), template_id="artist-caption-stage",
                   out_dir=settings.runs_dir / run_id, **kw)


def small_remote(tmp_path: Path, fake: FakeRemote, **over) -> Settings:
    return remote_settings(tmp_path, fake, clip_seconds=CLIP_SECONDS, output_width=360, output_height=640,
                           remote_video_seconds=4, **{**ALL_REMOTE, **over})


def test_a_whole_run_with_every_step_remote(tmp_path: Path, fake: FakeRemote) -> None:
    settings = small_remote(tmp_path, fake)
    aid = workspace(settings)
    result = run_video(plan(settings, aid, caption_length="short", lipsync=True, upscale=True, seed=3), settings)

    info = probe(result.video_path)
    assert (info.width, info.height, info.video_codec, info.audio_codec) == (720, 1280, "h264", "aac")
    assert info.duration == pytest.approx(CLIP_SECONDS, abs=0.15)
    out = result.output
    assert out["captionText"] == "sing it back loud"
    for step, name in {"lyrics": "openai:whisper-1", "caption": "openai:gpt-4o-mini",
                       "image": "fal:fal-ai/nano-banana-2/edit", "video": "fal:fal-ai/ltx-2-19b/audio-to-video",
                       "upscale": "fal:fal-ai/seedvr/upscale/video"}.items():
        assert out["providers"][step] == name
    assert json.loads(result.meta_path.read_text())["providers"] == out["providers"]
    # what the remote steps cost, at the list prices of pipeline/providers/pricing.py
    cost = {c["step"]: c for c in out["cost"]["steps"]}
    assert set(cost) == {"transcribe", "caption", "image", "video", "upscale"}
    assert (cost["image"]["model"], cost["image"]["usd"]) == ("fal-ai/nano-banana-2/edit", 0.08)
    assert cost["video"]["unit"] == "megapixels" and cost["video"]["units"] == pytest.approx(1280 * 720 * 72 / 1e6)
    assert cost["video"]["usd"] == pytest.approx(1280 * 720 * 72 / 1e6 * 0.0018, abs=1e-4)
    assert cost["upscale"]["usd"] == 0.0 and "MODEL_PRICES" in cost["upscale"]["note"]  # no published price found
    assert out["cost"]["totalUsd"] == pytest.approx(sum(c["usd"] for c in cost.values()), abs=1e-4)
    assert out["cost"]["totalUsd"] > 0.19

    # lip-sync heard only the clip, not the whole song
    lipsync = next(h for h in fake.hits("fal_submit") if h.path.endswith("audio-to-video"))
    heard = tmp_path / "heard.m4a"
    heard.write_bytes(lipsync.files["audio_url"])
    assert probe(heard).duration == pytest.approx(CLIP_SECONDS, abs=0.1)
    # the image model got the face guide; the whole song was transcribed once
    edit = next(h for h in fake.hits("fal_submit") if h.path.endswith("nano-banana-2/edit"))
    face = settings.artists_dir / "ana" / "context" / "images" / "face-guide.png"
    assert edit.files["image_urls[0]"] == face.read_bytes()
    assert len(fake.hits("transcriptions")) == 1
    # the caption prompt carried the template guide, the clip's lyrics and the artist's context
    system, user = (m["content"] for m in fake.hits("chat")[0].json["messages"])
    assert "loud, punchy, confident" in system and "Sing it back to me." in system
    assert "night buses" in user and "headphones" in user and "Hiccups" in user
    assert out["audio"]["clipLyrics"] and out["audio"]["clipLyrics"].splitlines()[0] in user

    # a second run of the batch reuses the transcript
    run_video(plan(settings, aid, run_id="run_second", caption_length="none", seed=4), settings)
    assert len(fake.hits("transcriptions")) == 1


def test_fallback_to_local_finishes_and_says_why(tmp_path: Path, fake: FakeRemote) -> None:
    settings = small_remote(tmp_path, fake, fallback_to_local=True, openai_api_key="sk-wrong", provider_retries=1)
    fake.always["fal_submit"] = Answer(500, {"detail": "runner crashed"})
    aid = workspace(settings)
    result = run_video(plan(settings, aid, caption_length="short", lipsync=True, seed=5), settings)
    assert probe(result.video_path).duration == pytest.approx(CLIP_SECONDS, abs=0.15)
    providers = result.output["providers"]
    assert providers["image"].startswith("local (fallback after fal:fal-ai/nano-banana-2/edit: gave up after 2 tries")
    assert "runner crashed" in providers["image"]
    assert providers["video"].startswith("local (fallback after fal:fal-ai/ltx-2-19b/audio-to-video")
    assert providers["caption"].startswith("local (fallback after openai:gpt-4o-mini: the API key was refused")
    assert providers["lyrics"].startswith("none (fallback after openai:whisper-1")
    assert result.output["captionText"]  # the local writer wrote it
    assert result.output["cost"] == {"currency": "USD", "steps": [], "totalUsd": 0.0}  # local work is free


def test_without_fallback_a_remote_failure_fails_the_run_cleanly(tmp_path: Path, fake: FakeRemote) -> None:
    settings = small_remote(tmp_path, fake, transcribe_provider="local", caption_provider="local")
    fake.always["fal_submit"] = Answer(422, {"detail": "image_urls: no face found"})
    aid = workspace(settings)
    with pytest.raises(ProviderError, match=r"refused the input \(422\): image_urls: no face found") as info:
        run_video(plan(settings, aid, seed=6), settings)
    assert info.value.stage == "image"
    assert not settings.runs_dir.exists() or not any(settings.runs_dir.iterdir())
