"""Small real media made by ffmpeg for tests (tones, noise, test pictures)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from pipeline.ffmpeg import ffmpeg_exe


def ffmpeg_make(*args: str) -> None:
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-v", "error", "-y", *args], check=True)


def make_tone(path: Path, seconds: float = 3.0, freq: int = 440, rate: int = 44100) -> Path:
    ffmpeg_make("-f", "lavfi", "-i", f"sine=frequency={freq}:duration={seconds}:sample_rate={rate}", str(path))
    return path


def make_picture(path: Path, width: int = 640, height: int = 480) -> Path:
    ffmpeg_make("-f", "lavfi", "-i", f"testsrc2=s={width}x{height}", "-frames:v", "1", str(path))
    return path
