"""The one ffmpeg runner with a feed (the camera writes raw frames into ffmpeg's standard input) and the loudness
meter the render's gain comes from; real ffmpeg throughout."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pytest

from pipeline.errors import RenderError
from pipeline.ffmpeg import decode_frames, measure_loudness, probe, run_ffmpeg
from tests.media import ffmpeg_make

W, H, FPS = 64, 48, 10


def raw_input_args(out: Path) -> list[str]:
    return ["-f", "rawvideo", "-pix_fmt", "gray", "-s", f"{W}x{H}", "-framerate", str(FPS), "-i", "pipe:0",
            "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(out)]


def frames(count: int):  # noqa: ANN201 - a feed
    def feed(stream: BinaryIO) -> None:
        for i in range(count):
            stream.write(np.full((H, W), (10 + i * 20) % 240, dtype=np.uint8).tobytes())
    return feed


def test_fed_frames_are_encoded_in_order_with_progress(tmp_path: Path) -> None:
    out = tmp_path / "fed.mp4"
    progress: list[float] = []
    run_ffmpeg(raw_input_args(out), feed=frames(10), expected_seconds=1.0, on_progress=progress.append, timeout=60)
    info = probe(out)
    assert (info.width, info.height) == (W, H) and info.duration == pytest.approx(1.0, abs=0.15)
    brightness = [f.mean() for f in decode_frames(out)]
    assert len(brightness) == 10 and brightness == sorted(brightness)  # each frame as written, in order
    assert progress and max(progress) <= 1.0


def test_a_feed_that_fails_stops_ffmpeg_and_raises_its_own_error(tmp_path: Path) -> None:
    def broken(stream: BinaryIO) -> None:
        frames(3)(stream)
        raise ValueError("the camera failed")

    before = set(os.listdir("/proc"))
    started = time.monotonic()
    with pytest.raises(ValueError, match="the camera failed"):
        run_ffmpeg(raw_input_args(tmp_path / "broken.mp4"), feed=broken, timeout=60)
    assert time.monotonic() - started < 30  # killed, not waited out
    leftover = [pid for pid in set(os.listdir("/proc")) - before if pid.isdigit()
                and "ffmpeg" in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")]
    assert leftover == []


def test_ffmpeg_that_stops_reading_is_its_error_not_a_broken_pipe(tmp_path: Path) -> None:
    bad = raw_input_args(tmp_path / "x.mp4")
    bad[bad.index("libx264")] = "no-such-encoder"
    with pytest.raises(RenderError, match="no-such-encoder|Unknown encoder"):
        run_ffmpeg(bad, feed=frames(50), timeout=60)


def test_loudness_follows_the_level_and_silence_has_none(tmp_path: Path) -> None:
    quiet, loud, silent = tmp_path / "quiet.wav", tmp_path / "loud.wav", tmp_path / "silent.wav"
    ffmpeg_make("-f", "lavfi", "-i", "sine=frequency=1000:duration=6", "-af", "volume=0.05", str(quiet))
    ffmpeg_make("-f", "lavfi", "-i", "sine=frequency=1000:duration=6", "-af", "volume=0.1", str(loud))
    ffmpeg_make("-f", "lavfi", "-i", "anullsrc=r=44100:cl=stereo", "-t", "6", str(silent))
    q, lo = measure_loudness(quiet), measure_loudness(loud)
    assert q is not None and lo is not None
    assert lo - q == pytest.approx(20 * np.log10(2), abs=0.3)  # twice the amplitude: +6 dB
    assert measure_loudness(loud, start=2.0, duration=3.0) == pytest.approx(lo, abs=0.3)  # a steady tone
    assert measure_loudness(silent) is None
