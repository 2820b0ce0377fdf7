"""The orchestrator: runs the steps of one video in order and reports progress.

Everything is decided from the plan and its seed, so a run can be reproduced and explained.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.analyse_audio import analyse_audio
from pipeline.artists import read_context
from pipeline.caption_ass import build_ass, caption_style_from_template
from pipeline.choose_clip import choose_clip
from pipeline.choose_face_guide import choose_face_guide
from pipeline.errors import Cancelled, StudioError
from pipeline.fetch import Fetcher, limits_from_settings
from pipeline.fill_clip import cut_points, fill_clip
from pipeline.lyrics import load_lyrics
from pipeline.models import ProgressCallback, RunPlan
from pipeline.plan_motion import plan_motion
from pipeline.providers.base import wants_audio_clip
from pipeline.providers.pricing import run_cost
from pipeline.providers.registry import Providers, providers_from_settings
from pipeline.providers.remote import cut_clip_audio
from pipeline.providers.step_hooks import StepHooks, lend
from pipeline.render import RenderJob, render
from pipeline.settings import FONTS_DIR, Settings
from pipeline.songs import choose_song
from pipeline.templates import Template, load_template, malleable_template
from pipeline.write_caption import CaptionContext

# Share of the whole run each step takes, for the progress bar (the encode dominates locally).
STEP_WEIGHTS: dict[str, float] = {
    "song": 3, "lyrics": 2, "clip": 8, "image": 10, "video": 4, "caption": 3, "render": 70,
}
SOURCE_SCALE = 1.5  # the still is made larger than the output so the camera can move without softness


@dataclass
class RunOutput:
    video_path: Path
    poster_path: Path
    image_path: Path
    meta_path: Path
    output: dict = field(default_factory=dict)


class _Progress:
    """Turns (step, fraction of that step) into percent of the whole run and checks for cancel."""

    def __init__(self, report: ProgressCallback | None, should_cancel: Callable[[], bool] | None):
        self.report = report or (lambda step, pct: None)
        self.should_cancel = should_cancel or (lambda: False)
        self.total = sum(STEP_WEIGHTS.values())
        self.done = 0.0
        self.timings: dict[str, float] = {}

    def check(self) -> None:
        if self.should_cancel():
            raise Cancelled("The run was cancelled")

    @contextmanager
    def step(self, name: str) -> Iterator[Callable[[float], None]]:
        self.check()
        start = time.monotonic()
        weight = STEP_WEIGHTS[name]

        def within(fraction: float) -> None:
            self.check()
            self.report(name, round(100 * (self.done + weight * min(1.0, fraction)) / self.total, 1))

        within(0.0)
        try:
            with lend(StepHooks(progress=within, cancelled=self.should_cancel)):  # for providers that report
                yield within
        except StudioError as exc:
            exc.stage = exc.stage or name
            raise
        self.timings[name] = round(time.monotonic() - start, 3)
        self.done += weight
        self.report(name, round(100 * self.done / self.total, 1))


def _even(value: float) -> int:
    return int(round(value / 2)) * 2


def run_video(plan: RunPlan, settings: Settings, *, progress: ProgressCallback | None = None,
              should_cancel: Callable[[], bool] | None = None, providers: Providers | None = None) -> RunOutput:
    """Make one video for `plan`; outputs appear in plan.out_dir only when complete."""
    providers = providers or providers_from_settings(settings)
    out_dir = plan.out_dir or settings.runs_dir / plan.run_id
    template: Template = load_template(plan.template_id) if plan.template_id else malleable_template()
    rng = random.Random(plan.seed)
    tracker = _Progress(progress, should_cancel)
    fetcher = Fetcher(settings.cache_dir / "downloads", limits_from_settings(settings), check=tracker.check,
                      run_seconds=settings.fetch_run_timeout_seconds)
    ffmpeg = settings.ffmpeg_binary
    scale = 2 if plan.upscale else 1
    width, height = settings.output_width * scale, settings.output_height * scale
    clip_seconds = settings.clip_seconds or template.edit.clip_seconds

    work = out_dir.parent / f".{out_dir.name}.work-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        with tracker.step("song"):
            song = choose_song(plan.artist, plan.songs, rng, fetcher, ffmpeg)
        with tracker.step("lyrics"):
            lyrics = load_lyrics(song, providers.transcriber)
        with tracker.step("clip"):
            analysis = analyse_audio(song.path, ffmpeg=ffmpeg, cache_dir=settings.cache_dir / "analysis")
            clip = choose_clip(analysis, lyrics, clip_seconds=clip_seconds, rng=rng, prefer_lyrics=plan.lipsync)
            mood = rng.choice(template.video.moods)
            movement = rng.choice(template.video.movements)
        with tracker.step("image"):
            face_guide = choose_face_guide(plan.artist, plan.images, fetcher, settings.data_dir / "uploads",
                                           needs_face=template.image.uses_face_guide)
            image = providers.image.make(
                face_guide, template, width=_even(width * SOURCE_SCALE), height=_even(height * SOURCE_SCALE),
                rng=rng, out_path=work / "image.jpg",
            )
        with tracker.step("video"):
            motion_prompt = template.motion_prompt(movement, mood)
            # A lip-sync model hears only the clip (cut from the song), never the whole song.
            audio_clip = (cut_clip_audio(song.path, clip.start, clip.duration, work / "clip.m4a", ffmpeg)
                          if plan.lipsync and wants_audio_clip(providers.video) else None)
            video_source = providers.video.make(image, motion_prompt, duration=clip.duration,
                                                audio_clip=audio_clip, out_path=work / "source.mp4",
                                                cut_points=cut_points(clip, analysis))
            video_fill = None
            if video_source:  # a model clip shorter than the video is never looped (pipeline/fill_clip.py)
                fill = fill_clip(providers.video, video_source, clip=clip,
                                 beats=[b - clip.start for b in analysis.beats],
                                 mode="end" if audio_clip else settings.remote_video_fill, prompt=motion_prompt,
                                 fps=settings.fps, ffmpeg=ffmpeg, work=work)
                video_source, clip = fill.video, dataclasses.replace(clip, duration=fill.duration)
                fitted = getattr(providers.video, "note", None)
                video_fill = {**fill.note, **({"modelLimits": fitted} if fitted else {})}
            if plan.upscale and providers.upscaler is not None:
                if video_source:
                    video_source = providers.upscaler.upscale_video(video_source, work / "source-upscaled.mp4")
                else:
                    image = providers.upscaler.upscale_image(image, work / "image-upscaled.jpg")
            motion = plan_motion(template, mood=mood, movement=movement, face=image.face,
                                 src_width=image.width, src_height=image.height, duration=clip.duration,
                                 lipsync=plan.lipsync, analysis=analysis, clip_start=clip.start)
        with tracker.step("caption"):
            artist_context, audience_context = read_context(plan.artist)
            caption = providers.caption.write(
                CaptionContext(song_title=song.title, lyrics=clip.lyrics, mood=mood.name,
                               artist_name=plan.artist.name, artist_context=artist_context,
                               audience_context=audience_context, template=template),
                plan.caption_length, rng,
            ) if plan.caption_length != "none" else ""
            ass_path = None
            if caption:
                ass_path = work / "caption.ass"
                style = caption_style_from_template(template, FONTS_DIR)
                ass_path.write_text(build_ass(caption, style, width=width, height=height, duration=clip.duration),
                                    encoding="utf-8")
        with tracker.step("render") as within:
            result = render(
                RenderJob(
                    image=image, motion=motion, audio_path=song.path, clip_start=clip.start,
                    clip_duration=clip.duration, ass_path=ass_path, fonts_dir=FONTS_DIR,
                    out_path=work / "video.mp4", width=width, height=height, fps=settings.fps,
                    x264_preset=settings.x264_preset, crf=settings.x264_crf,
                    x264_params=settings.x264_params, video_encoder=settings.video_encoder,
                    audio_bitrate=settings.audio_bitrate,
                    loudness_lufs=settings.loudness_lufs, fade_in=template.edit.fade_in,
                    fade_out=template.edit.fade_out, ffmpeg=ffmpeg, video_source=video_source,
                ),
                on_progress=within,
            )

        output = {
            "artistSlug": plan.artist.slug,
            "artistName": plan.artist.name,
            "template": plan.template_id,
            "lipsync": plan.lipsync,
            "caption_length": plan.caption_length,
            "upscale": plan.upscale,
            "seed": plan.seed,
            "audio": {
                "songTitle": song.title,
                "songFilename": song.path.name if song.source == "workspace" else song.url,
                "songSlug": song.slug,
                "startSeconds": round(clip.start, 3),
                "durationSeconds": round(clip.duration, 3),
                "clipLyrics": "\n".join(line.text for line in clip.lyrics),
                "clipMood": mood.name,
                "clipScore": round(clip.score, 4),
                "clipReason": clip.reason,
            },
            "captionText": caption or None,
            "movement": movement.prompt,
            "motionStyle": motion.style,
            "motionPrompt": motion_prompt,
            "audioReactive": motion.audio_reactive,
            "videoFill": video_fill,
            "faceGuide": str(face_guide.name) if face_guide else None,
            "width": width,
            "height": height,
            "providers": {
                "song": "url" if song.source == "url" else "workspace",
                "lyrics": "lrc" if song.lrc_path else (providers.transcriber.name if providers.transcriber else "none"),
                "clip": "local (hook finder)",
                "image": providers.image.name if image.provider == "local" else image.provider,
                "video": providers.video.name if video_source else
                ("local (audio-reactive motion, not lip-sync)" if motion.audio_reactive else "local (camera motion)"),
                "caption": providers.caption.name if caption else "none",
                "upscale": (providers.upscaler.name if providers.upscaler else "local (rendered at 2x)")
                if plan.upscale else "none",
                "render": f"ffmpeg (one filter graph, {result.encoder})",
            },
            "timings": tracker.timings,
        }
        output["providers"].update(providers.fallbacks)  # a remote step that fell back to local says so
        # what the remote steps cost at list prices (or MODEL_PRICES); a fallback to local counts as free
        output["cost"] = run_cost(settings, output["providers"], clip_seconds=clip.duration)
        meta_tmp = work / "meta.json"
        meta_tmp.write_text(json.dumps(output, indent=2, ensure_ascii=False), encoding="utf-8")
        out_dir.mkdir(parents=True, exist_ok=True)
        # Files move in one by one with the video last, so a visible video.mp4 always has its meta beside it.
        names = {"image.jpg": image.path, "poster.jpg": result.poster_path, "meta.json": meta_tmp,
                 "video.mp4": result.video_path}
        for name, src in names.items():
            os.replace(src, out_dir / name)
        tracker.report("done", 100.0)
        return RunOutput(video_path=out_dir / "video.mp4", poster_path=out_dir / "poster.jpg",
                         image_path=out_dir / "image.jpg", meta_path=out_dir / "meta.json", output=output)
    finally:
        shutil.rmtree(work, ignore_errors=True)
