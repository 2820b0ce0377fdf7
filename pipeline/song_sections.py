"""Sections of a song and which of them come back: a bar-by-bar self-similarity of harmony, timbre and level.

Runs of bars that match bars elsewhere are repeats; sections are cut where repeats start and end, where the level
steps, and elsewhere where the music changes. Sections a repeat links form a group; a group of two or more is music
that comes back (the chorus is its loudest one), a group of one is a one-off.
"""

from __future__ import annotations

import numpy as np

from pipeline.models import Section

KERNEL_BARS = 4  # the novelty kernel looks this many bars either side of a candidate boundary
MIN_SECTION_BARS = 2
NOVELTY_FLOOR = 0.35  # of the song's strongest boundary: weaker peaks are changes inside a section
# Bars that match bars elsewhere this closely (cosine of standardised features) are the same music coming back:
# the same chords, tune and sound. A verse's chords under a new tune, or a loop under a changing lead, stay below.
REPEAT_SIMILARITY = 0.85
NEAR_LAG_BARS = 12  # repeats closer than this are a section looping; they must match more closely to count
NEAR_REPEAT_SIMILARITY = 0.92
GAP_ALLOWANCE = 0.25  # one bar this much below the threshold does not break a run (a fill, a crash)
MIN_REPEAT_BARS = 4
MIN_REPEAT_LAG_BARS = 2
LEVEL_STEP = 0.12  # of the song's loudest (rms 0..1): a step this big between two bars' means is a new section
LEVEL_STEP_BARS = 2  # bars averaged either side of a level step
CHROMA_WEIGHT, TIMBRE_WEIGHT, LEVEL_WEIGHT = 0.6, 0.3, 0.1


def bar_features(chroma: np.ndarray, bands: np.ndarray, edges: np.ndarray, parts: int) -> np.ndarray:
    """One row per bar (edges in feature frames, len = bars + 1): the chroma of each of its `parts` (its beats),
    its spectral shape and its level, standardised over the song, weighted, unit length."""
    n_bars = edges.size - 1
    sub = np.round(edges[:-1, None] + (edges[1:] - edges[:-1])[:, None] * np.arange(parts + 1)[None, :] / parts)
    sub = np.clip(sub.astype(int), 0, chroma.shape[0])
    c_sum = np.vstack([np.zeros((1, 12)), np.cumsum(chroma, axis=0)])
    b_sum = np.vstack([np.zeros((1, 12)), np.cumsum(bands, axis=0)])
    pitch = c_sum[sub[:, 1:]] - c_sum[sub[:, :-1]]  # bars x parts x 12
    pitch = pitch / (pitch.sum(axis=2, keepdims=True) + 1e-12)
    energy = b_sum[sub[:, -1]] - b_sum[sub[:, 0]]
    frames = np.maximum(sub[:, -1] - sub[:, 0], 1)[:, None]
    log_bands = np.log10(energy / frames + 1e-10)
    timbre = log_bands - log_bands.mean(axis=1, keepdims=True)
    level = log_bands.max(axis=1, keepdims=True)
    silent = (energy.sum(axis=1) / frames[:, 0]) < 1e-4 * float(np.max(energy.sum(axis=1) / frames[:, 0]) + 1e-20)
    features = np.hstack([
        _unit(_standardise(pitch.reshape(n_bars, -1))) * CHROMA_WEIGHT,
        _unit(_standardise(timbre)) * TIMBRE_WEIGHT,
        _standardise(level) * LEVEL_WEIGHT,
    ])
    features[silent] = 0.0  # near-silent bars all look alike; they must not count as music coming back
    return _unit(features)


def find_sections(features: np.ndarray, bar_starts: np.ndarray, song_end: float, loudness: np.ndarray
                  ) -> tuple[Section, ...]:
    """Sections over the bars (start times `bar_starts`, per-bar `loudness` 0..1), grouped by what repeats."""
    n = features.shape[0]
    if n == 0:
        return ()
    similarity = features @ features.T
    novelty_bounds = _boundaries(similarity)
    steps = _level_steps(loudness)
    stripes = [_start_at_step(stripe, set(steps)) for stripe in _stripes(similarity)]
    covered = np.zeros(n, dtype=bool)
    for i0, i1, lag, _ in stripes:
        covered[i0:i1] = True
        covered[i0 + lag : i1 + lag] = True
    segments = _segments(novelty_bounds, steps, stripes, covered)
    groups, match = _group(segments, stripes, covered)
    counts = {g: groups.count(g) for g in set(groups)}
    energy = [float(np.mean(loudness[a:b])) for a, b in segments]
    labels = _labels(groups, counts, energy)
    ends = np.append(bar_starts[1:], song_end)
    return tuple(
        Section(start=round(float(bar_starts[a]), 3), end=round(float(ends[b - 1]), 3), group=groups[i],
                count=counts[groups[i]], label=labels[i], energy=round(energy[i], 4),
                similarity=round(float(np.clip(match[i], 0.0, 1.0)), 4))
        for i, (a, b) in enumerate(segments)
    )


def _boundaries(similarity: np.ndarray) -> list[int]:
    """Bar indices where the music changes (0 included): peaks of a checkerboard novelty along the diagonal."""
    n = similarity.shape[0]
    w = KERNEL_BARS
    taper = np.exp(-0.5 * ((np.arange(-w, w) + 0.5) / (0.6 * w)) ** 2)
    sign = np.sign(np.arange(-w, w) + 0.5)
    kernel = np.outer(sign, sign) * np.outer(taper, taper)
    padded = np.zeros((n + 2 * w, n + 2 * w))
    padded[w : w + n, w : w + n] = similarity
    novelty = np.array([float(np.sum(kernel * padded[k : k + 2 * w, k : k + 2 * w])) for k in range(n)])
    novelty[0] = 0.0
    peak = float(novelty.max())
    chosen: list[int] = []
    if peak > 1e-9:
        for k in np.argsort(-novelty):
            if novelty[k] < NOVELTY_FLOOR * peak:
                break
            if all(abs(int(k) - c) >= MIN_SECTION_BARS for c in chosen):
                chosen.append(int(k))
    return [0, *sorted(chosen)]


Stripe = tuple[int, int, int, float]  # bars [i0, i1) come back `lag` bars later, with this mean similarity


def _stripes(similarity: np.ndarray) -> list[Stripe]:
    """Runs of bars that come back note for note later on: diagonals of the similarity that stay high."""
    n = similarity.shape[0]
    found: list[Stripe] = []
    for lag in range(MIN_REPEAT_LAG_BARS, n - MIN_REPEAT_BARS + 1):
        diagonal = np.diagonal(similarity, lag)
        threshold = REPEAT_SIMILARITY if lag >= NEAR_LAG_BARS else NEAR_REPEAT_SIMILARITY
        high = diagonal >= threshold
        high[1:-1] |= high[:-2] & high[2:] & (diagonal[1:-1] >= threshold - GAP_ALLOWANCE)  # one odd bar
        edges = np.flatnonzero(np.diff(np.concatenate([[0], high.astype(int), [0]])))
        for i0, i1 in zip(edges[::2], edges[1::2], strict=True):
            if i1 - i0 >= MIN_REPEAT_BARS:
                found.append((int(i0), int(i1), lag, float(diagonal[i0:i1].mean())))
    return found


def _level_steps(loudness: np.ndarray) -> list[int]:
    """Bar lines where the level steps up or down and stays there (a chorus coming in after its verse)."""
    w = LEVEL_STEP_BARS
    n = loudness.size
    step = np.zeros(n)
    for k in range(w, n - w + 1):
        step[k] = abs(float(loudness[k : k + w].mean() - loudness[k - w : k].mean()))
    return [k for k in range(w, n - w + 1)
            if step[k] >= LEVEL_STEP and step[k] >= step[max(0, k - 1) : k + 2].max()]


def _start_at_step(stripe: Stripe, steps: set[int]) -> Stripe:
    """Start a repeat where the level steps a bar or two into it at both of its ends: the bar before a chorus often
    matches the bar before its return (the same chord winding down), but the chorus starts where it gets louder."""
    i0, i1, lag, mean = stripe
    for k in range(i0 + 1, min(i0 + 2, i1 - MIN_REPEAT_BARS) + 1):
        if k in steps and k + lag in steps:
            return k, i1, lag, mean
    return stripe


def _segments(novelty_bounds: list[int], level_steps: list[int], stripes: list[Stripe], covered: np.ndarray
              ) -> list[tuple[int, int]]:
    """Repeated stretches cut where their repeats start and end, and where their level steps (a verse and its
    chorus that come back together, in one stripe); the rest cut at novelty peaks."""
    n = covered.size
    firm = {0, n}
    for i0, i1, lag, _ in stripes:
        firm.update((i0, i1, i0 + lag, i1 + lag))
    firm.update(int(k) for k in np.flatnonzero(np.diff(covered.astype(int))) + 1)
    cuts: list[int] = []
    for k in sorted(firm):  # where repeats start and end is exact; a cut too close to the last one is dropped
        if not cuts or k - cuts[-1] >= MIN_SECTION_BARS:
            cuts.append(k)
    cuts[-1] = n
    for k in level_steps:
        if covered[k] and all(abs(k - c) >= MIN_SECTION_BARS for c in cuts):
            cuts.append(k)
    # Novelty only cuts new material, and only away from the firm cuts.
    for k in novelty_bounds:
        if not covered[k] and all(abs(k - c) >= MIN_SECTION_BARS for c in cuts):
            cuts.append(k)
    cuts.sort()
    return list(zip(cuts[:-1], cuts[1:], strict=True))


def _group(segments: list[tuple[int, int]], stripes: list[Stripe], covered: np.ndarray
           ) -> tuple[list[int], list[float]]:
    """A group id per segment (segments a stripe links share one) and how closely each matches its repeat."""
    n = len(segments)
    parent = list(range(n))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    starts = np.array([a for a, _ in segments])

    def segment_of(bar: int) -> int:
        return int(np.searchsorted(starts, bar, side="right") - 1)

    # Mostly new material is a one-off, whatever the edge of a repeat touches.
    new = [bool(covered[a:b].mean() < 0.5) for a, b in segments]
    match = [0.0] * n
    for i0, i1, lag, mean in stripes:
        for bar in range(i0, i1):
            a, b = segment_of(bar), segment_of(bar + lag)
            if a != b and not new[a] and not new[b]:
                parent[root(b)] = root(a)
                match[a], match[b] = max(match[a], mean), max(match[b], mean)
    roots = [-1 - i if new[i] else root(i) for i in range(n)]
    renumber = {r: k for k, r in enumerate(dict.fromkeys(roots))}
    return [renumber[r] for r in roots], match


def _labels(groups: list[int], counts: dict[int, int], energy: list[float]) -> list[str]:
    """chorus: the loudest group that comes back; verse: another that comes back; one-offs by position."""
    repeated = [g for g in counts if counts[g] >= 2]
    group_energy = {g: np.mean([e for gi, e in zip(groups, energy, strict=True) if gi == g]) for g in repeated}
    chorus = max(group_energy, key=group_energy.get) if group_energy else None
    labels = []
    for i, g in enumerate(groups):
        if g == chorus:
            labels.append("chorus")
        elif counts[g] >= 2:
            labels.append("verse")
        elif i == 0:
            labels.append("intro")
        elif i == len(groups) - 1:
            labels.append("outro")
        else:
            labels.append("bridge")
    return labels


def _standardise(x: np.ndarray) -> np.ndarray:
    std = x.std(axis=0)
    return np.divide(x - x.mean(axis=0), std, out=np.zeros_like(x), where=std > 1e-9)


def _unit(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 1e-12)
