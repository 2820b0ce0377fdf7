"""The benchmark's core comparison, run once at a tiny size: our pipeline and the bench's bare ffmpeg command make
the same video (size, length, picture), so the ratio the benchmark reports compares like with like."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench.contenders import prepare, run_bare, run_ours
from bench.measure import alternate
from pipeline.ffmpeg import decode_frames, probe
from pipeline.settings import Settings

WIDTH, HEIGHT, FPS, SECONDS = 180, 320, 15, 3.0


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, list[float]], dict]:
    work = tmp_path_factory.mktemp("bench-smoke")
    settings = Settings(_env_file=None, data_dir=work / "data", output_width=WIDTH, output_height=HEIGHT, fps=FPS,
                        clip_seconds=SECONDS)
    prepared, _ = prepare(settings, work / "prepared", seed=11)
    kept: dict[str, Path] = {}

    def ours(_: int) -> float:
        seconds, out = run_ours(settings, seed=11)
        kept["ours"] = out.video_path
        kept["edit"] = out.output["edit"]
        return seconds

    bare_path = work / "bare.mp4"
    times = alternate({"ours": ours, "bare": lambda _: run_bare(prepared, bare_path, settings.ffmpeg_binary)}, 1)
    return kept["ours"], bare_path, times, kept["edit"]


def test_ours_and_bare_make_valid_videos_of_equal_size_and_length(videos) -> None:
    ours, bare, times, _ = videos
    a, b = probe(ours), probe(bare)
    for info in (a, b):
        assert info.has_video and info.has_audio
        assert (info.width, info.height) == (WIDTH, HEIGHT)
        assert info.video_codec == "h264" and info.pix_fmt == "yuv420p"
        assert info.duration is not None and abs(info.duration - SECONDS) <= 0.1
    assert abs(a.duration - b.duration) <= 2 / FPS
    assert all(len(v) == 1 and v[0] > 0 for v in times.values())


def test_bare_command_shows_the_same_picture_as_ours(videos) -> None:
    """Same still, same shots (the edit's cuts as the bare command's expressions), the same caption and lyrics:
    frames across the clip match (the camera moves) outside the text, which libass and our drawing set apart."""
    ours, bare, _, edit = videos
    outside = np.ones((HEIGHT, WIDTH), bool)
    for box in edit["textBoxes"]:
        outside[box["y"]: box["y"] + box["h"], box["x"]: box["x"] + box["w"]] = False
    at = [0.3, 1.5, 2.6]
    mine = decode_frames(ours, at=at, width=WIDTH, height=HEIGHT)
    theirs = decode_frames(bare, at=at, width=WIDTH, height=HEIGHT)
    assert len(mine) == len(theirs) == len(at)
    for x, y in zip(mine, theirs, strict=True):
        assert np.abs(x.astype(np.int16) - y.astype(np.int16))[outside].mean() < 8.0
