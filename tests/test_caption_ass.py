"""Captions as ASS: sized to fit the safe zone, wrapped by the real font, literal text whatever is typed,
checked by rendering the script with ffmpeg's libass."""

from __future__ import annotations

import dataclasses
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from pipeline.caption_ass import (
    SAFE_BOTTOM,
    SAFE_LEFT,
    SAFE_RIGHT,
    SAFE_TOP,
    _font_info,
    _measure,
    build_ass,
    caption_style_from_template,
    escape_ass,
    layout_caption,
)
from pipeline.ffmpeg import escape_filter_value, ffmpeg_exe
from pipeline.settings import FONTS_DIR
from pipeline.templates import load_template, malleable_template

STYLE = caption_style_from_template(malleable_template(), FONTS_DIR)
HOSTILE = 'he said "go": now, 100% {\\pos(0,0)}{\\c&H0000FF&}{\\fs200} back\\slash \\N x\nnext 🔥 مرحبا שלום'
LONG = " ".join(["the night bus hums along the river and every light is a song we used to know"] * 4)


def render_ass(ass_text: str, tmp_path: Path, width: int = 360, height: int = 640) -> np.ndarray:
    """One frame of the script over mid grey, as RGB."""
    ass = tmp_path / "c.ass"
    ass.write_text(ass_text, encoding="utf-8")
    graph = (f"color=c=0x808080:s={width}x{height}:d=1,format=rgb24,"
             f"ass=filename={escape_filter_value(str(ass))}:fontsdir={escape_filter_value(str(FONTS_DIR))}")
    out = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-v", "error", "-f", "lavfi", "-i", graph,
                          "-ss", "0.5", "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
                         capture_output=True, timeout=60, check=True).stdout
    return np.frombuffer(out, np.uint8).reshape(height, width, 3)


def text_box(frame: np.ndarray) -> tuple[int, int, int, int]:
    """Bounding box (x0, y0, x1, y1) of everything that is not the grey background."""
    ys, xs = np.nonzero(np.abs(frame.astype(int) - 128).max(axis=2) > 40)
    assert len(xs), "no caption pixels"
    return xs.min(), ys.min(), xs.max(), ys.max()


def test_style_from_template_resolves_the_font() -> None:
    assert STYLE.font_file == FONTS_DIR / "Inter-ExtraBold.otf" and STYLE.font_name == "Inter Extra Bold"
    bebas = caption_style_from_template(load_template("artist-release-editorial"), FONTS_DIR)
    assert bebas.font_name == "Bebas Neue Bold" and bebas.uppercase and bebas.placement == "bottom"


@pytest.mark.parametrize("font", sorted(p.name for p in FONTS_DIR.iterdir() if p.suffix in (".otf", ".ttf")))
def test_libass_picks_the_shipped_font_not_a_fallback(font: str, tmp_path: Path) -> None:
    # libass names the face it chose in its debug log; a name it cannot match falls back to another font
    style = dataclasses.replace(STYLE, font_file=FONTS_DIR / font, font_name=_font_info(FONTS_DIR / font).name)
    ass = tmp_path / "c.ass"
    ass.write_text(build_ass("which font", style, width=360, height=640, duration=1.0), encoding="utf-8")
    graph = (f"color=c=0x808080:s=360x640:d=0.2,ass=filename={escape_filter_value(str(ass))}"
             f":fontsdir={escape_filter_value(str(FONTS_DIR))}")
    log = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-v", "debug", "-f", "lavfi", "-i", graph,
                          "-f", "null", "-"], capture_output=True, text=True, timeout=60).stderr
    chosen = re.findall(r"fontselect: \((.+?), \d+, \d+\) -> ([^,]+),", log)
    assert chosen, log[-1500:]
    face = chosen[0][1].replace("-", "").lower()
    assert face == Path(font).stem.replace("-", "").lower(), chosen


def test_short_caption_sits_big_at_the_bottom_in_few_lines() -> None:
    layout = layout_caption("this one is for the late drives", STYLE, width=720, height=1280)
    assert layout.placement == "bottom" and 1 <= len(layout.lines) <= 3
    assert layout.font_size == STYLE.max_font_size
    safe = 720 * (1 - SAFE_LEFT - SAFE_RIGHT)
    assert all(_measure(line, STYLE.font_file, None, layout.font_size) <= safe for line in layout.lines)
    twice = layout_caption("this one is for the late drives", STYLE, width=1440, height=2560)
    assert twice.font_size == 2 * layout.font_size and twice.lines == layout.lines


def test_long_caption_goes_to_the_centre_and_fits() -> None:
    layout = layout_caption(LONG, STYLE, width=720, height=1280)
    assert layout.placement == "center" and len(layout.lines) > 3
    assert STYLE.min_font_size * 0.6 <= layout.font_size <= STYLE.max_font_size
    assert len(layout.lines) * layout.font_size * 1.12 <= 1280 * (1 - SAFE_TOP - SAFE_BOTTOM)


def test_escaping_keeps_user_text_literal() -> None:
    escaped = escape_ass("{\\pos(0,0)}a\\Nb}")
    assert "{" not in escaped.replace("\\{", "") and "}" not in escaped.replace("\\}", "")
    assert "\\N" not in escaped and "\\pos" not in escaped
    ass = build_ass(HOSTILE, STYLE, width=360, height=640, duration=3.0)
    dialogue = [line for line in ass.splitlines() if line.startswith("Dialogue:")]
    assert len(dialogue) == 1  # the user's newline did not end the event line
    # every override block left in the text is ours (position, fade, blur, font switches)
    blocks = re.findall(r"(?<!\\)\{([^}]*)\}", dialogue[0])
    assert blocks and all(re.fullmatch(r"(\\(an\d|pos\(\d+,\d+\)|fad\(\d+,\d+\)|blur[\d.]+|fn[\w ]+))+", b)
                          for b in blocks), blocks
    assert "🔥" not in ass  # no font here has it: left out rather than drawn as a box
    assert "\\fnDejaVu Sans Bold}مرحبا" in ass  # right-to-left scripts set in the fallback font


@pytest.mark.parametrize("text", ["this one is for the late drives", LONG, HOSTILE])
def test_rendered_caption_stays_in_the_safe_zone(text: str, tmp_path: Path) -> None:
    frame = render_ass(build_ass(text, STYLE, width=360, height=640, duration=3.0), tmp_path)
    x0, y0, x1, y1 = text_box(frame)
    slack = 6  # outline, shadow and blur reach a few pixels past the text
    assert x0 >= 360 * SAFE_LEFT - slack and x1 <= 360 * (1 - SAFE_RIGHT) + slack
    assert y0 >= 640 * SAFE_TOP - slack and y1 <= 640 * (1 - SAFE_BOTTOM) + slack
    # the text is white-ish with a dark outline: both are there
    region = frame[y0:y1 + 1, x0:x1 + 1].astype(int)
    assert (region.min(axis=2) > 225).sum() > 100 and (region.max(axis=2) < 40).sum() > 100
    # no injected colour: nothing red
    assert ((region[..., 0] > 150) & (region[..., 1] < 80) & (region[..., 2] < 80)).sum() == 0


def test_measured_width_matches_libass(tmp_path: Path) -> None:
    text = "measure me right"
    layout = layout_caption(text, STYLE, width=720, height=1280)
    frame = render_ass(build_ass(text, STYLE, width=720, height=1280, duration=3.0), tmp_path, 720, 1280)
    x0, _, x1, _ = text_box(frame)
    predicted = _measure(layout.lines[0], STYLE.font_file, None, layout.font_size)
    assert len(layout.lines) == 1
    assert (x1 - x0) == pytest.approx(predicted, rel=0.1, abs=12)


def test_uppercase_and_top_placement(tmp_path: Path) -> None:
    style = dataclasses.replace(caption_style_from_template(load_template("artist-release-editorial"), FONTS_DIR),
                                placement="top")
    ass = build_ass("out now", style, width=360, height=640, duration=2.0)
    assert "OUT NOW" in ass and "\\an8" in ass
    _, y0, _, y1 = text_box(render_ass(ass, tmp_path))
    assert y0 >= 640 * SAFE_TOP - 6 and y1 < 640 * 0.4


def test_empty_caption_has_no_event() -> None:
    assert "Dialogue:" not in build_ass(" \n\t ", STYLE, width=360, height=640, duration=2.0)
