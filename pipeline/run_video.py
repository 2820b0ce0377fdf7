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
from pipeline.camera import camera_path
from pipeline.caption_ass import caption_style_from_template
from pipeline.choose_clip import choose_clip
from pipeline.choose_face_guide import choose_face_guide, more_images, sleeve_photo
from pipeline.edit.draw_text import TextLook
from pipeline.edit.frame_format import ASPECT_RATIOS, frame_size
from pipeline.edit.plan_edit import EditInputs, EditPlan, plan_edit
from pipeline.errors import BadInput, Cancelled, StudioError
from pipeline.fetch import Fetcher, limits_from_settings
from pipeline.fill_clip import cut_points, fill_clip
from pipeline.lyrics import load_timed_lyrics
from pipeline.models import (
    AudioAnalysis,
    ClipChoice,
    LyricLine,
    MotionPlan,
    ProgressCallback,
    RunPlan,
    Song,
    StyledImage,
)
from pipeline.plan_motion import plan_motion
from pipeline.providers.audio_cuts import cut_clip_audio
from pipeline.providers.base import wants_audio_clip
from pipeline.providers.local import LocalImageMaker
from pipeline.providers.pricing import run_cost
from pipeline.providers.registry import Providers, providers_from_settings
from pipeline.providers.step_hooks import StepHooks, lend
from pipeline.render import Encoding, RenderJob, RenderResult, render
from pipeline.settings import FONTS_DIR, Settings
from pipeline.songs import choose_song
from pipeline.templates import Mood, Movement, Template, load_template, malleable_template
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


@dataclass
class _Chosen:
    """What the steps chose, as they go: the meta record and the render are made from it."""

    song: Song
    lyrics_source: str
    clip: ClipChoice
    mood: Mood
    movement: Movement
    face_guide: Path | None = None
    image: StyledImage | None = None
    video_source: Path | None = None
    motion: MotionPlan | None = None
    motion_prompt: str = ""
    video_fill: dict | None = None  # how a provider's clip shorter than the video was filled (fill_clip)
    more_images: list[StyledImage] = field(default_factory=list)  # other stills the edit cuts to
    caption: str = ""


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
    aspect = check_aspect(plan.aspect_ratio)
    width, height = frame_size(aspect, settings.output_width, settings.output_height, upscale=plan.upscale)
    lyrics_mode = plan.lyrics or template.edit.lyrics

    work = out_dir.parent / f".{out_dir.name}.work-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        chosen, analysis = _choose_clip(plan, settings, template, providers, fetcher, rng, tracker, lyrics_mode)
        with tracker.step("image"):
            _make_image(plan, settings, template, providers, fetcher, rng, chosen, work, width, height)
        with tracker.step("video"):
            _make_motion(plan, settings, template, providers, chosen, analysis, work)
        with tracker.step("caption"):
            # the edit's own seed, taken before the caption's draws: with text or without, the same shots
            edit_rng = random.Random(rng.random())
            chosen.caption = _write_caption(plan, template, providers, chosen, rng)
            edit = _plan_the_edit(plan, settings, template, chosen, analysis, edit_rng, width, height, aspect,
                                  lyrics_mode)
        with tracker.step("render") as within:
            result = render(render_job(settings, template, chosen, edit, work / "video.mp4"), on_progress=within)
        output = meta_record(plan, settings, template, providers, chosen, edit, result, tracker.timings, width,
                             height)
        _publish(work, out_dir, output, chosen.image, result)
        tracker.report("done", 100.0)
        return RunOutput(video_path=out_dir / "video.mp4", poster_path=out_dir / "poster.jpg",
                         image_path=out_dir / "image.jpg", meta_path=out_dir / "meta.json", output=output)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def check_aspect(aspect: str) -> str:
    if aspect not in ASPECT_RATIOS:
        raise BadInput(f"aspect_ratio must be one of {', '.join(ASPECT_RATIOS)}", field=["aspect_ratio"])
    return aspect


def _choose_clip(plan: RunPlan, settings: Settings, template: Template, providers: Providers, fetcher: Fetcher,
                 rng: random.Random, tracker: _Progress, lyrics_mode: str) -> tuple[_Chosen, AudioAnalysis]:
    """The song, its timed lyrics, the analysis and the clip of it, with the mood and movement."""
    ffmpeg = settings.ffmpeg_binary
    with tracker.step("song"):
        song = choose_song(plan.artist, plan.songs, rng, fetcher, ffmpeg)
    with tracker.step("lyrics"):
        lyrics, source = load_timed_lyrics(song, providers.transcriber, words_wanted=lyrics_mode == "word")
    with tracker.step("clip"):
        analysis = analyse_audio(song.path, ffmpeg=ffmpeg, cache_dir=settings.cache_dir / "analysis")
        clip = choose_clip(analysis, lyrics, clip_seconds=settings.clip_seconds or template.edit.clip_seconds,
                           rng=rng, prefer_lyrics=plan.lipsync or lyrics_mode != "none")
        mood = rng.choice(template.video.moods)
        movement = rng.choice(template.video.movements)
    return _Chosen(song=song, lyrics_source=source, clip=clip, mood=mood, movement=movement), analysis


def _make_image(plan: RunPlan, settings: Settings, template: Template, providers: Providers, fetcher: Fetcher,
                rng: random.Random, chosen: _Chosen, work: Path, width: int, height: int) -> None:
    uploads = settings.uploads_for(plan.owner)
    chosen.face_guide = choose_face_guide(plan.artist, plan.images, fetcher, uploads,
                                          needs_face=template.image.uses_face_guide)
    if not template.image.uses_face_guide and isinstance(providers.image, LocalImageMaker):
        # the local record store shows the artist on the album's sleeve; a model makes that scene with no one in it
        chosen.face_guide = sleeve_photo(plan.artist, plan.images, fetcher, uploads)
    size = {"width": _even(width * SOURCE_SCALE), "height": _even(height * SOURCE_SCALE)}
    chosen.image = providers.image.make(chosen.face_guide, template, **size, rng=rng, out_path=work / "image.jpg")
    if template.image.uses_face_guide and isinstance(providers.image, LocalImageMaker):
        # more pictures of the artist to cut between (locally only: with a model each would be a paid call)
        extras = more_images(plan.artist, plan.images, chosen.face_guide, fetcher, uploads)
        chosen.more_images = [providers.image.make(path, template, **size, rng=rng, out_path=work / f"image-{n}.jpg")
                              for n, path in enumerate(extras, start=1)]


def _make_motion(plan: RunPlan, settings: Settings, template: Template, providers: Providers, chosen: _Chosen,
                 analysis: AudioAnalysis, work: Path) -> None:
    """The provider's clip (when the video provider makes one), the upscale, and the camera's motion plan."""
    clip, image = chosen.clip, chosen.image
    chosen.motion_prompt = template.motion_prompt(chosen.movement, chosen.mood)
    # A lip-sync model hears only the clip (cut from the song), never the whole song.
    audio_clip = (cut_clip_audio(chosen.song.path, clip.start, clip.duration, work / "clip.m4a",
                                 settings.ffmpeg_binary)
                  if plan.lipsync and wants_audio_clip(providers.video) else None)
    video_source = providers.video.make(image, chosen.motion_prompt, duration=clip.duration,
                                        audio_clip=audio_clip, out_path=work / "source.mp4",
                                        cut_points=cut_points(clip, analysis))
    if video_source:  # a model clip shorter than the video is never looped (pipeline/fill_clip.py)
        fill = fill_clip(providers.video, video_source, clip=clip, beats=[b - clip.start for b in analysis.beats],
                         mode="end" if audio_clip else settings.remote_video_fill, prompt=chosen.motion_prompt,
                         fps=settings.fps, ffmpeg=settings.ffmpeg_binary, work=work)
        video_source, clip = fill.video, dataclasses.replace(clip, duration=fill.duration)
        chosen.clip = clip
        fitted = getattr(providers.video, "note", None)
        chosen.video_fill = {**fill.note, **({"modelLimits": fitted} if fitted else {})}
    if plan.upscale and providers.upscaler is not None:
        if video_source:
            video_source = providers.upscaler.upscale_video(video_source, work / "source-upscaled.mp4")
        else:
            image = providers.upscaler.upscale_image(image, work / "image-upscaled.jpg")
    chosen.image, chosen.video_source = image, video_source
    chosen.motion = plan_motion(template, mood=chosen.mood, movement=chosen.movement, face=image.face,
                                src_width=image.width, src_height=image.height, duration=clip.duration,
                                lipsync=plan.lipsync, analysis=analysis, clip_start=clip.start)


def _write_caption(plan: RunPlan, template: Template, providers: Providers, chosen: _Chosen,
                   rng: random.Random) -> str:
    if plan.caption_length == "none":
        return ""
    artist_context, audience_context = read_context(plan.artist)
    return providers.caption.write(
        CaptionContext(song_title=chosen.song.title, lyrics=chosen.clip.lyrics, mood=chosen.mood.name,
                       artist_name=plan.artist.name, artist_context=artist_context,
                       audience_context=audience_context, template=template),
        plan.caption_length, rng,
    )


def _lyrics_skipped(mode: str, source: str, lines: tuple[LyricLine, ...]) -> str | None:
    if mode == "none":
        return None
    if source == "none":
        return "the song has no timed lyrics (.lrc) and no transcription provider is set"
    if not any(line.words for line in lines):
        return "no lyrics are sung in this clip"
    return None


def _plan_the_edit(plan: RunPlan, settings: Settings, template: Template, chosen: _Chosen,
                   analysis: AudioAnalysis, rng: random.Random, width: int, height: int, aspect: str,
                   lyrics_mode: str) -> EditPlan:
    clip, image = chosen.clip, chosen.image
    style = caption_style_from_template(template, FONTS_DIR)
    spec = template.caption.style
    look = TextLook(font_file=style.font_file, colour=spec.primary_colour, outline_colour=spec.outline_colour,
                    highlight=template.edit.highlight_colour, uppercase=spec.uppercase)
    frames = round(max(0.1, clip.duration) * settings.fps) + 1
    skipped = _lyrics_skipped(lyrics_mode, chosen.lyrics_source, clip.lyrics)
    # the template's largest caption size is in ASS units at 1280 px height; the layout sets ems
    max_em = round(spec.max_size * min(width, height) / 720 * 0.82)
    return plan_edit(EditInputs(
        width=width, height=height, fps=settings.fps, aspect=aspect, duration=clip.duration,
        clip_start=clip.start, analysis=analysis, energy=chosen.mood.energy, punch=template.edit.punch,
        image=image, anchor=template.image.face_anchor, motion_path=camera_path(chosen.motion, frames, settings.fps),
        lipsync=plan.lipsync, video_source=chosen.video_source, caption=chosen.caption, look=look,
        placement=spec.placement, caption_em=max_em, lyrics_mode=lyrics_mode,
        lyric_lines=clip.lyrics if skipped is None else (), lyrics_skipped=skipped,
        more_images=tuple(chosen.more_images) if chosen.video_source is None else (),
    ), rng)


def render_job(settings: Settings, template: Template, chosen: _Chosen, edit: EditPlan, out_path: Path) -> RenderJob:
    """The render of the planned edit, encoded as the settings say."""
    timeline = edit.timeline
    return RenderJob(
        image=chosen.image, motion=chosen.motion, audio_path=chosen.song.path, clip_start=chosen.clip.start,
        clip_duration=chosen.clip.duration, ass_path=None, fonts_dir=FONTS_DIR, out_path=out_path,
        width=timeline.width, height=timeline.height, fade_in=template.edit.fade_in,
        fade_out=template.edit.fade_out, video_source=chosen.video_source, camera=edit.camera,
        text_tracks=edit.tracks, clip_shown=tuple((s.start, s.end) for s in timeline.segments if s.source == "clip"),
        extra_images=tuple(chosen.more_images) if edit.camera is not None
        and edit.camera.still is not None else (), encoding=Encoding.from_settings(settings),
    )


def meta_record(plan: RunPlan, settings: Settings, template: Template, providers: Providers, chosen: _Chosen,
                edit: EditPlan, result: RenderResult, timings: dict[str, float], width: int, height: int) -> dict:
    """What meta.json and the run's output say about the run."""
    song, clip, image, motion = chosen.song, chosen.clip, chosen.image, chosen.motion
    edit_record = edit.timeline.record()
    edit_record["lyricsTiming"] = chosen.lyrics_source
    output = {
        "artistSlug": plan.artist.slug,
        "artistName": plan.artist.name,
        "template": plan.template_id,
        "lipsync": plan.lipsync,
        "caption_length": plan.caption_length,
        "upscale": plan.upscale,
        "lyrics": edit.timeline.lyrics_mode,
        "aspect_ratio": edit.timeline.aspect_ratio,
        "seed": plan.seed,
        "audio": {
            "songTitle": song.title,
            "songFilename": song.path.name if song.source == "workspace" else song.url,
            "songSlug": song.slug,
            "startSeconds": round(clip.start, 3),
            "durationSeconds": round(clip.duration, 3),
            "clipLyrics": "\n".join(line.text for line in clip.lyrics),
            "clipMood": chosen.mood.name,
            "clipScore": round(clip.score, 4),
            "clipReason": clip.reason,
        },
        "captionText": chosen.caption or None,
        "movement": chosen.movement.prompt,
        "motionStyle": motion.style if not edit.timeline.cuts else "cut to the beat",
        "motionPrompt": chosen.motion_prompt,
        "audioReactive": motion.audio_reactive,
        "videoFill": chosen.video_fill,
        "faceGuide": str(chosen.face_guide.name) if chosen.face_guide else None,
        "width": width,
        "height": height,
        "edit": edit_record,
        "providers": {
            "song": "url" if song.source == "url" else "workspace",
            "lyrics": "lrc" if song.lrc_path else (providers.transcriber.name if providers.transcriber else "none"),
            "clip": "local (hook finder)",
            "image": providers.image.name if image.provider == "local" else image.provider,
            "video": providers.video.name if chosen.video_source else
            ("local (audio-reactive motion, not lip-sync)" if motion.audio_reactive else "local (camera motion)"),
            "caption": providers.caption.name if chosen.caption else "none",
            "upscale": (providers.upscaler.name if providers.upscaler else "local (rendered at 2x)")
            if plan.upscale else "none",
            "render": f"ffmpeg (one filter graph, {result.encoder})",
        },
        "timings": timings,
    }
    if chosen.lyrics_source == "transcription" and providers.transcriber:
        output["providers"]["lyrics"] = providers.transcriber.name
    output["providers"].update(providers.fallbacks)  # a remote step that fell back to local says so
    # what the remote steps cost at list prices (or MODEL_PRICES); a fallback to local counts as free
    output["cost"] = run_cost(settings, output["providers"], clip_seconds=clip.duration)
    return output


def _publish(work: Path, out_dir: Path, output: dict, image: StyledImage, result: RenderResult) -> None:
    """Files move in one by one with the video last, so a visible video.mp4 always has its meta beside it."""
    meta_tmp = work / "meta.json"
    meta_tmp.write_text(json.dumps(output, indent=2, ensure_ascii=False), encoding="utf-8")
    out_dir.mkdir(parents=True, exist_ok=True)
    names = {"image.jpg": image.path, "poster.jpg": result.poster_path, "meta.json": meta_tmp,
             "video.mp4": result.video_path}
    for name, src in names.items():
        os.replace(src, out_dir / name)
