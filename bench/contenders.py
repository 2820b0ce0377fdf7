"""The three ways to make the same video that the benchmark races: our pipeline, one bare ffmpeg command, MoviePy.

`prepare` runs our pipeline once and keeps what it handed the renderer (the styled still, the ASS caption, the
song clip, the motion expressions), so the bare command and MoviePy start from the same prepared inputs.
The bare command is written here by hand from those expressions, not by pipeline.render, so it is an
independent measure of what one ffmpeg encode of this video costs.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pipeline.run_video as run_video_module
from pipeline.artists import find_artist
from pipeline.camera import CameraPath
from pipeline.caption_ass import ass_timestamp, build_ass, caption_style_from_template
from pipeline.ffmpeg import ffmpeg_exe
from pipeline.models import RunPlan
from pipeline.render import TRUE_PEAK_DB, RenderJob, loudness_gain
from pipeline.run_video import RunOutput, run_video
from pipeline.settings import FONTS_DIR, PROJECT_ROOT, Settings
from pipeline.templates import load_template

DEMO_ARTIST = "1873859c-dd37-4e9a-9bac-80d3558527a9"
TEMPLATE = "artist-caption-stage"
MOVIEPY_PYTHON = PROJECT_ROOT / ".venv" / "moviepy" / "bin" / "python"
MOVIEPY_SCRIPT = Path(__file__).resolve().parent / "moviepy_render.py"
CAPTION_FONT = FONTS_DIR / "Inter-ExtraBold.otf"


@dataclass(frozen=True)
class Prepared:
    """What the renderer got for one video, copied into `folder` with plain names."""

    folder: Path
    still: Path
    ass: Path | None
    caption: str
    song: Path
    start: float
    duration: float
    zoom: str
    x: str
    y: str
    width: int
    height: int
    fps: int
    preset: str
    crf: int
    x264_params: str
    audio_bitrate: str
    lufs: float
    gain_db: float
    fade_in: float
    fade_out: float
    shots: tuple[dict, ...] = ()  # the edit's shots: start, end, zoom at start, zoom per second, window centre
    lyrics: tuple[dict, ...] = ()  # the edit's lyric lines as displayed, with their words' times and box


def demo_plan(settings: Settings, *, seed: int, upscale: bool = False, caption_length: str = "short",
              lyrics: str | None = None) -> RunPlan:
    """The benchmark's video; `lyrics` None: the template's (the stage template shows them word by word)."""
    run_id = f"bench_{secrets.token_hex(4)}"
    return RunPlan(run_id=run_id, artist=find_artist(settings, DEMO_ARTIST), template_id=TEMPLATE,
                   caption_length=caption_length, upscale=upscale, seed=seed, out_dir=settings.runs_dir / run_id,
                   lyrics=lyrics)  # type: ignore[arg-type]


def run_ours(settings: Settings, *, seed: int, upscale: bool = False, lyrics: str | None = None,
             ) -> tuple[float, RunOutput]:
    """Our whole pipeline for one video (song, clip, image, motion, caption, render, poster), in seconds."""
    plan = demo_plan(settings, seed=seed, upscale=upscale, lyrics=lyrics)
    start = time.perf_counter()
    out = run_video(plan, settings)
    return time.perf_counter() - start, out


@contextmanager
def _recording_render(keep: Path) -> Iterator[list[RenderJob]]:
    """Wraps the real render for one run, copying what it is handed before the run's work folder is removed."""
    real = run_video_module.render
    jobs: list[RenderJob] = []

    def recording(job: RenderJob, on_progress=None):  # noqa: ANN001 - the render signature
        shutil.copy(job.image.path, keep / "still.jpg")
        if job.ass_path is not None:
            shutil.copy(job.ass_path, keep / "caption.ass")
        jobs.append(job)
        return real(job, on_progress)

    run_video_module.render = recording
    try:
        yield jobs
    finally:
        run_video_module.render = real


def prepare(settings: Settings, folder: Path, *, seed: int, upscale: bool = False,
            lyrics: str | None = None) -> tuple[Prepared, float]:
    """Run our pipeline once (a warm-up too) and keep its prepared inputs; also the seconds it took."""
    folder.mkdir(parents=True, exist_ok=True)
    with _recording_render(folder) as jobs:
        seconds, out = run_ours(settings, seed=seed, upscale=upscale, lyrics=lyrics)
    job = jobs[0]
    if job.ass_path is None and (out.output.get("captionText") or out.output["edit"]["lyrics"]):
        # our run lays its text from pictures drawn once; the bare command gets the same text as libass events
        write_bare_ass(folder / "caption.ass", out.output, job)
    fonts = folder / "fonts"
    if not fonts.exists():
        fonts.symlink_to(job.fonts_dir, target_is_directory=True)
    shutil.rmtree(out.video_path.parent, ignore_errors=True)
    zoom, x, y = job.motion.zoom_expr, job.motion.x_expr, job.motion.y_expr
    enc = job.encoding
    shots: list[dict] = []
    if job.camera is not None:  # the edit's shots: the bare command and MoviePy follow the same cuts
        shots = camera_shots(job.camera, out.output["edit"]["segments"], enc.fps)
        zoom, x, y = camera_expressions(shots, enc.fps)
    boxes = [b for b in out.output["edit"]["textBoxes"] if b["kind"] == "lyrics"]
    lyrics = tuple({**line, "box": box} for line, box in zip(out.output["edit"]["lyrics"], boxes, strict=False))
    return Prepared(
        folder=folder, still=folder / "still.jpg", ass=folder / "caption.ass" if (folder / "caption.ass").is_file()
        else None,
        caption=out.output.get("captionText") or "", song=job.audio_path, start=job.clip_start,
        duration=job.clip_duration, zoom=zoom, x=x, y=y,
        width=job.width, height=job.height, fps=enc.fps, preset=enc.x264_preset, crf=enc.crf,
        x264_params=enc.x264_params, audio_bitrate=enc.audio_bitrate, lufs=enc.loudness_lufs,
        gain_db=loudness_gain(job), fade_in=job.fade_in, fade_out=job.fade_out, shots=tuple(shots), lyrics=lyrics,
    ), seconds


def camera_shots(path: CameraPath, segments: list[dict], fps: int) -> list[dict]:
    """The edit's camera per shot: its window in time, the zoom's slow push as a line, the window's centre."""
    shots = []
    last = len(path.zoom) - 1
    for seg in segments:
        k0, k1 = round(seg["start"] * fps), min(last, max(round(seg["start"] * fps) + 1, round(seg["end"] * fps) - 1))
        shots.append({"start": k0 / fps, "end": round(seg["end"] * fps) / fps, "zoom": float(path.zoom[k0]),
                      "slope": float((path.zoom[k1] - path.zoom[k0]) / max(1e-6, (k1 - k0) / fps)),
                      "cx": float(path.cx[k0]), "cy": float(path.cy[k0])})
    return shots


def camera_expressions(shots: list[dict], fps: int) -> tuple[str, str, str]:
    """The shots as ffmpeg expressions of t, each switched on for its frames."""
    zoom, x, y = [], [], []
    for n, shot in enumerate(shots):
        a = shot["start"]
        window = f"gte(t,{a:.4f})" + (f"*lt(t,{shot['end']:.4f})" if n < len(shots) - 1 else "")
        zoom.append(f"{window}*({shot['zoom']:.5f}+{shot['slope']:.6f}*(t-{a:.4f}))")
        x.append(f"{window}*{shot['cx']:.5f}")
        y.append(f"{window}*{shot['cy']:.5f}")
    return "+".join(zoom), "+".join(x), "+".join(y)


def write_bare_ass(path: Path, output: dict, job: RenderJob) -> None:
    """The run's caption and its lyrics (karaoke `\\kf` per word, at the lyric box) as one ASS script."""
    template = load_template(TEMPLATE)
    style = caption_style_from_template(template, FONTS_DIR)
    script = build_ass(output.get("captionText") or "", style, width=job.width, height=job.height,
                       duration=job.clip_duration)
    boxes = [b for b in output["edit"]["textBoxes"] if b["kind"] == "lyrics"]
    events = []
    for line, box in zip(output["edit"]["lyrics"], boxes, strict=False):
        x, y = box["x"] + box["w"] // 2, box["y"] + box["h"] // 2
        words = "".join(f"{{\\kf{max(1, round((w['end'] - w['start']) * 100))}}}{w['text']} " for w in line["words"])
        start, end = ass_timestamp(line["start"]), ass_timestamp(line["end"])
        events.append(f"Dialogue: 0,{start},{end},Caption,,0,0,0,,{{\\an5\\pos({x},{y})}}{words.strip()}")
    path.write_text(script + "\n".join(events) + "\n", encoding="utf-8")


# --- the bare ffmpeg command ------------------------------------------------------------------------------------


def _even(value: float) -> int:
    return int(round(value / 2)) * 2


def bare_args(p: Prepared, out: Path, *, camera: bool = True) -> list[str]:
    """One hand-written ffmpeg command for the same video: still -> perspective camera -> lanczos -> ASS; the
    song clip with the same measured gain, limiter and fades; libx264 with the same settings. Paths are relative
    to p.folder. Without `camera` the still stands still: the floor, what encoding alone costs."""
    frame_time = f"(in/{p.fps})"  # perspective knows the frame number, not the time

    def of_frame(expr: str) -> str:
        return re.sub(r"\bt\b", frame_time, expr)

    zoom, cx, cy = of_frame(p.zoom), of_frame(p.x), of_frame(p.y)
    left, right = f"W*(({cx})-0.5/({zoom}))", f"W*(({cx})+0.5/({zoom}))"
    top, bottom = f"H*(({cy})-0.5/({zoom}))", f"H*(({cy})+0.5/({zoom}))"
    move = (f"perspective=x0='{left}':y0='{top}':x1='{right}':y1='{top}':x2='{left}':y2='{bottom}'"
            f":x3='{right}':y3='{bottom}':interpolation=linear:sense=source:eval=frame,")
    frames = round(p.duration * p.fps)
    work_w, work_h = (_even(p.width * 1.25), _even(p.height * 1.25)) if camera else (p.width, p.height)
    video = (f"[0:v]scale={work_w}:{work_h}:flags=lanczos:out_color_matrix=bt709:out_range=tv,format=yuv420p,"
             f"loop=loop={frames}:size=1,"
             f"setpts=N/({p.fps}*TB),{move if camera else ''}scale={p.width}:{p.height}:flags=lanczos,setsar=1")
    if p.ass is not None:
        video += f",ass=filename={p.ass.name}:fontsdir=fonts"
    d = f"{p.duration:.3f}"
    audio = (f"[1:a]aformat=sample_fmts=fltp:channel_layouts=stereo,volume={p.gain_db:.2f}dB,aresample=48000,"
             f"alimiter=limit={10 ** (TRUE_PEAK_DB / 20):.4f}:level=false:latency=true,"
             f"afade=t=in:d={p.fade_in}:st=0,afade=t=out:st={p.duration - p.fade_out:.3f}:d={p.fade_out}")
    return ["-hide_banner", "-nostdin", "-y", "-v", "error",
            "-i", p.still.name, "-ss", f"{p.start:.3f}", "-t", d, "-i", str(p.song),
            "-filter_complex", f"{video}[v];{audio}[a]", "-map", "[v]", "-map", "[a]",
            "-c:v", "libx264", "-preset", p.preset, "-crf", str(p.crf),
            *(["-x264-params", p.x264_params] if p.x264_params else []), "-pix_fmt", "yuv420p", "-profile:v", "high",
            "-r", str(p.fps), "-g", str(p.fps * 2), "-colorspace", "bt709", "-color_primaries", "bt709",
            "-color_trc", "bt709", "-color_range", "tv", "-c:a", "aac", "-b:a", p.audio_bitrate, "-ar", "48000",
            "-t", d, "-movflags", "+faststart", str(out)]


def run_bare(p: Prepared, out: Path, ffmpeg: str | None = None, *, camera: bool = True) -> float:
    start = time.perf_counter()
    proc = subprocess.run([ffmpeg_exe(ffmpeg), *bare_args(p, out, camera=camera)], cwd=p.folder,
                          capture_output=True, text=True, timeout=900)
    seconds = time.perf_counter() - start
    if proc.returncode != 0 or not out.is_file():
        raise RuntimeError(f"the bare ffmpeg command failed: {proc.stderr[-2000:]}")
    return seconds


# --- MoviePy ------------------------------------------------------------------------------------------------------


def moviepy_available() -> str | None:
    """None when the MoviePy contender can run, else why not."""
    if not MOVIEPY_PYTHON.exists():
        return (f"{MOVIEPY_PYTHON} is missing: python3 -m venv .venv/moviepy && "
                ".venv/moviepy/bin/pip install -r bench/requirements.txt")
    proc = subprocess.run([str(MOVIEPY_PYTHON), "-c", "import moviepy"], capture_output=True, text=True, timeout=120)
    return None if proc.returncode == 0 else f"moviepy does not import: {proc.stderr.strip()[-300:]}"


def run_moviepy(p: Prepared, out: Path) -> float:
    """The peers' render of the same video; the seconds MoviePy reports from building clips to the written file."""
    job = {"still": str(p.still), "song": str(p.song), "start": p.start, "duration": p.duration,
           "caption": p.caption, "font": str(CAPTION_FONT), "width": p.width, "height": p.height, "fps": p.fps,
           "preset": p.preset, "crf": p.crf, "x264_params": p.x264_params, "audio_bitrate": p.audio_bitrate,
           "fade_in": p.fade_in, "fade_out": p.fade_out, "out": str(out), "shots": list(p.shots),
           "lyrics": list(p.lyrics), "highlight": load_template(TEMPLATE).edit.highlight_colour}
    proc = subprocess.run([str(MOVIEPY_PYTHON), str(MOVIEPY_SCRIPT), json.dumps(job)], capture_output=True,
                          text=True, timeout=1800, cwd=p.folder)
    if proc.returncode != 0 or not out.is_file():
        raise RuntimeError(f"the MoviePy render failed: {proc.stderr[-2000:]}")
    return float(json.loads(proc.stdout.strip().splitlines()[-1])["seconds"])
