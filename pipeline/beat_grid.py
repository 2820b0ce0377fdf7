"""The beat grid: tempo and beats from the onset envelope, then bar lines (downbeats) and the bar length.

Pure numpy over per-frame features that analyse_audio computes; no state, no I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

MIN_BPM, MAX_BPM = 60.0, 200.0  # the metrical-level checks below keep the tempo inside this
SEARCH_BPM = (70.0, 180.0)  # where the autocorrelation looks first
PREFERRED_BPM = 120.0  # the tempo prior's centre, which settles half/double-tempo ambiguity first
# Between two tracked beats the bass and drums (the low band) are this strong, relative to on the beats, when the
# tracker has settled on half the tempo (it is counting kick-snare pairs as one beat).
HALF_TEMPO_MIDPOINTS = 0.6
# One of every two tracked beats this weak in the low band: the tracker counts the off-beats as beats.
DOUBLE_TEMPO_ALTERNATE = 0.3
# A steady beat: the onset envelope's autocorrelation at the beat period, how much stronger the onsets are on the
# beats than anywhere else (drums and bass lines: 4-13 here; slow swells: 1.5) and a tempo that holds (a rubato
# player's notes do fall on their beats, but the beat period wanders: the drift test below catches that).
STEADY_AUTOCORRELATION = 0.15
STEADY_BEAT_CONTRAST = 1.6
MIN_STEADY_BEATS = 8
DRIFT_WINDOW_SECONDS = 8.0
DRIFT_RANGE = 1.4  # local periods are looked for between the song's period / 1.4 and x 1.4
MAX_TEMPO_DRIFT = 0.05  # local beat periods spread wider than this (IQR / median): rubato, no grid to cut on
DRIFT_MIN_PEAK = 0.1  # a window whose autocorrelation peaks lower has no beat of its own to measure
BAR_LENGTHS = (4, 3)  # beats per bar tried, the first preferred
THREE_FOUR_MARGIN = 1.3  # 3/4 must explain the chord changes this much better than 4/4 to be chosen
PHASE_JUMP_PENALTY = 4.0  # in standard deviations of the downbeat evidence: a bar line moves only for a reason


@dataclass(frozen=True)
class BeatGrid:
    tempo: float  # BPM, 0 without a steady beat
    beats: tuple[float, ...]  # seconds
    downbeats: tuple[float, ...]  # seconds, a subset of beats
    beats_per_bar: int
    steady: bool


NO_GRID = BeatGrid(tempo=0.0, beats=(), downbeats=(), beats_per_bar=4, steady=False)


def track_beats(onset: np.ndarray, low_onset: np.ndarray, frame_seconds: float) -> tuple[float, np.ndarray, bool]:
    """(bpm, beat positions in onset frames, steady) from the onset envelope and its low-band (bass, drums) part.

    The tempo comes from the envelope's autocorrelation; the metrical level is then checked against the low band,
    where kick and snare mark the beat and hi-hats (which double a tracker's tempo) are absent.
    """
    found = _tempo(onset, frame_seconds)
    if found is None:
        return 0.0, np.zeros(0), False
    period, strength = found
    beats = _follow(onset, period)
    for _ in range(2):
        if 60.0 / (period / 2 * frame_seconds) <= MAX_BPM and _midpoint_ratio(low_onset, beats) > HALF_TEMPO_MIDPOINTS:
            period /= 2
            beats = _follow(onset, period)
            continue
        if 60.0 / (period * 2 * frame_seconds) >= MIN_BPM:
            weak = _weak_alternate(low_onset, beats)
            if weak is not None:
                period *= 2
                beats = _follow(onset, period, start=beats[weak])
                continue
        break
    steady = strength >= STEADY_AUTOCORRELATION and is_steady(onset, beats, period, frame_seconds)
    return 60.0 / (period * frame_seconds), beats, steady


def is_steady(onset: np.ndarray, beats: np.ndarray, period: float, frame_seconds: float) -> bool:
    """Enough beats, onsets clearly stronger on them than elsewhere, and a tempo that does not wander."""
    return (beats.size >= MIN_STEADY_BEATS and period > 0
            and beat_contrast(onset, beats) >= STEADY_BEAT_CONTRAST
            and tempo_drift(onset, period, frame_seconds) <= MAX_TEMPO_DRIFT)


def tempo_drift(onset: np.ndarray, period: float, frame_seconds: float) -> float:
    """How much the beat period wanders over the song: the spread (interquartile range over the median) of the
    local period, from the onset autocorrelation in windows of DRIFT_WINDOW_SECONDS near the global `period`.

    Rubato playing moves it by tens of percent; a band with a click or a steady drummer by one or two.
    """
    window = round(DRIFT_WINDOW_SECONDS / frame_seconds)
    lo, hi = max(1, math.floor(period / DRIFT_RANGE)), math.ceil(period * DRIFT_RANGE)
    if onset.size < window or hi * 2 >= window:
        return 0.0
    local = []
    for start in range(0, onset.size - window + 1, window // 2):
        part = onset[start : start + window] - onset[start : start + window].mean()
        energy = float(np.dot(part, part))
        if energy <= 1e-12:
            continue
        ac = np.array([float(np.dot(part[:-lag], part[lag:])) for lag in range(lo, hi + 1)]) / energy
        best = int(np.argmax(ac))
        if ac[best] < DRIFT_MIN_PEAK:
            continue
        offset = 0.0  # between whole lags (parabola through the peak), or a 15.5-frame beat would seem to wander
        if 0 < best < ac.size - 1:
            curvature = ac[best - 1] - 2 * ac[best] + ac[best + 1]
            if curvature < 0:
                offset = float(np.clip(0.5 * (ac[best - 1] - ac[best + 1]) / curvature, -0.5, 0.5))
        local.append(lo + best + offset)  # a peak at the range's edge is a tempo far off the song's: it counts
    if len(local) < 3:
        return 0.0
    q1, median, q3 = np.percentile(local, [25, 50, 75])
    return float((q3 - q1) / median)


def _tempo(onset: np.ndarray, frame_seconds: float) -> tuple[float, float] | None:
    """(beat period in frames, autocorrelation there) in the search range, or None when nothing repeats."""
    n = onset.size
    lag_min = max(1, math.floor(60.0 / SEARCH_BPM[1] / frame_seconds))
    lag_max = math.ceil(60.0 / SEARCH_BPM[0] / frame_seconds)
    # Onset peaks are a frame wide; blurred a little, a period between two whole lags is not split in two.
    kernel = np.exp(-0.5 * np.arange(-3, 4) ** 2)
    blurred = np.convolve(onset, kernel / kernel.sum(), mode="same")
    centred = blurred - blurred.mean()
    if n < 2 * lag_max + 2 or not np.any(centred):
        return None
    size = 1 << (2 * n - 1).bit_length()
    spectrum = np.fft.rfft(centred, size)
    ac = np.fft.irfft(spectrum * np.conj(spectrum), size)[: 2 * lag_max + 2]
    ac = ac / ac[0]
    lags = np.arange(lag_min, lag_max + 1)
    bpm = 60.0 / (lags * frame_seconds)
    prior = np.exp(-0.5 * np.log2(bpm / PREFERRED_BPM) ** 2)
    # A true beat period also lines up with its double; a half-beat (eighth notes) does not always.
    best = int(lags[np.argmax((ac[lags] + 0.5 * ac[2 * lags]) * prior)])
    if ac[best] < 0.05:
        return None
    y0, y1, y2 = ac[best - 1], ac[best], ac[best + 1]
    curvature = y0 - 2 * y1 + y2
    delta = float(np.clip(0.5 * (y0 - y2) / curvature, -0.5, 0.5)) if curvature < 0 else 0.0
    return best + delta, float(ac[best])


def _follow(onset: np.ndarray, period: float, start: float | None = None) -> np.ndarray:
    """Beats every `period` frames, phased to sum the most onset strength, each snapped to a nearby onset peak so
    slow drift is followed. `start` fixes the phase (a beat that must stay on the grid)."""
    n = onset.size
    if start is None:
        phases = np.arange(math.ceil(period))
        grid = np.round(phases[:, None] + np.arange(int(n / period) + 1)[None, :] * period).astype(int)
        comb = np.where(grid < n, onset[np.minimum(grid, n - 1)], 0.0).sum(axis=1)
        position = float(phases[int(np.argmax(comb))])
    else:
        position = float(start) - period * math.floor(float(start) / period)
    tolerance = 0.15 * period
    threshold = 0.3 * float(np.percentile(onset, 90))
    beats: list[float] = []
    while position < n - 0.5:
        lo, hi = max(0, math.floor(position - tolerance)), min(n, math.ceil(position + tolerance) + 1)
        window = onset[lo:hi]
        if window.size and window.max() > threshold:
            candidates = np.arange(lo, hi)
            weighted = window * np.exp(-0.5 * ((candidates - position) / tolerance) ** 2)
            position = float(candidates[int(np.argmax(weighted))])
        beats.append(position)
        position += period
    return np.array(beats)


def _peak_near(envelope: np.ndarray, positions: np.ndarray, radius: int = 2) -> np.ndarray:
    """The envelope's maximum within `radius` frames of each position."""
    idx = np.clip(np.round(positions).astype(int), 0, envelope.size - 1)
    offsets = np.arange(-radius, radius + 1)
    return envelope[np.clip(idx[:, None] + offsets[None, :], 0, envelope.size - 1)].max(axis=1)


def _midpoint_ratio(low_onset: np.ndarray, beats: np.ndarray) -> float:
    """Low-band onset strength half-way between beats, relative to on them."""
    if beats.size < 4:
        return 0.0
    on = float(np.mean(_peak_near(low_onset, beats)))
    off = float(np.mean(_peak_near(low_onset, (beats[:-1] + beats[1:]) / 2)))
    return off / on if on > 1e-12 else 0.0


def _weak_alternate(low_onset: np.ndarray, beats: np.ndarray) -> int | None:
    """When every other beat is near silent in the low band, the index (0 or 1) of the strong ones; else None."""
    if beats.size < 8:
        return None
    strength = _peak_near(low_onset, beats)
    even, odd = float(np.mean(strength[0::2])), float(np.mean(strength[1::2]))
    if max(even, odd) <= 1e-12 or min(even, odd) / max(even, odd) > DOUBLE_TEMPO_ALTERNATE:
        return None
    return 0 if even >= odd else 1


def beat_contrast(onset: np.ndarray, beats: np.ndarray) -> float:
    """Mean onset strength at the beats over the mean onset strength everywhere."""
    overall = float(np.mean(onset))
    return float(np.mean(_peak_near(onset, beats, radius=1))) / overall if overall > 1e-12 else 0.0


def find_downbeats(beat_frames: np.ndarray, chroma: np.ndarray, low_onset: np.ndarray) -> tuple[np.ndarray, int]:
    """(indices of the beats that start a bar, beats per bar).

    Chords change on bar lines and the kick lands on them, so each beat's evidence is how much the harmony changes
    there plus its low-band onset; a Viterbi pass over "position in the bar" finds the bar lines that explain the
    most evidence, moving the bar's phase only where that pays PHASE_JUMP_PENALTY (a dropped or extra beat).
    """
    n = beat_frames.size
    if n < 2:
        return np.arange(n), BAR_LENGTHS[0]
    evidence = _downbeat_evidence(beat_frames, chroma, low_onset)
    best: tuple[float, int, np.ndarray] | None = None
    for length in BAR_LENGTHS:
        path, score = _bar_positions(evidence, length)
        contrast = score * length / n  # mean evidence per bar line, so shorter bars gain nothing by number
        margin = 1.0 if length == BAR_LENGTHS[0] else THREE_FOUR_MARGIN
        if best is None or contrast > best[0] * margin:
            best = (contrast, length, path)
    assert best is not None
    _, length, path = best
    return np.flatnonzero(path == 0), length


def _downbeat_evidence(beat_frames: np.ndarray, chroma: np.ndarray, low_onset: np.ndarray) -> np.ndarray:
    """Per beat: harmonic change into it plus its low-band onset, standardised."""
    edges = np.clip(np.round(beat_frames).astype(int), 0, chroma.shape[0])
    edges = np.append(edges, chroma.shape[0])
    summed = np.vstack([np.zeros((1, 12)), np.cumsum(chroma, axis=0)])
    per_beat = summed[edges[1:]] - summed[edges[:-1]]
    norms = np.linalg.norm(per_beat, axis=1, keepdims=True)
    unit = np.divide(per_beat, norms, out=np.zeros_like(per_beat), where=norms > 1e-12)
    change = np.zeros(beat_frames.size)
    change[1:] = 1.0 - np.sum(unit[1:] * unit[:-1], axis=1)
    low = _peak_near(low_onset, beat_frames)
    evidence = _z(change) + 0.5 * _z(low)
    return evidence


def _z(x: np.ndarray) -> np.ndarray:
    std = float(x.std())
    return (x - x.mean()) / std if std > 1e-12 else np.zeros_like(x)


def _bar_positions(evidence: np.ndarray, length: int) -> tuple[np.ndarray, float]:
    """Viterbi over each beat's position in a bar of `length` beats; the downbeats (position 0) collect evidence.

    Plain Python lists: with three or four states per beat, numpy's per-call cost would dominate.
    """
    values = evidence.tolist()
    score = [values[0] if p == 0 else 0.0 for p in range(length)]
    back: list[list[int]] = []
    for value in values[1:]:
        top = max(range(length), key=score.__getitem__)
        jump = score[top] - PHASE_JUMP_PENALTY
        row, new = [], []
        for p in range(length):
            follow = score[p - 1]  # position p-1 -> p (p = 0 follows the bar's last beat)
            if follow >= jump:
                row.append((p - 1) % length)
                new.append(follow)
            else:
                row.append(top)
                new.append(jump)
        new[0] += value
        back.append(row)
        score = new
    position = max(range(length), key=score.__getitem__)
    best = score[position]
    path = [position]
    for row in reversed(back):
        position = row[position]
        path.append(position)
    return np.array(path[::-1]), float(best)
