"""The local image maker: frames the face guide 9:16 (or draws a scene), fills the background, grades the colour.

The still is made larger than the output (the caller passes the source size) so the camera can move over it
without softness.
"""

from __future__ import annotations

import math
import os
import random
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageOps

from pipeline.detect_face import detect_face, load_upright
from pipeline.errors import BadInput
from pipeline.models import FaceBox, StyledImage
from pipeline.record_store import SLEEVE_SHARE, record_store_flat_lay
from pipeline.scene_light import add_lighting
from pipeline.templates import GradeSpec, ImageSpec, Template

FACE_MIN_SHARE = 0.20  # the face is zoomed to at least this share of the frame width (when the image allows)
FACE_MAX_SHARE = 0.42  # and never more: a close-up selfie gets room around it (background fills the rest)
FACE_CLOSE_SHARE = 0.40  # zooming in to bring the face to its anchor stops before the face gets this wide
MAX_MAGNIFICATION = 8.0  # a tiny image is not blown up beyond this (for a 1080-wide frame); background fills
GRADE_STRIP_ROWS = 512  # the grade runs in strips so a 2160x3840 still needs little memory


def make_image(face_guide: Path | None, template: Template, *, width: int, height: int, rng: random.Random,
               out_path: Path) -> StyledImage:
    """A graded 9:16 still of width x height at out_path (JPEG, or PNG for a .png name), written atomically."""
    if width < 16 or height < 16:
        raise BadInput(f"The image size {width}x{height} is too small")
    spec = template.image
    if not spec.uses_face_guide or face_guide is None:  # the album on the counter, the artist's photo its sleeve
        photo = load_upright(face_guide, max_side=2 * max(width, height))[0] if face_guide else None
        art = _album_cover(round(min(width * SLEEVE_SHARE, height * 0.62)), rng)
        canvas, face = record_store_flat_lay(width, height, rng, spec, photo=photo, art=art)
    else:
        src, _ = load_upright(face_guide, max_side=3 * max(width, height))
        canvas, face = frame_portrait(src, detect_face(src), width, height, spec)
    canvas = add_lighting(apply_grade(canvas, spec.grade), spec.lighting, rng, face)
    _save_atomically(canvas, out_path)
    return StyledImage(path=out_path, width=width, height=height, face=face, provider="local")


# --- framing -------------------------------------------------------------------------------------------------


def crop_window(src_size: tuple[int, int], face: FaceBox | None, out_size: tuple[int, int],
                anchor: tuple[float, float]) -> tuple[float, float, float, float]:
    """The window (x, y, w, h) of the source that becomes the frame; it may reach past the image's edges."""
    sw, sh = src_size
    width, height = out_size
    aspect = width / height
    cover_w = min(sw, sh * aspect)  # the biggest 9:16 window inside the image
    if face is None:
        cw = cover_w
        fx, fy, ax, ay = sw / 2, sh * 0.42, 0.5, 0.42
    else:
        cw = min(cover_w, face.w / FACE_MIN_SHARE)
        cw = max(cw, face.w / FACE_MAX_SHARE)
        fx, fy = face.x + face.w / 2, face.y + face.h / 2
        ax, ay = anchor
    cw = max(cw, min(width, 1080) / MAX_MAGNIFICATION)
    if face is not None:
        cw = _closer_for_anchor(cw, fx, fy, ax, ay, (sw, sh), aspect, face.w, width)
    ch = cw / aspect
    x = _place(fx - ax * cw, cw, sw)
    y = _place(fy - ay * ch, ch, sh)
    return x, y, cw, ch


def _closer_for_anchor(cw: float, fx: float, fy: float, ax: float, ay: float, src: tuple[int, int],
                       aspect: float, face_w: float, width: int) -> float:
    """Zoom in a little when the image's edge keeps the face far from the anchor (a face near the top of a
    square photo would otherwise sit under the platforms' top bar)."""
    floor = max(face_w / FACE_CLOSE_SHARE, min(width, 1080) / MAX_MAGNIFICATION)
    while cw * 0.94 >= floor:
        ch = cw / aspect
        off_x = fx - _place(fx - ax * cw, cw, src[0]) - ax * cw
        off_y = fy - _place(fy - ay * ch, ch, src[1]) - ay * ch
        if abs(off_x) / cw <= 0.06 and abs(off_y) / ch <= 0.06:
            break
        cw *= 0.94
    return cw


def _place(start: float, size: float, extent: float) -> float:
    """Keep a window inside the image where it fits, else keep the image inside the window."""
    lo, hi = (0.0, extent - size) if size <= extent else (extent - size, 0.0)
    return min(max(start, lo), hi)


def frame_portrait(src: Image.Image, face: FaceBox | None, width: int, height: int,
                   spec: ImageSpec) -> tuple[Image.Image, FaceBox | None]:
    """The image framed 9:16 with the face near the template's anchor, over a filled background."""
    x, y, cw, ch = crop_window(src.size, face, (width, height), spec.face_anchor)
    scale = width / cw
    canvas = background(src, width, height, spec)
    # The part of the source inside the window, resized onto the canvas.
    left, top = max(0.0, x), max(0.0, y)
    right, bottom = min(float(src.width), x + cw), min(float(src.height), y + ch)
    dest = (round((left - x) * scale), round((top - y) * scale),
            round((right - x) * scale), round((bottom - y) * scale))
    size = (max(1, dest[2] - dest[0]), max(1, dest[3] - dest[1]))
    part = src.resize(size, Image.Resampling.LANCZOS, box=(left, top, right, bottom))
    if scale > 1.3:  # upscaled: restore some edge contrast
        part = part.filter(ImageFilter.UnsharpMask(radius=max(1.0, scale * 0.8), percent=45, threshold=2))
    mask = _feathered_mask(size, feather=max(2, round(min(width, height) * 0.03)),
                           edges=(dest[0] > 0, dest[1] > 0, dest[2] < width, dest[3] < height))
    canvas.paste(part, dest[:2], mask)
    if face is None:
        return canvas, None
    moved = FaceBox(x=round((face.x - x) * scale), y=round((face.y - y) * scale),
                    w=round(face.w * scale), h=round(face.h * scale))
    return canvas, moved


def _feathered_mask(size: tuple[int, int], feather: int, edges: tuple[bool, bool, bool, bool]) -> Image.Image:
    """Opaque, fading to clear over `feather` px on the edges that lie inside the frame (so no hard seam shows)."""
    w, h = size
    ramp_x = np.ones(w, dtype=np.float32)
    ramp_y = np.ones(h, dtype=np.float32)
    fx, fy = min(feather, w // 2), min(feather, h // 2)
    if fx > 0:
        r = (np.arange(fx, dtype=np.float32) + 0.5) / fx
        if edges[0]:
            ramp_x[:fx] = np.minimum(ramp_x[:fx], r)
        if edges[2]:
            ramp_x[w - fx:] = np.minimum(ramp_x[w - fx:], r[::-1])
    if fy > 0:
        r = (np.arange(fy, dtype=np.float32) + 0.5) / fy
        if edges[1]:
            ramp_y[:fy] = np.minimum(ramp_y[:fy], r)
        if edges[3]:
            ramp_y[h - fy:] = np.minimum(ramp_y[h - fy:], r[::-1])
    alpha = np.outer(_smooth(ramp_y), _smooth(ramp_x))
    return Image.fromarray((alpha * 255 + 0.5).astype(np.uint8), "L")


def _smooth(x: np.ndarray) -> np.ndarray:
    return x * x * (3 - 2 * x)


def background(src: Image.Image, width: int, height: int, spec: ImageSpec) -> Image.Image:
    """What shows where the image does not reach: a blurred copy of it, a gradient, or a colour."""
    if spec.background == "blur":
        small_w = max(8, width // 12)
        small = ImageOps.fit(src, (small_w, max(8, round(small_w * height / width))), Image.Resampling.BILINEAR)
        small = small.filter(ImageFilter.GaussianBlur(radius=max(1.5, small_w / 40)))
        arr = np.asarray(small, dtype=np.float32) / 255.0
        luma = arr @ np.array([0.2126, 0.7152, 0.0722], dtype=np.float32)
        arr = (luma[..., None] + (arr - luma[..., None]) * 0.8) * 0.72  # quieter than the subject
        small = Image.fromarray(np.clip(arr * 255 + 0.5, 0, 255).astype(np.uint8))
        return small.resize((width, height), Image.Resampling.BICUBIC)
    colour = _rgb(spec.background_color)
    if spec.background == "gradient":
        return gradient(width, height, _mix(colour, (255, 255, 255), 0.18), _mix(colour, (0, 0, 0), 0.45))
    return gradient(width, height, _mix(colour, (255, 255, 255), 0.05), _mix(colour, (0, 0, 0), 0.12))


def gradient(width: int, height: int, top: tuple[int, int, int], bottom: tuple[int, int, int]) -> Image.Image:
    """A vertical gradient, dithered so the encoder does not turn it into bands."""
    t = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    arr = np.asarray(top, dtype=np.float32) * (1 - t) + np.asarray(bottom, dtype=np.float32) * t
    arr = np.broadcast_to(arr, (height, width, 3))
    noise = np.random.default_rng(0).uniform(-0.8, 0.8, size=(height, width, 1)).astype(np.float32)
    return Image.fromarray(np.clip(arr + noise + 0.5, 0, 255).astype(np.uint8))


def _rgb(hex_colour: str) -> tuple[int, int, int]:
    h = hex_colour.lstrip("#")
    if len(h) == 3:
        h = "".join(c * 2 for c in h)
    try:
        return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)
    except ValueError:
        return 16, 16, 20


def _mix(a: tuple[int, int, int], b: tuple[int, int, int], amount: float) -> tuple[int, int, int]:
    return tuple(round(x + (y - x) * amount) for x, y in zip(a, b, strict=True))  # type: ignore[return-value]


# --- grade ---------------------------------------------------------------------------------------------------


def apply_grade(img: Image.Image, grade: GradeSpec) -> Image.Image:
    """Brightness, contrast, saturation, warmth and vignette, in float, strip by strip."""
    arr = np.asarray(img.convert("RGB"))
    height, width = arr.shape[:2]
    out = np.empty_like(arr)
    luma_w = np.array([0.2126, 0.7152, 0.0722], dtype=np.float32)
    gains = np.array([1 + 0.10 * grade.warmth, 1 + 0.015 * grade.warmth, 1 - 0.10 * grade.warmth], dtype=np.float32)
    xs = (np.arange(width, dtype=np.float32) + 0.5) / width - 0.5
    for top in range(0, height, GRADE_STRIP_ROWS):
        x = arr[top:top + GRADE_STRIP_ROWS].astype(np.float32) / 255.0
        x = x * gains + grade.brightness
        x = (x - 0.5) * grade.contrast + 0.5
        luma = (x @ luma_w)[..., None]
        x = luma + (x - luma) * grade.saturation
        if grade.vignette > 0:
            ys = (np.arange(top, top + x.shape[0], dtype=np.float32) + 0.5) / height - 0.5
            # elliptical distance, 0 at the centre, ~1 at the corners of a 9:16 frame
            d = np.sqrt((xs[None, :] * 1.25) ** 2 + (ys[:, None] * 1.1) ** 2) / 0.78
            fall = np.clip((d - 0.45) / 0.75, 0, 1)
            x = x * (1 - grade.vignette * 0.75 * (fall * fall * (3 - 2 * fall)))[..., None]
        out[top:top + GRADE_STRIP_ROWS] = np.clip(x * 255 + 0.5, 0, 255).astype(np.uint8)
    return Image.fromarray(out)


# --- a scene without a face ------------------------------------------------------------------------------------


def _album_cover(size: int, rng: random.Random) -> Image.Image:
    """Abstract cover art: a sunset gradient, a sun, horizon stripes (no words, no logos)."""
    palettes = [((240, 120, 70), (70, 30, 90), (255, 220, 140)), ((40, 90, 140), (230, 150, 120), (250, 240, 210)),
                ((20, 20, 24), (180, 40, 60), (240, 230, 220)), ((90, 140, 110), (240, 210, 150), (40, 50, 60))]
    top, bottom, sun = rng.choice(palettes)
    cover = gradient(size, size, top, bottom).convert("RGBA")
    d = ImageDraw.Draw(cover)
    r = size * rng.uniform(0.18, 0.26)
    cx, cy = size * rng.uniform(0.35, 0.65), size * rng.uniform(0.35, 0.5)
    d.ellipse((cx - r, cy - r, cx + r, cy + r), fill=(*sun, 255))
    for k in range(6):
        yk = size * (0.62 + k * 0.055)
        d.rectangle((0, yk, size, yk + size * (0.012 + 0.006 * k)), fill=(*bottom, 255))
    angle = rng.uniform(0, math.tau)
    d.line((size * 0.08, size * 0.9, size * (0.5 + 0.3 * math.cos(angle)), size * 0.9), fill=(*sun, 200),
           width=max(2, size // 120))
    d.rectangle((0, 0, size - 1, size - 1), outline=(20, 16, 14, 255), width=max(1, size // 300))
    return cover


# --- output --------------------------------------------------------------------------------------------------


def _save_atomically(img: Image.Image, out_path: Path) -> None:
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.name}.{os.getpid()}.tmp")
    try:
        if out_path.suffix.lower() == ".png":
            img.save(tmp, "PNG", optimize=False)
        else:
            img.save(tmp, "JPEG", quality=93, subsampling=0, optimize=True)
        os.replace(tmp, out_path)
    finally:
        tmp.unlink(missing_ok=True)
