"""The final render, checked with a decoder: format, duration, loudness, faststart, captions, smooth motion,
atomic output."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from pipeline.caption_ass import build_ass, caption_style_from_template
from pipeline.errors import RenderError
from pipeline.ffmpeg import decode_frames, ffmpeg_exe, probe
from pipeline.models import AudioAnalysis, MotionPlan, StyledImage
from pipeline.plan_motion import plan_motion
from pipeline.render import POSTER_AT, Encoding, RenderJob, RenderResult, render
from pipeline.settings import FONTS_DIR
from pipeline.templates import Mood, Movement, malleable_template
from tests.media import ffmpeg_make

TEMPLATE = malleable_template()
STYLE = caption_style_from_template(TEMPLATE, FONTS_DIR)
HOSTILE = 'he said "go": now, 100% {\\pos(0,0)}{\\c&H0000FF&} back\\slash \\N x\nnext 🔥 مرحبا שלום'
CAPTION = "this one is for the late drives"


def detailed_still(path: Path, width: int, height: int) -> StyledImage:
    """A picture with detail at every scale (so motion and smoothness show), as the image step would hand it."""
    rng = np.random.default_rng(5)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 / width, y * 255 / height, 128 + 60 * np.sin(x / 9.0) * np.cos(y / 13.0)], -1)
    blobs = cv2.GaussianBlur(rng.normal(0, 60, (height, width, 3)), (0, 0), 3)
    Image.fromarray(np.clip(base + blobs, 0, 255).astype(np.uint8)).save(path, quality=92)
    return StyledImage(path=path, width=width, height=height, face=None)


def flat_still(path: Path, width: int, height: int) -> StyledImage:
    Image.new("RGB", (width, height), (128, 128, 128)).save(path, quality=95)
    return StyledImage(path=path, width=width, height=height, face=None)


def static(zoom: str = "1") -> MotionPlan:
    return MotionPlan(movement="none", mood="calm", style="static", zoom_expr=zoom, x_expr="0.5", y_expr="0.5")


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("render")
    # a quiet (about -30 LUFS) stereo song: the render must bring it to -14
    ffmpeg_make("-f", "lavfi", "-i", "sine=frequency=330:duration=10:sample_rate=44100",
                "-f", "lavfi", "-i", "anoisesrc=color=pink:duration=10:sample_rate=44100:amplitude=0.2",
                "-filter_complex", "[0][1]amix=inputs=2,volume=0.08,aformat=channel_layouts=stereo",
                str(root / "song.wav"))
    return root


def job_for(media: Path, out: Path, image: StyledImage, motion: MotionPlan, *, width: int = 360, height: int = 640,
            duration: float = 2.0, ass_path: Path | None = None, **kw) -> RenderJob:
    return RenderJob(image=image, motion=motion, audio_path=kw.pop("audio_path", media / "song.wav"), clip_start=2.0,
                     clip_duration=duration, ass_path=ass_path, fonts_dir=kw.pop("fonts_dir", FONTS_DIR),
                     out_path=out, width=width, height=height, fade_in=0.3, fade_out=0.5,
                     encoding=Encoding(fps=30, x264_preset="veryfast", crf=kw.pop("crf", 20), audio_bitrate="160k",
                                       loudness_lufs=-14.0, ffmpeg=None), **kw)


def loudness(path: Path) -> float:
    err = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path), "-map", "0:a", "-af",
                          "ebur128", "-f", "null", "-"], capture_output=True, text=True, timeout=60).stderr
    return float(err.rsplit("I:", 1)[1].split("LUFS")[0])


def top_level_boxes(path: Path) -> list[str]:
    data = path.read_bytes()
    boxes, pos = [], 0
    while pos + 8 <= len(data):
        size = int.from_bytes(data[pos:pos + 4], "big")
        boxes.append(data[pos + 4:pos + 8].decode("latin-1"))
        if size == 1:
            size = int.from_bytes(data[pos + 8:pos + 16], "big")
        if size < 8:
            break
        pos += size
    return boxes


@pytest.fixture(scope="module")
def pair(media: Path) -> dict:
    """The same 3 s 720x1280 push-in rendered with and without a caption."""
    image = detailed_still(media / "still.jpg", 1080, 1920)
    motion = plan_motion(TEMPLATE, mood=Mood(name="calm", energy=0.4), movement=Movement(prompt="p", style="push-in"),
                         face=None, src_width=1080, src_height=1920, duration=3.0, lipsync=False)
    ass = media / "caption.ass"
    ass.write_text(build_ass(CAPTION, STYLE, width=720, height=1280, duration=3.0), encoding="utf-8")
    progress: list[float] = []
    out_dir = media / "pair"
    captioned = render(job_for(media, out_dir / "captioned.mp4", image, motion, width=720, height=1280, duration=3.0,
                               ass_path=ass), on_progress=progress.append)
    plain = render(job_for(media, out_dir / "plain.mp4", image, motion, width=720, height=1280, duration=3.0))
    return {"captioned": captioned, "plain": plain, "progress": progress, "dir": out_dir}


def test_the_video_is_a_finished_vertical_mp4(pair: dict) -> None:
    result: RenderResult = pair["captioned"]
    info = probe(result.video_path)
    assert (info.width, info.height, info.fps) == (720, 1280, 30)
    assert (info.video_codec, info.pix_fmt, info.audio_codec) == ("h264", "yuv420p", "aac")
    assert info.duration == pytest.approx(3.0, abs=0.1)
    boxes = top_level_boxes(result.video_path)
    assert boxes.index("moov") < boxes.index("mdat")  # +faststart: playable while it downloads
    assert loudness(result.video_path) == pytest.approx(-14.0, abs=1.5)
    with Image.open(result.poster_path) as poster:
        assert poster.format == "JPEG" and poster.size == (720, 1280)
    assert sorted(p.name for p in pair["dir"].iterdir()) == ["captioned.jpg", "captioned.mp4", "plain.jpg", "plain.mp4"]
    progress = pair["progress"]
    assert progress and progress[-1] == 1.0 and progress == sorted(progress)


def test_the_poster_is_the_videos_frame_with_its_caption(media: Path, tmp_path: Path) -> None:
    # The poster is drawn beside the encode (camera frame + caption layer), not cut from the file: it must still
    # be what a player shows at that moment, colours and caption included. A still of flat colour fields, so
    # what is compared is the picture, not how x264 smooths a noise texture.
    still = tmp_path / "bars.png"
    ffmpeg_make("-f", "lavfi", "-i", "testsrc2=s=1080x1920:d=1", "-frames:v", "1", str(still))
    image = StyledImage(path=still, width=1080, height=1920, face=None)
    ass = tmp_path / "caption.ass"
    ass.write_text(build_ass(CAPTION, STYLE, width=720, height=1280, duration=3.0), encoding="utf-8")
    plan = MotionPlan(movement="m", mood="m", style="push-in", zoom_expr="(1.02+0.06*t)", x_expr="0.5",
                      y_expr="0.5")
    result = render(job_for(media, tmp_path / "v.mp4", image, plan, width=720, height=1280, duration=3.0,
                            ass_path=ass, crf=12))
    with Image.open(result.poster_path) as poster:
        shown = np.asarray(poster.convert("RGB"), dtype=np.int16)
    frames = decode_frames(result.video_path, at=[3.0 * POSTER_AT - 0.1, 3.0 * POSTER_AT])
    before, frame = (f.astype(np.int16) for f in frames)
    assert np.abs(shown - frame).mean() < 2.5
    assert np.abs(shown.mean(axis=(0, 1)) - frame.mean(axis=(0, 1))).max() < 1.5  # no colour-matrix shift
    assert np.abs(shown - frame).mean() < np.abs(shown - before).mean()  # that frame, not its neighbour
    zone = (slice(int(1280 * 0.55), int(1280 * 0.80)), slice(int(720 * 0.05), int(720 * 0.85)))
    white_poster, white_frame = ((x[zone].min(axis=2) > 225).sum() for x in (shown, frame))
    assert abs(int(white_poster) - int(white_frame)) < 0.15 * int(white_frame) and white_frame > 1500


def test_caption_pixels_are_there_only_with_a_caption(pair: dict) -> None:
    with_caption, without = (decode_frames(pair[k].video_path, at=[1.5])[0].astype(int) for k in ("captioned", "plain"))
    zone = (slice(int(1280 * 0.55), int(1280 * 0.80)), slice(int(720 * 0.05), int(720 * 0.85)))

    def white_and_dark(frame: np.ndarray) -> tuple[int, int]:
        region = frame[zone]
        return int((region.min(axis=2) > 225).sum()), int((region.max(axis=2) < 35).sum())

    white_c, dark_c = white_and_dark(with_caption)
    white_p, dark_p = white_and_dark(without)
    assert white_c > white_p + 1500 and dark_c > dark_p + 800
    # the caption changes its zone and nothing above it (the UI zones and the picture stay as they were)
    assert np.abs(with_caption[: int(1280 * 0.5)] - without[: int(1280 * 0.5)]).mean() < 1.5


def test_hostile_caption_and_paths_render_literally(media: Path, tmp_path: Path) -> None:
    weird = tmp_path / "fo'nts:dir,[a];b"
    shutil.copytree(FONTS_DIR, weird)
    ass = weird / "cap,tion's:[1].ass"
    ass.write_text(build_ass(HOSTILE, STYLE, width=360, height=640, duration=2.0), encoding="utf-8")
    image = flat_still(tmp_path / "grey.jpg", 540, 960)
    result = render(job_for(media, tmp_path / "out" / "v.mp4", image, static(), ass_path=ass, fonts_dir=weird))
    frame = decode_frames(result.video_path, at=[1.0])[0].astype(int)
    ys, xs = np.nonzero(np.abs(frame - 128).max(axis=2) > 40)
    assert len(xs) > 500
    # {\pos(0,0)} did not move it to the corner, and the colour override did not turn it red
    assert ys.min() > 640 * 0.12 - 6 and ys.max() < 640 * 0.80 + 6 and xs.max() < 360 * 0.85 + 6
    assert ((frame[..., 0] > 150) & (frame[..., 1] < 90) & (frame[..., 2] < 90)).sum() < 20


def test_upscale_renders_1440x2560(media: Path, tmp_path: Path) -> None:
    image = detailed_still(tmp_path / "big.jpg", 2160, 3840)
    ass = tmp_path / "c.ass"
    ass.write_text(build_ass(CAPTION, STYLE, width=1440, height=2560, duration=2.0), encoding="utf-8")
    result = render(job_for(media, tmp_path / "up.mp4", image, static("1+0.05*t"), width=1440, height=2560,
                            ass_path=ass))
    info = probe(result.video_path)
    assert (info.width, info.height, info.video_codec) == (1440, 2560, "h264")
    assert info.duration == pytest.approx(2.0, abs=0.1)


def _frame_shifts(path: Path) -> np.ndarray:
    frames = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY).astype(np.float64) for f in decode_frames(path)]
    window = cv2.createHanningWindow(frames[0].shape[::-1], cv2.CV_64F)
    return np.array([cv2.phaseCorrelate(a, b, window)[0][0] for a, b in zip(frames, frames[1:], strict=False)])


def test_motion_is_smooth_sub_pixel(media: Path, tmp_path: Path) -> None:
    # A slow linear pan: under one output px per frame. Whole-pixel cameras alternate 0 and 1-2 px steps.
    # Near-lossless encodes, so what is measured is the camera, not x264's handling of a noise texture.
    image = detailed_still(tmp_path / "detail.jpg", 540, 960)
    plan = MotionPlan(movement="pan", mood="calm", style="pan-right", zoom_expr="1.2", x_expr="(0.45+0.05*t)",
                      y_expr="0.5")
    result = render(job_for(media, tmp_path / "pan.mp4", image, plan, duration=2.0, crf=4))
    shifts = _frame_shifts(result.video_path)[2:-2]
    expected = 0.05 / 30 * 540 * (360 / (540 / 1.2))  # centre speed in still px per frame, scaled to the output
    assert abs(shifts.mean()) == pytest.approx(expected, rel=0.2)
    assert shifts.std() < 0.15 * abs(shifts.mean())  # every frame moves about the same: no stall-then-jump
    assert np.abs(shifts).min() > 0.5 * abs(shifts.mean())

    # The same measure on zoompan's whole-pixel camera fails: this is what the renderer avoids.
    control = tmp_path / "zoompan.mp4"
    ffmpeg_make("-loop", "1", "-framerate", "30", "-i", str(image.path), "-vf",
                "zoompan=z=1.2:x='iw*(0.45+0.05*on/30)-iw/zoom/2':y='ih/2-ih/zoom/2':d=1:s=360x640:fps=30",
                "-t", "2", "-pix_fmt", "yuv420p", "-c:v", "libx264", "-preset", "veryfast", "-crf", "4", str(control))
    stepped = _frame_shifts(control)[2:-2]
    assert stepped.std() > 0.3 * abs(stepped.mean())


def test_push_in_has_no_stalls(media: Path, tmp_path: Path) -> None:
    image = detailed_still(tmp_path / "detail.jpg", 540, 960)
    plan = plan_motion(TEMPLATE, mood=Mood(name="calm", energy=0.2), movement=Movement(prompt="p", style="push-in"),
                       face=None, src_width=540, src_height=960, duration=2.0, lipsync=False)
    result = render(job_for(media, tmp_path / "push.mp4", image, plan, crf=4))
    frames = [f.astype(np.float32) for f in decode_frames(result.video_path)]
    mad = np.array([np.abs(b - a).mean() for a, b in zip(frames, frames[1:], strict=False)])[3:-3]
    assert mad.min() > 0.4 * np.median(mad)  # it never stands still between two frames
    assert mad.std() < 0.35 * mad.mean()


def test_audio_reactive_plan_renders(media: Path, tmp_path: Path) -> None:
    hop, n = 0.02, 500
    analysis = AudioAnalysis(duration=10.0, hop_seconds=hop, rms=tuple(0.5 + 0.4 * np.sin(np.arange(n) * 0.05)),
                             onset=tuple(np.ones(n) * 0.5), beats=tuple(np.arange(0.0, 10.0, 0.5)), tempo=120.0,
                             repetition=tuple(np.zeros(n)))
    plan = plan_motion(TEMPLATE, mood=Mood(name="up", energy=0.8), movement=Movement(prompt="p", style="drift"),
                       face=None, src_width=540, src_height=960, duration=2.0, lipsync=True, analysis=analysis,
                       clip_start=2.0)
    assert plan.audio_reactive
    result = render(job_for(media, tmp_path / "ar.mp4", detailed_still(tmp_path / "d.jpg", 540, 960), plan))
    assert probe(result.video_path).duration == pytest.approx(2.0, abs=0.1)


def test_a_provider_clip_is_looped_to_the_clip_length(media: Path, tmp_path: Path) -> None:
    source = tmp_path / "source.mp4"
    ffmpeg_make("-f", "lavfi", "-i", "testsrc2=s=640x360:r=24:d=1", "-pix_fmt", "yuv420p", str(source))
    job = job_for(media, tmp_path / "v.mp4", flat_still(tmp_path / "g.jpg", 540, 960), static(), duration=2.5,
                  video_source=source, use_video_audio=True)  # silent clip: the song is used
    info = probe(render(job).video_path)
    assert (info.width, info.height, info.fps, info.has_audio) == (360, 640, 30, True)
    assert info.duration == pytest.approx(2.5, abs=0.1)


def test_a_failed_render_leaves_nothing(media: Path, tmp_path: Path) -> None:
    out = tmp_path / "out" / "video.mp4"
    job = job_for(media, out, flat_still(tmp_path / "g.jpg", 540, 960), static(), audio_path=tmp_path / "missing.mp3")
    with pytest.raises(RenderError):
        render(job)
    assert list((tmp_path / "out").iterdir()) == []
