"""The edit's plan without rendering: cuts on the grid, framings around the face, text clear of the face and of
the platforms' interface, never below the legibility floor, long captions paged instead of shrunk."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from pipeline.camera import CameraPath
from pipeline.edit import cuts as cutting
from pipeline.edit.frame_format import ASPECT_RATIOS, SAFE_ZONES, frame_size
from pipeline.edit.plan_edit import EditInputs, plan_edit
from pipeline.edit.text_layout import (
    CAP_HEIGHT_FLOOR,
    MAX_CAPTION_LINES,
    TEXT_GAP,
    cap_ratio,
    floor_em,
    layout_text,
    measurer,
    safe_box,
)
from pipeline.edit.timeline import Box
from pipeline.models import AudioAnalysis, FaceBox, StyledImage
from pipeline.settings import FONTS_DIR

FPS = 30
INTER = FONTS_DIR / "Inter-ExtraBold.otf"
BEBAS = FONTS_DIR / "BebasNeue-Bold.otf"
LONG = ("We wrote this one on the night bus home, every stop a new line, and the driver never knew he was in "
        "the song. Play it loud on your way back tonight and tell us where you were.")


def grid(bpm: float = 120.0, seconds: float = 15.0, offset: float = 0.37) -> tuple[list[float], list[float]]:
    beats = [round(offset + i * 60 / bpm, 4) for i in range(int(seconds * bpm / 60))]
    return beats, beats[::4]


def test_energetic_cuts_every_bar_and_punches_on_accents_all_on_beats() -> None:
    beats, downbeats = grid()
    accents = beats[2::4]  # the snare on beat 3 of each bar
    cuts = cutting.cut_times(beats, downbeats, accents, duration=15.0, fps=FPS, energy=0.9, punch=0.9)
    times = [t for t, _ in cuts]
    assert any(p for _, p in cuts) and any(not p for _, p in cuts), "bar-line cuts and punch-ins both"
    assert times == sorted(times) and min(np.diff(times)) >= cutting.MIN_SHOT - 1e-9
    for t, is_punch in cuts:
        assert abs(t * FPS - round(t * FPS)) < 1e-6, "every cut is on a frame"
        nearest = min(beats, key=lambda b: abs(b - t))
        assert abs(nearest - t) <= 1 / FPS, f"cut at {t} is {abs(nearest - t):.3f}s from the nearest beat"
        assert (nearest in accents) == is_punch, "punches on accents, the other cuts on bar lines"
    assert times[0] >= cutting.EDGE_GUARD and times[-1] <= 15.0 - cutting.EDGE_GUARD


def test_calm_moods_hold_longer_and_never_punch() -> None:
    beats, downbeats = grid()
    calm = cutting.cut_times(beats, downbeats, beats[2::4], duration=15.0, fps=FPS, energy=0.2, punch=0.9)
    busy = cutting.cut_times(beats, downbeats, beats[2::4], duration=15.0, fps=FPS, energy=0.9, punch=0.9)
    assert not any(p for _, p in calm) and 0 < len(calm) < len(busy) / 2
    gaps = np.diff([t for t, _ in calm])
    assert np.allclose(gaps, 4 * 4 * 0.5, atol=1 / FPS), "four bars of 4/4 at 120 BPM"


def test_framings_differ_and_keep_the_face_in_frame() -> None:
    still, out = (1080, 1920), (720, 1280)
    face = FaceBox(x=420, y=520, w=240, h=260)
    cuts = cutting.cut_times(*grid(), grid()[0][2::4], duration=15.0, fps=FPS, energy=0.9, punch=0.9)
    stills = [cutting.Still(size=still, face=face)]
    segments = cutting.plan_segments(cuts, duration=15.0, stills=stills, anchor=(0.5, 0.38), out=out,
                                     rng=random.Random(3))
    names = [s.framing.name for s in segments]
    assert {"wide", "medium", "close", "punch"} <= set(names)
    for a, b in zip(segments, segments[1:], strict=False):
        assert (a.framing.zoom, a.framing.cx, a.framing.cy) != (b.framing.zoom, b.framing.cx, b.framing.cy)
    path = cutting.segments_path(segments, 15 * FPS + 1, FPS, None)
    with_faces = cutting.with_faces(segments, path, FPS, stills, out)
    for seg in with_faces:
        box = seg.face
        assert box.x > 0 and box.y > 0 and box.right < out[0] and box.bottom < out[1], "the whole face on screen"
        assert box.h <= cutting.MAX_FACE_HEIGHT * out[1] * cutting.PUNCH + 2
    closes = [s.face.h for s in with_faces if s.framing.name == "close"]
    wides = [s.face.h for s in with_faces if s.framing.name == "wide"]
    assert min(closes) > max(wides) * 1.2


def test_the_face_box_follows_the_camera() -> None:
    """face_on_screen against a camera drawn the slow way: the face's corners mapped by the window."""
    face = FaceBox(x=300, y=400, w=200, h=220)
    zoom, cx, cy = np.array([1.5]), np.array([0.45]), np.array([0.4])
    box = cutting.face_on_screen(face, (1000, 1800), (500, 900), zoom, cx, cy)
    win_w, win_h = 1000 / 1.5, 1800 / 1.5
    left, top = 0.45 * 1000 - win_w / 2, 0.4 * 1800 - win_h / 2
    assert box.x == pytest.approx((300 - left) * 500 / win_w, abs=1)
    assert box.y == pytest.approx((400 - top) * 900 / win_h, abs=1)
    assert box.w == pytest.approx(200 * 500 / win_w, abs=2) and box.h == pytest.approx(220 * 900 / win_h, abs=2)


def gap_between(a: Box, b: Box) -> int:
    """Pixels of clear space between two boxes that do not overlap (vertical when they share columns)."""
    if a.x < b.right and b.x < a.right:
        return max(b.y - a.bottom, a.y - b.bottom)
    return max(b.x - a.right, a.x - b.right)


@pytest.mark.parametrize("aspect", ASPECT_RATIOS)
@pytest.mark.parametrize("font", [INTER, BEBAS], ids=["inter", "bebas"])
def test_text_is_clear_of_face_and_ui_and_never_below_the_floor(aspect: str, font) -> None:
    width, height = frame_size(aspect)
    safe = safe_box(aspect, width, height)
    zone = SAFE_ZONES[aspect]
    assert safe.bottom <= height * (1 - zone.bottom) and safe.right <= width * (1 - zone.right)
    face = Box(round(width * 0.35), round(height * 0.22), round(width * 0.3), round(height * 0.24))
    layout = layout_text(caption=LONG, lyric_lines=["we drove all night and the city kept singing"],
                         font_file=font, aspect=aspect, width=width, height=height, keep_out=face)
    assert layout.caption is not None and layout.lyrics is not None
    for area in (layout.caption, layout.lyrics):
        assert not area.box.overlaps(face), f"{area} is on the face {face}"
        assert safe.x <= area.box.x and area.box.right <= safe.right and safe.y <= area.box.y
        assert area.box.bottom <= safe.bottom
        assert area.em * cap_ratio(font) >= CAP_HEIGHT_FLOOR * min(width, height) / 720 - 0.5
    assert not layout.caption.box.overlaps(layout.lyrics.box)
    assert gap_between(layout.caption.box, layout.lyrics.box) >= round(TEXT_GAP * layout.lyrics.em), \
        "caption and lyrics are two blocks, with air between them"
    measure = measurer(font, layout.caption.em)
    assert len(layout.caption_pages) >= 2 and all(len(p) <= MAX_CAPTION_LINES for p in layout.caption_pages)
    assert all(measure(line) <= layout.caption.box.w for page in layout.caption_pages for line in page)
    assert " ".join(" ".join(p) for p in layout.caption_pages) == LONG, "paged, nothing dropped"


def test_a_short_caption_gets_the_larger_size_and_one_page() -> None:
    width, height = frame_size("9:16")
    layout = layout_text(caption="Sing it back.", lyric_lines=[], font_file=INTER, aspect="9:16", width=width,
                         height=height, keep_out=Box(250, 300, 220, 240), max_em=70)
    assert layout.caption.em == 70 and len(layout.caption_pages) == 1
    assert floor_em(INTER, width, height) < 70


def test_frame_sizes_of_every_format() -> None:
    assert [frame_size(a) for a in ASPECT_RATIOS] == [(720, 1280), (864, 1080), (1080, 1080), (1280, 720)]
    assert frame_size("4:5", upscale=True) == (1728, 2160)
    assert frame_size("16:9", 180, 320) == (320, 180)


def test_with_several_stills_bar_lines_cut_between_them_each_framed_on_its_face() -> None:
    out = (720, 1280)
    stills = [cutting.Still(size=(1080, 1920), face=FaceBox(420, 520, 240, 260)),
              cutting.Still(size=(1080, 1920), face=FaceBox(150, 900, 200, 220))]
    beats, downbeats = grid()
    cuts = cutting.cut_times(beats, downbeats, beats[2::4], duration=15.0, fps=FPS, energy=0.9, punch=0.9)
    segments = cutting.plan_segments(cuts, duration=15.0, stills=stills, anchor=(0.5, 0.38), out=out,
                                     rng=random.Random(1))
    for before, seg, (t, is_punch) in zip(segments, segments[1:], cuts, strict=False):
        assert seg.image == (before.image if is_punch else 1 - before.image), f"cut at {t}"
    path = cutting.segments_path(segments, 15 * FPS + 1, FPS, None)
    assert set(path.still.tolist()) == {0, 1}
    for seg in cutting.with_faces(segments, path, FPS, stills, out):
        box = seg.face  # each still's own face, on screen
        assert box.x > 0 and box.right < out[0] and box.y > 0 and box.bottom < out[1], (seg.image, box)


def test_text_the_template_font_cannot_show_is_set_in_the_fallback_and_emoji_dropped() -> None:
    from pipeline.edit.text_layout import font_for

    assert font_for("Sing it back.", INTER) == (INTER, "Sing it back.")
    font, text = font_for("مرحبا שלום 🔥", INTER)
    assert font.name == "DejaVuSans-Bold.ttf" and text == "مرحبا שלום "
    assert font_for("Hey 🔥", INTER) == (INTER, "Hey "), "no glyph anywhere: left out, no missing-glyph box"


def test_remote_models_are_asked_for_the_nearest_shape_they_make() -> None:
    from pipeline.edit.frame_format import nearest_ratio
    from pipeline.providers.fal_models import aspect_for_frame, video_size_for_frame
    from pipeline.providers.openai_provider import OPENAI_IMAGE_SIZES

    assert nearest_ratio(1280, 720, ["auto", "16:9", "9:16"]) == "16:9"
    assert nearest_ratio(864, 1080, ["16:9", "9:16", "1:1"]) == "1:1"  # 4:5 is nearer square than 9:16
    assert nearest_ratio(864, 1080, OPENAI_IMAGE_SIZES) == "1024x1536"  # 2:3 is nearer 4:5 than square is
    assert nearest_ratio(1080, 1080, OPENAI_IMAGE_SIZES) == "1024x1024"
    assert nearest_ratio(720, 1280, OPENAI_IMAGE_SIZES) == "1024x1536"
    assert nearest_ratio(100, 100, ["auto"]) is None
    # 9:16 keeps the configured aspect; another format gets what the model takes nearest to it
    assert aspect_for_frame("fal-ai/nano-banana-2", 1080, 1920, "9:16") == "9:16"
    assert aspect_for_frame("fal-ai/nano-banana-2", 864, 1080, "9:16") == "4:5"
    assert aspect_for_frame("fal-ai/veo3.1/fast/image-to-video", 1080, 1080, "9:16") in ("16:9", "9:16")
    assert aspect_for_frame("fal-ai/veo3.1/fast/image-to-video", 1920, 1080, "9:16") == "16:9"
    assert video_size_for_frame(1920, 1080, "9:16") == "landscape_16_9"
    assert video_size_for_frame(1080, 1080, "9:16") == "square_hd"


def clip_edit(lipsync: bool):
    """The plan of a 15 s provider-clip run on a 120 BPM grid, energetic mood."""
    beats, downbeats = grid()
    analysis = AudioAnalysis(duration=15.0, hop_seconds=0.01, rms=(), onset=(), beats=tuple(beats), tempo=120.0,
                             repetition=(), downbeats=tuple(downbeats), steady_beat=True)
    frames = 15 * FPS + 1
    still = StyledImage(Path("still.jpg"), 1080, 1920, FaceBox(x=420, y=520, w=240, h=260))
    return plan_edit(EditInputs(width=720, height=1280, fps=FPS, aspect="9:16", duration=15.0, clip_start=0.0,
                                analysis=analysis, energy=0.9, punch=0.9, image=still, anchor=(0.5, 0.38),
                                motion_path=CameraPath(np.ones(frames), np.full(frames, 0.5), np.full(frames, 0.5)),
                                lipsync=lipsync, video_source=Path("clip.mp4")), random.Random(2))


def test_a_providers_clip_alternates_with_the_still_on_bar_lines() -> None:
    plan = clip_edit(lipsync=False)
    segments = plan.timeline.segments
    assert [s.source for s in segments] == ["clip", "still"] * (len(segments) // 2) + ["clip"] * (len(segments) % 2)
    assert len(segments) >= 3 and plan.camera is not None
    _, downbeats = grid()
    for cut in plan.timeline.cuts:
        assert min(abs(cut - d) for d in downbeats) <= 1 / FPS, f"cut {cut} is off the bar lines"
    stills = [s for s in segments if s.source == "still"]
    assert all(s.framing.name in ("medium", "close") and s.face is not None for s in stills)
    assert all(a.framing.name != b.framing.name for a, b in zip(stills, stills[1:], strict=False))


def test_lip_sync_keeps_the_providers_clip_throughout() -> None:
    plan = clip_edit(lipsync=True)
    assert [(s.source, s.start, s.end) for s in plan.timeline.segments] == [("clip", 0.0, 15.0)]
    assert plan.timeline.cuts == [] and plan.camera is None


def test_lyrics_drop_to_the_floor_size_where_only_a_strip_is_left() -> None:
    """A big centred face in a landscape frame leaves a strip under it too low for the lyrics' usual size: they
    are set at the floor there instead of not at all (the 16:9 editorial run had no lyrics)."""
    face = Box(112, 43, 70, 70)
    layout = layout_text(caption="Out now", lyric_lines=["we drive all night until"], font_file=BEBAS,
                         aspect="16:9", width=320, height=180, keep_out=face)
    assert layout.lyrics is not None and layout.lyrics.em == floor_em(BEBAS, 320, 180)
    assert not layout.lyrics.box.overlaps(face)
    assert layout.caption is not None and not layout.caption.box.overlaps(layout.lyrics.box)
