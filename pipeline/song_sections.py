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
# Bars that match bars elsewhere this closely, over MIN_REPEAT_BARS on average (cosine of standardised features),
# are the same music coming back: the same chords, tune and sound, played again (exact copies score ~0.95-1, a
# chorus played loosely ~0.8-0.87). A loop under a changing lead (<= 0.66 here), or a verse's tune under new words
# (0.6-0.65), stays below.
REPEAT_SIMILARITY = 0.75
NEAR_LAG_BARS = 12  # repeats closer than this may be a section looping (<= 0.66 here): they must match more closely
NEAR_REPEAT_SIMILARITY = 0.8
MIN_REPEAT_BARS = 4
EDGE_DROP = 0.1
MIN_REPEAT_LAG_BARS = 2
LINK_SHARE = 0.5  # of the shorter of two segments: how much of it a repeat must map onto the other to link them
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
    """Runs of bars that come back later on: diagonals of the similarity whose mean over MIN_REPEAT_BARS stays
    high (so a fill or a different drum hit inside a repeat does not break it), trimmed to bars that match."""
    n = similarity.shape[0]
    w = MIN_REPEAT_BARS
    found: list[Stripe] = []
    for lag in range(MIN_REPEAT_LAG_BARS, n - w + 1):
        diagonal = np.diagonal(similarity, lag)
        threshold = REPEAT_SIMILARITY if lag >= NEAR_LAG_BARS else NEAR_REPEAT_SIMILARITY
        summed = np.concatenate([[0.0], np.cumsum(diagonal)])
        held = (summed[w:] - summed[:-w]) / w >= threshold  # the window from bar i holds
        edges = np.flatnonzero(np.diff(np.concatenate([[0], held.astype(int), [0]])))
        for j0, j1 in zip(edges[::2], edges[1::2], strict=True):
            i0, i1 = int(j0), int(j1) + w - 1
            # An edge bar below the threshold, or clearly below the bars inside it, belongs to the next section
            # over: the bar before a chorus often matches the bar before its return, only less closely.
            while i0 < i1 and diagonal[i0] < _edge_floor(diagonal[i0 + 1 : min(i1, i0 + 1 + w)], threshold):
                i0 += 1
            while i1 > i0 and diagonal[i1 - 1] < _edge_floor(diagonal[max(i0, i1 - 1 - w) : i1 - 1], threshold):
                i1 -= 1
            if i1 - i0 >= w:
                found.append((i0, i1, lag, float(diagonal[i0:i1].mean())))
    return found


def _edge_floor(inside: np.ndarray, threshold: float) -> float:
    return max(threshold, float(inside.mean()) - EDGE_DROP) if inside.size else threshold


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
    cuts = [0, n]

    def add(candidates: list[int], where: np.ndarray | None = None) -> None:
        for k in sorted(set(candidates)):  # a cut too close to one already made is dropped
            if 0 < k < n and (where is None or where[k]) and all(abs(k - c) >= MIN_SECTION_BARS for c in cuts):
                cuts.append(k)

    # In priority order: where repeats start (exact, and where a clip starts), where they end, where the level
    # steps inside a repeat (a verse and its chorus that come back together, in one stripe), and where new
    # material changes.
    add([i for i0, _, lag, _ in stripes for i in (i0, i0 + lag)])
    add([i for _, i1, lag, _ in stripes for i in (i1, i1 + lag)] +
        [int(k) for k in np.flatnonzero(np.diff(covered.astype(int))) + 1])
    add(level_steps, covered)
    add(novelty_bounds, ~covered)
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

    # Mostly new material is a one-off, whatever the edge of a repeat touches.
    new = [bool(covered[a:b].mean() < 0.5) for a, b in segments]
    shared: dict[tuple[int, int], int] = {}  # bars a stripe maps from one segment onto another
    best: dict[tuple[int, int], float] = {}
    if stripes:
        starts = np.array([a for a, _ in segments])
        bars = np.concatenate([np.arange(i0, i1) for i0, i1, _, _ in stripes])
        lags = np.concatenate([np.full(i1 - i0, lag) for i0, i1, lag, _ in stripes])
        means = np.concatenate([np.full(i1 - i0, mean) for i0, i1, _, mean in stripes])
        pairs = np.stack([np.searchsorted(starts, bars, side="right") - 1,
                          np.searchsorted(starts, bars + lags, side="right") - 1], axis=1)
        found, inverse, counts = np.unique(pairs, axis=0, return_inverse=True, return_counts=True)
        top = np.zeros(len(found))
        np.maximum.at(top, inverse.ravel(), means)
        for (a, b), count, mean in zip(found.tolist(), counts.tolist(), top.tolist(), strict=True):
            shared[a, b], best[a, b] = count, mean
    match = [0.0] * n
    for (a, b), bars_mapped in shared.items():
        shorter = min(segments[a][1] - segments[a][0], segments[b][1] - segments[b][0])
        # A stripe's edge spilling a bar into the next section links nothing: most of one segment must map.
        if a != b and not new[a] and not new[b] and bars_mapped >= max(MIN_SECTION_BARS, LINK_SHARE * shorter):
            parent[root(b)] = root(a)
            match[a], match[b] = max(match[a], best[a, b]), max(match[b], best[a, b])
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
