"""Where the caption and the lyrics go and how big: inside the platform's safe zone, clear of the face's box
on screen in every segment, never on each other, and never smaller than the legibility floor (a caption that
does not fit pages through timed screens instead of shrinking)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from PIL import ImageFont

from pipeline.caption_ass import FALLBACK_FONT, _covers, _split_long_words, clean_text, wrap
from pipeline.edit.frame_format import SAFE_ZONES
from pipeline.edit.timeline import Box

CAP_HEIGHT_FLOOR = 34  # px of capital-letter height at 720 px of the frame's shorter side (legible on a phone)
LYRIC_SCALE = 1.12  # lyrics a little larger than the caption: they are the song, read at a glance
LINE_ADVANCE = 1.22  # line spacing as a share of the em
FACE_MARGIN = 0.03  # of the shorter side, kept clear around the face
MAX_CAPTION_LINES = 3  # on one screen
MAX_LYRIC_LINES = 2
TEXT_GAP = 0.5  # of the lyrics' em, kept between the lyrics and the caption: two blocks, not one run of text
MAX_PAGES = 3  # a caption longer than this many screens at the floor is shown in more (rare: long + big face)


@lru_cache(maxsize=8)
def cap_ratio(font_file: Path) -> float:
    """Capital height as a share of the em (Inter 0.73, Bebas Neue 0.70)."""
    font = ImageFont.truetype(str(font_file), 200)
    top, bottom = font.getbbox("H")[1], font.getbbox("H")[3]
    return (bottom - top) / 200


@lru_cache(maxsize=64)
def font_at(font_file: Path, em: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(font_file), max(1, em))


def font_for(text: str, font_file: Path) -> tuple[Path, str]:
    """The font to set `text` in (the template's, or the wide-coverage fallback when the text needs glyphs only
    it has, e.g. Arabic or Hebrew) and the text without what neither can show (emoji): a missing-glyph box
    looks broken."""
    fallback = font_file.parent / FALLBACK_FONT
    chars = set(text)
    if all(_covers(font_file, ch) for ch in chars) or not fallback.is_file():
        return font_file, text
    font = fallback if any(not _covers(font_file, ch) and _covers(fallback, ch) for ch in chars) else font_file
    return font, "".join(ch for ch in text if _covers(font, ch))


def floor_em(font_file: Path, width: int, height: int) -> int:
    """The smallest em whose capitals are CAP_HEIGHT_FLOOR px tall at 720 px, scaled with the frame."""
    return int(-(-CAP_HEIGHT_FLOOR * min(width, height) / 720 // cap_ratio(font_file)))


def line_height(em: int) -> int:
    return round(em * LINE_ADVANCE)


def safe_box(aspect: str, width: int, height: int) -> Box:
    zone = SAFE_ZONES[aspect]
    x, y = math.ceil(width * zone.left), math.ceil(height * zone.top)
    return Box(x, y, math.floor(width * (1 - zone.right)) - x, math.floor(height * (1 - zone.bottom)) - y)


def free_regions(safe: Box, keep_out: Box | None) -> list[Box]:
    """The parts of the safe box clear of keep_out: the bands above and below it, the columns beside it."""
    if keep_out is None or not keep_out.overlaps(safe):
        return [safe]
    regions = [
        Box(safe.x, safe.y, safe.w, keep_out.y - safe.y),  # above
        Box(safe.x, keep_out.bottom, safe.w, safe.bottom - keep_out.bottom),  # below
        Box(safe.x, safe.y, keep_out.x - safe.x, safe.h),  # left
        Box(keep_out.right, safe.y, safe.right - keep_out.right, safe.h),  # right
    ]
    return [r for r in regions if r.w > 0 and r.h > 0]


Measure = Callable[[str], float]


@lru_cache(maxsize=8192)
def text_length(font_file: Path, em: int, text: str) -> float:
    """Width in px of text at em (shaped by raqm, ~0.15 ms a call: wrapping asks for the same runs often)."""
    return font_at(font_file, em).getlength(text)


def measurer(font_file: Path, em: int) -> Measure:
    return lambda text: text_length(font_file, em, text)


def wrap_text(text: str, font_file: Path, em: int, width: int, uppercase: bool = False) -> list[str]:
    paragraphs = clean_text(text, uppercase)
    return wrap(paragraphs, measurer(font_file, em), width) if paragraphs else []


@dataclass(frozen=True)
class TextArea:
    """A box for one kind of text, the em it is set at and how many lines it holds."""

    box: Box
    em: int
    lines: int


@dataclass(frozen=True)
class TextLayout:
    caption: TextArea | None
    lyrics: TextArea | None
    caption_pages: tuple[tuple[str, ...], ...] = ()


def _take(region: Box, height: int, from_top: bool) -> tuple[Box, Box]:
    """A slice of `height` px off one end of the region, and what is left."""
    if from_top:
        return Box(region.x, region.y, region.w, height), Box(region.x, region.y + height, region.w,
                                                             region.h - height)
    return (Box(region.x, region.bottom - height, region.w, height),
            Box(region.x, region.y, region.w, region.h - height))


def _order(regions: Sequence[Box], prefer: str, keep_out: Box | None) -> list[Box]:
    """Regions by preference: the template's placement first (top / bottom), then by area."""
    def score(r: Box) -> tuple[int, int]:
        is_above = keep_out is not None and r.bottom <= keep_out.y
        is_below = keep_out is not None and r.y >= keep_out.bottom
        wide = r.w * 2 >= max(1, max(x.w for x in regions))
        wanted = (prefer == "top" and is_above) or (prefer != "top" and is_below) or keep_out is None
        return (int(wide) * 2 + int(wanted), r.w * r.h)
    return sorted(regions, key=score, reverse=True)


def layout_text(*, caption: str, lyric_lines: Sequence[str], font_file: Path, lyric_font: Path | None = None,
                aspect: str, width: int, height: int, keep_out: Box | None, placement: str = "bottom",
                uppercase: bool = False, max_em: int | None = None) -> TextLayout:
    """Boxes for the caption and the lyrics (either may be absent) clear of keep_out (the face, grown by a
    margin) and of each other. The lyrics take the first fitting region (two lines next to the face); the
    caption the next one, or the rest of the lyrics' region, at the largest em up to max_em that fits on one
    screen, else at the floor in pages."""
    lyric_font = lyric_font or font_file
    safe = safe_box(aspect, width, height)
    margin = round(FACE_MARGIN * min(width, height))
    guard = keep_out.grown(margin, width, height) if keep_out is not None else None
    regions = _order(free_regions(safe, guard), placement, guard)
    floor = floor_em(font_file, width, height)
    lyrics_area: TextArea | None = None
    if lyric_lines:
        lyric_floor = floor_em(lyric_font, width, height)
        # a little larger than the caption where there is room; at the floor where only that fits (a big face
        # in a landscape frame leaves a strip), rather than no lyrics
        for em in dict.fromkeys((max(lyric_floor, round(floor * LYRIC_SCALE)), lyric_floor)):
            lyrics_area, regions = _lyrics_in(regions, em, safe, guard, placement)
            if lyrics_area is not None:
                break
    if not caption.strip():
        return TextLayout(caption=None, lyrics=lyrics_area)
    top_em = max(floor, max_em or floor)
    best: tuple[int, Box, list[str], int] | None = None  # fewest screens at the floor: (screens, region, ...)
    for em in [*range(top_em, floor, -2), floor]:
        for region in regions:
            fits = min(MAX_CAPTION_LINES, region.h // line_height(em))
            if fits < 1 or region.w < 4 * em:
                continue
            lines = wrap_text(caption, font_file, em, region.w, uppercase)
            if len(lines) <= fits:  # the whole caption on one screen: the largest size that allows it
                return _caption_in(region, em, lines, fits, placement, guard, lyrics_area)
            screens = -(-len(lines) // fits)
            if em == floor and (best is None or screens < best[0]):
                best = (screens, region, lines, fits)
    if best is None:
        return TextLayout(caption=None, lyrics=lyrics_area)  # nowhere clear of the face: none rather than on it
    _, region, lines, fits = best
    return _caption_in(region, floor, lines, fits, placement, guard, lyrics_area)


def _lyrics_in(regions: list[Box], em: int, safe: Box, guard: Box | None,
               placement: str) -> tuple[TextArea | None, list[Box]]:
    """Two lyric lines at `em` in the first region that holds them, and the regions left for the caption."""
    need = line_height(em) * MAX_LYRIC_LINES
    for n, region in enumerate(regions):
        if region.h >= need and region.w >= min(safe.w, 8 * em):
            below_face = guard is not None and region.y >= guard.bottom
            from_top = below_face or guard is None
            box, rest = _take(region, need, from_top=from_top)
            _, rest = _take(rest, min(rest.h, round(TEXT_GAP * em)), from_top=from_top)  # the gap to the caption
            left = [*regions[:n], rest, *regions[n + 1:]] if rest.h > 0 else [*regions[:n], *regions[n + 1:]]
            return TextArea(box=box, em=em, lines=MAX_LYRIC_LINES), _order(left, placement, guard)
    return None, regions


def _caption_in(region: Box, em: int, lines: list[str], per_page: int, placement: str, guard: Box | None,
                lyrics_area: TextArea | None) -> TextLayout:
    """The caption's box in `region` (carved out of what the lyrics left, so the two never overlap; below the
    face it sits low) and its pages of per_page lines."""
    pages = tuple(tuple(lines[i:i + per_page]) for i in range(0, len(lines), per_page))
    used = line_height(em) * min(per_page, len(lines))
    from_top = placement == "top" if guard is None else region.y < guard.bottom
    box, _ = _take(region, used, from_top=from_top)
    return TextLayout(caption=TextArea(box=box, em=em, lines=per_page), lyrics=lyrics_area, caption_pages=pages)


def split_for_screen(words: Sequence[str], font_file: Path, em: int, width: int, max_lines: int = MAX_LYRIC_LINES,
                     uppercase: bool = False) -> list[list[int]]:
    """Word indices of each screen of a lyric line: as many words as fit in max_lines at this em."""
    measure = measurer(font_file, em)
    shown = [w.upper() if uppercase else w for w in words]
    pieces = _split_long_words(shown, measure, width)
    if len(pieces) != len(shown):  # a word wider than the box: one word per screen, it will be clipped
        return [[i] for i in range(len(words))]
    screens: list[list[int]] = []
    current: list[int] = []
    for i in range(len(shown)):
        trial = [*current, i]
        if current and len(wrap([" ".join(shown[j] for j in trial)], measure, width)) > max_lines:
            screens.append(current)
            current = [i]
        else:
            current = trial
    if current:
        screens.append(current)
    return screens
