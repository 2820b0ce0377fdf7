"""The timeline of one video: segments (what is on screen, framed how, from when to when), the cuts, the face's
box on screen per segment and the text boxes, all in seconds of the video and pixels of the output frame.

The render executes it and meta.json records it (`edit`), so what the run says and what the pixels show come
from one object.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pipeline.models import LyricLine

TextKind = Literal["caption", "lyrics"]


@dataclass(frozen=True)
class Box:
    """A rectangle in pixels of the output frame."""

    x: int
    y: int
    w: int
    h: int

    @property
    def right(self) -> int:
        return self.x + self.w

    @property
    def bottom(self) -> int:
        return self.y + self.h

    def union(self, other: Box | None) -> Box:
        if other is None:
            return self
        x, y = min(self.x, other.x), min(self.y, other.y)
        return Box(x, y, max(self.right, other.right) - x, max(self.bottom, other.bottom) - y)

    def overlaps(self, other: Box) -> bool:
        return self.x < other.right and other.x < self.right and self.y < other.bottom and other.y < self.bottom

    def grown(self, margin: int, width: int, height: int) -> Box:
        """The box with `margin` px around it, kept inside a width x height frame."""
        x, y = max(0, self.x - margin), max(0, self.y - margin)
        return Box(x, y, min(width, self.right + margin) - x, min(height, self.bottom + margin) - y)

    def record(self) -> dict[str, int]:
        return {"x": self.x, "y": self.y, "w": self.w, "h": self.h}


@dataclass(frozen=True)
class Framing:
    """A camera window over the still: zoom (>= 1), centre (0..1 of the still) and a slow push while held."""

    name: str  # wide, medium, close, punch
    zoom: float
    cx: float
    cy: float
    push: float = 0.0  # zoom gained per second


@dataclass(frozen=True)
class Segment:
    """One shot: the still under a framing (None: the motion plan's own move) or a provider's clip."""

    start: float
    end: float
    framing: Framing | None = None
    image: int = 0  # which of the run's stills (0: the face guide's)
    source: Literal["still", "clip"] = "still"
    clip_path: Path | None = None  # with source "clip": the provider's video (issue 20 decides how it is filled)
    face: Box | None = None  # the face on screen, the union over the segment's frames


@dataclass(frozen=True)
class TextBox:
    kind: TextKind
    box: Box
    start: float
    end: float

    def record(self) -> dict:
        return {"kind": self.kind, **self.box.record(), "start": round(self.start, 3), "end": round(self.end, 3)}


@dataclass
class Timeline:
    width: int
    height: int
    fps: int
    duration: float
    aspect_ratio: str
    beats: tuple[float, ...] = ()  # the grid used, seconds of the video
    downbeats: tuple[float, ...] = ()
    segments: list[Segment] = field(default_factory=list)
    text: list[TextBox] = field(default_factory=list)
    lyrics: tuple[LyricLine, ...] = ()  # as displayed
    lyrics_mode: str = "none"
    lyrics_skipped: str | None = None

    @property
    def cuts(self) -> list[float]:
        """Times the picture changes image or framing (the segments' starts after the first)."""
        return [s.start for s in self.segments[1:]]

    def faces_during(self, start: float, end: float) -> Box | None:
        """The union of the face boxes on screen between start and end (the text's keep-out zone)."""
        union: Box | None = None
        for seg in self.segments:
            if seg.face is not None and seg.start < end and start < seg.end:
                union = seg.face.union(union)
        return union

    def record(self) -> dict:
        """The `edit` block of meta.json and the run's output."""
        out: dict = {
            "aspectRatio": self.aspect_ratio,
            "width": self.width,
            "height": self.height,
            "beats": [round(b, 3) for b in self.beats],
            "downbeats": [round(b, 3) for b in self.downbeats],
            "cuts": [round(c, 3) for c in self.cuts],
            "segments": [{"start": round(s.start, 3), "end": round(s.end, 3), "source": s.source, "image": s.image,
                          "framing": s.framing.name if s.framing else "clip" if s.source == "clip" else "motion"}
                         for s in self.segments],
            "faceBoxes": [{**s.face.record(), "start": round(s.start, 3), "end": round(s.end, 3)}
                          for s in self.segments if s.face is not None],
            "lyricsMode": self.lyrics_mode,
            "lyrics": [{"text": line.text, "start": round(line.start, 3), "end": round(line.end, 3),
                        "words": [{"text": w.text, "start": round(w.start, 3), "end": round(w.end, 3)}
                                  for w in line.words]} for line in self.lyrics],
            "textBoxes": [t.record() for t in self.text],
        }
        if self.lyrics_skipped:
            out["lyricsSkipped"] = self.lyrics_skipped
        return out
