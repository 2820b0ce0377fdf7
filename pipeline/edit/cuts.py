"""Cutting to the song: the camera changes framing on bar lines and punches in on accented beats, every cut on
a frame of the beat grid; and the per-frame camera path and on-screen face box that follow from the segments."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from pipeline.camera import CameraPath
from pipeline.edit.timeline import Box, Framing, Segment
from pipeline.models import AudioAnalysis, FaceBox

MIN_SHOT = 0.9  # seconds: no shot shorter than this (a cut on every beat of a fast song flickers)
EDGE_GUARD = 0.5  # no cut this close to the start or the end (the fades)
MAX_ZOOM = 1.9  # closer than this the 1.5x still gets soft
PUNCH = 1.14  # a punch-in's zoom over the framing it punches into
# Where the face's centre sits on screen: upper third in portrait (text room below), left third in landscape.
FACE_AT_PORTRAIT = (0.5, 0.36)
FACE_AT_LANDSCAPE = (0.36, 0.45)
# Face height on screen as a share of the frame's shorter side, per framing (wide is the still as made).
FACE_SHARE = {"medium": 0.30, "close": 0.40}
MAX_FACE_HEIGHT = 0.34  # of the frame height: the rest is room for the caption and lyrics
PUSH_PER_SECOND = {"wide": 0.012, "medium": 0.008, "close": 0.004, "punch": 0.0}


def grid_in_clip(analysis: AudioAnalysis, clip_start: float, duration: float) -> tuple[tuple[float, ...],
                                                                                        tuple[float, ...]]:
    """The beats and downbeats inside the clip, in seconds of the clip."""
    def inside(times: Sequence[float]) -> tuple[float, ...]:
        return tuple(round(t - clip_start, 4) for t in times if 0.0 <= t - clip_start < duration)
    return inside(analysis.beats), inside(analysis.downbeats)


def _on_frame(t: float, fps: int) -> float:
    return round(t * fps) / fps


def bars_per_cut(energy: float) -> int:
    """Calm moods hold a framing for four bars, middling ones two, energetic ones change every bar."""
    return 1 if energy >= 0.6 else 2 if energy >= 0.35 else 4


def accented_beats(analysis: AudioAnalysis, clip_start: float, beats: Sequence[float],
                   downbeats: Sequence[float]) -> list[float]:
    """Off-downbeat beats whose onset is among the strongest of the clip (the snare hits, the accents)."""
    hop = analysis.hop_seconds or 0.01
    onset = analysis.onset
    if not onset:
        return []
    bars = set(downbeats)
    strengths = [(b, onset[min(len(onset) - 1, max(0, round((b + clip_start) / hop)))]) for b in beats
                 if b not in bars]
    if not strengths:
        return []
    top = max(s for _, s in strengths) or 1.0
    return [b for b, s in strengths if s >= 0.6 * top]


def cut_times(beats: Sequence[float], downbeats: Sequence[float], accents: Sequence[float], *, duration: float,
              fps: int, energy: float, punch: float) -> list[tuple[float, bool]]:
    """(time, is_punch) of every cut: bar lines every bars_per_cut bars, and punch-ins on accented beats
    (the template's punch 0..1 times the mood's energy says how many), each on a frame of its beat."""
    step = bars_per_cut(energy)
    cuts: list[tuple[float, bool]] = [(_on_frame(d, fps), False) for d in downbeats[step::step]]
    if beats and not downbeats[step::step] and len(beats) > 8:
        cuts = [(_on_frame(b, fps), False) for b in beats[8::8]]  # a grid without bar lines: every 8 beats
    rate = punch * energy  # punch-ins per bar, roughly: 0 for calm moods, up to one a bar for loud ones
    if rate >= 0.2:
        every = 1 if rate >= 0.45 else 2
        bars = list(downbeats) or list(beats[::4])
        for n, (bar, nxt) in enumerate(zip(bars, [*bars[1:], duration], strict=False)):
            if n % every:
                continue
            inside = [a for a in accents if bar < a < nxt]
            if inside:
                cuts.append((_on_frame(inside[len(inside) // 2], fps), True))
    cuts.sort()
    kept: list[tuple[float, bool]] = []
    for t, is_punch in cuts:
        if t < EDGE_GUARD or t > duration - EDGE_GUARD:
            continue
        if kept and t - kept[-1][0] < MIN_SHOT:
            continue
        if not kept and t < MIN_SHOT:
            continue
        kept.append((t, is_punch))
    return kept


def framing(name: str, face: FaceBox | None, anchor: tuple[float, float], still: tuple[int, int],
            out: tuple[int, int]) -> Framing:
    """The window for a named framing of a still of `still` px shown at `out` px, around its face (or the
    template's anchor when there is none)."""
    sw, sh = still
    ow, oh = out
    if face is not None:
        fx, fy = (face.x + face.w / 2) / sw, (face.y + face.h / 2) / sh
        face_h_at_1 = face.h * oh / sh  # the face's height on screen at zoom 1
    else:
        fx, fy = anchor
        face_h_at_1 = 0.18 * oh
    if name == "wide":
        zoom = 1.04
    else:
        target = FACE_SHARE["close" if name == "close" else "medium"] * min(ow, oh)
        zoom = target / max(1.0, face_h_at_1)
        zoom = max(zoom, 1.34 if name == "close" else 1.16)  # a visible change from the framing before
        zoom = min(zoom, MAX_ZOOM, max(1.04, MAX_FACE_HEIGHT * oh / max(1.0, face_h_at_1)))
        zoom = max(zoom, 1.10 if name == "close" else 1.06)
    px, py = FACE_AT_LANDSCAPE if ow > oh else FACE_AT_PORTRAIT
    half = 0.5 / zoom
    cx = min(max(fx + (0.5 - px) / zoom, half), 1 - half)
    cy = min(max(fy + (0.5 - py) / zoom, half), 1 - half)
    return Framing(name=name, zoom=round(zoom, 4), cx=round(cx, 4), cy=round(cy, 4), push=PUSH_PER_SECOND[name])


FRAMINGS = ("wide", "medium", "close")


@dataclass(frozen=True)
class Still:
    """What framing needs of one of the run's stills: its size and its face (in its pixels)."""

    size: tuple[int, int]
    face: FaceBox | None


def plan_segments(cuts: Sequence[tuple[float, bool]], *, duration: float, stills: Sequence[Still],
                  anchor: tuple[float, float], out: tuple[int, int], rng: random.Random,
                  framings: Sequence[str] = FRAMINGS) -> list[Segment]:
    """A shot per cut: bar-line cuts move to the next still (with several) and between the framings (wide,
    medium, close, each around that still's face; never the same shot twice in a row); a punch-in tightens the
    shot it lands in."""
    frames = [{n: framing(n, s.face, anchor, s.size, out) for n in framings} for s in stills]
    order = list(framings)
    current = rng.choice(order[:2])
    image = 0
    starts = [0.0, *(t for t, _ in cuts)]
    ends = [*(t for t, _ in cuts), duration]
    punches = [False, *(p for _, p in cuts)]
    segments: list[Segment] = []
    for start, end, is_punch in zip(starts, ends, punches, strict=True):
        if is_punch and segments and segments[-1].framing is not None:
            base = segments[-1].framing
            zoom = min(MAX_ZOOM, base.zoom * PUNCH)
            half = 0.5 / zoom
            shot = replace(base, name="punch", zoom=round(zoom, 4), push=0.0,
                           cx=min(max(base.cx, half), 1 - half), cy=min(max(base.cy, half), 1 - half))
        else:
            if segments:  # `current` is still the framing a punch-in tightened, so the bar line moves on
                image = (image + 1) % len(stills)
                current = rng.choice([n for n in order if n != current] or order)
            shot = frames[image][current]
        segments.append(Segment(start=start, end=end, framing=shot, image=image))
    return segments


def segments_path(segments: Sequence[Segment], frames: int, fps: int, fallback: CameraPath | None) -> CameraPath:
    """The camera per frame: each segment's framing with its slow push, or the motion plan's path (fallback)
    where a segment has no framing. A segment owns the frames whose time is in [start, end)."""
    t = np.arange(frames, dtype=np.float64) / fps
    zoom, cx, cy = np.ones(frames), np.full(frames, 0.5), np.full(frames, 0.5)
    for n, seg in enumerate(segments):
        last = n == len(segments) - 1
        mask = (t >= seg.start - 1e-6) & ((t < seg.end - 1e-6) | last)
        if seg.framing is None:
            if fallback is not None:
                zoom[mask], cx[mask], cy[mask] = fallback.zoom[mask], fallback.cx[mask], fallback.cy[mask]
            continue
        f = seg.framing
        zoom[mask] = f.zoom * (1 + f.push * (t[mask] - seg.start))
        half = 0.5 / zoom[mask]
        cx[mask] = np.clip(f.cx, half, 1 - half)
        cy[mask] = np.clip(f.cy, half, 1 - half)
    still = np.zeros(frames, dtype=np.int32)
    for n, seg in enumerate(segments):
        last = n == len(segments) - 1
        still[(t >= seg.start - 1e-6) & ((t < seg.end - 1e-6) | last)] = seg.image
    return CameraPath(zoom=zoom, cx=cx, cy=cy, still=still if still.any() else None)


def face_on_screen(face: FaceBox, still: tuple[int, int], out: tuple[int, int], zoom: np.ndarray, cx: np.ndarray,
                   cy: np.ndarray) -> Box:
    """The union, over the given frames, of the face's box as the camera shows it (pixels of the output)."""
    sw, sh = still
    ow, oh = out
    left, top = cx - 0.5 / zoom, cy - 0.5 / zoom  # window, in shares of the still
    sx, sy = ow * zoom, oh * zoom  # output px per share of the still
    x0 = (face.x / sw - left) * sx
    x1 = ((face.x + face.w) / sw - left) * sx
    y0 = (face.y / sh - top) * sy
    y1 = ((face.y + face.h) / sh - top) * sy
    bx0, by0 = max(0, int(np.floor(x0.min()))), max(0, int(np.floor(y0.min())))
    bx1, by1 = min(ow, int(np.ceil(x1.max()))), min(oh, int(np.ceil(y1.max())))
    return Box(bx0, by0, max(0, bx1 - bx0), max(0, by1 - by0))


def with_faces(segments: Sequence[Segment], path: CameraPath, fps: int, stills: Sequence[Still],
               out: tuple[int, int]) -> list[Segment]:
    """The segments with the face's on-screen box (of the still each shows), measured on the very path the camera
    draws."""
    t = np.arange(len(path.zoom)) / fps
    result = []
    for n, seg in enumerate(segments):
        last = n == len(segments) - 1
        mask = (t >= seg.start - 1e-6) & ((t < seg.end - 1e-6) | last)
        face, size = stills[seg.image].face, stills[seg.image].size
        if not mask.any() or face is None:
            result.append(seg)
            continue
        box = face_on_screen(face, size, out, path.zoom[mask], path.cx[mask], path.cy[mask])
        result.append(replace(seg, face=box))
    return result
