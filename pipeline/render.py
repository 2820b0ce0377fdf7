"""The final render: one ffmpeg filter graph (caption, audio clip, fades, loudness), encoded once.

For a still, the camera (pipeline/camera.py) draws the frames in this process and pipes them to ffmpeg as raw
YUV 4:2:0, so the move glides at sub-pixel precision without ffmpeg's costly `perspective` warp; a provider's
clip is scaled and cropped by ffmpeg itself. Measured on 2 cores, 720x1280 15 s, x264 veryfast: see
docs/PERFORMANCE.md.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image

from pipeline.camera import CameraPath, StillPlanes, camera_path, load_still, working_size, write_frames
from pipeline.caption_layer import CaptionLayer, rasterise_caption, with_caption
from pipeline.encoder import Encoder, choose_encoder, why_not, x264
from pipeline.errors import BadInput, RenderError
from pipeline.ffmpeg import input_args, measure_loudness, probe, run_ffmpeg
from pipeline.models import MotionPlan, StyledImage
from pipeline.settings import EncoderChoice

log = logging.getLogger(__name__)

POSTER_AT = 1 / 3  # the poster is the frame this far into the clip (past the fade, the caption fully in)
TRUE_PEAK_DB = -1.5  # the limiter's ceiling after the loudness gain
MAX_GAIN_DB = 40.0  # a near-silent clip is lifted this much at most (what is quieter is treated as silence)


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
    x264_params: str = ""
    video_encoder: EncoderChoice = "libx264"
    audio_bitrate: str = "160k"
    loudness_lufs: float = -14.0
    fade_in: float = 0.4
    fade_out: float = 0.8
    ffmpeg: str | None = None
    video_source: Path | None = None  # a provider's clip used instead of the still (trimmed to fit)
    use_video_audio: bool = False  # with video_source: its own audio instead of the song (lip-sync clips)

    @property
    def audio_from_video(self) -> Path | None:
        """The provider clip whose own audio is used, or None when the song is."""
        return self.video_source if self.use_video_audio else None

    @property
    def poster_path(self) -> Path:
        return self.out_path.with_suffix(".jpg")

    @property
    def x264(self) -> Encoder:
        return x264(self.x264_preset, self.crf, self.x264_params)


@dataclass(frozen=True)
class RenderInputs:
    """What render() works out before the encode: the caption layer and the gain that brings the clip to the
    target loudness."""

    caption: CaptionLayer | None = None
    gain_db: float = 0.0
    encoder: Encoder | None = None  # None: the job's x264 settings


@dataclass(frozen=True)
class RenderResult:
    video_path: Path
    poster_path: Path
    seconds: float
    encoder: str = "libx264"  # the one that made the video (after a hardware encoder's fallback)


# --- the command -----------------------------------------------------------------------------------------------


def _temp_paths(job: RenderJob) -> tuple[Path, Path, Path]:
    tag = f"{os.getpid()}.partial"
    return (job.out_path.with_name(f".{job.out_path.stem}.{tag}.mp4"),
            job.poster_path.with_name(f".{job.poster_path.stem}.{tag}.jpg"),
            job.out_path.with_name(f".{job.out_path.stem}.{tag}.caption.png"))


def build_render_args(job: RenderJob, video_tmp: Path | None = None,
                      inputs: RenderInputs | None = None) -> list[str]:
    """The ffmpeg arguments (without the binary) of the whole render: one filter graph, one encode."""
    inputs = inputs or RenderInputs()
    encoder = inputs.encoder or job.x264
    video_out = video_tmp or job.out_path
    duration = max(0.1, job.clip_duration)
    dur = f"{duration:.3f}"
    w, h, fps = job.width, job.height, job.fps
    args: list[str] = [*encoder.before_inputs]
    if job.video_source is not None:
        # never looped: run_video made the clip as long as the video, or the video as short as the clip
        args += ["-t", dur, *input_args(job.video_source)]
        video = (f"[0:v]fps={fps},scale={w}:{h}:force_original_aspect_ratio=increase:flags=lanczos,"
                 f"crop={w}:{h},scale=out_color_matrix=bt709:out_range=tv,format=yuv420p")
    else:
        # the camera's frames (render() writes them to ffmpeg's standard input), already BT.709 limited range
        args += ["-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", f"{w}x{h}", "-framerate", str(fps), "-i", "pipe:0"]
        # raw frames carry no colour tags; untagged, ffmpeg would convert them (as BT.601) to the BT.709 the
        # encoder is told, shifting every colour (pure red came out 227, 0, 0)
        video = "[0:v]setparams=colorspace=bt709:color_primaries=bt709:color_trc=bt709:range=tv"
    video += ",setsar=1"

    from_video = job.audio_from_video is not None
    if from_video:
        audio_in = "[0:a]"
    else:
        args += ["-ss", f"{max(0.0, job.clip_start):.3f}", "-t", dur, *input_args(job.audio_path)]
        audio_in = "[1:a]"

    graph = []
    if inputs.caption is not None:
        # The caption is one still frame: looped, faded on its alpha, laid over the picture. libass on every
        # frame cost ~0.7 s of a 15 s render; this costs ~0.2 s and looks the same (tests/test_render.py).
        cap = inputs.caption
        args += ["-i", str(cap.path)]
        layer = (f"[{2 if not from_video else 1}:v]scale=out_color_matrix=bt709:out_range=tv,format=yuva420p,"
                 f"loop=loop=-1:size=1,setpts=N/({fps}*TB)")
        if cap.fade > 0:
            layer += (f",fade=t=in:st=0:d={cap.fade:.3f}:alpha=1"
                      f",fade=t=out:st={duration - cap.fade:.3f}:d={cap.fade:.3f}:alpha=1")
        graph.append(layer + "[caption]")
        video += f"[picture];[picture][caption]overlay=x={cap.x}:y={cap.y}:shortest=1:format=yuv420"
    graph.append(video + encoder.upload + "[v]")

    fade_in = min(job.fade_in, duration / 3)
    fade_out = min(job.fade_out, duration / 3)
    # A measured gain and a limiter, not `loudnorm`: loudnorm's dynamic mode resamples to 192 kHz and rides the
    # level inside a 15 s clip (~0.5 s of CPU); one gain keeps the song's own dynamics.
    audio = (f"{audio_in}aformat=sample_fmts=fltp:channel_layouts=stereo,volume={inputs.gain_db:.2f}dB,"
             f"aresample=48000,alimiter=limit={10 ** (TRUE_PEAK_DB / 20):.4f}:level=false:latency=true")
    if fade_in > 0:
        audio += f",afade=t=in:st=0:d={fade_in:.3f}"
    if fade_out > 0:
        audio += f",afade=t=out:st={duration - fade_out:.3f}:d={fade_out:.3f}"
    graph.append(audio + f",apad=whole_dur={dur}[a]")

    args += ["-filter_complex", ";".join(graph)]
    args += [
        "-map", "[v]", "-map", "[a]",
        *encoder.options, "-profile:v", "high", "-r", str(fps), "-g", str(fps * 2),
        "-colorspace", "bt709", "-color_primaries", "bt709", "-color_trc", "bt709", "-color_range", "tv",
        "-c:a", "aac", "-b:a", job.audio_bitrate, "-ar", "48000", "-ac", "2",
        "-t", dur, "-movflags", "+faststart", "-f", "mp4", str(video_out),
    ]
    return args


def loudness_gain(job: RenderJob) -> float:
    """dB that bring the clip to job.loudness_lufs (0 for silence)."""
    source = job.audio_from_video or job.audio_path
    try:
        measured = measure_loudness(source, start=0.0 if job.audio_from_video else job.clip_start,
                                    duration=job.clip_duration, ffmpeg=job.ffmpeg)
    except BadInput as exc:  # by now the song was checked: this is the render failing, not the user's input
        raise RenderError(str(exc)) from exc
    if measured is None:
        return 0.0
    return max(-MAX_GAIN_DB, min(MAX_GAIN_DB, job.loudness_lufs - measured))


@dataclass(frozen=True)
class Camera:
    """The still, read and sized once, and its path: what the feed draws."""

    still: StillPlanes
    path: CameraPath


def prepare_camera(job: RenderJob) -> Camera | None:
    """The camera for a still (None for a provider's clip, which ffmpeg reads itself). Read before ffmpeg
    starts, so a bad still or plan fails fast."""
    if job.video_source is not None:
        return None
    still = load_still(job.image.path, working_size(job.image.width, job.image.height, job.width, job.height),
                       job.ffmpeg)
    return Camera(still=still, path=camera_path(job.motion, frame_count(job), job.fps))


def camera_feed(job: RenderJob, camera: Camera, caption: CaptionLayer | None,
                poster_out: Path) -> Callable[[BinaryIO], None]:
    """Writes the camera's frames into ffmpeg and, on the way, the poster: the frame POSTER_AT into the clip
    with the caption laid on, saved while ffmpeg encodes (cutting it from the finished file was a second
    ffmpeg run after the encode)."""
    def save_poster(rgb: np.ndarray) -> None:
        Image.fromarray(with_caption(rgb, caption)).save(poster_out, format="JPEG", quality=92)

    return lambda stream: write_frames(stream, camera.still, camera.path, job.width, job.height,
                                       keep=poster_frame(job), on_kept=save_poster)


def build_poster_args(job: RenderJob, video: Path, poster_out: Path) -> list[str]:
    """A JPEG of the frame POSTER_AT into the rendered video (caption included), for a provider's clip; a
    still's poster is saved by the camera's feed.

    A second output of the render's own graph (split + select) was tried: it made ffmpeg's progress jump back
    and forth and stall at the poster's time.
    """
    at = poster_frame(job) / job.fps
    return ["-ss", f"{at:.3f}", "-i", str(video), "-frames:v", "1", "-vf", "scale=out_range=pc",
            "-c:v", "mjpeg", "-q:v", "2", "-f", "image2", "-update", "1", str(poster_out)]


def poster_frame(job: RenderJob) -> int:
    """The poster's frame number: POSTER_AT into the clip (past the fade, the caption fully in)."""
    at = max(0.0, min(job.clip_duration - 1 / job.fps, job.clip_duration * POSTER_AT))
    return round(at * job.fps)


def frame_count(job: RenderJob) -> int:
    """Frames the camera draws: one past the clip, so ffmpeg's `-t` (not a short input) ends the video."""
    return round(max(0.1, job.clip_duration) * job.fps) + 1


def render(job: RenderJob, on_progress: Callable[[float], None] | None = None) -> RenderResult:
    """Render job.out_path (and its poster); both appear only when complete, nothing is left on failure."""
    job.out_path.parent.mkdir(parents=True, exist_ok=True)
    if job.audio_from_video and not probe(job.audio_from_video, job.ffmpeg).has_audio:
        job = replace(job, use_video_audio=False)  # a silent provider clip: the song it is
    video_tmp, poster_tmp, caption_tmp = _temp_paths(job)
    start = time.monotonic()
    done = [0.0]

    def forward(fraction: float) -> None:
        # ffmpeg's out_time may step back (audio and video are reported in turn); a progress bar never does.
        if on_progress and fraction > done[0]:
            done[0] = fraction
            on_progress(fraction)

    try:
        # three short ffmpeg reads, side by side: the still for the camera, the caption, the clip's loudness
        with ThreadPoolExecutor(max_workers=3, thread_name_prefix="render-prep") as pool:
            camera_ready = pool.submit(prepare_camera, job)
            caption = pool.submit(rasterise_caption, job.ass_path, job.fonts_dir, width=job.width,
                                  height=job.height, duration=job.clip_duration, out=caption_tmp,
                                  ffmpeg=job.ffmpeg) if job.ass_path is not None else None
            gain = pool.submit(loudness_gain, job)
            encoder = pool.submit(choose_encoder, job.video_encoder, preset=job.x264_preset, crf=job.crf,
                                  params=job.x264_params, ffmpeg=job.ffmpeg)
            inputs = RenderInputs(caption=caption.result() if caption else None, gain_db=gain.result(),
                                  encoder=encoder.result())
            camera = camera_ready.result()

        def encode(inputs: RenderInputs) -> None:
            feed = camera_feed(job, camera, inputs.caption, poster_tmp) if camera else None
            run_ffmpeg(build_render_args(job, video_tmp, inputs), ffmpeg=job.ffmpeg,
                       expected_seconds=job.clip_duration, on_progress=forward,
                       timeout=max(300.0, job.clip_duration * 40), feed=feed)

        used = inputs.encoder or job.x264
        try:
            encode(inputs)
        except RenderError as exc:
            if not used.hardware:
                raise
            # A GPU encoder can pass the test encode and still fail here (its sessions all taken, a driver
            # reset); the video is made on the CPU instead, drawn again from the first frame.
            reason = why_not(used.name, job.ffmpeg) or " / ".join(exc.message.splitlines()[-2:])
            log.warning("%s failed (%s); rendering again with libx264", used.name, reason)
            used = job.x264
            encode(replace(inputs, encoder=used))
        if not video_tmp.is_file() or video_tmp.stat().st_size == 0:
            raise RenderError("ffmpeg finished but wrote no video")
        if camera is None:  # a provider's clip: the poster is cut from the finished file
            run_ffmpeg(build_poster_args(job, video_tmp, poster_tmp), ffmpeg=job.ffmpeg, timeout=60)
        if not poster_tmp.is_file():
            raise RenderError("ffmpeg finished but wrote no poster frame")
        os.replace(poster_tmp, job.poster_path)
        os.replace(video_tmp, job.out_path)
    finally:
        video_tmp.unlink(missing_ok=True)
        poster_tmp.unlink(missing_ok=True)
        caption_tmp.unlink(missing_ok=True)
    forward(1.0)
    return RenderResult(video_path=job.out_path, poster_path=job.poster_path, seconds=time.monotonic() - start,
                        encoder=used.name)
