"""The one ffmpeg locator, runner and prober.

imageio-ffmpeg ships ffmpeg but no ffprobe, so probing reads `ffmpeg -i` and decoding goes
through pipes into numpy.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import BinaryIO

import numpy as np

from pipeline.errors import BadInput, RenderError


@lru_cache(maxsize=8)
def ffmpeg_exe(configured: str | None = None) -> str:
    """The ffmpeg binary: the configured one if given, else imageio-ffmpeg's."""
    if configured:
        found = shutil.which(configured) or (configured if Path(configured).exists() else None)
        if not found:
            raise RenderError(f"FFMPEG_BINARY={configured!r} was not found")
        return found
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


# What an input file may be opened as. A fetched or committed "song" that is really a DASH or HLS manifest or a
# concat script makes ffmpeg open the files or URLs it names (and the video carries their content), so inputs get
# plain containers only, from local files and pipes only.
AUDIO_FORMATS = ("mp3", "wav", "w64", "mov", "flac", "ogg", "aac", "matroska")  # "mov" is ffmpeg's mp4/m4a demuxer
VIDEO_FORMATS = ("mov", "matroska")
IMAGE_FORMATS = ("image2", "png_pipe", "jpeg_pipe", "webp_pipe")
MEDIA_FORMATS = tuple(dict.fromkeys(AUDIO_FORMATS + VIDEO_FORMATS))
INPUT_PROTOCOLS = "file,pipe"


def input_args(path: Path | str, formats: Sequence[str] = MEDIA_FORMATS) -> list[str]:
    """`-i path` opened with only these demuxers and only the file and pipe protocols."""
    return ["-protocol_whitelist", INPUT_PROTOCOLS, "-format_whitelist", ",".join(formats), "-i", str(path)]


@dataclass(frozen=True)
class MediaInfo:
    duration: float | None
    has_video: bool
    has_audio: bool
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    video_codec: str | None = None
    pix_fmt: str | None = None
    audio_codec: str | None = None
    sample_rate: int | None = None
    channels: int | None = None
    rotation: int = 0


_DURATION = re.compile(r"Duration: (\d+):(\d+):(\d+(?:\.\d+)?)")
_VIDEO = re.compile(r"Stream #\S+.*?: Video: (\w+)[^,]*,\s*(\w+)[^,]*(?:\([^)]*\))?.*?,\s*(\d{2,6})x(\d{2,6})")
_FPS = re.compile(r"(\d+(?:\.\d+)?) fps")
_AUDIO = re.compile(r"Stream #\S+.*?: Audio: (\w+)[^,]*,\s*(\d+) Hz,\s*([^,]+)")
_ROTATION = re.compile(r"rotation of (-?\d+(?:\.\d+)?) degrees|rotate\s*:\s*(-?\d+)")


def parse_probe(stderr: str) -> MediaInfo:
    """Read what `ffmpeg -i` printed about its first input."""
    text = stderr.split("Output #", 1)[0]
    m = _DURATION.search(text)
    duration = int(m[1]) * 3600 + int(m[2]) * 60 + float(m[3]) if m else None
    v = _VIDEO.search(text)
    a = _AUDIO.search(text)
    fps = None
    if v:
        line = text[v.start() : text.find("\n", v.start())]
        f = _FPS.search(line)
        fps = float(f[1]) if f else None
    channels = None
    if a:
        layout = a[3].strip()
        channels = {"mono": 1, "stereo": 2}.get(layout.split("(")[0])
        if channels is None:
            c = re.match(r"(\d+) channels", layout)
            channels = int(c[1]) if c else None
    r = _ROTATION.search(text)
    rotation = int(float(r[1] or r[2])) if r else 0
    return MediaInfo(
        duration=duration,
        has_video=bool(v),
        has_audio=bool(a),
        width=int(v[3]) if v else None,
        height=int(v[4]) if v else None,
        fps=fps,
        video_codec=v[1] if v else None,
        pix_fmt=v[2] if v else None,
        audio_codec=a[1] if a else None,
        sample_rate=int(a[2]) if a else None,
        channels=channels,
        rotation=rotation,
    )


def probe(path: Path | str, ffmpeg: str | None = None, formats: Sequence[str] = MEDIA_FORMATS) -> MediaInfo:
    """Probe a media file without ffprobe; a file of any other format reads as holding nothing."""
    exe = ffmpeg_exe(ffmpeg)
    proc = subprocess.run(
        [exe, "-hide_banner", "-nostdin", *input_args(path, formats)],
        capture_output=True,
        text=True,
        errors="replace",
        timeout=60,
    )
    if any(sign in proc.stderr for sign in ("Invalid data found", "No such file", "not on whitelist")):
        raise BadInput(f"{Path(path).name} is not a media file ffmpeg can read")
    return parse_probe(proc.stderr)


def decode_audio(
    path: Path | str,
    sample_rate: int = 22050,
    *,
    start: float | None = None,
    duration: float | None = None,
    ffmpeg: str | None = None,
) -> np.ndarray:
    """Decode to mono float32 samples in [-1, 1]."""
    args = [ffmpeg_exe(ffmpeg), "-hide_banner", "-nostdin", "-v", "error"]
    if start is not None:
        args += ["-ss", f"{start:.3f}"]
    if duration is not None:
        args += ["-t", f"{duration:.3f}"]
    args += [*input_args(path), "-map", "0:a:0", "-ac", "1", "-ar", str(sample_rate), "-f", "f32le", "pipe:1"]
    proc = subprocess.run(args, capture_output=True, timeout=600)
    if proc.returncode != 0:
        msg = proc.stderr.decode(errors="replace").strip().splitlines()
        raise BadInput(f"{Path(path).name} is not decodable audio ({msg[-1] if msg else 'ffmpeg failed'})")
    return np.frombuffer(proc.stdout, dtype=np.float32).copy()


def measure_loudness(path: Path | str, *, start: float = 0.0, duration: float | None = None,
                     ffmpeg: str | None = None) -> float | None:
    """Integrated loudness (EBU R128, LUFS) of the stretch of audio as the render hears it (stereo); None for
    silence or a stretch too short to measure."""
    args = [ffmpeg_exe(ffmpeg), "-hide_banner", "-nostdin", "-nostats", "-ss", f"{max(0.0, start):.3f}"]
    if duration is not None:
        args += ["-t", f"{duration:.3f}"]
    args += [*input_args(path), "-map", "0:a:0", "-af", "aformat=channel_layouts=stereo,ebur128=framelog=quiet",
             "-f", "null", "-"]
    proc = subprocess.run(args, capture_output=True, text=True, errors="replace", timeout=600)
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or ["ffmpeg failed"]
        raise BadInput(f"{Path(path).name} is not decodable audio ({tail[0]})")
    found = _INTEGRATED.findall(proc.stderr)
    value = float(found[-1]) if found else None
    return None if value is None or value <= _SILENCE_LUFS else value


_INTEGRATED = re.compile(r"I:\s+(-?\d+(?:\.\d+)?|-inf) LUFS")
_SILENCE_LUFS = -69.0  # ebur128 reports -70 (its absolute gate) for silence


def decode_frames(
    path: Path | str,
    *,
    at: Sequence[float] | None = None,
    width: int | None = None,
    height: int | None = None,
    ffmpeg: str | None = None,
) -> list[np.ndarray]:
    """Decode RGB frames (all, or the ones nearest the given times) as HxWx3 uint8 arrays."""
    info = probe(path, ffmpeg, VIDEO_FORMATS + IMAGE_FORMATS)
    w, h = width or info.width, height or info.height
    if not w or not h:
        raise BadInput(f"{Path(path).name} has no video")
    times = list(at) if at is not None else [None]
    frames: list[np.ndarray] = []
    for t in times:
        args = [ffmpeg_exe(ffmpeg), "-hide_banner", "-nostdin", "-v", "error"]
        if t is not None:
            args += ["-ss", f"{t:.3f}"]
        args += input_args(path, VIDEO_FORMATS + IMAGE_FORMATS)
        if t is not None:
            args += ["-frames:v", "1"]
        args += ["-vf", f"scale={w}:{h}", "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"]
        out = subprocess.run(args, capture_output=True, timeout=600, check=True).stdout
        arr = np.frombuffer(out, dtype=np.uint8)
        frames.extend(arr.reshape(-1, h, w, 3))
    return frames


def escape_filter_value(value: str) -> str:
    """A filter option value escaped for both levels: the option parser, then the filtergraph parser."""
    value = re.sub(r"([\\':])", r"\\\1", value)  # option level: backslash, quote and colon
    return re.sub(r"([\\'\[\],;])", r"\\\1", value)  # graph level: backslash, quote, brackets, comma, semicolon


ProgressFn = Callable[[float], None]


def run_ffmpeg(
    args: Sequence[str],
    *,
    ffmpeg: str | None = None,
    expected_seconds: float | None = None,
    on_progress: ProgressFn | None = None,
    timeout: float | None = None,
    feed: Callable[[BinaryIO], None] | None = None,
) -> None:
    """Run ffmpeg with `args` (without the binary), reporting 0..1 progress from `-progress`.

    `feed`, if given, writes ffmpeg's standard input (an input of `pipe:0`) from a thread of its own while this
    one reads the progress; a failure on either side stops both.
    """
    cmd = [ffmpeg_exe(ffmpeg), "-hide_banner", "-nostdin", "-y", "-v", "error", "-progress", "pipe:1", *args]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE if feed else subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    feeder = _Feeder(proc, feed) if feed else None
    try:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode(errors="replace")
            if on_progress and expected_seconds and line.startswith("out_time_us="):
                value = line.split("=", 1)[1].strip()
                if value.lstrip("-").isdigit():
                    on_progress(min(1.0, max(0.0, int(value) / 1e6 / expected_seconds)))
        proc.wait(timeout=timeout)
    except BaseException:
        proc.kill()
        proc.wait()
        if feeder:
            feeder.join()
        raise
    if feeder:
        feeder.join()
        if feeder.error is not None:
            raise feeder.error
    stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.returncode != 0:
        if "No space left on device" in stderr or "File too large" in stderr:
            raise RenderError("The disk is full: ffmpeg could not write its output (No space left on device); "
                              "free space where DATA_DIR is")
        tail = "\n".join(stderr.strip().splitlines()[-5:])
        raise RenderError(f"ffmpeg failed (exit {proc.returncode}): {tail}")


class _Feeder(threading.Thread):
    """Writes ffmpeg's standard input; an error of its own is kept for the caller's thread to raise."""

    def __init__(self, proc: subprocess.Popen[bytes], feed: Callable[[BinaryIO], None]) -> None:
        super().__init__(name="ffmpeg-feed", daemon=True)
        self.proc, self.feed = proc, feed
        self.error: BaseException | None = None
        self.start()

    def run(self) -> None:
        assert self.proc.stdin is not None
        try:
            self.feed(self.proc.stdin)
        except (BrokenPipeError, ConnectionResetError):
            pass  # ffmpeg stopped reading: its exit status and stderr say why
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            self.error = exc
            self.proc.kill()
        finally:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
