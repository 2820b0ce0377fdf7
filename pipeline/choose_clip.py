"""Pick the clip of a song to use: its hook (loud, busy, repeated, lyric-dense), starting on a beat or a line.

Each run draws among the few best non-overlapping candidates with its own random generator, so a batch varies
but every clip sits on a hook.
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.errors import BadInput
from pipeline.lyrics import lines_in_window
from pipeline.models import AudioAnalysis, ClipChoice, LyricLine

# How much each quality of a window counts. Lip-sync wants a face singing, so lyrics count far more then.
WEIGHTS = {"loud": 0.3, "busy": 0.2, "repeat": 0.25, "lyrics": 0.15, "lift": 0.1}
LYRIC_WEIGHTS = {"loud": 0.15, "busy": 0.1, "repeat": 0.2, "lyrics": 0.45, "lift": 0.1}
KEEP_FRACTION = 0.85  # candidates scoring below this share of the best are not hooks, whatever the seed
MIN_SEPARATION = 0.5  # of the clip length: drawn candidates differ by at least this much
LIFT_SECONDS = 2.0  # a clip that starts where the song gets louder (a chorus coming in) starts well
HEARD_LINE = 0.3  # seconds of a line inside the clip before it counts as one of the clip's lines
WORD_EDGE = 0.02  # seconds: a start this close to a word's edge is between words, not inside one
FALLBACK_STEP = 1.0  # seconds between candidate starts when a song has neither beats nor lyrics


@dataclass(frozen=True)
class _Windows:
    """Every candidate window's qualities, each 0..1, as arrays over the candidates."""

    starts: np.ndarray
    loud: np.ndarray
    busy: np.ndarray
    repeat: np.ndarray
    lyrics: np.ndarray
    lift: np.ndarray

    def scores(self, weights: dict[str, float]) -> np.ndarray:
        return sum(getattr(self, name) * weight for name, weight in weights.items())


def choose_clip(
    analysis: AudioAnalysis,
    lyrics: Sequence[LyricLine],
    *,
    clip_seconds: float,
    rng: random.Random,
    prefer_lyrics: bool = False,
    top_k: int = 3,
) -> ClipChoice:
    """Choose where the clip starts and how long it is, with a score (0..1) and a reason a person can read."""
    if not (math.isfinite(clip_seconds) and clip_seconds > 0):
        raise BadInput(f"The clip length must be positive (got {clip_seconds})")
    duration = analysis.duration
    weights = LYRIC_WEIGHTS if prefer_lyrics else WEIGHTS
    words = _word_times(lyrics)
    refrains = _refrain_lines(lyrics)

    if duration <= clip_seconds:
        windows = _measure(analysis, np.array([0.0]), duration, words, refrains)
        return _choice(lyrics, windows, 0, duration, weights, prefix="whole song (shorter than the clip)")

    latest = duration - clip_seconds
    windows = _measure(analysis, np.array(_candidate_starts(analysis, lyrics, latest)), clip_seconds, words,
                       refrains)
    scores = windows.scores(weights)
    if float(scores.max() - scores.min()) < 1e-9:
        # Nothing stands out (silence, a drone): the top of the song is as good as anywhere, and predictable.
        return _choice(lyrics, windows, 0, clip_seconds, weights, prefix="no clear hook")
    ranked = _group_scores(analysis, windows.starts, scores)
    shortlist = _shortlist(windows.starts, ranked, top_k=max(1, top_k), separation=clip_seconds * MIN_SEPARATION)
    pick = rng.choices(shortlist, weights=[float(scores[i]) for i in shortlist])[0]
    start = float(windows.starts[pick])
    chorus = any(x.label == "chorus" and x.start - 1.0 <= start < x.end for x in analysis.sections)
    return _choice(lyrics, windows, pick, clip_seconds, weights, chorus=chorus)


def _candidate_starts(analysis: AudioAnalysis, lyrics: Sequence[LyricLine], latest: float) -> list[float]:
    """Where a clip could begin, moved off any word it would cut into: the starts of the sections that come back
    (downbeats) and the lines sung as they begin; without repeated sections, any beat or line start."""
    spans = _WordSpans.of(lyrics)
    beat = 60.0 / analysis.tempo if analysis.tempo > 0 else 0.5
    # A section start inside a word moves to its line's start only if that is the section's pickup (a beat before
    # at most): further back it would be the previous section's last line, and the section's own lines are there.
    starts = _clear_of_words(_repeat_starts(analysis, lyrics, latest, beat), spans, latest, max_move=beat)
    if not starts:  # nothing repeats: any bar line (or beat, without bars) or line start
        grid = analysis.downbeats or analysis.beats
        raw = [t for t in (*grid, *(line.start for line in lyrics)) if 0.0 <= t <= latest]
        if not raw:
            raw = [float(t) for t in np.arange(0.0, latest + 1e-9, FALLBACK_STEP)]
        starts = _clear_of_words(raw, spans, latest)
    return starts or [0.0]


def _clear_of_words(raw: Sequence[float], spans: _WordSpans, latest: float, max_move: float | None = None
                    ) -> list[float]:
    """The starts, each moved off any word it falls in (dropped if that moves it more than `max_move`), sorted."""
    starts = set()
    for t in raw:
        moved = spans.clear_of_words(t)
        if moved is None or not 0.0 <= moved <= latest or (max_move is not None and abs(moved - t) > max_move):
            continue
        starts.add(round(moved, 3) if round(moved, 3) <= latest else moved)
    return sorted(starts)


def _repeat_starts(analysis: AudioAnalysis, lyrics: Sequence[LyricLine], latest: float, beat: float) -> list[float]:
    """Starts of the sections that repeat, and of lines sung into one (a beat before it to a bar after it).

    A one-off section (a loud bridge, a solo, a drop intro) is never a start, however loud: the hook is what
    comes back. Songs with no repeated section at all give nothing here, and the caller falls back to beats.
    Inside a run of sections of one group (a chorus cut in pieces, a double chorus) a later piece starts a clip
    only if the run still lasts the clip from there: a clip started half-way through a chorus runs out of it.
    """
    bar = beat * max(1, analysis.beats_per_bar)
    clip_seconds = analysis.duration - latest
    sections = analysis.sections
    starts: list[float] = []
    for i, section in enumerate(sections):
        if section.count < 2 or section.start > latest:
            continue
        run_end = section.end
        for later in sections[i + 1 :]:
            if later.group != section.group:
                break
            run_end = later.end
        first_of_run = i == 0 or sections[i - 1].group != section.group
        if not first_of_run and run_end - section.start < clip_seconds:
            continue
        starts.append(section.start)
        starts += [line.start for line in lyrics if section.start - beat <= line.start <= section.start + bar]
    return [t for t in starts if 0.0 <= t <= latest]


@dataclass(frozen=True)
class _WordSpans:
    """Every word's span and its line's start, as arrays, to test candidate starts quickly."""

    starts: np.ndarray
    ends: np.ndarray
    line_starts: np.ndarray

    @classmethod
    def of(cls, lyrics: Sequence[LyricLine]) -> _WordSpans:
        spans = [(w.start, w.end, line.start) for line in lyrics for w in line.words]
        arr = np.array(spans, dtype=float).reshape(-1, 3)
        return cls(starts=arr[:, 0], ends=arr[:, 1], line_starts=arr[:, 2])

    def clear_of_words(self, t: float) -> float | None:
        """`t`, or where to start instead when `t` falls inside a word: that word's line start, else just after it."""
        for _ in range(3):  # overlapping lines could land a moved start inside another word; give up after a few
            inside = np.flatnonzero((self.starts + WORD_EDGE < t) & (t < self.ends - WORD_EDGE))
            if inside.size == 0:
                return t
            k = int(inside[0])
            t = float(self.line_starts[k]) if self.line_starts[k] < t else float(self.ends[k])
        return None


def _word_times(lyrics: Sequence[LyricLine]) -> np.ndarray:
    """The middle of every sung word, sorted (lines without word times spread their words evenly)."""
    times: list[float] = []
    for line in lyrics:
        if line.words:
            times.extend((w.start + w.end) / 2 for w in line.words)
        else:
            tokens = line.text.split()
            span = max(line.end - line.start, 0.0)
            times.extend(line.start + span * (k + 0.5) / len(tokens) for k in range(len(tokens)))
    return np.sort(np.array(times, dtype=float))


def _window_means(values: Sequence[float], hop: float, starts: np.ndarray, length: float) -> np.ndarray:
    """Mean of a frame-wise array over [start, start + length) for every start, through a prefix sum."""
    arr = np.asarray(values, dtype=float)
    if arr.size == 0:
        return np.zeros(starts.size)
    summed = np.concatenate([[0.0], np.cumsum(arr)])
    lo = np.clip(np.round(starts / hop).astype(int), 0, arr.size)
    hi = np.clip(np.round((starts + length) / hop).astype(int), 0, arr.size)
    count = hi - lo
    return np.where(count > 0, (summed[hi] - summed[lo]) / np.maximum(count, 1), 0.0)


def _spread(x: np.ndarray) -> np.ndarray:
    """Min-max over the candidates, so quiet songs' choruses still stand out; flat values keep their level."""
    low, high = float(x.min()), float(x.max())
    if high - low < 1e-9:
        return np.clip(x, 0.0, 1.0)
    return (x - low) / (high - low)


def _refrain_lines(lyrics: Sequence[LyricLine]) -> tuple[np.ndarray, np.ndarray]:
    """Every sung line's start, sorted, and whether its words come back elsewhere in the song (1.0) or not."""
    def key(text: str) -> str:
        return " ".join(re.sub(r"[^\w\s']", " ", text.lower()).split())

    sung = sorted((line.start, key(line.text)) for line in lyrics if key(line.text))
    counts = Counter(text for _, text in sung)
    return (np.array([t for t, _ in sung], dtype=float),
            np.array([1.0 if counts[text] >= 2 else 0.0 for _, text in sung]))


def _measure(analysis: AudioAnalysis, starts: np.ndarray, length: float, words: np.ndarray,
             refrains: tuple[np.ndarray, np.ndarray]) -> _Windows:
    hop = analysis.hop_seconds
    loud = _window_means(analysis.rms, hop, starts, length)
    before_start = np.maximum(starts - LIFT_SECONDS, 0.0)
    before = _window_means(analysis.rms, hop, before_start, LIFT_SECONDS)
    after = _window_means(analysis.rms, hop, starts, min(LIFT_SECONDS, length))
    lift = np.where(starts - before_start > hop, np.clip((after - before) * 2.5, 0.0, 1.0), 0.0)
    per_second = (np.searchsorted(words, starts + length) - np.searchsorted(words, starts)) / max(length, 1e-9)
    peak = float(per_second.max()) if per_second.size else 0.0
    return _Windows(
        starts=starts,
        loud=_spread(loud),
        busy=_spread(_window_means(analysis.onset, hop, starts, length)),
        repeat=_repeat_quality(analysis, starts, length, refrains),
        lyrics=per_second / peak if peak > 0 else np.zeros(starts.size),
        lift=lift,
    )


def _repeat_quality(analysis: AudioAnalysis, starts: np.ndarray, length: float,
                    refrains: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """How much the window is music that comes back; with lyrics, half of it is how many of its lines do."""
    heard = np.clip(_window_means(analysis.repetition, analysis.hop_seconds, starts, length), 0.0, 1.0)
    times, repeated = refrains
    if not repeated.any():
        return heard
    summed = np.concatenate([[0.0], np.cumsum(repeated)])
    lo, hi = np.searchsorted(times, starts), np.searchsorted(times, starts + length)
    share = np.where(hi > lo, (summed[hi] - summed[lo]) / np.maximum(hi - lo, 1), 0.0)
    return 0.5 * heard + 0.5 * share


def _group_scores(analysis: AudioAnalysis, starts: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Each candidate ranked by the best candidate of its repeat group: every return of the chorus is as much the
    hook as its loudest one, so a batch draws among them (each still weighted by its own score)."""
    ranked = scores.astype(float).copy()
    beat = 60.0 / analysis.tempo if analysis.tempo > 0 else 0.5
    groups = np.full(starts.size, -1)
    for section in analysis.sections:
        if section.count >= 2:
            groups[(starts >= section.start - beat) & (starts < section.end - beat)] = section.group
    for group in set(groups.tolist()) - {-1}:
        members = groups == group
        ranked[members] = scores[members].max()
    return ranked


def _shortlist(starts: np.ndarray, scores: np.ndarray, *, top_k: int, separation: float) -> list[int]:
    """The best candidates, at most top_k, none within `separation` of a better one and none far below the best."""
    order = sorted(range(starts.size), key=lambda i: (-scores[i], starts[i]))  # ties (a group) by time
    floor = float(scores[order[0]]) * KEEP_FRACTION
    picked: list[int] = []
    for i in order:
        if scores[i] < floor or len(picked) == top_k:
            break
        if all(abs(starts[i] - starts[j]) >= separation for j in picked):
            picked.append(i)
    return picked


def _choice(
    lyrics: Sequence[LyricLine],
    windows: _Windows,
    index: int,
    length: float,
    weights: dict[str, float],
    *,
    prefix: str | None = None,
    chorus: bool = False,
) -> ClipChoice:
    start = float(windows.starts[index])
    clip_lines = lines_in_window(lyrics, start, length, min_overlap=HEARD_LINE)
    score = float(windows.scores(weights)[index])
    return ClipChoice(
        start=start,
        duration=length,
        score=round(score, 3) if math.isfinite(score) else 0.0,
        reason=_reason(windows, index, clip_lines, has_lyrics=bool(lyrics), prefix=prefix, chorus=chorus),
        lyrics=clip_lines,
    )


def _reason(windows: _Windows, i: int, lines: tuple[LyricLine, ...], *, has_lyrics: bool, prefix: str | None,
            chorus: bool = False) -> str:
    """e.g. "chorus: loud, repeated, 3 lyric lines" (`chorus`: the analysis called the section there a chorus)."""
    loud, busy, repeat, dense = windows.loud[i] >= 0.6, windows.busy[i] >= 0.6, windows.repeat[i] >= 0.5, (
        windows.lyrics[i] >= 0.6
    )
    if prefix:
        label = prefix
    elif repeat and (loud or busy or chorus):
        label = "instrumental hook" if has_lyrics and not lines else "chorus"
    elif loud or busy:
        label = "high-energy stretch"
    elif dense:
        label = "lyric-dense stretch"
    else:
        label = "best available stretch"
    parts = [name for name, on in (("loud", loud), ("busy", busy), ("repeated", repeat)) if on]
    if windows.lift[i] >= 0.5:
        parts.append("starts as it lifts")
    if lines:
        parts.append(f"{len(lines)} lyric line{'s' if len(lines) != 1 else ''}")
    elif has_lyrics:
        parts.append("instrumental")
    return f"{label}: {', '.join(parts)}" if parts else label
