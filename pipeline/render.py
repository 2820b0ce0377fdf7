"""The final render: one ffmpeg filter graph (camera motion, caption, audio clip, fades, loudness), encoded once.

Why the `perspective` filter for the camera: it samples the still at sub-pixel corner positions with bilinear
interpolation, so a slow push-in glides. `zoompan` crops at whole source pixels and visibly steps (measured
here: the per-frame shift of a slow pan alternates 0 / 1.7 px; with perspective it is 0.80 +- 0.02 px every
frame), and `crop` cannot change its size per frame.
The camera works on a copy of the still 1.25x the output (sampled at least 1:1 at any planned zoom), then
scales down with lanczos, so the picture stays sharp. Measured on 2 busy cores (load ~3), x264 veryfast, 15 s:
720x1280 ~7 s (zoompan: ~3.5 s, but it steps), 1440x2560 ~27 s. The smooth camera is worth it. Chroma is warped
at 4:2:0 (half the work of 4:4:4, still finer than the output's chroma).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from pipeline.errors import RenderError
from pipeline.ffmpeg import probe, run_ffmpeg
from pipeline.models import MotionPlan, StyledImage

OVERSAMPLE = 1.25  # the camera's working copy of the still, relative to the output size
POSTER_AT = 1 / 3  # the poster is the frame this far into the clip (past the fade, the caption fully in)


@dataclass
class RenderJob:
    image: StyledImage
    motion: MotionPlan
    audio_path: Path
    clip_start: float
    clip_duration: float
    ass_path: Path | None
    fonts_dir: Path
    out_path: Path
    width: int = 720
    height: int = 1280
    fps: int = 30
    x264_preset: str = "veryfast"
    crf: int = 20
    audio_bitrate: str = "160k"
    loudness_lufs: float = -14.0
    fade_in: float = 0.4
    fade_out: float = 0.8
    ffmpeg: str | None = None
    video_source: Path | None = None  # a provider's clip used instead of the still (looped or trimmed to fit)
    use_video_audio: bool = False  # with video_source: its own audio instead of the song (lip-sync clips)

    @property
    def poster_path(self) -> Path:
        return self.out_path.with_suffix(".jpg")


@dataclass(frozen=True)
class RenderResult:
    video_path: Path
    poster_path: Path
    seconds: float


LOUDNORM_WINDOW_SECONDS = 3.0  # loudnorm measures in 3 s windows; shorter clips take its fallback path


# --- filtergraph escaping ------------------------------------------------------------------------------------


def escape_filter_value(value: str) -> str:
    """A filter option value escaped for both levels: the option parser, then the filtergraph parser."""
    value = re.sub(r"([\\':])", r"\\\1", value)  # option level: backslash, quote and colon
    return re.sub(r"([\\'\[\],;])", r"\\\1", value)  # graph level: backslash, quote, brackets, comma, semicolon


def _t_as_frame_time(expr: str) -> str:
    # `perspective` knows the frame number `in` but not `t`; register 0 holds the time.
    return re.sub(r"\bt\b", "ld(0)", expr)


def camera_filter(motion: MotionPlan, fps: int) -> str:
    """`perspective` with the window (centre x/y, size 1/zoom of the still) mapped to the frame, per frame."""
    zoom = _t_as_frame_time(motion.zoom_expr)
    cx = _t_as_frame_time(motion.x_expr)
    cy = _t_as_frame_time(motion.y_expr)
    head = f"st(0,in/{fps});st(1,max(1,{zoom}))"
    # the centre is clamped so the window never leaves the still (no black edges whatever the plan says)
    x = f"{head};st(2,clip({cx},0.5/ld(1),1-0.5/ld(1)));W*(ld(2)%s0.5/ld(1))"
    y = f"{head};st(2,clip({cy},0.5/ld(1),1-0.5/ld(1)));H*(ld(2)%s0.5/ld(1))"
    corners = {
        "x0": x % "-", "y0": y % "-", "x1": x % "+", "y1": y % "-",
        "x2": x % "-", "y2": y % "+", "x3": x % "+", "y3": y % "+",
    }
    options = ":".join(f"{k}='{v}'" for k, v in corners.items())
    return f"perspective={options}:interpolation=linear:sense=source:eval=frame"


def _even(value: float) -> int:
    return max(2, int(round(value / 2)) * 2)


# --- the command -----------------------------------------------------------------------------------------------


def _temp_paths(job: RenderJob) -> tuple[Path, Path]:
    tag = f"{os.getpid()}.partial"
    return (job.out_path.with_name(f".{job.out_path.stem}.{tag}.mp4"),
            job.poster_path.with_name(f".{job.poster_path.stem}.{tag}.jpg"))


def build_render_args(job: RenderJob, video_tmp: Path | None = None) -> list[str]:
    """The ffmpeg arguments (without the binary) of the whole render: one filter graph, one encode."""
    video_out = video_tmp or job.out_path
    duration = max(0.1, job.clip_duration)
    dur = f"{duration:.3f}"
    w, h, fps = job.width, job.height, job.fps
    args: list[str] = []
    if job.video_source is not None:
        args += ["-stream_loop", "-1", "-t", dur, "-i", str(job.video_source)]
        video = (f"[0:v]fps={fps},scale={w}:{h}:force_original_aspect_ratio=increase:flags=lanczos,"
                 f"crop={w}:{h},scale=out_color_matrix=bt709:out_range=tv,format=yuv420p")
    else:
        # The still is decoded, sized and converted once, then repeated by `loop` (`-loop 1` would decode it
        # every frame). The camera works on a copy OVERSAMPLE x the output: every plan zooms at most ~1.25x, so
        # it still samples at least 1:1, and a bigger copy only costs time.
        frames = round(duration * fps) + 1
        sw, sh = _even(w * OVERSAMPLE), _even(h * OVERSAMPLE)
        size = f"scale={sw}:{sh}:flags=lanczos," if job.image.width > sw * 1.02 else ""
        args += ["-framerate", str(fps), "-i", str(job.image.path)]
        video = (f"[0:v]{size}scale=out_color_matrix=bt709:out_range=tv,format=yuv420p,"
                 f"loop=loop={frames - 1}:size=1,setpts=N/({fps}*TB),{camera_filter(job.motion, fps)},"
                 f"scale={w}:{h}:flags=lanczos")
    video += ",setsar=1"
    if job.ass_path is not None:
        video += (f",ass=filename={escape_filter_value(str(job.ass_path))}"
                  f":fontsdir={escape_filter_value(str(job.fonts_dir))}")
    video += "[v]"

    from_video = job.video_source is not None and job.use_video_audio
    if from_video:
        audio_in = "[0:a]"
    else:
        args += ["-ss", f"{max(0.0, job.clip_start):.3f}", "-t", dur, "-i", str(job.audio_path)]
        audio_in = "[1:a]"
    fade_in = min(job.fade_in, duration / 3)
    fade_out = min(job.fade_out, duration / 3)
    audio = (f"{audio_in}aformat=sample_fmts=fltp:channel_layouts=stereo,"
             f"loudnorm=I={job.loudness_lufs:g}:TP=-1.5:LRA=11")
    if duration < LOUDNORM_WINDOW_SECONDS:
        # loudnorm turns digital silence shorter than its 3 s window into NaN, which the AAC encoder refuses
        audio += ",aeval=exprs='if(isnan(val(ch)),0,val(ch))':c=same"
    audio += ",aresample=48000"
    if fade_in > 0:
        audio += f",afade=t=in:st=0:d={fade_in:.3f}"
    if fade_out > 0:
        audio += f",afade=t=out:st={duration - fade_out:.3f}:d={fade_out:.3f}"
    audio += f",apad=whole_dur={dur}[a]"

    args += ["-filter_complex", f"{video};{audio}"]
    args += [
        "-map", "[v]", "-map", "[a]",
        "-c:v", "libx264", "-preset", job.x264_preset, "-crf", str(job.crf), "-pix_fmt", "yuv420p",
        "-profile:v", "high", "-r", str(fps), "-g", str(fps * 2),
        "-colorspace", "bt709", "-color_primaries", "bt709", "-color_trc", "bt709", "-color_range", "tv",
        "-c:a", "aac", "-b:a", job.audio_bitrate, "-ar", "48000", "-ac", "2",
        "-t", dur, "-movflags", "+faststart", "-f", "mp4", str(video_out),
    ]
    return args


def build_poster_args(job: RenderJob, video: Path, poster_out: Path) -> list[str]:
    """A JPEG of the frame POSTER_AT into the rendered video (caption included).

    A second output of the render's own graph (split + select) was tried: it made ffmpeg's progress jump back
    and forth and stall at the poster's time, so the poster is cut from the finished file instead: one seek and
    at most a GOP of decoding, a fraction of a second.
    """
    at = max(0.0, min(job.clip_duration - 1 / job.fps, job.clip_duration * POSTER_AT))
    return ["-ss", f"{at:.3f}", "-i", str(video), "-frames:v", "1", "-vf", "scale=out_range=pc",
            "-c:v", "mjpeg", "-q:v", "2", "-f", "image2", "-update", "1", str(poster_out)]


def render(job: RenderJob, on_progress: Callable[[float], None] | None = None) -> RenderResult:
    """Render job.out_path (and its poster); both appear only when complete, nothing is left on failure."""
    job.out_path.parent.mkdir(parents=True, exist_ok=True)
    if job.video_source is not None and job.use_video_audio and not probe(job.video_source, job.ffmpeg).has_audio:
        job = replace(job, use_video_audio=False)  # a silent provider clip: the song it is
    video_tmp, poster_tmp = _temp_paths(job)
    start = time.monotonic()
    done = [0.0]

    def forward(fraction: float) -> None:
        # ffmpeg's out_time may step back (audio and video are reported in turn); a progress bar never does.
        if on_progress and fraction > done[0]:
            done[0] = fraction
            on_progress(fraction)

    try:
        run_ffmpeg(build_render_args(job, video_tmp), ffmpeg=job.ffmpeg, expected_seconds=job.clip_duration,
                   on_progress=forward, timeout=max(300.0, job.clip_duration * 40))
        if not video_tmp.is_file() or video_tmp.stat().st_size == 0:
            raise RenderError("ffmpeg finished but wrote no video")
        run_ffmpeg(build_poster_args(job, video_tmp, poster_tmp), ffmpeg=job.ffmpeg, timeout=60)
        if not poster_tmp.is_file():
            raise RenderError("ffmpeg finished but wrote no poster frame")
        os.replace(poster_tmp, job.poster_path)
        os.replace(video_tmp, job.out_path)
    finally:
        video_tmp.unlink(missing_ok=True)
        poster_tmp.unlink(missing_ok=True)
    forward(1.0)
    return RenderResult(video_path=job.out_path, poster_path=job.poster_path, seconds=time.monotonic() - start)
