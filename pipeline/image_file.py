"""The one image-size limit for every image from every source (uploads, URLs, repositories, providers),
checked from the header before any pixel is decoded."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import IO

from PIL import Image

from pipeline.errors import BadInput

# 40 MP is a 7700x5200 photo; past it a picture is refused before decoding (12000x12000 alone would be ~430 MB of
# pixels per step). Pillow's own bomb check uses the same number, so an open anywhere else warns past it and fails
# at twice it, instead of Pillow's default 179 MP.
MAX_IMAGE_PIXELS = 40_000_000
Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS


def too_large(source: str, size: tuple[int, int] | None = None) -> BadInput:
    shown = f" is {size[0]}x{size[1]} pixels;" if size else " is too large;"
    return BadInput(f"{source}{shown} images can be at most {MAX_IMAGE_PIXELS // 1_000_000} megapixels",
                    field=["images"])


def open_image(src: Path | str | IO[bytes], source: str) -> Image.Image:
    """The image opened lazily (Pillow reads the header only) and refused when it has too many pixels.

    The caller decodes (load/verify/convert) and closes it. Unreadable files raise Pillow's own errors.
    """
    try:
        with warnings.catch_warnings():  # Pillow warns between 1x and 2x its limit; here that is refused below
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(src)
    except Image.DecompressionBombError:  # Pillow's check at twice the limit, also from the header alone
        raise too_large(source) from None
    if img.width * img.height > MAX_IMAGE_PIXELS:
        img.close()
        raise too_large(source, img.size)
    return img
