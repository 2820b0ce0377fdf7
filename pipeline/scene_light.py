"""Scene light laid over the local still, so each template reads as its place (stage, bedroom, sun, print)
without an image model: coloured beams and haze, fairy-light bokeh, a golden-hour leak, or film grain."""

from __future__ import annotations

import random
from typing import Literal

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from pipeline.models import FaceBox

Lighting = Literal["none", "stage-beams", "fairy-lights", "golden-hour", "film"]

STAGE_COLOURS = [(255, 40, 160), (40, 200, 255), (120, 60, 255), (255, 170, 40)]


def _screen(base: np.ndarray, light: np.ndarray) -> np.ndarray:
    """Screen blend: light only ever brightens, as real light does."""
    return 1 - (1 - base) * (1 - light)


BEAM_SCALE = 4  # beams are drawn and blurred at a quarter of the size: a blur this wide hides the upscale


def _beams(width: int, height: int, rng: random.Random) -> np.ndarray:
    # At full size the 3 %-of-width blur was a fifth of the styled image's time; at 1/4 it is a sixtieth.
    w, h = max(1, width // BEAM_SCALE), max(1, height // BEAM_SCALE)
    layer = Image.new("RGB", (w, h))
    draw = ImageDraw.Draw(layer)
    for _ in range(rng.randint(3, 4)):
        colour = rng.choice(STAGE_COLOURS)
        x0 = rng.uniform(0.05, 0.95) * w
        spread = rng.uniform(0.12, 0.22) * w
        x1 = x0 + rng.uniform(-0.35, 0.35) * w
        draw.polygon([(x0 - 0.02 * w, -2), (x0 + 0.02 * w, -2), (x1 + spread, h * 0.85),
                      (x1 - spread, h * 0.85)], fill=colour)
    layer = layer.filter(ImageFilter.GaussianBlur(radius=w * 0.03)).resize((width, height), Image.Resampling.BILINEAR)
    arr = np.asarray(layer, dtype=np.float32) / 255.0
    fade = np.linspace(0.9, 0.05, height, dtype=np.float32) ** 1.2  # beams are brightest at the rig
    return arr * fade[:, None, None]


def _bokeh(width: int, height: int, rng: random.Random) -> np.ndarray:
    layer = Image.new("RGB", (width, height))
    draw = ImageDraw.Draw(layer)
    for _ in range(26):
        # along the top and the sides, where a string of lights would hang behind the subject
        edge = rng.random()
        x = rng.uniform(0, width) if edge < 0.5 else rng.choice([rng.uniform(0, 0.18), rng.uniform(0.82, 1)]) * width
        y = rng.uniform(0, 0.1) * height if edge < 0.5 else rng.uniform(0, 0.7) * height
        r = rng.uniform(0.015, 0.045) * width
        warm = (255, rng.randint(170, 215), rng.randint(90, 140))
        draw.ellipse([x - r, y - r, x + r, y + r], fill=warm)
    layer = layer.filter(ImageFilter.GaussianBlur(radius=width * 0.008))
    return np.asarray(layer, dtype=np.float32) / 255.0 * 0.55


def _leak(width: int, height: int, rng: random.Random) -> np.ndarray:
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    cx = width * rng.choice([0.0, 1.0])
    d = np.sqrt(((xs - cx) / width) ** 2 + (ys / height * 0.9) ** 2)
    glow = np.clip(1 - d / 0.9, 0, 1) ** 2
    colour = np.array([1.0, 0.62, 0.25], dtype=np.float32)
    return glow[..., None] * colour * 0.8


FACE_CLEAR_X, FACE_CLEAR_Y = 0.95, 1.15  # the light-free ellipse's half axes, in face widths / heights
FEATHER = 0.9  # its soft edge, as a share of those axes


def face_clear_mask(width: int, height: int, face: FaceBox | None) -> np.ndarray | None:
    """1 over the face (hair to chin) fading to 0 around it: scene light is kept off the skin, so the lights read
    as behind the artist instead of a colour filter across the face."""
    if face is None:
        return None
    ys, xs = np.ogrid[0:height, 0:width]
    cx, cy = face.x + face.w / 2, face.y + face.h * 0.45
    d = np.sqrt(((xs - cx) / (face.w * FACE_CLEAR_X)) ** 2 + ((ys - cy) / (face.h * FACE_CLEAR_Y)) ** 2)
    return np.clip((1 + FEATHER - d) / FEATHER, 0, 1).astype(np.float32) ** 1.5


def add_lighting(img: Image.Image, kind: Lighting, rng: random.Random, face: FaceBox | None = None) -> Image.Image:
    """The still with the template's scene light over it (unchanged for `none`), kept off the face."""
    if kind == "none":
        return img
    width, height = img.size
    base = np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
    if kind == "stage-beams":
        out = _screen(base * 0.72, _beams(width, height, rng))
    elif kind == "fairy-lights":
        out = _screen(base, _bokeh(width, height, rng))
    elif kind == "golden-hour":
        out = _screen(base, _leak(width, height, rng))
    else:  # film: fine grain and a slight fade of the blacks, like a printed editorial
        noise = np.random.default_rng(rng.getrandbits(32)).normal(0, 0.035, (height, width, 1)).astype(np.float32)
        out = 0.04 + base * 0.94 + noise
    keep = face_clear_mask(width, height, face) if kind != "film" else None  # grain is the print, not a light
    if keep is not None:
        out = out * (1 - keep[..., None]) + base * keep[..., None]
    return Image.fromarray(np.clip(out * 255 + 0.5, 0, 255).astype(np.uint8))
