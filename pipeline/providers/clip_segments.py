"""Model clips in pieces: where to cut a clip a model cannot take whole, and joining the pieces frame-exactly.

A lip-sync model that takes 10 s of audio gets a 15 s clip as pieces cut at lyric-line starts or beats; each
piece starts from the previous piece's last frame, and the joined video keeps the song's own (continuous) audio.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pipeline.errors import ProviderError, RenderError
from pipeline.ffmpeg import run_ffmpeg

# A piece a few frames shorter than its audio (the model rounds to whole frames) is held on its last frame that
# long, so the next piece starts on time and the mouths stay on the song; a few frames, never a visible freeze.
MAX_HOLD_SECONDS = 0.25


def plan_segments(total: float, max_len: float, min_len: float,
                  cut_points: Sequence[float]) -> list[tuple[float, float]]:
    """(start, end) pieces covering 0..total, each min_len..max_len long, cut at the latest cut point that fits
    (else at max_len). Pure: cut_points are seconds from the clip's start (lyric lines first, then beats)."""
    if total <= max_len:
        return [(0.0, total)]
    points = sorted(p for p in set(cut_points) if 0 < p < total)
    pieces: list[tuple[float, float]] = []
    start = 0.0
    while total - start > max_len:
        # the remainder after this cut must still be a valid piece
        latest = min(start + max_len, total - min_len)
        fitting = [p for p in points if start + min_len <= p <= latest + 1e-9]
        end = fitting[-1] if fitting and latest - fitting[-1] < max_len / 2 else latest
        pieces.append((start, end))
        start = end
    pieces.append((start, total))
    return pieces


def cut_audio(audio: Path, start: float, duration: float, out_path: Path, ffmpeg: str | None) -> Path:
    """A piece of a clip's audio (AAC in .m4a), sample-exact from `start`."""
    try:
        run_ffmpeg(["-i", str(audio), "-ss", f"{start:.3f}", "-t", f"{duration:.3f}", "-vn", "-c:a", "aac",
                    "-b:a", "160k", str(out_path)], ffmpeg=ffmpeg, timeout=120)
    except RenderError as exc:
        raise ProviderError(f"A piece of the clip's audio could not be cut: {exc.message}") from None
    return out_path


def last_frame(video: Path, out_path: Path, ffmpeg: str | None) -> Path:
    """The clip's last frame as a PNG: where the next piece starts from."""
    try:
        run_ffmpeg(["-sseof", "-0.5", "-i", str(video), "-update", "1", "-frames:v", "30", "-f", "image2",
                    str(out_path)], ffmpeg=ffmpeg, timeout=60)
    except RenderError as exc:
        raise ProviderError(f"The clip's last frame could not be read: {exc.message}") from None
    return out_path


def join_clips(pieces: Sequence[tuple[Path, float]], out_path: Path, fps: int, ffmpeg: str | None) -> Path:
    """The pieces one after the other, each cut to its own length (video only: the song is the sound)."""
    args: list[str] = []
    chains = []
    for i, (path, seconds) in enumerate(pieces):
        args += ["-i", str(path)]
        chains.append(f"[{i}:v]fps={fps},tpad=stop_mode=clone:stop_duration={MAX_HOLD_SECONDS},"
                      f"trim=duration={seconds:.3f},setpts=PTS-STARTPTS,format=yuv420p[v{i}]")
    graph = ";".join(chains) + ";" + "".join(f"[v{i}]" for i in range(len(pieces))) + \
        f"concat=n={len(pieces)}:v=1:a=0[v]"
    try:
        run_ffmpeg([*args, "-filter_complex", graph, "-map", "[v]", "-c:v", "libx264", "-preset", "veryfast",
                    "-crf", "16", str(out_path)], ffmpeg=ffmpeg, timeout=300)
    except RenderError as exc:
        raise ProviderError(f"The model's clips could not be joined: {exc.message}") from None
    return out_path
