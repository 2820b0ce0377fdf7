"""Scene light: each template's local still reads as its place, and `none` changes nothing."""

from __future__ import annotations

import random

import numpy as np
from PIL import Image

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
