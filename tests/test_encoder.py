"""The video encoder: x264, or a GPU's when its test encode works here, and x264 again when a GPU encode fails.

This machine has no GPU, so the hardware encoders fail for real here (ffmpeg cannot load the driver or open
the device): the fallback is exercised with real ffmpeg runs, the working path only where a GPU is present.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from PIL import Image

from pipeline.encoder import HARDWARE, choose_encoder, nvenc, vaapi, why_not, x264
from pipeline.ffmpeg import decode_frames, probe
from pipeline.models import MotionPlan, StyledImage
from pipeline.render import Encoding, RenderInputs, RenderJob, build_render_args, render
from pipeline.settings import FONTS_DIR
from tests.media import ffmpeg_make


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("encoder")
    ffmpeg_make("-f", "lavfi", "-i", "sine=frequency=440:duration=4:sample_rate=44100", "-ac", "2",
                str(root / "song.wav"))
    Image.new("RGB", (450, 800), (200, 40, 40)).save(root / "still.jpg", quality=95)
    return root


def job(media: Path, out: Path, encoder: str) -> RenderJob:
    return RenderJob(image=StyledImage(path=media / "still.jpg", width=450, height=800, face=None),
                     motion=MotionPlan(movement="push", mood="calm", style="push", zoom_expr="1+0.05*t",
                                       x_expr="0.5", y_expr="0.5"),
                     audio_path=media / "song.wav", clip_start=0.5, clip_duration=2.0, ass_path=None,
                     fonts_dir=FONTS_DIR, out_path=out, width=360, height=640,
                     encoding=Encoding(fps=30, video_encoder=encoder))  # type: ignore[arg-type]


def test_auto_takes_a_gpu_encoder_only_where_its_test_encode_works() -> None:
    reasons = {name: why_not(name) for name in HARDWARE}
    working = [name for name, reason in reasons.items() if reason is None]
    chosen = choose_encoder("auto", preset="veryfast", crf=20, params="subme=1")
    assert chosen.name == (working[0] if working else "libx264")
    assert chosen.hardware == bool(working)
    for name, reason in reasons.items():  # a refusal says why, in one line a person can act on
        assert reason is None or (reason.strip() and "\n" not in reason and len(reason) < 300), (name, reason)
    assert choose_encoder("libx264", preset="veryfast", crf=20, params="").name == "libx264"
    assert choose_encoder("h264_nvenc", preset="veryfast", crf=20, params="").name == "h264_nvenc"  # by name: no test


def test_each_encoder_gets_its_own_options(media: Path, tmp_path: Path) -> None:
    base = job(media, tmp_path / "v.mp4", "libx264")

    def args_with(encoder_options: RenderInputs) -> list[str]:
        return build_render_args(base, inputs=encoder_options)

    plain = args_with(RenderInputs(encoder=x264("veryfast", 20, "subme=1:partitions=none")))
    assert plain[plain.index("-c:v") + 1] == "libx264"
    assert plain[plain.index("-x264-params") + 1] == "subme=1:partitions=none"
    assert plain[plain.index("-crf") + 1] == "20" and "-pix_fmt" in plain

    gpu = args_with(RenderInputs(encoder=nvenc(20)))
    assert gpu[gpu.index("-c:v") + 1] == "h264_nvenc" and gpu[gpu.index("-cq") + 1] == "20"
    assert "-x264-params" not in gpu and "-crf" not in gpu and gpu[gpu.index("-profile:v") + 1] == "high"

    intel = args_with(RenderInputs(encoder=vaapi(20)))
    assert intel.index("-vaapi_device") < intel.index("-i")  # the device opens before the inputs
    graph = intel[intel.index("-filter_complex") + 1]
    assert graph.split(";")[-2].endswith(",format=nv12,hwupload[v]")  # the picture goes up to the GPU last
    output = intel[intel.index("-map"):]
    assert "-pix_fmt" not in output and output[output.index("-qp") + 1] == "20"


def test_a_gpu_encode_that_fails_is_made_again_with_x264(media: Path, tmp_path: Path,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    failing = next((name for name in HARDWARE if why_not(name) is not None), None)
    if failing is None:
        pytest.skip("every GPU encoder works on this machine: nothing to fall back from")
    out = tmp_path / "video.mp4"
    with caplog.at_level(logging.WARNING, logger="pipeline.render"):
        result = render(job(media, out, failing))  # asked for by name, so ffmpeg really tries it and fails
    assert result.encoder == "libx264"
    warned = [r.getMessage() for r in caplog.records if failing in r.getMessage() and "libx264" in r.getMessage()]
    assert warned and (why_not(failing) or "") in warned[0]  # with ffmpeg's own reason
    info = probe(out)
    assert (info.video_codec, info.width, info.height) == ("h264", 360, 640) and info.has_audio
    assert info.duration == pytest.approx(2.0, abs=0.1)
    first = decode_frames(out, at=[1.0])[0]
    assert abs(int(first[320, 180, 0]) - 200) < 30 and int(first[320, 180, 1]) < 80  # the red still, not garbage
    assert result.poster_path.is_file() and not list(tmp_path.glob(".*partial*"))
