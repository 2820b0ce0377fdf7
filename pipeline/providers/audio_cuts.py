"""The audio a remote model hears: only the clip (lip-sync), or a compact copy of the song (transcription)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pipeline.errors import ProviderError, RenderError
from pipeline.ffmpeg import input_args, run_ffmpeg


def cut_clip_audio(song: Path, start: float, duration: float, out_path: Path, ffmpeg: str | None) -> Path:
    """Only the clip's audio (AAC in .m4a): what a lip-sync model should hear, not the whole song."""
    try:
        run_ffmpeg(["-ss", f"{start:.3f}", "-t", f"{duration:.3f}", *input_args(song), "-vn", "-ac", "2",
                    "-ar", "44100",
                    "-c:a", "aac", "-b:a", "160k", str(out_path)], ffmpeg=ffmpeg, timeout=120)
    except RenderError as exc:
        raise ProviderError(f"The clip's audio could not be cut for lip-sync: {exc.message}") from None
    return out_path


def compact_audio(song: Path, out_path: Path, ffmpeg: str | None) -> Path:
    """A small mono copy of a song for upload (transcription needs words, not fidelity)."""
    try:
        run_ffmpeg([*input_args(song), "-vn", "-ac", "1", "-ar", "16000", "-c:a", "libmp3lame", "-b:a", "48k",
                    str(out_path)], ffmpeg=ffmpeg, timeout=300)
    except RenderError as exc:
        raise ProviderError(f"The song could not be prepared for transcription: {exc.message}") from None
    return out_path


@contextmanager
def compacted_upload(song: Path, folder: Path, ffmpeg: str | None) -> Iterator[Path]:
    """A compact copy of `song` for one upload, removed afterwards: it is only for that request (two runs of
    one song at once each get their own)."""
    folder.mkdir(parents=True, exist_ok=True)
    upload = folder / f".upload-{song.stem}-{secrets.token_hex(4)}.mp3"
    try:
        yield compact_audio(song, upload, ffmpeg)
    finally:
        upload.unlink(missing_ok=True)
