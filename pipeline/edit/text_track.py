"""Text on the video as a track of states drawn once (a caption page, a lyric line with its lit word): each
state one RGBA picture of the track's box. Over the camera's frames they are blended in place, converted to
YUV once per state (~0.1 ms a frame; ffmpeg's overlay of the same box cost ~0.35 ms a frame on its one filter
thread); over a provider's clip they go to ffmpeg's concat reader and one overlay. Nothing is typeset per
frame."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from pipeline.edit.timeline import Box


@dataclass(frozen=True)
class TextState:
    start: float  # seconds of the video, on a frame
    end: float
    ink: np.ndarray | None  # straight-alpha RGBA uint8 of the track's box; None: nothing shown


@dataclass(frozen=True)
class TextTrack:
    """One overlay: where its box sits, its states in time order covering the video, and its fade."""

    kind: str
    box: Box
    states: tuple[TextState, ...]
    fade: float = 0.0  # alpha fade in at the first shown state and out at the end of the last


def _blank(box: Box) -> np.ndarray:
    return np.zeros((box.h, box.w, 4), dtype=np.uint8)


def write_track(track: TextTrack, folder: Path, duration: float, fps: int = 30) -> Path:
    """The states as PNGs and an ffconcat list timing them; gaps get a transparent picture. Returns the list."""
    folder.mkdir(parents=True, exist_ok=True)
    blank = folder / f"{track.kind}-blank.png"
    Image.fromarray(_blank(track.box), "RGBA").save(blank, compress_level=1)
    entries: list[tuple[Path, float]] = []
    t = 0.0
    for n, state in enumerate(track.states):
        if state.start > t + 1e-6:
            entries.append((blank, state.start - t))
        if state.ink is None:
            path = blank
        else:
            path = folder / f"{track.kind}-{n:03d}.png"
            Image.fromarray(state.ink, "RGBA").save(path, compress_level=1)
        entries.append((path, state.end - max(t, state.start)))
        t = state.end
    if t < duration:
        entries.append((blank, duration - t + 1.0))
    lines = ["ffconcat version 1.0"]
    for path, seconds in entries:
        if seconds > 1e-6:
            # each picture read at the video's rate: in image2's default 1/25 s time base the states' starts
            # moved by up to 20 ms, a frame late at 30 fps
            lines += [f"file '{path.name}'", f"option framerate {fps}", f"duration {seconds:.6f}"]
    lines += [f"file '{entries[-1][0].name}'", f"option framerate {fps}"]  # the last entry's duration is dropped
    listing = folder / f"{track.kind}.ffconcat"
    listing.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return listing


def fade_at(track: TextTrack, t: float) -> float:
    """The track's opacity at time t: its fade in after the first shown state and out before the last ends."""
    if track.fade <= 0:
        return 1.0
    shown = [s for s in track.states if s.ink is not None]
    if not shown:
        return 1.0
    first, last = shown[0].start, shown[-1].end
    return float(np.clip((t - first) / track.fade, 0, 1) * np.clip((last - t) / track.fade, 0, 1))


def _yuv(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """BT.709 limited-range Y, Cb, Cr (float32) of full-range RGB: the encoder's colours."""
    r, g, b = (rgb[..., i].astype(np.float32) / 255.0 for i in range(3))
    y = 0.2126 * r + 0.7152 * g + 0.0722 * b
    return 16 + 219 * y, 128 + 224 * (b - y) / 1.8556, 128 + 224 * (r - y) / 1.5748


@dataclass(frozen=True)
class _Plane:
    rows: slice
    cols: slice
    ink: np.ndarray  # colour times alpha
    alpha: np.ndarray  # 0..1


def _planes(ink: np.ndarray, box: Box, width: int, height: int) -> tuple[_Plane, _Plane, _Plane]:
    """A state as Y, U, V planes premultiplied by its alpha; chroma at half size on the even grid it lands on."""
    x0, y0 = box.x - box.x % 2, box.y - box.y % 2  # the even grid, so the chroma planes line up
    x1, y1 = min(width, box.right + box.right % 2), min(height, box.bottom + box.bottom % 2)
    full = np.zeros((y1 - y0, x1 - x0, 4), np.uint8)
    h, w = min(box.h, y1 - box.y), min(box.w, x1 - box.x)
    full[box.y - y0: box.y - y0 + h, box.x - x0: box.x - x0 + w] = ink[:h, :w]
    ys, xs = np.nonzero(full[..., 3])
    if len(xs):  # blend only the inked part (a third of the box, or less): cut to it, on the even grid
        top, left = int(ys.min()) // 2 * 2, int(xs.min()) // 2 * 2
        bottom, right = min(full.shape[0], int(ys.max()) // 2 * 2 + 2), min(full.shape[1], int(xs.max()) // 2 * 2 + 2)
        full, x0, y0 = full[top:bottom, left:right], x0 + left, y0 + top
    h, w = full.shape[:2]
    alpha = full[..., 3].astype(np.float32) / 255.0
    y, _, _ = _yuv(full)
    half = cv2.resize(full, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
    half_alpha = half[..., 3].astype(np.float32) / 255.0
    _, u, v = _yuv(half)
    rows, cols = slice(y0, y0 + h), slice(x0, x0 + w)
    crow, ccol = slice(y0 // 2, y0 // 2 + h // 2), slice(x0 // 2, x0 // 2 + w // 2)
    return (_Plane(rows, cols, y * alpha, alpha), _Plane(crow, ccol, u * half_alpha, half_alpha),
            _Plane(crow, ccol, v * half_alpha, half_alpha))


class TextPainter:
    """Blends the tracks' states into the camera's YUV frames in place (camera.FramePainter)."""

    def __init__(self, tracks: tuple[TextTrack, ...], width: int, height: int, fps: int):
        self.fps = fps
        self.tracks = tracks
        # per track: (first frame, end frame, planes) of each shown state
        self.states = [[(round(s.start * fps), round(s.end * fps), _planes(s.ink, t.box, width, height))
                        for s in t.states if s.ink is not None] for t in tracks]

    def __call__(self, index: int, y: np.ndarray, u: np.ndarray, v: np.ndarray) -> None:
        for track, states in zip(self.tracks, self.states, strict=True):
            planes = next((p for first, end, p in states if first <= index < end), None)
            if planes is None:
                continue
            f = fade_at(track, index / self.fps)
            if f <= 0:
                continue
            for plane, target in zip(planes, (y, u, v), strict=True):
                region = target[plane.rows, plane.cols]
                keep = 1 - plane.alpha * f if f < 1 else 1 - plane.alpha
                mixed = region.astype(np.float32)
                mixed *= keep
                mixed += plane.ink * f if f < 1 else plane.ink
                np.clip(mixed + 0.5, 0, 255, out=mixed)
                region[:] = mixed
