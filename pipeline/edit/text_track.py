"""Text on the video as a track of states drawn once (a caption page, a lyric line with its lit word): each
state one RGBA picture of the track's box, listed with its times for ffmpeg's concat reader and laid over the
picture by one overlay, so nothing is typeset per frame."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

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

    def at(self, t: float) -> np.ndarray | None:
        for state in self.states:
            if state.start <= t < state.end:
                return state.ink
        return None


def _blank(box: Box) -> np.ndarray:
    return np.zeros((box.h, box.w, 4), dtype=np.uint8)


def write_track(track: TextTrack, folder: Path, duration: float) -> Path:
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
            lines += [f"file '{path.name}'", f"duration {seconds:.6f}"]
    lines.append(f"file '{entries[-1][0].name}'")  # the concat reader drops the last entry's duration
    listing = folder / f"{track.kind}.ffconcat"
    listing.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return listing


def lay_over(rgb: np.ndarray, tracks: tuple[TextTrack, ...], t: float) -> np.ndarray:
    """The frame at time t with every track's state laid on (as the overlay lays it in the video)."""
    out = rgb
    for track in tracks:
        ink = track.at(t)
        if ink is None:
            continue
        b = track.box
        h, w = min(b.h, rgb.shape[0] - b.y), min(b.w, rgb.shape[1] - b.x)
        alpha = ink[:h, :w, 3:4].astype(np.float32) / 255.0
        region = out[b.y: b.y + h, b.x: b.x + w].astype(np.float32)
        out = out.copy() if out is rgb else out
        out[b.y: b.y + h, b.x: b.x + w] = np.clip(region * (1 - alpha) + ink[:h, :w, :3] * alpha + 0.5, 0,
                                                  255).astype(np.uint8)
    return out
