"""The local image maker: 9:16 stills at the asked size, the face kept near the anchor, any input that decodes."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.errors import BadInput
from pipeline.make_image import apply_grade, crop_window, make_image
from pipeline.models import FaceBox
from pipeline.settings import DEMO_ARTIST_DIR
from pipeline.templates import GradeSpec, load_template, malleable_template, template_ids

FACE_GUIDE = DEMO_ARTIST_DIR / "context" / "images" / "face-guide.png"
W, H = 360, 640


def _synthetic_portrait(path: Path, size: tuple[int, int] = (800, 600), mode: str = "RGB") -> Path:
    """A detailed picture (no face needed): gradients, stripes and noise."""
    w, h = size
    y, x = np.mgrid[0:h, 0:w]
    arr = np.stack([x * 255 / w, y * 255 / h, (np.sin(x / 7.0) * 0.5 + 0.5) * 255], -1)
    arr += np.random.default_rng(1).normal(0, 10, arr.shape)
    Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).convert(mode).save(path)
    return path


def _no_leftovers(folder: Path) -> None:
    assert not [p for p in folder.iterdir() if p.name.startswith(".")], "temporary files were left behind"


@pytest.mark.parametrize("template_id", [*template_ids(), None])
def test_every_template_makes_a_still(template_id: str | None, tmp_path: Path) -> None:
    if not FACE_GUIDE.is_file():
        pytest.skip("the demo artist's face guide is not there yet")
    template = load_template(template_id) if template_id else malleable_template()
    out = tmp_path / "image.jpg"
    guide = FACE_GUIDE if template.image.uses_face_guide else None
    image = make_image(guide, template, width=W, height=H, rng=random.Random(1), out_path=out)
    assert image.path == out and (image.width, image.height) == (W, H)
    with Image.open(out) as img:
        assert img.format == "JPEG" and img.size == (W, H)
        arr = np.asarray(img.convert("L"), dtype=np.float32)
    assert arr.std() > 20  # a picture, not a flat fill
    if guide is None:
        assert image.face is None
    else:
        assert image.face is not None
        cx, cy = (image.face.x + image.face.w / 2) / W, (image.face.y + image.face.h / 2) / H
        ax, ay = template.image.face_anchor
        # the demo face sits high in a square photo: the frame zooms toward the anchor as far as it sensibly can
        assert abs(cx - ax) < 0.05 and abs(cy - ay) < 0.17
        assert image.face.y > 0.12 * H  # below the platforms' top bar
        assert image.face.x >= 0 and image.face.x + image.face.w <= W
    _no_leftovers(tmp_path)


def test_the_record_store_scene_varies_with_the_seed(tmp_path: Path) -> None:
    template = load_template("album-record-store")
    a = make_image(None, template, width=W, height=H, rng=random.Random(1), out_path=tmp_path / "a.png")
    b = make_image(None, template, width=W, height=H, rng=random.Random(1), out_path=tmp_path / "b.png")
    c = make_image(None, template, width=W, height=H, rng=random.Random(2), out_path=tmp_path / "c.png")
    pa, pb, pc = (np.asarray(Image.open(i.path), dtype=np.int16) for i in (a, b, c))
    with Image.open(a.path) as img:
        assert img.format == "PNG"
    assert np.array_equal(pa, pb)  # same seed, same picture
    assert np.abs(pa - pc).mean() > 3  # another seed, another arrangement
    # warm: the template's wall colour and warmth make red outweigh blue
    assert pa[..., 0].mean() > pa[..., 2].mean() + 15


def test_the_record_store_shows_the_artist_on_the_sleeve_and_says_where_the_face_is(tmp_path: Path) -> None:
    """The flat lay puts the artist's photo on the album sleeve; the face box it reports is where a detector
    finds the face in the finished still (so the edit frames it and keeps text off it)."""
    from pipeline.detect_face import detect_face

    template = load_template("album-record-store")
    image = make_image(FACE_GUIDE, template, width=540, height=960, rng=random.Random(3), out_path=tmp_path / "a.jpg")
    assert image.face is not None
    found = detect_face(image.path)
    assert found is not None
    overlap_x = min(found.x + found.w, image.face.x + image.face.w) - max(found.x, image.face.x)
    overlap_y = min(found.y + found.h, image.face.y + image.face.h) - max(found.y, image.face.y)
    assert overlap_x > 0.6 * found.w and overlap_y > 0.6 * found.h, (found, image.face)
    bare = make_image(None, template, width=540, height=960, rng=random.Random(3), out_path=tmp_path / "b.jpg")
    assert bare.face is None and detect_face(bare.path) is None  # cover art, no face


@pytest.mark.parametrize("kind", ["rgba", "cmyk", "grey", "exif", "tiny", "huge", "tall", "wide"])
def test_awkward_inputs(kind: str, tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    if kind == "rgba":
        path = _synthetic_portrait(src / "a.png", mode="RGBA")
        img = Image.open(path)
        img.putalpha(Image.linear_gradient("L").resize(img.size))
        img.save(path)
    elif kind == "cmyk":
        path = _synthetic_portrait(src / "a.jpg", mode="CMYK")
    elif kind == "grey":
        path = _synthetic_portrait(src / "a.png", mode="L")
    elif kind == "exif":
        path = src / "a.jpg"
        exif = Image.Exif()
        exif[0x0112] = 8
        Image.open(_synthetic_portrait(src / "b.png")).save(path, exif=exif)
    elif kind == "tiny":
        path = _synthetic_portrait(src / "a.png", size=(24, 30))
    elif kind == "huge":
        path = src / "a.jpg"
        Image.open(_synthetic_portrait(src / "b.png")).resize((7000, 5000)).save(path, quality=80)
    elif kind == "tall":
        path = _synthetic_portrait(src / "a.png", size=(300, 1500))
    else:
        path = _synthetic_portrait(src / "a.png", size=(2000, 400))
    out = tmp_path / "image.jpg"
    image = make_image(path, malleable_template(), width=W, height=H, rng=random.Random(0), out_path=out)
    with Image.open(out) as img:
        assert img.size == (W, H) and img.mode == "RGB"
        arr = np.asarray(img, dtype=np.float32)
    assert arr.std() > 10 and image.face is None
    _no_leftovers(tmp_path)


def test_an_undecodable_image_is_bad_input_and_writes_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "face.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not a jpeg at all")
    out = tmp_path / "out" / "image.jpg"
    with pytest.raises(BadInput, match="face.jpg"):
        make_image(bad, malleable_template(), width=W, height=H, rng=random.Random(0), out_path=out)
    assert not out.exists()


def test_a_close_up_face_gets_room_and_a_far_face_gets_closer() -> None:
    # a selfie: the face fills most of a landscape picture -> the window grows past the image (background fills)
    x, y, w, h = crop_window((1000, 600), FaceBox(300, 50, 500, 500), (1080, 1920), (0.5, 0.4))
    assert w >= 500 / 0.42 - 1
    # a small face in a big group photo -> zoom in so it is at least a fifth of the frame width
    x, y, w, h = crop_window((4000, 3000), FaceBox(2000, 1000, 100, 100), (1080, 1920), (0.5, 0.4))
    assert w == pytest.approx(100 / 0.2)
    assert x + 0.5 * w == pytest.approx(2050) and y + 0.4 * h == pytest.approx(1050)


def test_grade_moves_colour_the_way_it_says() -> None:
    grey = Image.new("RGB", (64, 64), (128, 128, 128))
    warm = np.asarray(apply_grade(grey, GradeSpec(warmth=0.8)), dtype=np.int16)
    assert warm[..., 0].mean() > warm[..., 2].mean() + 10
    vignette = np.asarray(apply_grade(grey, GradeSpec(vignette=0.8)), dtype=np.int16)
    assert vignette[32, 32, 0] > vignette[0, 0, 0] + 20
    bright = np.asarray(apply_grade(grey, GradeSpec(brightness=0.2)), dtype=np.int16)
    assert bright.mean() > 150
    colour = Image.new("RGB", (8, 8), (200, 100, 60))
    flat = np.asarray(apply_grade(colour, GradeSpec(saturation=0.0)), dtype=np.int16)
    assert np.ptp(flat[0, 0]) <= 1
