"""The caption as a libass subtitle script: sized to fit, wrapped by measuring the real font, kept out of the
platforms' UI zones, and escaped so any text renders literally (no override tags from the user).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from PIL import Image, ImageChops, ImageFont

from pipeline.models import CaptionStyle
from pipeline.templates import Template

# Share of the frame the platforms' buttons and texts cover (TikTok, Reels, Shorts): keep captions out.
SAFE_TOP = 0.12
SAFE_BOTTOM = 0.20
SAFE_LEFT = 0.05
SAFE_RIGHT = 0.15
LIBASS_SLACK = 0.02  # of the frame's width: how much wider libass sets a line than Pillow measures it
MAX_EDGE_LINES = 3  # more lines than this at the top or bottom move the caption to the centre
LINE_SPACING = 1.12  # line advance as a share of the font size (libass' default line height is close to this)
FALLBACK_FONT = "DejaVuSans-Bold.ttf"  # wide Unicode coverage (Arabic, Hebrew, Cyrillic, Greek, symbols)
WORD_JOINER = "\u2060"  # invisible; splits `\N`, `\h`, `\{` so libass shows them as typed


Measure = Callable[[str], float]  # text -> width in pixels


@dataclass(frozen=True)
class _Font:
    path: Path
    name: str
    em_per_size: float  # PIL em size for one unit of ASS font size (libass sizes fonts by ascent + descent)


@lru_cache(maxsize=16)
def _font_info(path: Path) -> _Font:
    ref = ImageFont.truetype(str(path), 1000)
    ascent, descent = ref.getmetrics()
    family, style = ref.getname()
    # libass matches the legacy family or the full name, not the typographic family FreeType reports: Inter
    # ExtraBold's family is "Inter" to FreeType but "Inter Extra Bold" to libass, which then fell back to DejaVu.
    # "family style" is the full name of every font we ship (and of most fonts).
    name = family if (style or "Regular") in ("Regular", "Book", "Normal") else f"{family} {style}"
    return _Font(path=path, name=name, em_per_size=1000 / max(1, ascent + descent))


@lru_cache(maxsize=32)
def _pil_font(path: Path, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(path), max(1, size))


def caption_style_from_template(template: Template, fonts_dir: Path) -> CaptionStyle:
    """The template's caption style with its font resolved in fonts_dir (the fallback font when it is missing)."""
    spec = template.caption.style
    font_file = fonts_dir / Path(spec.font).name
    if not font_file.is_file():
        font_file = fonts_dir / FALLBACK_FONT
    return CaptionStyle(
        font_file=font_file,
        font_name=_font_info(font_file).name,
        max_font_size=spec.max_size,
        min_font_size=min(spec.min_size, spec.max_size),
        primary_colour=spec.primary_colour,
        outline_colour=spec.outline_colour,
        outline=spec.outline,
        placement=spec.placement,
        uppercase=spec.uppercase,
    )


# --- text cleaning and coverage ---------------------------------------------------------------------------------


def clean_text(text: str, uppercase: bool = False) -> list[str]:
    """Paragraphs of the caption: control characters gone, whitespace collapsed, the user's newlines kept."""
    text = unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n"))
    if uppercase:
        text = text.upper()
    kept = []
    for ch in text:
        if ch == "\n" or ch == WORD_JOINER:
            kept.append(ch)
        elif ch.isspace():
            kept.append(" ")
        elif unicodedata.category(ch) in ("Cc", "Cs", "Co", "Cn"):
            continue
        else:
            kept.append(ch)
    paragraphs = [re.sub(r" +", " ", p).strip() for p in "".join(kept).split("\n")]
    return [p for p in paragraphs if p]


@lru_cache(maxsize=4096)
def _covers(path: Path, ch: str) -> bool:
    """Whether the font has a glyph for ch (its rendering differs from the font's missing-glyph box)."""
    if ch.isspace() or unicodedata.category(ch) in ("Mn", "Me", "Cf"):
        return True
    font = _pil_font(path, 48)
    try:
        missing = font.getmask("\U0010fffd")
        glyph = font.getmask(ch)
    except (OSError, ValueError):
        return False
    if glyph.size != missing.size:
        return True
    a = Image.frombytes("L", glyph.size, bytes(glyph)) if glyph.size[0] and glyph.size[1] else None
    b = Image.frombytes("L", missing.size, bytes(missing)) if missing.size[0] and missing.size[1] else None
    if a is None or b is None:
        return a is not None or b is None
    return ImageChops.difference(a, b).getbbox() is not None


def _runs(text: str, primary: Path, fallback: Path | None) -> list[tuple[str, bool]]:
    """Split text into runs for the primary font and the fallback; drop what neither font can show (e.g. emoji)."""
    runs: list[tuple[str, bool]] = []
    for ch in text:
        if _covers(primary, ch):
            use_fallback = False
        elif fallback is not None and _covers(fallback, ch):
            use_fallback = True
        else:
            continue  # a box of "missing glyph" looks broken; leave the character out
        if runs and runs[-1][1] == use_fallback:
            runs[-1] = (runs[-1][0] + ch, use_fallback)
        else:
            runs.append((ch, use_fallback))
    return runs


# --- measuring and wrapping -------------------------------------------------------------------------------------


def _measure(text: str, primary: Path, fallback: Path | None, size: int) -> float:
    """Width in pixels of `text` set at ASS font `size` (each run in the font libass will use)."""
    width = 0.0
    for run, use_fallback in _runs(text, primary, fallback):
        path = fallback if use_fallback and fallback is not None else primary
        em = round(size * _font_info(path).em_per_size)
        width += _pil_font(path, em).getlength(run)
    return width


def wrap(paragraphs: list[str], measure: Measure, max_width: float) -> list[str]:
    """Balanced lines no wider than max_width: greedy wrapping, then the narrowest width with as few lines."""
    lines: list[str] = []
    for para in paragraphs:
        words = _split_long_words(para.split(" "), measure, max_width)
        greedy = _greedy(words, measure, max_width)
        lo, hi = max(measure(w) for w in words), max_width
        for _ in range(12):  # binary search the tightest width that keeps the same line count
            mid = (lo + hi) / 2
            if len(_greedy(words, measure, mid)) <= len(greedy):
                hi = mid
            else:
                lo = mid
        lines.extend(_greedy(words, measure, hi))
    return lines


def _greedy(words: list[str], measure: Measure, max_width: float) -> list[str]:
    lines: list[str] = []
    current = ""
    for word in words:
        candidate = f"{current} {word}" if current else word
        if current and measure(candidate) > max_width:
            lines.append(current)
            current = word
        else:
            current = candidate
    if current:
        lines.append(current)
    return lines


def _split_long_words(words: list[str], measure: Measure, max_width: float) -> list[str]:
    """A word wider than the line (a URL, a long name) is cut into pieces that fit."""
    out: list[str] = []
    for word in words:
        while word and measure(word) > max_width:
            cut = len(word) - 1
            while cut > 1 and measure(word[:cut]) > max_width:
                cut -= 1
            out.append(word[:cut])
            word = word[cut:]
        if word:
            out.append(word)
    return out


@dataclass(frozen=True)
class CaptionLayout:
    lines: tuple[str, ...]
    font_size: int  # ASS font size (pixels of the frame)
    placement: str  # bottom, top, center


def layout_caption(text: str, style: CaptionStyle, *, width: int, height: int) -> CaptionLayout:
    """The largest size (max..min) whose wrap fits the safe width in at most 3 lines; else centred, smaller."""
    fallback = style.font_file.parent / FALLBACK_FONT
    fallback_path = fallback if fallback.is_file() and fallback != style.font_file else None
    paragraphs = clean_text(text, style.uppercase)
    if not paragraphs:
        return CaptionLayout(lines=(), font_size=style.min_font_size, placement=style.placement)
    scale = height / 1280
    biggest = max(8, round(style.max_font_size * scale))
    smallest = max(8, min(biggest, round(style.min_font_size * scale)))
    # The ink must fit, not only the glyphs: the outline and shadow reach past them on both sides, and libass sets
    # a line a little wider than Pillow measures it (hinting): a word cut to the measured width overflowed by 8 px.
    outline = max(1.0, style.outline * scale)
    safe_width = width * (1 - SAFE_LEFT - SAFE_RIGHT) - 2 * (outline * 1.5) - width * LIBASS_SLACK
    safe_height = height * (1 - SAFE_TOP - SAFE_BOTTOM)

    def lines_at(size: int) -> list[str]:
        return wrap(paragraphs, lambda s: _measure(s, style.font_file, fallback_path, size), safe_width)

    if style.placement != "center":
        for size in range(biggest, smallest - 1, -2):
            lines = lines_at(size)
            if len(lines) <= MAX_EDGE_LINES:
                return CaptionLayout(tuple(lines), size, style.placement)
    # Long captions: centred; shrink until the block fits the safe height (below the minimum only if it must).
    floor = max(8, round(smallest * 0.6))
    for size in range(biggest, floor - 1, -2):
        lines = lines_at(size)
        if len(lines) * size * LINE_SPACING <= safe_height:
            return CaptionLayout(tuple(lines), size, "center")
    return CaptionLayout(tuple(lines_at(floor)), floor, "center")


# --- the script --------------------------------------------------------------------------------------------------


def escape_ass(text: str) -> str:
    """User text as literal libass text: `\\`, `{` and `}` cannot start escapes or override blocks."""
    # A backslash followed by an invisible joiner is shown as a backslash and never read as \N, \h, \{ ...
    text = text.replace("\\", "\\" + WORD_JOINER)
    # libass reads \{ and \} as literal braces; the backslash itself cannot be typed by the user (see above).
    return text.replace("{", "\\{").replace("}", "\\}")


def _ass_colour(hex_colour: str, alpha: int = 0) -> str:
    h = hex_colour.lstrip("#")
    if len(h) == 3:
        h = "".join(c * 2 for c in h)
    if not re.fullmatch(r"[0-9a-fA-F]{6}", h):
        h = "FFFFFF"
    r, g, b = h[0:2], h[2:4], h[4:6]
    return f"&H{alpha:02X}{b}{g}{r}".upper()


def ass_timestamp(seconds: float) -> str:
    cs = max(0, round(seconds * 100))
    return f"{cs // 360000}:{cs // 6000 % 60:02d}:{cs // 100 % 60:02d}.{cs % 100:02d}"


CAPTION_FADE = 0.3  # seconds the caption takes to fade in and out


def caption_fade(duration: float, fade: float = CAPTION_FADE) -> float:
    """The caption's fade in (and out), in seconds: short clips get a quarter of their length at most."""
    return max(0.0, round(min(fade, duration / 4), 3))


def build_ass(text: str, style: CaptionStyle, *, width: int, height: int, duration: float,
              fade: float = CAPTION_FADE) -> str:
    """An ASS script (PlayRes = the frame) showing `text` for the whole clip, fading in and out."""
    layout = layout_caption(text, style, width=width, height=height)
    primary = _font_info(style.font_file)
    fallback = style.font_file.parent / FALLBACK_FONT
    fallback_path = fallback if fallback.is_file() and fallback != style.font_file else None
    fallback_name = _font_info(fallback_path).name if fallback_path else primary.name
    scale = height / 1280
    outline = max(1.0, style.outline * scale)
    shadow = round(outline * 0.5, 2)
    margin_l, margin_r = round(width * SAFE_LEFT), round(width * SAFE_RIGHT)
    centre_x = round(width * (SAFE_LEFT + (1 - SAFE_LEFT - SAFE_RIGHT) / 2))
    if layout.placement == "top":
        position = f"\\an8\\pos({centre_x},{round(height * SAFE_TOP)})"
    elif layout.placement == "center":
        position = f"\\an5\\pos({centre_x},{round(height * (SAFE_TOP + (1 - SAFE_TOP - SAFE_BOTTOM) / 2))})"
    else:
        position = f"\\an2\\pos({centre_x},{round(height * (1 - SAFE_BOTTOM))})"
    fade_ms = round(caption_fade(duration, fade) * 1000)
    body_lines = []
    for line in layout.lines:
        parts = []
        for run, use_fallback in _runs(line, style.font_file, fallback_path):
            escaped = escape_ass(run)
            parts.append(f"{{\\fn{fallback_name}}}{escaped}{{\\fn{primary.name}}}" if use_fallback else escaped)
        body_lines.append("".join(parts))
    body = "\\N".join(body_lines)
    header = f"""[Script Info]
ScriptType: v4.00+
PlayResX: {width}
PlayResY: {height}
WrapStyle: 2
ScaledBorderAndShadow: yes
YCbCr Matrix: None

[V4+ Styles]
Format: Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, OutlineColour, BackColour, Bold, Italic, \
Underline, StrikeOut, ScaleX, ScaleY, Spacing, Angle, BorderStyle, Outline, Shadow, Alignment, MarginL, MarginR, \
MarginV, Encoding
Style: Caption,{primary.name},{layout.font_size},{_ass_colour(style.primary_colour)},\
{_ass_colour(style.primary_colour)},{_ass_colour(style.outline_colour)},{_ass_colour(style.outline_colour, 0x80)},\
-1,0,0,0,100,100,0,0,1,{round(outline, 2)},{shadow},2,{margin_l},{margin_r},{round(height * SAFE_BOTTOM)},1

[Events]
Format: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text
"""
    if not body:
        return header
    event = (f"Dialogue: 0,{ass_timestamp(0)},{ass_timestamp(duration)},Caption,,0,0,0,,"
             f"{{{position}\\fad({fade_ms},{fade_ms})\\blur0.6}}{body}\n")
    return header + event
