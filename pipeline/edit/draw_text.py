"""Text drawn once per state with Pillow (shaped by raqm): caption pages, and lyric lines with the word being
sung lit; each state is one straight-alpha RGBA picture of its box."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from pipeline.caption_ass import wrap
from pipeline.edit.text_layout import TextArea, font_at, line_height, measurer
from pipeline.edit.text_track import TextState, TextTrack
from pipeline.models import LyricLine

UPCOMING_ALPHA = 0.55  # words not yet sung, in karaoke mode


@dataclass(frozen=True)
class TextLook:
    font_file: Path
    colour: str = "#FFFFFF"
    outline_colour: str = "#000000"
    highlight: str = "#FFD84D"  # the word being sung
    uppercase: bool = False


def _rgb(hex_colour: str) -> tuple[int, int, int]:
    h = hex_colour.lstrip("#")
    h = "".join(c * 2 for c in h) if len(h) == 3 else h
    try:
        return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)
    except ValueError:
        return 255, 255, 255


def _positions(lines: Sequence[Sequence[str]], area: TextArea,
               look: TextLook) -> list[list[tuple[float, float, float]]]:
    """(x, y, width) of each word, rows centred in the box: where draw_lines puts them."""
    measure = measurer(look.font_file, area.em)
    space = measure(" ")
    advance = line_height(area.em)
    top = (area.box.h - advance * len(lines)) / 2 + advance / 2
    rows = []
    for n, words in enumerate(lines):
        widths = [measure(w) for w in words]
        x = (area.box.w - (sum(widths) + space * (len(words) - 1))) / 2
        row = []
        for w in widths:
            row.append((x, top + n * advance, w))
            x += w + space
        rows.append(row)
    return rows


def draw_lines(lines: Sequence[Sequence[tuple[str, str, float]]], area: TextArea, look: TextLook) -> np.ndarray:
    """RGBA of area.box with `lines` (each a list of (word, colour, opacity)) centred, outlined and shadowed."""
    box = area.box
    font = font_at(look.font_file, area.em)
    stroke = max(2, round(area.em * 0.08))
    fill = Image.new("RGBA", (box.w, box.h), (0, 0, 0, 0))
    outline = Image.new("L", (box.w, box.h), 0)
    draw_fill, draw_outline = ImageDraw.Draw(fill), ImageDraw.Draw(outline)
    places = _positions([[w for w, _, _ in words] for words in lines], area, look)
    for words, row in zip(lines, places, strict=True):
        for (word, colour, opacity), (x, y, _) in zip(words, row, strict=True):
            draw_outline.text((x, y), word, font=font, fill=round(255 * opacity), anchor="lm",
                              stroke_width=stroke, stroke_fill=round(255 * opacity))
            draw_fill.text((x, y), word, font=font, fill=(*_rgb(colour), round(255 * opacity)), anchor="lm")
    shadow = outline.filter(ImageFilter.GaussianBlur(stroke))
    rgba = np.zeros((box.h, box.w, 4), dtype=np.float32)
    rgba[..., :3] = _rgb(look.outline_colour)
    rgba[..., 3] = np.maximum(np.asarray(outline, np.float32), np.asarray(shadow, np.float32) * 0.6)
    ink = np.asarray(fill, np.float32)
    a = ink[..., 3:4] / 255.0
    rgba[..., :3] = rgba[..., :3] * (1 - a) + ink[..., :3] * a
    rgba[..., 3] = np.maximum(rgba[..., 3], ink[..., 3])
    return np.clip(rgba + 0.5, 0, 255).astype(np.uint8)


def _word_cells(rows: Sequence[Sequence[int]], words: Sequence[str], area: TextArea,
                look: TextLook) -> dict[int, tuple[slice, slice]]:
    """The part of the box each word owns (to the middle of the spaces and between the rows), so a state is the
    line's drawn variants cut and joined by words."""
    space = measurer(look.font_file, area.em)(" ")
    half = line_height(area.em) / 2
    places = _positions([[words[i] for i in row] for row in rows], area, look)
    cells: dict[int, tuple[slice, slice]] = {}
    for r, (row, place) in enumerate(zip(rows, places, strict=True)):
        y0 = 0 if r == 0 else round(place[0][1] - half)
        y1 = area.box.h if r == len(rows) - 1 else round(place[0][1] + half)
        for k, (i, (x, _, w)) in enumerate(zip(row, place, strict=True)):
            x0 = 0 if k == 0 else round(x - space / 2)
            x1 = area.box.w if k == len(row) - 1 else round(x + w + space / 2)
            cells[i] = (slice(y0, y1), slice(x0, x1))
    return cells


def _on_frame(t: float, fps: int) -> float:
    return round(t * fps) / fps


def caption_track(pages: Sequence[Sequence[str]], area: TextArea, look: TextLook, *, duration: float, fps: int,
                  fade: float) -> TextTrack:
    """The caption's pages, one after another over the clip, each on screen for its share of the words."""
    counts = [max(1, sum(len(line.split()) for line in page)) for page in pages]
    total = sum(counts)
    states, t = [], 0.0
    for n, (page, count) in enumerate(zip(pages, counts, strict=True)):
        end = duration if n == len(pages) - 1 else _on_frame(t + duration * count / total, fps)
        words = [[(w, look.colour, 1.0) for w in line.split(" ")] for line in page]
        states.append(TextState(start=t, end=end, ink=draw_lines(words, area, look)))
        t = end
    return TextTrack(kind="caption", box=area.box, states=tuple(states), fade=fade)


def lyric_track(lines: Sequence[LyricLine], area: TextArea, look: TextLook, *, mode: str, duration: float,
                fps: int) -> TextTrack:
    """A state per displayed lyric line (mode "line") or per sung word (mode "word", the karaoke), each starting
    on the frame nearest its time. Lines are already split to fit the area (at most area.lines lines). A line is
    drawn three times (to come, sung, being sung) and each word state is cut from those, not drawn again."""
    measure = measurer(look.font_file, area.em)
    states: list[TextState] = []
    for line in lines:
        words = [w.text.upper() if look.uppercase else w.text for w in line.words]
        rows = _rows(words, measure, area.box.w)
        start, end = _on_frame(line.start, fps), min(duration, _on_frame(line.end, fps))

        def drawn(colour: str, opacity: float, rows: list[list[int]] = rows,
                  words: list[str] = words) -> np.ndarray:
            return draw_lines([[(words[i], colour, opacity) for i in row] for row in rows], area, look)

        sung = drawn(look.colour, 1.0)
        if mode != "word":
            states.append(TextState(start=start, end=end, ink=sung))
            continue
        upcoming, lit_word = drawn(look.colour, UPCOMING_ALPHA), drawn(look.highlight, 1.0)
        cells = _word_cells(rows, words, area, look)
        times = [_on_frame(w.start, fps) for w in line.words]
        cuts = sorted({start, *(t for t in times if start < t < end)})
        for k, t0 in enumerate(cuts):
            t1 = cuts[k + 1] if k + 1 < len(cuts) else end
            lit = sum(1 for t in times if t <= t0 + 1e-6)
            ink = upcoming.copy()
            for i in range(min(lit, len(words))):
                ys, xs = cells.get(i, (slice(0, 0), slice(0, 0)))
                ink[ys, xs] = (lit_word if i == lit - 1 else sung)[ys, xs]
            states.append(TextState(start=t0, end=t1, ink=ink))
    states = [s for s in states if s.end > s.start]
    return TextTrack(kind="lyrics", box=area.box, states=tuple(states))


def _rows(words: Sequence[str], measure: Callable[[str], float], width: int) -> list[list[int]]:
    """Word indices per row of the wrapped line (balanced, as the caption wraps); a word wider than the box, which
    the wrap would cut in pieces, keeps a row of its own instead."""
    text_rows = wrap([" ".join(words)], measure, width) if words else []
    counts = [len(row.split(" ")) for row in text_rows]
    if sum(counts) != len(words):  # the wrap cut a word: rows by whole words
        counts, width_used = [], None
        for word in words:
            if counts and width_used is not None and measure(f"{width_used} {word}") <= width:
                counts[-1] += 1
                width_used = f"{width_used} {word}"
            else:
                counts.append(1)
                width_used = word
    rows, i = [], 0
    for n in counts:
        rows.append(list(range(i, i + n)))
        i += n
    return [row for row in rows if row]
