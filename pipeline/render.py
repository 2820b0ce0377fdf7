"""The final render: one ffmpeg filter graph (caption, audio clip, fades, loudness), encoded once.

For a still, the camera (pipeline/camera.py) draws the frames in this process and pipes them to ffmpeg as raw
YUV 4:2:0, so the move glides at sub-pixel precision without ffmpeg's costly `perspective` warp; a provider's
clip is scaled and cropped by ffmpeg itself. Measured on 2 cores, 720x1280 15 s, x264 veryfast: see
docs/PERFORMANCE.md.
"""

from __future__ import annotations

import logging
import os
import shutil
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
from pipeline.edit.text_track import TextPainter, TextTrack, write_track
from pipeline.encoder import Encoder, choose_encoder, why_not, x264
from pipeline.errors import BadInput, RenderError
from pipeline.ffmpeg import input_args, measure_loudness, probe, run_ffmpeg
from pipeline.models import MotionPlan, StyledImage
from pipeline.settings import EncoderChoice, Settings

log = logging.getLogger(__name__)

POSTER_AT = 1 / 3  # the poster is the frame this far into the clip (past the fade, the caption fully in)
TRUE_PEAK_DB = -1.5  # the limiter's ceiling after the loudness gain
MAX_GAIN_DB = 40.0  # a near-silent clip is lifted this much at most (what is quieter is treated as silence)


_DEFAULTS = Settings.model_fields


@dataclass(frozen=True)
class Encoding:
    """How a video is encoded: the frame rate, the encoders and their settings, the loudness, the ffmpeg to run.
    Made once from the settings (`from_settings`); a render job holds it whole. The defaults are the settings'
    (one place for them), except that one built by hand (tests, tools) encodes with plain x264: no tuned
    parameters and no probe for a hardware encoder."""

    fps: int = _DEFAULTS["fps"].default
    x264_preset: str = _DEFAULTS["x264_preset"].default
    crf: int = _DEFAULTS["x264_crf"].default
    x264_params: str = ""
    video_encoder: EncoderChoice = "libx264"
    audio_bitrate: str = _DEFAULTS["audio_bitrate"].default
    loudness_lufs: float = _DEFAULTS["loudness_lufs"].default
    ffmpeg: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Encoding:
        return cls(fps=settings.fps, x264_preset=settings.x264_preset, crf=settings.x264_crf,
                   x264_params=settings.x264_params, video_encoder=settings.video_encoder,
                   audio_bitrate=settings.audio_bitrate, loudness_lufs=settings.loudness_lufs,
                   ffmpeg=settings.ffmpeg_binary)

    @property
    def x264(self) -> Encoder:
        return x264(self.x264_preset, self.crf, self.x264_params)


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
    encoding: Encoding = Encoding()
    fade_in: float = 0.4
    fade_out: float = 0.8
    video_source: Path | None = None  # a provider's clip used instead of the still (trimmed to fit)
    use_video_audio: bool = False  # with video_source: its own audio instead of the song (lip-sync clips)
    camera: CameraPath | None = None  # the edit's camera per frame (cuts, framings); None: the motion plan's
    extra_images: tuple[StyledImage, ...] = ()  # more stills the edit's camera cuts to (camera.still says when)
    text_tracks: tuple[TextTrack, ...] = ()  # caption pages and lyric states, each laid over by one overlay
    clip_shown: tuple[tuple[float, float], ...] = ()  # with video_source and camera: when the clip is on screen

    @property
    def draws_camera(self) -> bool:
        """The camera draws frames: for a still, or for the still's shots an edit cuts to from a provider's clip."""
        return self.video_source is None or self.camera is not None

    @property
    def audio_from_video(self) -> Path | None:
        """The provider clip whose own audio is used, or None when the song is."""
        return self.video_source if self.use_video_audio else None

    @property
    def poster_path(self) -> Path:
        return self.out_path.with_suffix(".jpg")


@dataclass(frozen=True)
class RenderInputs:
    """What render() works out before the encode: the caption layer and the gain that brings the clip to the
    target loudness."""

    caption: CaptionLayer | None = None
    track_lists: tuple[Path, ...] = ()  # the ffconcat list of each of job.text_tracks, in the same order
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
    encoder = inputs.encoder or job.encoding.x264
    video_out = video_tmp or job.out_path
    duration = max(0.1, job.clip_duration)
    dur = f"{duration:.3f}"
    w, h, fps = job.width, job.height, job.encoding.fps
    args: list[str] = [*encoder.before_inputs]
    count = 0  # inputs so far
    clip_chain = camera_chain = ""
    if job.video_source is not None:
        # never looped: run_video made the clip as long as the video, or the video as short as the clip
        args += ["-t", dur, *input_args(job.video_source)]
        clip_chain = (f"[0:v]fps={fps},scale={w}:{h}:force_original_aspect_ratio=increase:flags=lanczos,"
                      f"crop={w}:{h},scale=out_color_matrix=bt709:out_range=tv,format=yuv420p,setsar=1")
        count = 1
    if job.draws_camera:
        # the camera's frames (render() writes them to ffmpeg's standard input), already BT.709 limited range
        args += ["-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", f"{w}x{h}", "-framerate", str(fps), "-i", "pipe:0"]
        # raw frames carry no colour tags; untagged, ffmpeg would convert them (as BT.601) to the BT.709 the
        # encoder is told, shifting every colour (pure red came out 227, 0, 0)
        camera_chain = (f"[{count}:v]setparams=colorspace=bt709:color_primaries=bt709:color_trc=bt709:range=tv,"
                        "setsar=1")
        count += 1
    if clip_chain and camera_chain:
        # the edit cuts between the clip and the still: the clip is laid over the camera while it is on screen,
        # on the video's clock (a frame owns [start, end) of its segment)
        shown = "+".join(f"gte(t,{a - 0.5 / fps:.4f})*lt(t,{b - 0.5 / fps:.4f})" for a, b in job.clip_shown)
        video = (f"{camera_chain}[camera];{clip_chain}[clip];[camera][clip]overlay=x=0:y=0:format=yuv420:"
                 f"eof_action=pass:enable='{shown or 0}'")
    else:
        video = clip_chain or camera_chain

    from_video = job.audio_from_video is not None
    if from_video:
        audio_in = "[0:a]"
    else:
        args += ["-ss", f"{max(0.0, job.clip_start):.3f}", "-t", dur, *input_args(job.audio_path)]
        audio_in = f"[{count}:a]"
        count += 1

    graph = []
    if inputs.caption is not None:
        # The caption is one still frame: looped, faded on its alpha, laid over the picture. libass on every
        # frame cost ~0.7 s of a 15 s render; this costs ~0.2 s and looks the same (tests/test_render.py).
        cap = inputs.caption
        args += ["-i", str(cap.path)]
        layer = (f"[{count}:v]scale=out_color_matrix=bt709:out_range=tv,format=yuva420p,"
                 f"loop=loop=-1:size=1,setpts=N/({fps}*TB)")
        if cap.fade > 0:
            layer += (f",fade=t=in:st=0:d={cap.fade:.3f}:alpha=1"
                      f",fade=t=out:st={duration - cap.fade:.3f}:d={cap.fade:.3f}:alpha=1")
        graph.append(layer + "[caption]")
        video += f"[picture];[picture][caption]overlay=x={cap.x}:y={cap.y}:shortest=1:format=yuv420"
    first_input = count + (inputs.caption is not None)
    text_args, text_layers, video = _text_overlays(job, inputs.track_lists, first_input, video, duration)
    args += text_args
    graph += text_layers
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
        "-c:a", "aac", "-b:a", job.encoding.audio_bitrate, "-ar", "48000", "-ac", "2",
        "-t", dur, "-movflags", "+faststart", "-f", "mp4", str(video_out),
    ]
    return args


def _text_overlays(job: RenderJob, lists: tuple[Path, ...], first_input: int, video: str,
                   duration: float) -> tuple[list[str], list[str], str]:
    """Over a provider's clip, each text track as a concat input laid on by one overlay: (inputs, the layers'
    graph parts, the video chain with the overlays). Over the camera the text is painted in (render())."""
    overlaid = job.text_tracks if job.video_source is not None else ()
    args: list[str] = []
    layers: list[str] = []
    for n, (track, listing) in enumerate(zip(overlaid, lists, strict=True)):
        # Each state is converted once, then repeated to the frame rate (cheap: the same picture again).
        args += ["-f", "concat", "-safe", "0", "-i", str(listing)]
        layer = (f"[{first_input + n}:v]scale=out_color_matrix=bt709:out_range=tv,format=yuva420p,"
                 f"fps={job.encoding.fps}:round=near")
        if track.fade > 0:
            first = next((s.start for s in track.states if s.ink is not None), 0.0)
            last = max((s.end for s in track.states if s.ink is not None), default=duration)
            layer += (f",fade=t=in:st={first:.3f}:d={track.fade:.3f}:alpha=1"
                      f",fade=t=out:st={max(0.0, last - track.fade):.3f}:d={track.fade:.3f}:alpha=1")
        layers.append(layer + f"[text{n}]")
        video += (f"[under{n}];[under{n}][text{n}]overlay=x={track.box.x}:y={track.box.y}:eof_action=repeat"
                  ":format=yuv420")
    return args, layers, video


def loudness_gain(job: RenderJob) -> float:
    """dB that bring the clip to job.encoding.loudness_lufs (0 for silence)."""
    source = job.audio_from_video or job.audio_path
    try:
        measured = measure_loudness(source, start=0.0 if job.audio_from_video else job.clip_start,
                                    duration=job.clip_duration, ffmpeg=job.encoding.ffmpeg)
    except BadInput as exc:  # by now the song was checked: this is the render failing, not the user's input
        raise RenderError(str(exc)) from exc
    if measured is None:
        return 0.0
    return max(-MAX_GAIN_DB, min(MAX_GAIN_DB, job.encoding.loudness_lufs - measured))


@dataclass(frozen=True)
class Camera:
    """The stills, read and sized once, and the path over them: what the feed draws."""

    stills: tuple[StillPlanes, ...]
    path: CameraPath


def prepare_camera(job: RenderJob) -> Camera | None:
    """The camera for a still (None for a provider's clip, which ffmpeg reads itself). Read before ffmpeg
    starts, so a bad still or plan fails fast."""
    if not job.draws_camera:
        return None
    path = job.camera if job.camera is not None else camera_path(job.motion, frame_count(job), job.encoding.fps)
    stills = []
    for image in (job.image, *job.extra_images):
        size = working_size(image.width, image.height, job.width, job.height, float(path.zoom.max()))
        stills.append(load_still(image.path, size, job.encoding.ffmpeg))
    return Camera(stills=tuple(stills), path=path)


def camera_feed(job: RenderJob, camera: Camera, caption: CaptionLayer | None,
                poster_out: Path) -> Callable[[BinaryIO], None]:
    """Writes the camera's frames into ffmpeg and, on the way, the poster: the frame POSTER_AT into the clip
    with the caption laid on, saved while ffmpeg encodes (cutting it from the finished file was a second
    ffmpeg run after the encode)."""
    def save_poster(rgb: np.ndarray) -> None:  # the text tracks are on the frame already (painted in)
        Image.fromarray(with_caption(rgb, caption)).save(poster_out, format="JPEG", quality=92)

    # under a provider's clip the text goes on after the cut between the two (ffmpeg's overlay), and the poster is
    # cut from the finished file, which may show the clip at that frame
    alone = job.video_source is None
    paint = (TextPainter(job.text_tracks, job.width, job.height, job.encoding.fps)
             if job.text_tracks and alone else None)
    return lambda stream: write_frames(stream, camera.stills, camera.path, job.width, job.height,
                                       keep=poster_frame(job) if alone else None, on_kept=save_poster,
                                       paint=paint)


def build_poster_args(job: RenderJob, video: Path, poster_out: Path) -> list[str]:
    """A JPEG of the frame POSTER_AT into the rendered video (caption included), for a provider's clip; a
    still's poster is saved by the camera's feed.

    A second output of the render's own graph (split + select) was tried: it made ffmpeg's progress jump back
    and forth and stall at the poster's time.
    """
    at = poster_frame(job) / job.encoding.fps
    return ["-ss", f"{at:.3f}", "-i", str(video), "-frames:v", "1", "-vf", "scale=out_range=pc",
            "-c:v", "mjpeg", "-q:v", "2", "-f", "image2", "-update", "1", str(poster_out)]


def poster_frame(job: RenderJob) -> int:
    """The poster's frame number: POSTER_AT into the clip (past the fade, the caption fully in)."""
    at = max(0.0, min(job.clip_duration - 1 / job.encoding.fps, job.clip_duration * POSTER_AT))
    return round(at * job.encoding.fps)


def frame_count(job: RenderJob) -> int:
    """Frames the camera draws: one past the clip, so ffmpeg's `-t` (not a short input) ends the video."""
    return round(max(0.1, job.clip_duration) * job.encoding.fps) + 1


def render(job: RenderJob, on_progress: Callable[[float], None] | None = None) -> RenderResult:
    """Render job.out_path (and its poster); both appear only when complete, nothing is left on failure."""
    # one function over 60 lines: the temp files, the hardware encoder's fallback and the cleanup share one try
    job.out_path.parent.mkdir(parents=True, exist_ok=True)
    if job.audio_from_video and not probe(job.audio_from_video, job.encoding.ffmpeg).has_audio:
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
                                  ffmpeg=job.encoding.ffmpeg) if job.ass_path is not None else None
            gain = pool.submit(loudness_gain, job)
            enc = job.encoding
            encoder = pool.submit(choose_encoder, enc.video_encoder, preset=enc.x264_preset, crf=enc.crf,
                                  params=enc.x264_params, ffmpeg=enc.ffmpeg)
            # over a provider's clip the text goes through ffmpeg; over the camera it is painted into the frames
            overlaid = job.text_tracks if job.video_source is not None else ()
            tracks = [pool.submit(write_track, track, caption_tmp.with_suffix(".text"), job.clip_duration,
                                  enc.fps) for track in overlaid]
            inputs = RenderInputs(caption=caption.result() if caption else None, gain_db=gain.result(),
                                  encoder=encoder.result(), track_lists=tuple(t.result() for t in tracks))
            camera = camera_ready.result()

        def encode(inputs: RenderInputs) -> None:
            feed = camera_feed(job, camera, inputs.caption, poster_tmp) if camera else None
            run_ffmpeg(build_render_args(job, video_tmp, inputs), ffmpeg=job.encoding.ffmpeg,
                       expected_seconds=job.clip_duration, on_progress=forward,
                       timeout=max(300.0, job.clip_duration * 40), feed=feed)

        used = inputs.encoder or job.encoding.x264
        try:
            encode(inputs)
        except RenderError as exc:
            if not used.hardware:
                raise
            # A GPU encoder can pass the test encode and still fail here (its sessions all taken, a driver
            # reset); the video is made on the CPU instead, drawn again from the first frame.
            reason = why_not(used.name, job.encoding.ffmpeg) or " / ".join(exc.message.splitlines()[-2:])
            log.warning("%s failed (%s); rendering again with libx264", used.name, reason)
            used = job.encoding.x264
            encode(replace(inputs, encoder=used))
        if not video_tmp.is_file() or video_tmp.stat().st_size == 0:
            raise RenderError("ffmpeg finished but wrote no video")
        if job.video_source is not None:  # a provider's clip: the poster is cut from the finished file
            run_ffmpeg(build_poster_args(job, video_tmp, poster_tmp), ffmpeg=job.encoding.ffmpeg, timeout=60)
        if not poster_tmp.is_file():
            raise RenderError("ffmpeg finished but wrote no poster frame")
        os.replace(poster_tmp, job.poster_path)
        os.replace(video_tmp, job.out_path)
    finally:
        video_tmp.unlink(missing_ok=True)
        poster_tmp.unlink(missing_ok=True)
        caption_tmp.unlink(missing_ok=True)
        shutil.rmtree(caption_tmp.with_suffix(".text"), ignore_errors=True)
    forward(1.0)
    return RenderResult(video_path=job.out_path, poster_path=job.poster_path, seconds=time.monotonic() - start,
                        encoder=used.name)
