"""Face detection on real images: the demo face in every colour mode, EXIF rotation, huge copies, no face."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.detect_face import detect_face
from pipeline.errors import BadInput
from pipeline.settings import DEMO_ARTIST_DIR

FACE_GUIDE = DEMO_ARTIST_DIR / "context" / "images" / "face-guide.png"


@pytest.fixture(scope="module")
def face_image() -> Image.Image:
    if not FACE_GUIDE.is_file():
        pytest.skip("the demo artist's face guide is not there yet")
    with Image.open(FACE_GUIDE) as img:
        return img.convert("RGB")


def _centre(box) -> tuple[float, float]:
    return box.x + box.w / 2, box.y + box.h / 2


def test_finds_the_demo_face(face_image: Image.Image) -> None:
    box = detect_face(FACE_GUIDE)
    assert box is not None
    w, h = face_image.size
    assert box.x >= 0 and box.x + box.w <= w and box.y >= 0 and box.y + box.h <= h
    assert 0.1 * w < box.w < 0.6 * w  # a portrait's face, not a speck or the whole picture
    cx, cy = _centre(box)
    assert 0.25 * w < cx < 0.65 * w and cy < 0.5 * h  # the astronaut's face is upper middle


@pytest.mark.parametrize("mode", ["L", "RGBA", "CMYK", "P"])
def test_colour_modes(face_image: Image.Image, mode: str, tmp_path: Path) -> None:
    img = face_image.convert(mode)
    if mode == "RGBA":
        alpha = np.full(img.size[::-1], 255, np.uint8)
        alpha[:40] = 0  # a transparent band at the top
        img.putalpha(Image.fromarray(alpha))
    path = tmp_path / ("face.jpg" if mode == "CMYK" else "face.png")
    img.save(path)
    ref = detect_face(face_image)
    box = detect_face(path)
    assert box is not None and ref is not None
    assert abs(_centre(box)[0] - _centre(ref)[0]) < ref.w * 0.25


def test_exif_rotation_is_honoured(face_image: Image.Image, tmp_path: Path) -> None:
    # Stored turned on its side, with EXIF orientation 6 ("rotate 90 CW to view"): upright it is the original.
    stored = face_image.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpg"
    stored.save(path, quality=95, exif=exif)
    ref = detect_face(face_image)
    box = detect_face(path)
    assert box is not None and ref is not None
    assert abs(_centre(box)[0] - _centre(ref)[0]) < 10 and abs(_centre(box)[1] - _centre(ref)[1]) < 10


def test_huge_image_is_downsized_and_the_box_scaled_back(face_image: Image.Image, tmp_path: Path) -> None:
    path = tmp_path / "huge.jpg"
    face_image.resize((5120, 5120), Image.Resampling.BICUBIC).save(path, quality=85)
    ref = detect_face(face_image)
    box = detect_face(path)
    assert box is not None and ref is not None
    assert _centre(box)[0] == pytest.approx(_centre(ref)[0] * 10, rel=0.08)
    assert box.w == pytest.approx(ref.w * 10, rel=0.2)


def test_no_face_in_a_face_free_picture(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    y, x = np.mgrid[0:480, 0:640]
    smooth = np.stack([x / 640 * 255, y / 480 * 255, np.full_like(x, 90)], -1)
    noisy = np.clip(smooth + rng.normal(0, 12, smooth.shape), 0, 255).astype(np.uint8)
    path = tmp_path / "landscape.png"
    Image.fromarray(noisy).save(path)
    assert detect_face(path) is None
    assert detect_face(Image.new("RGB", (300, 300), (200, 30, 30))) is None


def test_an_undecodable_file_is_bad_input(tmp_path: Path) -> None:
    path = tmp_path / "face.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n this is not really a picture")
    with pytest.raises(BadInput, match="face.png"):
        detect_face(path)
