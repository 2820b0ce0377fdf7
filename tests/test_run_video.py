"""The whole pipeline on the demo artist, end to end, with outputs checked by a decoder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipeline.artists import find_artist
from pipeline.encoder import choose_encoder
from pipeline.errors import BadInput, Cancelled, FetchError, StudioError
from pipeline.ffmpeg import decode_audio, probe
from pipeline.models import RunPlan
from pipeline.run_video import run_video
from pipeline.settings import PROJECT_ROOT, Settings
from pipeline.templates import template_ids
from tests.http_server import LocalServer, serve_bytes, serve_file
from tests.media import make_picture, make_tone
from tests.test_artists import make_workspace

DEMO = "1873859c-dd37-4e9a-9bac-80d3558527a9"


def small(tmp_path: Path, **over) -> Settings:
    values = dict(data_dir=tmp_path / "data", clip_seconds=3.0, output_width=180, output_height=320,
                  fetch_allow_hosts=["127.0.0.1"])
    values.update(over)
    return Settings(_env_file=None, **values)


def plan_for(settings: Settings, run_id: str = "run_test", artist: str = DEMO, **kw) -> RunPlan:
    return RunPlan(run_id=run_id, artist=find_artist(settings, artist), template_id=kw.pop("template_id", None),
                   out_dir=settings.runs_dir / run_id, **kw)


def loudness(path: Path) -> float:
    """Integrated loudness (LUFS) measured by ffmpeg's EBU R128 scanner."""
    from pipeline.ffmpeg import ffmpeg_exe

    err = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path), "-map", "0:a", "-af",
                          "ebur128", "-f", "null", "-"], capture_output=True, text=True).stderr
    return float(err.rsplit("I:", 1)[1].split("LUFS")[0])


def test_default_video_is_a_finished_vertical_mp4(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, data_dir=tmp_path / "data")
    steps: list[tuple[str, float]] = []
    result = run_video(plan_for(settings, template_id="artist-caption-stage", caption_length="short", seed=7),
                       settings, progress=lambda s, p: steps.append((s, p)))
    info = probe(result.video_path)
    out = result.output
    assert (info.width, info.height, info.video_codec, info.pix_fmt, info.fps) == (720, 1280, "h264", "yuv420p", 30)
    assert info.audio_codec == "aac"
    assert out["audio"]["durationSeconds"] == pytest.approx(15.0, abs=0.01)
    assert info.duration == pytest.approx(out["audio"]["durationSeconds"], abs=0.1)
    assert loudness(result.video_path) == pytest.approx(-14.0, abs=1.5)
    data = result.video_path.read_bytes()
    assert data.find(b"moov") < data.find(b"mdat")  # +faststart
    assert 1 <= len(out["captionText"].split()) <= 10
    meta = json.loads(result.meta_path.read_text())
    for key in ("seed", "audio", "captionText", "movement", "providers", "timings", "template"):
        assert key in meta
    assert meta["audio"]["clipMood"]
    # the default VIDEO_ENCODER=auto: x264 on a machine where no GPU encoder passes its test encode
    auto = choose_encoder("auto", preset="veryfast", crf=20, params="")
    assert meta["providers"]["render"] == f"ffmpeg (one filter graph, {auto.name})"
    assert set(meta["timings"]) >= {"song", "clip", "image", "caption", "render"}
    assert result.poster_path.stat().st_size > 5000 and result.image_path.stat().st_size > 5000
    percents = [p for _, p in steps]
    assert percents == sorted(percents) and percents[-1] == 100.0
    assert any(s == "render" and 30 < p < 100 for s, p in steps)  # the encode reports its own progress
    assert [p.name for p in settings.runs_dir.iterdir()] == ["run_test"]  # no work folder left behind


@pytest.mark.parametrize("template_id", [*template_ids(), None])
def test_every_template_and_malleable_mode_render(tmp_path: Path, template_id: str | None) -> None:
    settings = small(tmp_path)
    result = run_video(plan_for(settings, template_id=template_id, caption_length="medium", seed=3), settings)
    info = probe(result.video_path)
    assert (info.width, info.height) == (180, 320)
    assert info.duration == pytest.approx(3.0, abs=0.1)
    assert 15 <= len(result.output["captionText"].split()) <= 30
    assert result.output["template"] == template_id


def test_batch_of_seeds_varies_clip_mood_and_caption(tmp_path: Path) -> None:
    settings = small(tmp_path, output_width=90, output_height=160, clip_seconds=2.0)
    outs = [run_video(plan_for(settings, run_id=f"run_{seed}", template_id="artist-caption-bedroom",
                               caption_length="short", seed=seed), settings).output for seed in range(6)]
    assert len({(o["audio"]["songSlug"], o["audio"]["startSeconds"]) for o in outs}) >= 2
    assert len({o["audio"]["clipMood"] for o in outs}) >= 2
    assert len({o["captionText"] for o in outs}) >= 4
    again = run_video(plan_for(settings, run_id="run_again", template_id="artist-caption-bedroom",
                               caption_length="short", seed=0), settings).output
    for key in ("audio", "captionText", "movement"):
        assert again[key] == outs[0][key]  # a seed reproduces its run


def test_lipsync_without_a_model_is_audio_reactive_and_says_so(tmp_path: Path) -> None:
    result = run_video(plan_for(small(tmp_path), lipsync=True, seed=1), small(tmp_path))
    assert result.output["audioReactive"] is True
    assert "audio-reactive" in result.output["providers"]["video"]
    assert "lip-sync" in result.output["providers"]["video"]  # "... not lip-sync": honest about it


def test_upscale_renders_double_size(tmp_path: Path) -> None:
    settings = small(tmp_path, clip_seconds=2.0, output_width=720, output_height=1280)
    result = run_video(plan_for(settings, upscale=True, seed=2), settings)
    info = probe(result.video_path)
    assert (info.width, info.height) == (1440, 2560)


def test_caption_none_writes_no_caption(tmp_path: Path) -> None:
    result = run_video(plan_for(small(tmp_path), caption_length="none", seed=4), small(tmp_path))
    assert result.output["captionText"] is None and result.output["providers"]["caption"] == "none"


def test_song_and_image_urls_bypass_the_workspace(tmp_path: Path) -> None:
    settings = small(tmp_path)
    song = make_tone(tmp_path / "track.mp3", seconds=6.0, freq=330)
    face = PROJECT_ROOT / "assets" / "demo-artist" / "context" / "images" / "face-guide.png"
    with LocalServer() as srv:
        srv.routes["/my-song.mp3"] = serve_file(song, "audio/mpeg")
        srv.routes["/face.png"] = serve_file(face, "image/png")
        srv.routes["/noface.png"] = serve_file(make_picture(tmp_path / "n.png"), "image/png")
        result = run_video(plan_for(settings, songs=[srv.url("/my-song.mp3")],
                                    images=[srv.url("/noface.png"), srv.url("/face.png")], seed=5), settings)
    out = result.output
    assert out["audio"]["songFilename"].endswith("/my-song.mp3") and out["providers"]["song"] == "url"
    assert out["audio"]["songTitle"] == "My Song"
    # the first image shows no face, so the second one (which does) is the face guide
    assert out["faceGuide"] != "face-guide.png"
    heard = decode_audio(result.video_path, 8000)
    assert np.sqrt(np.mean(heard**2)) > 0.05


def _nothing_written(settings: Settings) -> bool:
    return not settings.runs_dir.exists() or not any(settings.runs_dir.iterdir())


@pytest.mark.parametrize("kw, error, stage, message", [
    ({"template_id": "no-such"}, BadInput, None, "Unsupported template: no-such"),
    ({"songs": ["not-a-song"]}, BadInput, "song", "is not one of this artist's songs"),
    ({"songs": ["ftp://example.com/a.mp3"]}, FetchError, "song", "not an http\\(s\\) URL"),
    ({"songs": ["http://127.0.0.1:9/none.mp3"]}, FetchError, "song", "could not be fetched"),
    ({"images": ["http://10.1.2.3/x.png"]}, FetchError, "image", "private or local"),
])
def test_bad_input_is_clear_and_writes_nothing(tmp_path: Path, kw: dict, error: type, stage: str | None,
                                               message: str) -> None:
    settings = small(tmp_path, fetch_timeout_seconds=2.0)
    with pytest.raises(error, match=message) as info:
        run_video(plan_for(settings, **kw), settings)
    assert info.value.stage == stage
    assert _nothing_written(settings)


def test_urls_that_are_not_media_are_refused(tmp_path: Path) -> None:
    settings = small(tmp_path)
    with LocalServer() as srv:
        srv.routes["/fake.mp3"] = serve_bytes(b"<html>not audio</html>" * 50, "audio/mpeg")
        srv.routes["/fake.png"] = serve_bytes(b"GIF89a but not really" * 50, "image/png")
        with pytest.raises(FetchError, match="not audio"):
            run_video(plan_for(settings, songs=[srv.url("/fake.mp3")]), settings)
        with pytest.raises(FetchError, match="not an image"):
            run_video(plan_for(settings, images=[srv.url("/fake.png")]), settings)
    assert _nothing_written(settings)


def test_missing_face_guide_and_no_songs(tmp_path: Path) -> None:
    settings = small(tmp_path)
    make_workspace(settings.artists_dir / "bare", face=False, songs=())
    with pytest.raises(StudioError, match="no songs"):
        run_video(plan_for(settings, artist="bare"), settings)
    make_workspace(settings.artists_dir / "faceless", face=False)
    with pytest.raises(BadInput, match="no face guide"):
        run_video(plan_for(settings, artist="faceless"), settings)
    # a template that does not use the face guide works without one
    result = run_video(plan_for(settings, artist="faceless", template_id="album-record-store"), settings)
    assert result.video_path.exists()


def test_cancel_during_the_encode_leaves_nothing(tmp_path: Path) -> None:
    settings = small(tmp_path, clip_seconds=6.0)
    seen: list[str] = []

    def progress(step: str, pct: float) -> None:
        seen.append(step)

    with pytest.raises(Cancelled):
        run_video(plan_for(settings), settings, progress=progress, should_cancel=lambda: "render" in seen)
    assert _nothing_written(settings)


def test_cli_renders_and_prints_json(tmp_path: Path) -> None:
    env = {**os.environ, "DATA_DIR": str(tmp_path / "data"), "CLIP_SECONDS": "2", "OUTPUT_WIDTH": "180",
           "OUTPUT_HEIGHT": "320"}
    proc = subprocess.run([sys.executable, "-m", "pipeline", "render", "--artist", DEMO, "--caption-length", "short",
                           "--seed", "11", "--out", str(tmp_path / "out"), "--quiet"],
                          cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["status"] == "success" and Path(result["video"]).parent == tmp_path / "out"
    assert probe(result["video"]).duration == pytest.approx(2.0, abs=0.1)
    bad = subprocess.run([sys.executable, "-m", "pipeline", "render", "--artist", "nobody", "--quiet"],
                         cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2
    assert json.loads(bad.stderr)["error"] == "Artist not found for the provided artist_account_id"
