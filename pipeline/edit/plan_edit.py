"""The edit planned from what the run has chosen: the shots cut on the grid (or the motion plan's one move
when the song has no steady beat, or lip-sync keeps the face), the face on screen, and the caption and lyric
tracks laid out clear of it."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from pipeline.camera import CameraPath
from pipeline.caption_ass import caption_fade
from pipeline.edit import cuts as cutting
from pipeline.edit.draw_text import TextLook, caption_track, lyric_track
from pipeline.edit.text_layout import font_for, layout_text, split_for_screen
from pipeline.edit.text_track import TextTrack
from pipeline.edit.timeline import Box, Segment, TextBox, Timeline
from pipeline.models import AudioAnalysis, LyricLine, StyledImage

LYRIC_HOLD = 0.6  # a lyric line stays this long after its last word (unless the next line comes first)


@dataclass(frozen=True)
class EditInputs:
    width: int
    height: int
    fps: int
    aspect: str
    duration: float
    clip_start: float
    analysis: AudioAnalysis
    energy: float  # the mood's
    punch: float  # the template's punch-in strength, 0..1
    image: StyledImage
    anchor: tuple[float, float]  # where the template puts the face when there is none
    motion_path: CameraPath  # the motion plan's move, for a shot without a framing
    lipsync: bool = False
    video_source: Path | None = None
    caption: str = ""
    look: TextLook | None = None
    placement: str = "bottom"
    caption_em: int | None = None  # the template's largest caption em at this frame
    lyrics_mode: str = "none"
    lyric_lines: tuple[LyricLine, ...] = ()  # the clip's, in seconds of the clip
    lyrics_skipped: str | None = None
    more_images: tuple[StyledImage, ...] = ()  # other stills of the artist: bar-line cuts move between them


@dataclass
class EditPlan:
    timeline: Timeline
    camera: CameraPath | None  # None: a provider's clip alone, which ffmpeg frames itself
    tracks: tuple[TextTrack, ...]


def _shots(inp: EditInputs, beats: Sequence[float], downbeats: Sequence[float], rng: random.Random,
           framings: Sequence[str]) -> tuple[list[Segment], CameraPath | None]:
    out = (inp.width, inp.height)
    stills = [cutting.Still(size=(i.width, i.height), face=i.face) for i in (inp.image, *inp.more_images)]
    frames = len(inp.motion_path.zoom)
    if inp.video_source is not None:
        return _clip_shots(inp, beats, downbeats, rng, framings, stills[0])
    if inp.lipsync or not inp.analysis.steady_beat or not beats:
        segments = [Segment(0.0, inp.duration)]  # lip-sync keeps the mouth in one steady shot
        path = inp.motion_path
    else:
        accents = cutting.accented_beats(inp.analysis, inp.clip_start, beats, downbeats)
        times = cutting.cut_times(beats, downbeats, accents, duration=inp.duration, fps=inp.fps,
                                  energy=inp.energy, punch=inp.punch)
        segments = cutting.plan_segments(times, duration=inp.duration, stills=stills, anchor=inp.anchor, out=out,
                                         rng=rng, framings=framings)
        path = cutting.segments_path(segments, frames, inp.fps, inp.motion_path)
    return cutting.with_faces(segments, path, inp.fps, stills, out), path


def _clip_shots(inp: EditInputs, beats: Sequence[float], downbeats: Sequence[float], rng: random.Random,
                framings: Sequence[str], still: cutting.Still) -> tuple[list[Segment], CameraPath | None]:
    """A provider's clip in the edit: it opens, and bar lines cut between it and the still it was made from,
    framed closer on the face (a wide still would look like a paused clip). The clip runs on the video's clock
    underneath, so each return to it is later in the clip, never a replay. Lip-sync keeps the mouth: one shot."""
    out = (inp.width, inp.height)
    one = np.ones(1)
    # the clip's face is where the still it was made from had it, framed whole
    face = cutting.face_on_screen(still.face, still.size, out, one, one * 0.5, one * 0.5) if still.face else None
    whole = [Segment(0.0, inp.duration, source="clip", clip_path=inp.video_source, face=face)]
    if inp.lipsync or not inp.analysis.steady_beat or not beats:
        return whole, None
    # bar lines only: a punch-in would zoom the still but not the clip (ffmpeg frames that whole)
    times = cutting.cut_times(beats, downbeats, (), duration=inp.duration, fps=inp.fps, energy=inp.energy,
                              punch=0.0)
    if not times:
        return whole, None
    closer = [cutting.framing(n, still.face, inp.anchor, still.size, out) for n in framings if n != "wide"] or \
        [cutting.framing(framings[0], still.face, inp.anchor, still.size, out)]
    first = rng.randrange(len(closer))  # each return to the still is the other framing: no shot seen twice
    bounds = list(zip([0.0, *(t for t, _ in times)], [*(t for t, _ in times), inp.duration], strict=True))
    shots = [Segment(a, b, source="clip", clip_path=inp.video_source) if n % 2 == 0 else
             Segment(a, b, framing=closer[(first + n // 2) % len(closer)]) for n, (a, b) in enumerate(bounds)]
    path = cutting.segments_path(shots, len(inp.motion_path.zoom), inp.fps, inp.motion_path)
    shots = [replace(s, face=face) if s.source == "clip" else s
             for s in cutting.with_faces(shots, path, inp.fps, [still], out)]
    return shots, path


def display_lines(lines: Sequence[LyricLine], *, font, em: int, width: int, duration: float,
                  uppercase: bool) -> tuple[LyricLine, ...]:
    """The lyric lines as shown: a sung line split into screens that fit, each held a moment after its last
    word and gone before the next one starts."""
    screens: list[LyricLine] = []
    for line in lines:
        words = [w for w in line.words if w.start < duration]
        if not words:
            continue
        for idx in split_for_screen([w.text for w in words], font, em, width, uppercase=uppercase):
            part = tuple(words[i] for i in idx)
            screens.append(LyricLine(start=part[0].start, end=min(duration, part[-1].end + LYRIC_HOLD),
                                     text=" ".join(w.text for w in part), words=part))
    shown = []
    for n, line in enumerate(screens):
        nxt = screens[n + 1].start if n + 1 < len(screens) else duration
        shown.append(replace(line, end=round(max(line.start, min(line.end, nxt)), 3)))
    return tuple(line for line in shown if line.end > line.start)


def _ink_box(track: TextTrack, start: float, end: float) -> Box | None:
    """The union of the track's inked pixels between start and end, in pixels of the frame."""
    box: Box | None = None
    for state in track.states:
        if state.ink is None or state.end <= start or state.start >= end:
            continue
        ys, xs = np.nonzero(state.ink[..., 3])
        if len(xs):
            ink = Box(track.box.x + int(xs.min()), track.box.y + int(ys.min()), int(xs.max() - xs.min()) + 1,
                      int(ys.max() - ys.min()) + 1)
            box = ink.union(box)
    return box


def plan_edit(inp: EditInputs, rng: random.Random) -> EditPlan:
    """The edit. The shots are chosen first, with room for text whether or not this run shows any (so a run
    with text and the same run without show the same picture): when a caption line and two lyric lines find
    no room clear of the face, the closest framing is given up and the shots planned again, same choices."""
    seed = rng.random()
    beats, downbeats = cutting.grid_in_clip(inp.analysis, inp.clip_start, inp.duration)
    for framings in (cutting.FRAMINGS, cutting.FRAMINGS[:2], cutting.FRAMINGS[:1]):
        segments, camera = _shots(inp, beats, downbeats, random.Random(seed), framings)
        if inp.look is None or _room_for_text(inp, _union_face(segments)):
            break
    return _with_text(inp, beats, downbeats, segments, camera)


def _union_face(segments: Sequence[Segment]) -> Box | None:
    union: Box | None = None
    for seg in segments:
        if seg.face is not None:
            union = seg.face.union(union)
    return union


def _room_for_text(inp: EditInputs, face: Box | None) -> bool:
    probe = layout_text(caption="Sing it back", lyric_lines=["la la"], font_file=inp.look.font_file,
                        aspect=inp.aspect, width=inp.width, height=inp.height, keep_out=face,
                        placement=inp.placement, uppercase=inp.look.uppercase)
    return probe.caption is not None and probe.lyrics is not None


def _with_text(inp: EditInputs, beats: Sequence[float], downbeats: Sequence[float], segments: list[Segment],
               camera: CameraPath | None) -> EditPlan:
    timeline = Timeline(width=inp.width, height=inp.height, fps=inp.fps, duration=inp.duration,
                        aspect_ratio=inp.aspect, beats=tuple(beats), downbeats=tuple(downbeats),
                        segments=segments, lyrics_mode=inp.lyrics_mode, lyrics_skipped=inp.lyrics_skipped)
    wants_lyrics = inp.lyrics_mode != "none" and bool(inp.lyric_lines)
    if inp.look is None or not (inp.caption or wants_lyrics):
        return EditPlan(timeline=timeline, camera=camera, tracks=())
    caption_font, caption = font_for(inp.caption, inp.look.font_file)
    look = replace(inp.look, font_file=caption_font)
    lyric_font, _ = font_for(" ".join(line.text for line in inp.lyric_lines), inp.look.font_file)
    lyric_look = replace(inp.look, font_file=lyric_font)
    layout = layout_text(caption=caption, lyric_lines=[line.text for line in inp.lyric_lines] if wants_lyrics
                         else [], font_file=caption_font, lyric_font=lyric_font, aspect=inp.aspect, width=inp.width,
                         height=inp.height, keep_out=timeline.faces_during(0.0, inp.duration),
                         placement=inp.placement, uppercase=look.uppercase, max_em=inp.caption_em)
    tracks: list[TextTrack] = []
    if layout.caption is not None and layout.caption_pages:
        track = caption_track(layout.caption_pages, layout.caption, look, duration=inp.duration, fps=inp.fps,
                              fade=caption_fade(inp.duration))
        tracks.append(track)
        for state in track.states:
            box = _ink_box(track, state.start, state.end)
            if box:
                timeline.text.append(TextBox("caption", box, state.start, state.end))
    if wants_lyrics and layout.lyrics is not None:
        shown = display_lines(inp.lyric_lines, font=lyric_font, em=layout.lyrics.em, width=layout.lyrics.box.w,
                              duration=inp.duration, uppercase=look.uppercase)
        timeline.lyrics = shown
        track = lyric_track(shown, layout.lyrics, lyric_look, mode=inp.lyrics_mode, duration=inp.duration,
                            fps=inp.fps)
        tracks.append(track)
        for line in shown:
            box = _ink_box(track, line.start, line.end)
            if box:
                timeline.text.append(TextBox("lyrics", box, line.start, line.end))
    elif wants_lyrics:
        timeline.lyrics_skipped = "no room for lyrics clear of the face in this format"
    return EditPlan(timeline=timeline, camera=camera, tracks=tuple(tracks))
