"""The record-store still, drawn offline: the album on the shop counter seen from above (a flat lay, as shops
post their staff picks): the sleeve with the artist's photo (or abstract cover art), its vinyl half out, a
handwritten staff-pick card and the next records in the stack, on worn wood in window light."""

from __future__ import annotations

import math
import random

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageOps

from pipeline.detect_face import detect_face
from pipeline.models import FaceBox
from pipeline.templates import ImageSpec

SLEEVE_SHARE = 0.66  # the sleeve's side, as a share of the frame's width (of its height in landscape)


def _wood(w: int, h: int, base: tuple[int, int, int], rng: random.Random) -> np.ndarray:
    """Planks of worn wood: per-plank tone, long grain streaks, a few darker knots of wear (float RGB 0..1)."""
    gen = np.random.default_rng(rng.getrandbits(32))
    plank = max(8, round(min(w, h) * rng.uniform(0.16, 0.22)))
    rows = np.arange(h) // plank
    tone = 1 + gen.uniform(-0.12, 0.12, rows.max() + 1)[rows]
    grain = gen.normal(0, 1, (h, max(8, w // 24))).astype(np.float32)
    # stretched along the planks: long streaks, as grain runs
    grain = np.asarray(Image.fromarray(grain).resize((w, h), Image.Resampling.BICUBIC), dtype=np.float32)
    seams = (np.arange(h) % plank < max(1, plank // 40)).astype(np.float32)
    wood = np.asarray(base, np.float32) / 255.0
    shade = (tone[:, None] * (1 + 0.06 * grain) * (1 - 0.45 * seams[:, None]))[..., None]
    return np.clip(wood * shade, 0, 1)


def _window_light(w: int, h: int, rng: random.Random) -> np.ndarray:
    """Soft daylight from one top corner, falling off across the counter (a multiplier around 1)."""
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    cx = w * rng.choice([0.0, 1.0])
    d = np.sqrt(((xs - cx) / w) ** 2 + (ys / h) ** 2)
    return (1.25 - 0.55 * np.clip(d, 0, 1.4) / 1.4)[..., None]


def _vinyl(size: int, label: tuple[int, int, int]) -> Image.Image:
    """A black record seen from above: fine grooves, a lighter run-out, a coloured label and a soft sheen."""
    r = np.hypot(*np.mgrid[-1:1:size * 1j, -1:1:size * 1j]).astype(np.float32)
    angle = np.arctan2(*np.mgrid[-1:1:size * 1j, -1:1:size * 1j]).astype(np.float32)
    grooves = 0.07 + 0.025 * np.sin(r * size * 0.9) + 0.05 * np.cos(angle * 2) ** 8 * (r > 0.36)
    rgb = np.repeat(grooves[..., None], 3, axis=2)
    rgb[(r < 0.36) & (r > 0.33)] = 0.11  # the run-out groove
    rgb[r < 0.32] = np.asarray(label, np.float32) / 255.0
    rgb[r < 0.025] = 0.05  # the spindle hole
    alpha = np.clip((1.0 - r) * size / 2, 0, 1)
    return Image.fromarray(np.dstack([rgb * 255, alpha * 255]).clip(0, 255).astype(np.uint8), "RGBA")


def _sleeve(photo: Image.Image | None, size: int, rng: random.Random,
            art: Image.Image) -> tuple[Image.Image, FaceBox | None]:
    """The sleeve: the photo cropped square around its face (printed: slightly faded, a thin worn edge), or the
    cover art; and where the face is on it."""
    face = None
    if photo is not None:
        found = detect_face(photo)
        if found is not None:  # the face in the upper middle of the square, as on a cover
            side = min(photo.width, photo.height, max(found.w, found.h) * 3)
            cx, cy = found.x + found.w / 2, found.y + found.h / 2 + side * 0.12
            left = min(max(0, cx - side / 2), photo.width - side)
            top = min(max(0, cy - side / 2), photo.height - side)
            cover = photo.resize((size, size), Image.Resampling.LANCZOS, box=(left, top, left + side, top + side))
            k = size / side
            face = FaceBox(round((found.x - left) * k), round((found.y - top) * k), round(found.w * k),
                           round(found.h * k))
        else:
            cover = ImageOps.fit(photo, (size, size), Image.Resampling.LANCZOS)
        arr = np.asarray(cover.convert("RGB"), np.float32) / 255.0
        arr = 0.05 + arr * 0.9  # printed ink never reaches paper white or full black
        cover = Image.fromarray((arr * 255).astype(np.uint8)).convert("RGBA")
    else:
        cover = art
    edge = ImageDraw.Draw(cover)
    edge.rectangle((0, 0, size - 1, size - 1), outline=(236, 226, 208, 255), width=max(1, size // 160))
    return cover, face


def _card(w: int, rng: random.Random) -> Image.Image:
    """The staff-pick card: cream paper, a red header rule, a few lines of 'handwriting' and a strip of tape."""
    cw, ch = round(w * 0.34), round(w * 0.22)
    card = Image.new("RGBA", (cw, ch), (247, 240, 224, 255))
    d = ImageDraw.Draw(card)
    d.rectangle((0, 0, cw, round(ch * 0.18)), fill=(196, 58, 48, 255))
    for k in range(4):
        y = ch * (0.34 + 0.15 * k)
        x, end = cw * 0.08, cw * rng.uniform(0.6, 0.92)
        points = []
        while x < end:  # a wobbling pen line reads as writing from a distance
            points.append((x, y + ch * 0.025 * math.sin(x * 0.35) * rng.uniform(0.4, 1)))
            x += cw * 0.02
        d.line(points, fill=(44, 46, 92, 255), width=max(2, w // 420))
    d.rectangle((cw * 0.36, -2, cw * 0.64, ch * 0.1), fill=(240, 236, 200, 170))
    return card.rotate(rng.uniform(-9, 9), expand=True, resample=Image.Resampling.BICUBIC)


def _shadowed(canvas: Image.Image, layer: Image.Image, at: tuple[int, int], blur: float) -> None:
    """Paste layer at `at` with a soft contact shadow down-right of it."""
    shadow = Image.new("RGBA", layer.size, (12, 8, 4, 0))
    shadow.putalpha(layer.getchannel("A").point(lambda a: a * 150 // 255))
    shadow = shadow.filter(ImageFilter.GaussianBlur(blur))
    offset = max(2, round(blur * 0.6))
    canvas.alpha_composite(shadow, (at[0] + offset, at[1] + offset))
    canvas.alpha_composite(layer, at)


def record_store_flat_lay(width: int, height: int, rng: random.Random, spec: ImageSpec, *,
                          photo: Image.Image | None, art: Image.Image) -> tuple[Image.Image, FaceBox | None]:
    """The still, and the face's box in it when the sleeve carries the artist's photo."""
    base = tuple(round(c * 0.6 + t * 0.4) for c, t in zip(_hex(spec.background_color), (150, 100, 62), strict=True))
    wood = _wood(width, height, base, rng) * _window_light(width, height, rng)
    canvas = Image.fromarray((np.clip(wood, 0, 1) * 255).astype(np.uint8)).convert("RGBA")
    side = round(min(width * SLEEVE_SHARE, height * 0.62))
    blur = max(2.0, side / 40)
    # the next records in the stack, mostly out of frame bottom left
    for k in range(2):
        other = Image.new("RGBA", (side, side), (*rng.choice([(32, 30, 30), (150, 62, 44), (210, 190, 150)]), 255))
        other = other.rotate(rng.uniform(-20, 20), expand=True, resample=Image.Resampling.BICUBIC)
        _shadowed(canvas, other, (round(-side * 0.55 + k * side * 0.12), round(height - side * (0.45 - 0.1 * k))),
                  blur)
    sx = round(width * 0.5 - side * 0.58 + rng.uniform(-0.03, 0.03) * width)
    sy = round(height * 0.40 - side / 2)
    disc = _vinyl(round(side * 0.96), rng.choice([(226, 92, 54), (236, 196, 84), (90, 150, 170), (230, 226, 214)]))
    _shadowed(canvas, disc, (sx + round(side * 0.42), sy + round(side * 0.02)), blur)
    sleeve, face = _sleeve(photo, side, rng, art)
    tilt = rng.uniform(-4, 4)
    turned = sleeve.rotate(tilt, expand=True, resample=Image.Resampling.BICUBIC)
    pad = ((turned.width - side) // 2, (turned.height - side) // 2)
    _shadowed(canvas, turned, (sx - pad[0], sy - pad[1]), blur)
    card = _card(side, rng)
    _shadowed(canvas, card, (sx + round(side * 0.62), sy + round(side * 0.86)), blur * 0.6)
    if face is not None:  # the face turns with the sleeve about its centre (its box grows to hold the turn)
        c = side / 2
        fx, fy = face.x + face.w / 2 - c, face.y + face.h / 2 - c
        a = math.radians(-tilt)
        rx, ry = fx * math.cos(a) - fy * math.sin(a) + c, fx * math.sin(a) + fy * math.cos(a) + c
        grow = 1 + abs(math.sin(a))
        w, h = face.w * grow, face.h * grow
        face = FaceBox(round(sx + rx - w / 2), round(sy + ry - h / 2), round(w), round(h))
    return canvas.convert("RGB"), face


def _hex(colour: str) -> tuple[int, int, int]:
    h = colour.lstrip("#")
    try:
        return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)
    except ValueError:
        return 59, 36, 22
