"""What every remote provider shares: retries with backoff, clear errors, checked downloads, media helpers.

Remote answers are never trusted: results are fetched with the safe fetcher and decoded before use.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import json
import mimetypes
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from PIL import Image, ImageOps, UnidentifiedImageError

from pipeline.errors import BadInput, FetchError, ProviderError, RenderError
from pipeline.fetch import Fetcher, limits_from_settings
from pipeline.ffmpeg import MediaInfo, probe, run_ffmpeg
from pipeline.models import FaceBox, LyricLine, StyledImage, Word

if TYPE_CHECKING:
    from pipeline.templates import Template

T = TypeVar("T")

MIN_IMAGE_SIDE = 64  # anything smaller is not a usable result
LINE_GAP_SECONDS = 0.8  # a pause this long between words starts a new lyric line
MAX_WORDS_PER_LINE = 10


@dataclass(frozen=True)
class RetryPolicy:
    retries: int = 3
    backoff_seconds: float = 2.0
    timeout_seconds: float = 600.0
    poll_seconds: float = 2.0
    max_wait_seconds: float = 60.0  # no single wait (backoff or Retry-After) is longer than this

    @classmethod
    def from_settings(cls, settings) -> RetryPolicy:  # noqa: ANN001 - Settings; kept light for tests
        return cls(retries=max(0, settings.provider_retries), backoff_seconds=settings.provider_backoff_seconds,
                   timeout_seconds=settings.provider_timeout_seconds, poll_seconds=settings.provider_poll_seconds)


class Retryable(Exception):
    """A failure worth another try (429, 5xx, time-out); `retry_after` is the server's wish, if it said one."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


def call_with_retries(call: Callable[[], T], policy: RetryPolicy, label: str,
                      sleep: Callable[[float], None] = time.sleep) -> T:
    """Run `call`; on Retryable wait (Retry-After, else exponential backoff) and try again, then give up clearly."""
    attempt = 0
    while True:
        try:
            return call()
        except Retryable as exc:
            if attempt >= policy.retries:
                tries = "1 try" if attempt == 0 else f"{attempt + 1} tries"
                raise ProviderError(f"{label}: gave up after {tries}: {exc.message}", transient=True) from None
            wait = exc.retry_after if exc.retry_after is not None else policy.backoff_seconds * 2**attempt
            sleep(max(0.0, min(wait, policy.max_wait_seconds)))
            attempt += 1


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait from `retry-after-ms` or `Retry-After` (seconds or an HTTP date)."""
    lower = {k.lower(): v for k, v in headers.items()}
    if "retry-after-ms" in lower:
        try:
            return float(lower["retry-after-ms"]) / 1000
        except ValueError:
            pass
    value = lower.get("retry-after")
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


def reason_from_body(body: object) -> str:
    """The human part of an error body: OpenAI's error.message, fal's detail (text or validation list)."""
    if isinstance(body, (bytes, str)):
        text = body.decode(errors="replace") if isinstance(body, bytes) else body
        try:
            body = json.loads(text)
        except ValueError:
            return text.strip()[:300] or "no reason given"
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
        if isinstance(err, str) and err:
            return err
        detail = body.get("detail")
        if isinstance(detail, str):
            return detail
        if isinstance(detail, list):
            parts = []
            for item in detail:
                if isinstance(item, dict):
                    loc = ".".join(str(p) for p in item.get("loc", []) if p != "body")
                    parts.append(f"{loc}: {item.get('msg', '')}".strip(": "))
            if parts:
                return "; ".join(parts)
        if body.get("message"):
            return str(body["message"])
    return json.dumps(body)[:300] if body is not None else "no reason given"


def raise_for_status(label: str, status: int, body: object, headers: Mapping[str, str], key_name: str) -> None:
    """Turn an HTTP failure into the right error: retry 429/5xx, explain 401/400/422, refuse the rest."""
    if status < 400:
        return
    reason = reason_from_body(body)
    if status == 429:
        raise Retryable(f"rate limited (429): {reason}", parse_retry_after(headers))
    if status >= 500 or status == 408:
        raise Retryable(f"server error {status}: {reason}", parse_retry_after(headers))
    if status in (401, 403):
        raise ProviderError(f"{label}: the API key was refused ({status}, bad key): {reason}. Check {key_name}.")
    if status in (400, 422):
        raise ProviderError(f"{label} refused the input ({status}): {reason}")
    if status == 404:
        raise ProviderError(f"{label}: not found (404): {reason}. Is the model name right?")
    raise ProviderError(f"{label}: unexpected answer {status}: {reason}")


def malformed(label: str, what: str) -> ProviderError:
    return ProviderError(f"{label}: malformed answer: {what}")


def data_uri(path: Path, mime: str | None = None) -> str:
    """A file as a base64 data URI (how fal takes inputs without a separate upload)."""
    mime = mime or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode()}"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class TranscriptCache:
    """Transcripts kept by song content and provider, so a batch transcribes each song once."""

    folder: Path

    def _path(self, song: Path, provider: str) -> Path:
        tag = "".join(c if c.isalnum() or c in "-." else "_" for c in provider)
        return self.folder / f"{file_sha256(song)[:32]}-{tag}.json"

    def get(self, song: Path, provider: str) -> list[LyricLine] | None:
        path = self._path(song, provider)
        if not path.exists():
            return None
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            return [LyricLine(line["start"], line["end"], line["text"],
                              tuple(Word(w["start"], w["end"], w["text"]) for w in line["words"])) for line in raw]
        except (ValueError, KeyError, TypeError):
            return None  # a damaged cache entry is simply redone

    def put(self, song: Path, provider: str, lines: list[LyricLine]) -> None:
        path = self._path(song, provider)
        path.parent.mkdir(parents=True, exist_ok=True)
        raw = [{"start": ln.start, "end": ln.end, "text": ln.text,
                "words": [{"start": w.start, "end": w.end, "text": w.text} for w in ln.words]} for ln in lines]
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".part-")
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(raw, out)
        os.replace(tmp, path)


def lines_from_words(words: Iterable[Word], segments: Iterable[tuple[float, float]] = ()) -> list[LyricLine]:
    """Group timed words into lyric lines: by the model's segments when given, else by pauses and length."""
    ordered = sorted((w for w in words if w.text.strip()), key=lambda w: w.start)
    bounds = sorted(segments)
    groups: list[list[Word]] = []
    if bounds:
        for start, end in bounds:
            group = [w for w in ordered if start - 0.05 <= (w.start + w.end) / 2 < end + 0.05]
            if group:
                groups.append(group)
        placed = {id(w) for g in groups for w in g}
        stray = [w for w in ordered if id(w) not in placed]
        if stray:
            groups.extend(lines_as_groups(stray))
        groups.sort(key=lambda g: g[0].start)
    else:
        groups = lines_as_groups(ordered)
    return [LyricLine(g[0].start, g[-1].end, " ".join(w.text.strip() for w in g), tuple(g)) for g in groups]


def lines_as_groups(words: list[Word]) -> list[list[Word]]:
    groups: list[list[Word]] = []
    for word in words:
        if groups and word.start - groups[-1][-1].end < LINE_GAP_SECONDS and len(groups[-1]) < MAX_WORDS_PER_LINE:
            groups[-1].append(word)
        else:
            groups.append([word])
    return groups


def check_image(path: Path, label: str) -> tuple[int, int]:
    """The result must decode as an image of a usable size."""
    try:
        with Image.open(path) as img:
            img.load()
            size = img.size
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError, ValueError):
        raise malformed(label, "the returned image could not be decoded") from None
    if min(size) < MIN_IMAGE_SIDE:
        raise malformed(label, f"the returned image is only {size[0]}x{size[1]}")
    return size


def check_video(path: Path, label: str, ffmpeg: str | None) -> MediaInfo:
    """The result must be a decodable video with frames and a duration."""
    try:
        info = probe(path, ffmpeg)
    except BadInput:
        info = None
    if info is None or not info.has_video or not info.duration or not info.width:
        raise malformed(label, "the returned video could not be decoded")
    if min(info.width, info.height or 0) < MIN_IMAGE_SIDE:
        raise malformed(label, f"the returned video is only {info.width}x{info.height}")
    return info


def check_audio(path: Path, label: str, ffmpeg: str | None) -> float:
    """The seconds of audio a file holds (what a lip-sync model will hear)."""
    try:
        info = probe(path, ffmpeg)
    except BadInput:
        info = None
    if info is None or not info.has_audio or not info.duration:
        raise ProviderError(f"{label}: the clip's audio could not be read")
    return float(info.duration)


class ResultDownloader:
    """Remote results come back as URLs: fetched within the fetch limits, then moved where the step wants them."""

    def __init__(self, settings) -> None:  # noqa: ANN001 - Settings
        self.fetcher = Fetcher(settings.cache_dir / "remote-results", limits_from_settings(settings))

    def download(self, url: str, out_path: Path, label: str) -> Path:
        if url.startswith("data:"):
            header, _, payload = url.partition(",")
            try:
                data = base64.b64decode(payload) if header.endswith(";base64") else payload.encode()
            except ValueError:
                raise malformed(label, "the returned data URI is not valid base64") from None
            out_path.write_bytes(data)
            return out_path
        try:
            cached = self.fetcher.fetch(url, field_name="result", suffix=Path(url.split("?", 1)[0]).suffix[:8])
        except FetchError as exc:
            raise ProviderError(f"{label}: its result could not be downloaded: {exc.message}",
                                transient=True) from None
        shutil.copyfile(cached, out_path)
        return out_path


def fit_still(src: Path, out_path: Path, width: int, height: int) -> None:
    """Crop a model's image to the frame's aspect ratio (centred) and size it to width x height."""
    with Image.open(src) as img:
        img = ImageOps.exif_transpose(img).convert("RGB")
        fitted = ImageOps.fit(img, (width, height), method=Image.Resampling.LANCZOS, centering=(0.5, 0.4))
    fitted.save(out_path, "JPEG", quality=92)


def styled_from_file(path: Path, width: int, height: int, provider: str) -> StyledImage:
    """A still made elsewhere, with its face found here (the camera motion aims at it)."""
    from pipeline.detect_face import detect_face

    face: FaceBox | None = detect_face(path)
    return StyledImage(path=path, width=width, height=height, face=face, provider=provider)


def cut_clip_audio(song: Path, start: float, duration: float, out_path: Path, ffmpeg: str | None) -> Path:
    """Only the clip's audio (AAC in .m4a): what a lip-sync model should hear, not the whole song."""
    try:
        run_ffmpeg(["-ss", f"{start:.3f}", "-t", f"{duration:.3f}", "-i", str(song), "-vn", "-ac", "2", "-ar", "44100",
                    "-c:a", "aac", "-b:a", "160k", str(out_path)], ffmpeg=ffmpeg, timeout=120)
    except RenderError as exc:
        raise ProviderError(f"The clip's audio could not be cut for lip-sync: {exc.message}") from None
    return out_path


def compact_audio(song: Path, out_path: Path, ffmpeg: str | None) -> Path:
    """A small mono copy of a song for upload (transcription needs words, not fidelity)."""
    try:
        run_ffmpeg(["-i", str(song), "-vn", "-ac", "1", "-ar", "16000", "-c:a", "libmp3lame", "-b:a", "48k",
                    str(out_path)], ffmpeg=ffmpeg, timeout=300)
    except RenderError as exc:
        raise ProviderError(f"The song could not be prepared for transcription: {exc.message}") from None
    return out_path


def image_prompt(template: Template, *, reference: bool = True) -> str:
    """The template's scene and style rules, written for an image model that edits the reference photo."""
    rules = template.image.style_rules
    parts = [template.image.prompt]
    for name, value in (("Camera", rules.camera), ("Environment", rules.environment), ("Subject", rules.subject),
                        ("Realism", rules.realism)):
        if value:
            parts.append(f"{name}: {value}.")
    parts.append("Vertical 9:16 framing.")
    if reference:
        parts.append("Keep the person's face and identity exactly as in the reference photo.")
    return " ".join(parts)
