"""A provider's clip shorter than the video is never looped: the video ends with it, or a chained clip goes on."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from pipeline.ffmpeg import ffmpeg_exe, probe
from pipeline.models import MotionPlan, StyledImage
from pipeline.render import Encoding, RenderJob, render
from pipeline.run_video import run_video
from pipeline.settings import FONTS_DIR
from tests.fake_remote import FakeRemote, make_still, remote_settings
from tests.media import ffmpeg_make, make_tone
from tests.test_providers_run import plan, workspace

SMALL = (90, 160)  # decoded frames are compared at this size
FPS = 12


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeRemote]:
    with FakeRemote(tmp_path / "fake") as server:
        yield server


def frames(video: Path) -> np.ndarray:
    """Every frame of the video's picture, grey, small: (n, h, w) floats."""
    scale = f"fps={FPS},scale={SMALL[0]}:{SMALL[1]}"
    raw = subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(video), "-vf", scale,
                          "-pix_fmt", "gray", "-f", "rawvideo", "-"], capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, SMALL[1], SMALL[0]).astype(np.float32)


def repeats_after(video: Path, clip_end: float, *, gap: float = 1.0, same: float = 1.5) -> list[float]:
    """Times after `clip_end` whose frame matches a frame at least `gap` s earlier (a loop shows them)."""
    pics = frames(video)
    found = []
    for i in range(int(clip_end * FPS) + 1, len(pics)):
        earlier = pics[: max(0, i - int(gap * FPS))]
        if len(earlier) and float(np.abs(earlier - pics[i]).mean(axis=(1, 2)).min()) < same:
            found.append(round(i / FPS, 2))
    return found


def turning_clip(path: Path, seconds: float) -> Path:
    """A model-like clip: a picture that keeps turning, so no two frames of it are alike."""
    still = path.with_suffix(".png")
    still.write_bytes(make_still(360, 640))
    ffmpeg_make("-loop", "1", "-framerate", str(FPS), "-i", str(still), "-t", f"{seconds}", "-vf",
                "rotate=a=0.12*t,format=yuv420p", "-c:v", "libx264", "-preset", "ultrafast", str(path))
    return path


def test_the_render_never_loops_a_short_clip(tmp_path: Path) -> None:
    source = turning_clip(tmp_path / "clip.mp4", 2.0)
    song = make_tone(tmp_path / "song.wav", seconds=4.0)
    (tmp_path / "still.png").write_bytes(make_still(360, 640))
    motion = MotionPlan(movement="still", mood="calm", style="static", zoom_expr="1", x_expr="0.5", y_expr="0.5")
    job = RenderJob(image=StyledImage(tmp_path / "still.png", 360, 640, None), motion=motion,
                    audio_path=song, clip_start=0.0, clip_duration=3.0, ass_path=None, fonts_dir=FONTS_DIR,
                    out_path=tmp_path / "out.mp4", width=180, height=320, encoding=Encoding(fps=FPS),
                    video_source=source)
    render(job)
    assert repeats_after(job.out_path, 2.0) == []


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["end", "chain"])
def test_a_short_model_clip_is_ended_or_chained_never_repeated(tmp_path: Path, fake: FakeRemote, mode: str) -> None:
    settings = remote_settings(tmp_path, fake, video_provider="fal", clip_seconds=6.0, output_width=180,
                               output_height=320, fps=FPS, remote_video_seconds=4, remote_video_fill=mode)
    aid = workspace(settings)
    result = run_video(plan(settings, aid, seed=2), settings)
    fill = result.output["videoFill"]
    duration = probe(result.video_path).duration
    assert fill["mode"] == mode and fill["clipSeconds"] == pytest.approx(4.0, abs=0.1)
    if mode == "end":  # the video ends with the model's clip, as the original does
        assert duration == pytest.approx(4.0, abs=0.15) and result.output["audio"]["durationSeconds"] <= 4.0
        assert len(fake.hits("fal_submit")) == 1
    else:  # a second clip from the first one's last frame fills the rest, without a frame seen before
        assert duration == pytest.approx(6.0, abs=0.15) and fill["videoSeconds"] == pytest.approx(6.0, abs=0.05)
        first, second = fake.hits("fal_submit")
        assert second.json["duration"] == "4s" and second.files["image_url"] != first.files["image_url"]
    assert repeats_after(result.video_path, fill["clipSeconds"]) == []


@pytest.mark.slow
def test_a_long_lipsync_run_goes_in_pieces_and_says_so(tmp_path: Path, fake: FakeRemote,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tests.test_providers_run.SONG_SECONDS", 14.0)
    settings = remote_settings(tmp_path, fake, video_provider="fal", clip_seconds=12.0, output_width=180,
                               output_height=320, fps=FPS, fal_lipsync_model="fal-ai/ltx-2/audio-to-video")
    aid = workspace(settings)
    result = run_video(plan(settings, aid, seed=3, lipsync=True), settings)
    submits = fake.hits("fal_submit")
    assert len(submits) == 2 and all(s.path.endswith("ltx-2/audio-to-video") for s in submits)  # each took 2-10 s
    fill = result.output["videoFill"]
    assert fill["mode"] == "none" and "2 pieces joined at" in fill["modelLimits"], fill
    assert probe(result.video_path).duration == pytest.approx(12.0, abs=0.15)
    assert repeats_after(result.video_path, 0.0, gap=1.0) == []  # the pieces never replay a stretch
