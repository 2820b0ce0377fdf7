"""Awkward songs and pictures, end to end through run_video (tiny output, short clips): each one either makes a
video a decoder accepts or fails with a clear message, and nothing half-made is left behind."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.artists import find_artist
from pipeline.detect_face import detect_face
from pipeline.errors import StudioError
from pipeline.ffmpeg import decode_audio, probe
from pipeline.models import RunPlan
from pipeline.run_video import run_video
from pipeline.settings import DEMO_ARTIST_DIR, Settings
from tests.http_server import LocalServer, serve_file
from tests.media import ffmpeg_make, make_picture
from tests.test_artists import make_workspace

DEMO = "1873859c-dd37-4e9a-9bac-80d3558527a9"
FACE = DEMO_ARTIST_DIR / "context" / "images" / "face-guide.png"
CLIP = 2.0


def _lavfi(path: Path, source: str, *extra: str) -> Path:
    ffmpeg_make("-f", "lavfi", "-i", source, *extra, str(path))
    return path


def make_songs(folder: Path) -> dict[str, Path]:
    songs = {
        "silent.mp3": _lavfi(folder / "silent.mp3", "anullsrc=r=44100:cl=stereo", "-t", "5"),
        "one-second.mp3": _lavfi(folder / "one-second.mp3", "sine=frequency=440:duration=1"),
        "mono-8k.wav": _lavfi(folder / "mono-8k.wav", "sine=frequency=300:duration=4:sample_rate=8000"),
        "stereo-96k.flac": _lavfi(folder / "stereo-96k.flac", "sine=frequency=500:duration=4:sample_rate=96000",
                                  "-ac", "2"),
        # two hours, cheap: 8 kHz mono at 8 kb/s is 7 MB
        "two-hours.mp3": _lavfi(folder / "two-hours.mp3", "sine=frequency=220:sample_rate=8000:duration=7200",
                                "-ac", "1", "-b:a", "8k"),
    }
    noise = np.random.default_rng(1).integers(0, 256, 20000, dtype=np.uint8).tobytes()
    (folder / "corrupt.mp3").write_bytes(b"ID3\x04\x00\x00\x00\x00\x00\x00" + noise)
    (folder / "truncated.mp3").write_bytes(songs["one-second.mp3"].read_bytes()[:300])
    (folder / "empty.mp3").write_bytes(b"")
    songs.update({n: folder / n for n in ("corrupt.mp3", "truncated.mp3", "empty.mp3")})
    return songs


def make_images(folder: Path) -> dict[str, Path]:
    images = {"tiny.png": make_picture(folder / "tiny.png", 8, 8), "no-face.png": make_picture(folder / "nf.png")}
    Image.new("RGB", (12000, 12000), (120, 80, 60)).save(folder / "huge.png")
    Image.new("RGB", (12000, 1000), (60, 80, 120)).save(folder / "wide.png")
    Image.new("CMYK", (300, 400), (10, 200, 30, 0)).save(folder / "cmyk.jpg")
    Image.new("RGBA", (300, 400), (0, 0, 0, 0)).save(folder / "transparent.png")
    with Image.open(FACE) as face:
        face.convert("L").save(folder / "grey.png")
        exif = Image.Exif()
        exif[0x0112] = 6  # "rotate 90° clockwise to show": the pixels are stored lying on their side
        face.convert("RGB").rotate(90, expand=True).save(folder / "exif-rotated.jpg", exif=exif)
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 100)
    for name in ("huge.png", "wide.png", "cmyk.jpg", "transparent.png", "grey.png", "exif-rotated.jpg", "corrupt.png"):
        images[name] = folder / name
    return images


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalServer, dict[str, Path]]]:
    folder = tmp_path_factory.mktemp("media")
    files = {**make_songs(folder), **make_images(folder)}
    with LocalServer() as srv:
        for name, path in files.items():
            srv.routes["/" + name] = serve_file(path)  # served as octet-stream: only decoding can tell
        yield srv, files


def tiny(tmp_path: Path) -> Settings:
    settings = Settings(_env_file=None, data_dir=tmp_path / "data", clip_seconds=CLIP, output_width=90,
                        output_height=160, fetch_allow_hosts=["127.0.0.1"], x264_preset="ultrafast")
    make_workspace(settings.artists_dir / "faceless", face=False)  # so a given image is really the one used
    return settings


def render(settings: Settings, srv: LocalServer, *, artist: str = DEMO, **kw: list[str]):
    plan = RunPlan(run_id="run_media", artist=find_artist(settings, artist), template_id="artist-caption-stage",
                   caption_length="short", seed=7, out_dir=settings.runs_dir / "run_media", **kw)
    return run_video(plan, settings)


def assert_video(path: Path, seconds: float) -> None:
    info = probe(path)
    assert (info.width, info.height) == (90, 160) and info.has_audio
    assert abs(info.duration - seconds) < 0.25, info.duration


def assert_nothing_left(settings: Settings) -> None:
    runs = settings.runs_dir
    assert not runs.exists() or not any(runs.iterdir()), list(runs.iterdir())


@pytest.mark.parametrize("name, seconds", [("silent.mp3", CLIP), ("one-second.mp3", 1.0), ("mono-8k.wav", CLIP),
                                           ("stereo-96k.flac", CLIP), ("two-hours.mp3", CLIP)])
def test_odd_but_real_audio_makes_a_video(media, tmp_path: Path, name: str, seconds: float) -> None:
    srv, files = media
    settings = tiny(tmp_path)
    started = time.monotonic()
    result = render(settings, srv, songs=[srv.url("/" + name)])
    took = time.monotonic() - started
    assert_video(result.video_path, seconds)
    audio = result.output["audio"]
    assert audio["durationSeconds"] == pytest.approx(seconds, abs=0.01)
    if name == "two-hours.mp3":
        assert took < 30  # the hook is looked for in the first 15 minutes, not in 2 hours of samples
        assert audio["startSeconds"] <= 900
    heard = decode_audio(result.video_path, 8000)
    loud = float(np.sqrt(np.mean(heard**2)))
    assert (loud < 0.01) if name == "silent.mp3" else (loud > 0.02)


@pytest.mark.parametrize("name", ["corrupt.mp3", "truncated.mp3", "empty.mp3", "no-such.mp3"])
def test_broken_audio_fails_clearly_and_writes_nothing(media, tmp_path: Path, name: str) -> None:
    srv, _ = media
    settings = tiny(tmp_path)
    with pytest.raises(StudioError, match="not audio that can be decoded|empty body|HTTP 404") as info:
        render(settings, srv, songs=[srv.url("/" + name)])
    assert info.value.stage == "song" and name in info.value.message
    assert_nothing_left(settings)


@pytest.mark.parametrize("name", ["tiny.png", "wide.png", "cmyk.jpg", "transparent.png", "grey.png",
                                  "exif-rotated.jpg", "no-face.png"])
def test_odd_but_real_images_make_a_video(media, tmp_path: Path, name: str) -> None:
    srv, files = media
    settings = tiny(tmp_path)
    result = render(settings, srv, artist="faceless", images=[srv.url("/" + name)])
    assert_video(result.video_path, 1.0)  # the faceless artist's song is 1 s long
    assert result.output["faceGuide"] not in (None, "face-guide.png")  # the given picture was the guide
    with Image.open(result.image_path) as styled:
        assert styled.size[1] > styled.size[0]  # a vertical still, whatever the source's shape or mode
        assert styled.mode == "RGB"


def test_an_exif_rotated_photo_is_read_upright(media) -> None:
    _, files = media
    assert detect_face(files["exif-rotated.jpg"]) is not None  # lying on its side, no face would be found


@pytest.mark.parametrize("name, message", [("huge.png", "images can be at most 40 megapixels"),
                                           ("corrupt.png", "not an image that can be decoded")])
def test_huge_or_broken_images_fail_clearly(media, tmp_path: Path, name: str, message: str) -> None:
    srv, _ = media
    settings = tiny(tmp_path)
    with pytest.raises(StudioError, match=message) as info:
        render(settings, srv, artist="faceless", images=[srv.url("/" + name)])
    assert info.value.stage == "image" and info.value.field == ["images"]
    assert_nothing_left(settings)
