"""Safe zones on render()'s ASS caption path (a caption drawn once by libass, laid over the video by ffmpeg's
overlay), all four edges, every template, two sizes: the platform's buttons and captions never cover the text.
Runs draw their own text since issue 16 (tests/test_edit_render.py checks that); this path is what `render` still
takes an ASS file for, and what the benchmark's captions use.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.caption_ass import SAFE_BOTTOM, SAFE_LEFT, SAFE_RIGHT, SAFE_TOP, build_ass, caption_style_from_template
from pipeline.caption_layer import rasterise_caption
from pipeline.ffmpeg import decode_frames
from pipeline.models import MotionPlan, StyledImage
from pipeline.render import Encoding, RenderJob, render
from pipeline.settings import FONTS_DIR
from pipeline.templates import list_templates, malleable_template
from tests.media import ffmpeg_make

TEMPLATES = [*list_templates(), malleable_template()]
TEXTS = {
    "short": "this one is for the late drives",
    "long": " ".join(["the night bus hums along the river and every light is a song we used to know"] * 4),
    "one-long-word": "supercalifragilisticexpialidocious" * 3,
    "hostile": 'he said "go": now, 100% {\\pos(0,0)}{\\fs200} back\\slash \\N x\nnext مرحبا שלום',
}
SLACK_AT_360 = 6  # outline, shadow and blur reach a few pixels past the glyphs (they scale with the frame)
DURATION = 1.0


def assert_inside_safe_zone(box: tuple[int, int, int, int], width: int, height: int, what: str) -> None:
    """(x0, y0, x1, y1), x1/y1 exclusive, within the safe zone on every edge."""
    x0, y0, x1, y1 = box
    slack = SLACK_AT_360 * width / 360
    assert x0 >= width * SAFE_LEFT - slack, f"{what}: left edge {x0} < {width * SAFE_LEFT:.0f}"
    assert x1 <= width * (1 - SAFE_RIGHT) + slack, f"{what}: right edge {x1} > {width * (1 - SAFE_RIGHT):.0f}"
    assert y0 >= height * SAFE_TOP - slack, f"{what}: top edge {y0} < {height * SAFE_TOP:.0f}"
    assert y1 <= height * (1 - SAFE_BOTTOM) + slack, f"{what}: bottom edge {y1} > {height * (1 - SAFE_BOTTOM):.0f}"


def _styles(template):  # noqa: ANN001, ANN202 - a Template; every placement the template's style could be given
    style = caption_style_from_template(template, FONTS_DIR)
    return [dataclasses.replace(style, placement=p) for p in ("top", "center", "bottom")]


def _check_layers(template, styles, size: tuple[int, int], tmp_path: Path) -> None:  # noqa: ANN001
    """The layer render() overlays, at the offset it overlays it: cropped to its ink, so its box is the text's."""
    width, height = size
    for style in styles:
        for name, text in TEXTS.items():
            ass = tmp_path / "c.ass"
            ass.write_text(build_ass(text, style, width=width, height=height, duration=DURATION), encoding="utf-8")
            layer = rasterise_caption(ass, FONTS_DIR, width=width, height=height, duration=DURATION,
                                      out=tmp_path / "c.png")
            assert layer is not None, f"{template.id}/{style.placement}/{name}: nothing drawn"
            h, w = layer.ink.shape[:2]
            assert_inside_safe_zone((layer.x, layer.y, layer.x + w, layer.y + h), width, height,
                                    f"{template.id}/{style.placement}/{name} at {width}x{height}")


@pytest.mark.slow
@pytest.mark.parametrize("template", TEMPLATES, ids=lambda t: t.id or "malleable")
def test_each_templates_caption_layer_sits_inside_the_safe_zone_at_full_size(template, tmp_path: Path) -> None:  # noqa: ANN001
    _check_layers(template, [caption_style_from_template(template, FONTS_DIR)], (720, 1280), tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("template", TEMPLATES, ids=lambda t: t.id or "malleable")
def test_every_placement_of_each_templates_style_sits_inside_the_safe_zone(template, tmp_path: Path) -> None:  # noqa: ANN001
    _check_layers(template, _styles(template), (360, 640), tmp_path)


def test_a_centred_word_longer_than_the_line_stays_inside_the_safe_zone(tmp_path: Path) -> None:
    """Was a strict xfail: the word's pieces were cut to Pillow's width, and libass set them 8 px wider than that
    (at 360 wide) with the outline on top. The layout now leaves the ink's reach and libass's slack."""
    template = malleable_template()
    style = dataclasses.replace(caption_style_from_template(template, FONTS_DIR), placement="center")
    _check_layers(template, [style], (360, 640), tmp_path)


@pytest.fixture(scope="module")
def grey(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, StyledImage, Path]:
    root = tmp_path_factory.mktemp("safe")
    still = root / "grey.jpg"
    Image.new("RGB", (360, 640), (128, 128, 128)).save(still, quality=95)
    ffmpeg_make("-f", "lavfi", "-i", "sine=frequency=330:duration=3:sample_rate=44100", str(root / "song.wav"))
    return root, StyledImage(path=still, width=360, height=640, face=None), root / "song.wav"


def _render(grey: tuple[Path, StyledImage, Path], out: Path, ass: Path | None) -> np.ndarray:
    _, image, song = grey
    motion = MotionPlan(movement="none", mood="calm", style="static", zoom_expr="1", x_expr="0.5", y_expr="0.5")
    result = render(RenderJob(image=image, motion=motion, audio_path=song, clip_start=0.0, clip_duration=DURATION,
                              ass_path=ass, fonts_dir=FONTS_DIR, out_path=out, width=360, height=640,
                              encoding=Encoding(fps=30, x264_preset="ultrafast", crf=18), fade_in=0.0, fade_out=0.0))
    return decode_frames(result.video_path, at=[DURATION / 2])[0].astype(int)


@pytest.mark.slow
def test_the_rendered_video_keeps_every_templates_caption_inside_the_safe_zone(
        grey: tuple[Path, StyledImage, Path], tmp_path: Path) -> None:
    """Decoded from the encoded video: whatever the caption changed lies inside the safe zone, for each template
    with its own placement (a short caption sits at the template's edge; the layer tests cover long ones)."""
    plain = _render(grey, tmp_path / "plain.mp4", None)
    for template in TEMPLATES:
        style = caption_style_from_template(template, FONTS_DIR)
        ass = tmp_path / f"{template.id or 'malleable'}.ass"
        ass.write_text(build_ass(TEXTS["short"], style, width=360, height=640, duration=DURATION), encoding="utf-8")
        frame = _render(grey, tmp_path / f"{template.id or 'malleable'}.mp4", ass)
        ys, xs = np.nonzero(np.abs(frame - plain).max(axis=2) > 24)
        assert len(xs) > 200, f"{template.id}: no caption in the video"
        assert_inside_safe_zone((int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1), 360, 640,
                                f"{template.id or 'malleable'} in the encoded video")
