"""The output formats (aspect ratios), their frame sizes and the platforms' interface zones in each."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, get_args

AspectRatio = Literal["9:16", "4:5", "1:1", "16:9"]
ASPECT_RATIOS: tuple[AspectRatio, ...] = get_args(AspectRatio)
# Frame size of each format at the default scale (settings' 720 px 9:16 width); upscale doubles them.
FRAME_SIZES: dict[str, tuple[int, int]] = {"9:16": (720, 1280), "4:5": (864, 1080), "1:1": (1080, 1080),
                                           "16:9": (1280, 720)}


@dataclass(frozen=True)
class SafeZone:
    """Shares of the frame the platforms' buttons, names and descriptions cover; text stays inside the rest."""

    top: float
    bottom: float
    left: float
    right: float


# 9:16 fills a phone screen, so its overlays (caption, buttons) cover the most: bottom ~20 %, right ~15 %.
# The other formats sit inside the same phone UI with bars around them, so less of their own frame is covered.
SAFE_ZONES: dict[str, SafeZone] = {
    "9:16": SafeZone(top=0.12, bottom=0.20, left=0.05, right=0.15),
    "4:5": SafeZone(top=0.08, bottom=0.15, left=0.05, right=0.12),
    "1:1": SafeZone(top=0.06, bottom=0.12, left=0.05, right=0.10),
    "16:9": SafeZone(top=0.08, bottom=0.16, left=0.04, right=0.08),
}


def nearest_ratio(width: int, height: int, options: Iterable[str]) -> str | None:
    """The option ("16:9" or "1536x1024") whose shape is nearest the frame's (by the log of the ratio, so 4:5 is
    as near 1:1 as 5:4 is); None when there is none."""
    def shape(option: str) -> float | None:
        parts = re.split(r"[:x]", option)
        try:
            a, b = float(parts[0]), float(parts[1])
        except (ValueError, IndexError):
            return None  # "auto" and the like
        return math.log(a / b) if a > 0 and b > 0 else None

    frame = math.log(width / height)
    shaped = [(abs(s - frame), o) for o in options if (s := shape(o)) is not None]
    return min(shaped)[1] if shaped else None


def is_default_frame(width: int, height: int) -> bool:
    """A 9:16 frame: remote models get the configured aspect (REMOTE_ASPECT_RATIO, OPENAI_IMAGE_SIZE) as set."""
    return abs(width / height - 9 / 16) < 0.01


def _even(value: float) -> int:
    return max(2, int(round(value / 2)) * 2)


def frame_size(aspect: str, base_width: int = 720, base_height: int = 1280, *,
               upscale: bool = False) -> tuple[int, int]:
    """The output frame of `aspect`: the 9:16 size is the settings' own (tests shrink it); the others scale with
    it by the same factor, and upscale doubles."""
    scale = 2 if upscale else 1
    if aspect == "9:16":
        return base_width * scale, base_height * scale
    w, h = FRAME_SIZES[aspect]
    factor = base_width / FRAME_SIZES["9:16"][0] * scale
    return _even(w * factor), _even(h * factor)
