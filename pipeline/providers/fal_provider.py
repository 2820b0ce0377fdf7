"""fal.ai's queue REST API behind the step protocols: image edit, image-to-video, lip-sync, upscale, transcription.

The queue protocol is pipeline/providers/fal_queue.py; the model limits that shape each request, fal_models.py.
Inputs travel as data URIs, results come back as URLs fetched with the safe fetcher and decoded before use.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image

from pipeline.models import LyricLine, StyledImage, Word
from pipeline.providers.audio_cuts import compacted_upload
from pipeline.providers.clip_segments import cut_audio, join_clips, last_frame, plan_segments
from pipeline.providers.fal_models import (
    aspect_for_frame,
    clip_duration_field,
    limits_for,
    resolution_field,
    upscale_factor_field,
    video_size_for_frame,
)
from pipeline.providers.fal_queue import FalQueue
from pipeline.providers.http_retries import malformed
from pipeline.providers.prompts import image_prompt
from pipeline.providers.results import (
    ResultDownloader,
    check_audio,
    check_image,
    check_video,
    data_uri,
    fit_still,
    styled_from_file,
    upscaled_still,
)
from pipeline.providers.transcripts import TranscriptCache, lines_from_words
from pipeline.settings import Settings

if TYPE_CHECKING:
    from pipeline.templates import Template

def media_url(label: str, result: dict, key: str) -> str:
    """result[key].url, or result[key + 's'][0].url (fal's two shapes for one file)."""
    item = result.get(key)
    if item is None and isinstance(result.get(key + "s"), list) and result[key + "s"]:
        item = result[key + "s"][0]
    url = item.get("url") if isinstance(item, dict) else None
    if not isinstance(url, str) or not url:
        raise malformed(label, f"the result has no {key} URL")
    return url


@dataclass
class FalImageMaker:
    settings: Settings
    name: str = ""

    def __post_init__(self) -> None:
        self.model = self.settings.fal_image_model
        self.name = self.name or f"fal:{self.model}"
        self.queue = FalQueue(self.settings)
        self.downloader = ResultDownloader(self.settings)

    def make(self, face_guide: Path | None, template: Template, *, width: int, height: int, rng: random.Random,
             out_path: Path) -> StyledImage:
        args: dict[str, Any] = {"prompt": image_prompt(template, reference=face_guide is not None), "num_images": 1,
                                "aspect_ratio": aspect_for_frame(self.settings.fal_image_model, width, height,
                                                                 self.settings.remote_aspect_ratio),
                                "output_format": "png",
                                "seed": rng.randrange(2**31)}
        model = self.model
        if face_guide is not None:
            args["image_urls"] = [data_uri(face_guide)]
        else:
            model = self.settings.fal_text_to_image_model  # nothing to edit: the scene is made from the prompt
        self.name = f"fal:{model}"
        result = self.queue.run(model, args)
        raw = out_path.with_name(out_path.stem + ".model.img")
        self.downloader.download(media_url(self.name, result, "image"), raw, self.name)
        check_image(raw, self.name)
        fit_still(raw, out_path, width, height)
        raw.unlink(missing_ok=True)
        return styled_from_file(out_path, width, height, self.name)


@dataclass
class FalVideoMaker:
    """Image-to-video with the motion prompt; with the clip's audio, the audio-to-video model lip-syncs to it."""

    settings: Settings
    name: str = ""
    needs_audio_clip: bool = True  # run_video cuts the clip's audio for lip-sync runs
    note: str | None = None  # what was done to fit the model's limits (the run's output records it)

    def __post_init__(self) -> None:
        self.name = self.name or f"fal:{self.settings.fal_video_model}"
        self.queue = FalQueue(self.settings)
        self.downloader = ResultDownloader(self.settings)

    def make(self, image: StyledImage, prompt: str, *, duration: float, audio_clip: Path | None,
             out_path: Path, cut_points: Sequence[float] = ()) -> Path | None:
        self.note = None
        if audio_clip is not None:
            return self._lipsync(image.path, prompt, audio_clip, out_path, cut_points)
        model = self.settings.fal_video_model
        self.name = f"fal:{model}"  # the run records the model that made this clip
        return self.clip_from(image.path, prompt, min(duration, self.settings.remote_video_seconds), out_path)

    def clip_from(self, frame: Path, prompt: str, seconds: float, out_path: Path) -> Path:
        """One image-to-video clip from `frame`, as long as the model's durations allow (at least `seconds`)."""
        model = self.settings.fal_video_model
        args = {"prompt": prompt, "image_url": data_uri(frame),
                "duration": clip_duration_field(model, seconds),
                "resolution": resolution_field(model, self.settings.remote_video_resolution),
                "aspect_ratio": aspect_for_frame(model, *_size(frame), self.settings.remote_aspect_ratio),
                "generate_audio": False}
        return self._fetch(model, args, out_path)

    def _lipsync(self, frame: Path, prompt: str, audio_clip: Path, out_path: Path,
                 cut_points: Sequence[float]) -> Path:
        model = self.settings.fal_lipsync_model
        self.name = f"fal:{model}"
        limits = limits_for(model)
        ffmpeg = self.settings.ffmpeg_binary
        total = whole = check_audio(audio_clip, self.name, ffmpeg)
        longest = limits.max_audio_seconds or total
        if total > longest and self.settings.remote_lipsync_long == "shorten":
            fitting = [p for p in cut_points if limits.min_audio_seconds <= p <= longest]
            total = max(fitting) if fitting else longest
            self.note = f"lip-sync clip shortened to {total:.2f} s ({model} takes at most {longest:g} s of audio)"
        pieces = plan_segments(total, longest, max(limits.min_audio_seconds, 0.5), cut_points)
        made: list[tuple[Path, float]] = []
        for i, (start, end) in enumerate(pieces):
            audio = audio_clip if len(pieces) == 1 and total == whole else cut_audio(
                audio_clip, start, end - start, out_path.with_name(f"{out_path.stem}.a{i}.m4a"), ffmpeg)
            if i:
                frame = last_frame(made[-1][0], out_path.with_name(f"{out_path.stem}.f{i}.png"), ffmpeg)
            args = {"prompt": prompt, "image_url": data_uri(frame), "audio_url": data_uri(audio)}
            if limits.sized_by_video_size:
                args["video_size"] = video_size_for_frame(*_size(frame), self.settings.remote_aspect_ratio)
            piece = out_path if len(pieces) == 1 else out_path.with_name(f"{out_path.stem}.p{i}.mp4")
            made.append((self._fetch(model, args, piece), end - start))
        if len(pieces) > 1:
            join_clips(made, out_path, self.settings.fps, ffmpeg)
            cuts = ", ".join(f"{end:.2f}" for _, end in pieces[:-1])
            self.note = (f"lip-sync in {len(pieces)} pieces joined at {cuts} s ({model} takes at most "
                         f"{longest:g} s of audio; each piece starts from the last frame of the one before)")
        return out_path

    def _fetch(self, model: str, args: dict[str, Any], out_path: Path) -> Path:
        result = self.queue.run(model, args)
        self.downloader.download(media_url(self.name, result, "video"), out_path, self.name)
        check_video(out_path, self.name, self.settings.ffmpeg_binary)
        return out_path


@dataclass
class FalUpscaler:
    """2x (by setting) upscaling of the still or of the model's clip."""

    settings: Settings
    name: str = ""

    def __post_init__(self) -> None:
        self.name = self.name or f"fal:{self.settings.fal_upscale_video_model}"
        self.queue = FalQueue(self.settings)
        self.downloader = ResultDownloader(self.settings)

    def upscale_image(self, image: StyledImage, out_path: Path) -> StyledImage:
        """The still at 1/factor goes up, the model's detail comes back at the still's own size."""
        from PIL import Image

        model = self.settings.fal_upscale_image_model
        self.name = f"fal:{model}"
        factor = upscale_factor_field(model, self.settings.upscale_factor)
        small = out_path.with_name(out_path.stem + ".in.png")
        with Image.open(image.path) as img:
            img.convert("RGB").resize((max(1, image.width // factor), max(1, image.height // factor)),
                                      Image.Resampling.LANCZOS).save(small)
        result = self.queue.run(model, {"image_url": data_uri(small), "upscale_factor": factor})
        small.unlink(missing_ok=True)
        raw = out_path.with_name(out_path.stem + ".model.img")
        self.downloader.download(media_url(self.name, result, "image"), raw, self.name)
        return upscaled_still(raw, out_path, image, self.name)

    def upscale_video(self, video: Path, out_path: Path) -> Path:
        model = self.settings.fal_upscale_video_model
        self.name = f"fal:{model}"
        result = self.queue.run(model, {"video_url": data_uri(video, "video/mp4"),
                                        "upscale_factor": upscale_factor_field(model, self.settings.upscale_factor)})
        self.downloader.download(media_url(self.name, result, "video"), out_path, self.name)
        check_video(out_path, self.name, self.settings.ffmpeg_binary)
        return out_path


def lines_from_chunks(label: str, result: dict) -> list[LyricLine]:
    """fal whisper's word chunks ({timestamp: [start, end], text}) → lyric lines."""
    chunks = result.get("chunks")
    if not isinstance(chunks, list):
        raise malformed(label, "the transcription has no chunks")
    words: list[Word] = []
    for chunk in chunks:
        try:
            start, end = chunk["timestamp"]
            text = str(chunk["text"])
        except (KeyError, TypeError, ValueError):
            raise malformed(label, "a chunk has no timestamp") from None
        if start is None:
            continue
        end = float(end) if end is not None else float(start) + 0.3
        words.append(Word(float(start), end, text.strip()))
    return lines_from_words(words)


@dataclass
class FalTranscriber:
    settings: Settings
    name: str = ""

    def __post_init__(self) -> None:
        self.model = self.settings.fal_transcribe_model
        self.name = self.name or f"fal:{self.model}"
        self.queue = FalQueue(self.settings)
        self.cache = TranscriptCache(self.settings.cache_dir / "transcripts")

    def transcribe(self, path: Path) -> list[LyricLine]:
        cached = self.cache.get(path, self.name)
        if cached is not None:
            return cached
        with compacted_upload(path, self.cache.folder, self.settings.ffmpeg_binary) as upload:
            result = self.queue.run(self.model, {"audio_url": data_uri(upload, "audio/mpeg"), "task": "transcribe",
                                                 "chunk_level": "word", "version": "3"})
        lines = lines_from_chunks(self.name, result)
        self.cache.put(path, self.name, lines)
        return lines


def _size(frame: Path) -> tuple[int, int]:
    """A picture's width and height (its header only)."""
    with Image.open(frame) as img:
        return img.size
