"""Find the main face in an image, offline, with the Haar cascade that ships inside OpenCV."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from pipeline.errors import BadInput
from pipeline.image_file import open_image
from pipeline.models import FaceBox

DETECT_MAX_SIDE = 1024  # Haar detection is slow and no better on huge images; faces are found on a copy this size
MIN_FACE_FRACTION = 0.06  # ignore "faces" smaller than this share of the shorter side (texture false positives)
_CASCADE = "haarcascade_frontalface_default.xml"


@lru_cache(maxsize=1)
def _cascade() -> cv2.CascadeClassifier:
    classifier = cv2.CascadeClassifier(str(Path(cv2.data.haarcascades) / _CASCADE))
    if classifier.empty():
        raise RuntimeError(f"OpenCV's {_CASCADE} could not be loaded")
    return classifier


def load_upright(image: Path | Image.Image, max_side: int | None = None) -> tuple[Image.Image, tuple[int, int]]:
    """The image as RGB, turned the way its EXIF says, optionally shrunk to max_side, and its full upright size.

    A JPEG is decoded at 1/2..1/8 scale when that is enough (draft), so huge photos stay cheap.
    """
    if isinstance(image, Image.Image):
        img = image
        full = _upright_size(img)
    else:
        try:
            img = open_image(image, Path(image).name)  # over the pixel limit: BadInput before decoding
            full = _upright_size(img)
            if max_side:
                img.draft("RGB", (max_side, max_side))
            img.load()
        except (UnidentifiedImageError, OSError, Image.DecompressionBombError, ValueError, SyntaxError) as exc:
            raise BadInput(f"{Path(image).name} is not an image that can be read ({exc.__class__.__name__})") from None
    img = _flatten(ImageOps.exif_transpose(img))
    if max_side and max(img.size) > max_side:
        img = img.copy() if img is image else img
        img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return img, full


def _upright_size(img: Image.Image) -> tuple[int, int]:
    orientation = img.getexif().get(0x0112, 1)
    return (img.height, img.width) if orientation in (5, 6, 7, 8) else img.size


def _flatten(img: Image.Image) -> Image.Image:
    """RGB from any mode: transparency goes onto mid grey (neutral for detection and for framing)."""
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        base = Image.new("RGBA", rgba.size, (128, 128, 128, 255))
        return Image.alpha_composite(base, rgba).convert("RGB")
    if img.mode == "I;16" or img.mode.startswith("I;16") or img.mode in ("I", "F"):
        arr = np.asarray(img, dtype=np.float32)
        hi = float(arr.max()) or 1.0
        return Image.fromarray(np.clip(arr / hi * 255, 0, 255).astype(np.uint8)).convert("RGB")
    return img.convert("RGB") if img.mode != "RGB" else img


def detect_face(image: Path | Image.Image) -> FaceBox | None:
    """The largest frontal face in `image` (in its upright pixels), or None when there is none."""
    small, size = load_upright(image, max_side=DETECT_MAX_SIDE)
    grey = cv2.equalizeHist(np.asarray(small.convert("L")))
    min_side = max(20, int(min(small.size) * MIN_FACE_FRACTION))
    faces = _cascade().detectMultiScale(grey, scaleFactor=1.1, minNeighbors=6, minSize=(min_side, min_side))
    if len(faces) == 0:
        return None
    x, y, w, h = max((tuple(int(v) for v in f) for f in faces), key=lambda f: f[2] * f[3])
    sx, sy = size[0] / small.size[0], size[1] / small.size[1]
    return FaceBox(x=round(x * sx), y=round(y * sy), w=round(w * sx), h=round(h * sy))
