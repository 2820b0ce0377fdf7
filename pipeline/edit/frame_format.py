"""The output formats (aspect ratios), their frame sizes and the platforms' interface zones in each."""

from __future__ import annotations

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
