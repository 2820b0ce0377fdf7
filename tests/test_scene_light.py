"""Scene light: each template's local still reads as its place, and `none` changes nothing."""

from __future__ import annotations

import random

import numpy as np
import pytest
from PIL import Image

from pipeline.models import FaceBox
from pipeline.scene_light import add_lighting


def grey(width: int = 180, height: int = 320, level: int = 110) -> Image.Image:
    return Image.new("RGB", (width, height), (level, level, level))


def arr(img: Image.Image) -> np.ndarray:
    return np.asarray(img, dtype=np.float32)


def test_none_is_untouched() -> None:
    img = grey()
    assert np.array_equal(arr(add_lighting(img, "none", random.Random(0))), arr(img))


def test_stage_beams_colour_the_top_and_darken_the_floor() -> None:
    out = arr(add_lighting(grey(), "stage-beams", random.Random(1)))
    top, bottom = out[:60], out[-40:]
    assert (top.max(axis=2) - top.min(axis=2)).mean() > 15  # coloured light, not grey
    assert bottom.mean() < 110  # the house lights are down


def test_fairy_lights_are_warm_points_at_the_top_and_sides() -> None:
    out = arr(add_lighting(grey(), "fairy-lights", random.Random(2)))
    top = out[:40]
    assert top.max() > 180 and (top[..., 0] - top[..., 2]).max() > 40  # bright, warm bokeh
    centre = out[140:220, 60:120]
    assert abs(centre.mean() - 110) < 3  # the face area stays clear


def test_golden_hour_warms_one_corner() -> None:
    out = arr(add_lighting(grey(), "golden-hour", random.Random(3)))
    corners = [out[:30, :30], out[:30, -30:]]
    lit = max(corners, key=lambda c: c.mean())
    assert lit.mean() > 150 and lit[..., 0].mean() > lit[..., 2].mean() + 30


def test_film_grain_is_seeded() -> None:
    a = arr(add_lighting(grey(), "film", random.Random(4)))
    b = arr(add_lighting(grey(), "film", random.Random(4)))
    c = arr(add_lighting(grey(), "film", random.Random(5)))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert a.std() > 4


def skin_still(width: int = 360, height: int = 640) -> tuple[Image.Image, FaceBox]:
    img = np.full((height, width, 3), 90, np.float32)
    face = FaceBox(x=130, y=160, w=100, h=120)
    img[face.y: face.y + face.h, face.x: face.x + face.w] = (196, 150, 124)  # a skin tone
    return Image.fromarray(img.astype(np.uint8)), face


@pytest.mark.parametrize("kind", ["stage-beams", "fairy-lights", "golden-hour"])
def test_scene_light_casts_no_colour_on_the_face(kind: str) -> None:
    """The face box keeps the graded still's colour: within 3 levels per channel (JPEG and the 8-bit round trip
    move it by 1; a cast that reads as a filter, like the magenta beams before, moved it by 20-60)."""
    img, face = skin_still()
    for seed in range(6):
        out = arr(add_lighting(img, kind, random.Random(seed), face))
        region = (slice(face.y, face.y + face.h), slice(face.x, face.x + face.w))
        before, after = arr(img)[region].mean(axis=(0, 1)), out[region].mean(axis=(0, 1))
        assert np.abs(after - before).max() <= 3, f"{kind} seed {seed}: face {before.round()} -> {after.round()}"
        assert np.abs(out - arr(img)).max() > 40, "the scene is still lit around the face"
