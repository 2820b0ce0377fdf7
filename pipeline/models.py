"""The plain values the pipeline steps pass to one another."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

# The request's choices, named once: the API body, both CLIs, the Create page and the steps read them from here.
CaptionLength = Literal["none", "short", "medium", "long"]
CAPTION_LENGTHS: tuple[CaptionLength, ...] = get_args(CaptionLength)
LyricsMode = Literal["none", "line", "word"]
LYRICS_MODES: tuple[LyricsMode, ...] = get_args(LyricsMode)


@dataclass(frozen=True)
class Artist:
    account_id: str
    slug: str
    name: str
    root: Path  # the workspace folder
    repository: str | None = None
    ref: str | None = None
    owner: str | None = None  # the account it belongs to; None: shared with every account (the demo artist)

    @property
    def face_guide(self) -> Path:
        return self.root / "context" / "images" / "face-guide.png"

    @property
    def artist_context(self) -> Path:
        return self.root / "context" / "artist.md"

    @property
    def audience_context(self) -> Path:
        return self.root / "context" / "audience.md"


@dataclass(frozen=True)
class Song:
    slug: str
    title: str
    path: Path
    lrc_path: Path | None = None
    source: Literal["workspace", "url"] = "workspace"
    url: str | None = None


@dataclass(frozen=True)
class Word:
    start: float
    end: float
    text: str


@dataclass(frozen=True)
class LyricLine:
    start: float
    end: float
    text: str
    words: tuple[Word, ...] = ()


@dataclass(frozen=True)
class Section:
    """A stretch of a song between two bar lines, and whether the same music comes back elsewhere."""

    start: float  # seconds, on a downbeat when the song has a steady beat
    end: float
    group: int  # sections with the same group are the same music (chords, tune, sound) coming back
    count: int  # how many sections share the group: 1 is a one-off (a bridge, a solo, a drop), 2+ repeats
    label: str  # a guess from repetition, loudness and position: chorus, verse, intro, outro or bridge
    energy: float = 0.0  # mean loudness, 0..1 of the song's loudest
    similarity: float = 0.0  # how closely it matches the closest other section, 0..1


@dataclass(frozen=True)
class AudioAnalysis:
    """What the clip chooser and the audio-reactive motion need to know about a song."""

    duration: float
    hop_seconds: float  # spacing of the frame-wise arrays below
    rms: tuple[float, ...]  # loudness envelope, 0..1
    onset: tuple[float, ...]  # onset strength, 0..1
    beats: tuple[float, ...]  # beat times in seconds
    tempo: float  # beats per minute (0 when none found)
    repetition: tuple[float, ...]  # how much each frame recurs elsewhere in the song, 0..1
    # The beat grid the edit cuts on. Without a steady beat (ambient, rubato) the edit does not cut on it.
    downbeats: tuple[float, ...] = ()  # bar lines: the first beat of each bar, seconds
    beats_per_bar: int = 4
    steady_beat: bool = False
    sections: tuple[Section, ...] = ()  # the song cut at its section boundaries, in time order


@dataclass(frozen=True)
class ClipChoice:
    start: float
    duration: float
    score: float
    reason: str  # e.g. "chorus: loud, repeated, lyric-dense"
    lyrics: tuple[LyricLine, ...] = ()  # lines inside the clip, times relative to the clip start


@dataclass(frozen=True)
class FaceBox:
    """A face in an image, in pixels of that image."""

    x: int
    y: int
    w: int
    h: int


@dataclass(frozen=True)
class StyledImage:
    path: Path  # full-resolution 9:16 still (graded, background filled)
    width: int
    height: int
    face: FaceBox | None  # in the still's pixels
    provider: str = "local"


@dataclass(frozen=True)
class MotionPlan:
    """How the still moves: a camera path over the clip, as ffmpeg expressions of `t`, plus what chose it."""

    movement: str
    mood: str
    style: str  # e.g. "push-in", "pull-out", "pan-left", "drift", "audio-reactive"
    zoom_expr: str  # scale factor >= 1 as a function of t (seconds)
    x_expr: str  # centre x, 0..1 of the source width, as a function of t
    y_expr: str  # centre y, 0..1 of the source height, as a function of t
    audio_reactive: bool = False


@dataclass(frozen=True)
class CaptionStyle:
    font_file: Path
    font_name: str
    max_font_size: int  # at 1280 px height; scaled with the output
    min_font_size: int
    primary_colour: str = "#FFFFFF"
    outline_colour: str = "#000000"
    outline: float = 4.0
    placement: Literal["bottom", "center", "top"] = "bottom"
    uppercase: bool = False


@dataclass(frozen=True)
class Grade:
    """A colour grade applied to the still (and described in the template)."""

    brightness: float = 0.0  # -1..1
    contrast: float = 1.0
    saturation: float = 1.0
    warmth: float = 0.0  # -1 (cool) .. 1 (warm)
    vignette: float = 0.0  # 0..1


@dataclass
class StepTiming:
    step: str
    provider: str
    seconds: float


ProgressCallback = Callable[[str, float], None]
"""progress(step, percent 0..100 of the whole run)."""


@dataclass
class RunPlan:
    """Everything one run needs to know, decided before it starts."""

    run_id: str
    artist: Artist
    template_id: str | None
    caption_length: CaptionLength = "none"
    lipsync: bool = False
    upscale: bool = False
    songs: list[str] = field(default_factory=list)  # slugs or URLs
    images: list[str] = field(default_factory=list)  # URLs (or local paths from uploads)
    seed: int = 0
    out_dir: Path | None = None
    lyrics: LyricsMode | None = None  # None: the template's edit.lyrics
    aspect_ratio: str = "9:16"  # one of pipeline.edit.frame_format.ASPECT_RATIOS
    owner: str | None = None  # the run's account: its local images come only from that account's uploads
