"""A provider's clip shorter than the video: end the video with the clip, or chain a second clip; never a loop.

`end` (the default, as the original does) shortens the video to the clip; `chain` asks the model for a second
clip that starts from the first one's last frame, so the picture goes on without a cut (REMOTE_VIDEO_FILL).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import BadInput
from pipeline.ffmpeg import probe
from pipeline.models import AudioAnalysis, ClipChoice
from pipeline.providers.clip_segments import join_clips, last_frame


@dataclass(frozen=True)
class Fill:
    video: Path
    duration: float  # the video's length now
    note: dict[str, Any]  # what was done (the run's output: `videoFill`)


def cut_points(clip: ClipChoice, analysis: AudioAnalysis) -> list[float]:
    """Where a model clip may be cut, seconds into the clip: lyric-line starts first, then beats."""
    lines = [line.start for line in clip.lyrics if 0 < line.start < clip.duration]
    beats = [b - clip.start for b in analysis.beats if 0 < b - clip.start < clip.duration]
    return lines or beats


def last_beat_before(seconds: float, beats: Sequence[float], earliest: float) -> float:
    """The latest beat in (earliest, seconds], else `seconds` itself."""
    fitting = [b for b in beats if earliest < b <= seconds]
    return max(fitting) if fitting else seconds


def source_seconds(video: Path, ffmpeg: str | None) -> float:
    try:
        return float(probe(video, ffmpeg).duration or 0.0)
    except BadInput:
        return 0.0


def fill_clip(video_maker: Any, source: Path, *, clip: ClipChoice, beats: Sequence[float], mode: str, prompt: str,
              fps: int, ffmpeg: str | None, work: Path) -> Fill:
    """The model's clip made to fit `clip.duration` by `mode`; `beats` are seconds into the clip."""
    have = source_seconds(source, ffmpeg)
    if have >= clip.duration - 0.5 / fps:
        return Fill(source, clip.duration, {"mode": "none", "clipSeconds": round(have, 3)})
    chain = getattr(video_maker, "clip_from", None)
    if mode == "chain" and chain is not None:
        second = chain(last_frame(source, work / "chain-frame.png", ffmpeg), prompt, clip.duration - have,
                       work / "source-chained.mp4")
        more = source_seconds(second, ffmpeg) if second is not None else 0.0
        if more > 0:
            total = min(clip.duration, have + more)
            end = total if total >= clip.duration - 0.5 / fps else last_beat_before(total, beats, have)
            joined = join_clips([(source, have), (second, end - have)], work / "source-joined.mp4", fps, ffmpeg)
            return Fill(joined, end, {"mode": "chain", "clipSeconds": round(have, 3),
                                      "chainedSeconds": round(end - have, 3), "videoSeconds": round(end, 3)})
    end = math.floor(have * fps) / fps  # whole frames of the clip, not one more
    return Fill(source, end, {"mode": "end", "clipSeconds": round(have, 3), "videoSeconds": round(end, 3)})
