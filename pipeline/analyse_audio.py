"""What a song sounds like over time (loudness, onsets, beats, repetition), measured with numpy alone.

The clip chooser and the audio-reactive motion read it; results are cached by the file's content hash.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import math
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path

import numpy as np

from pipeline.errors import BadInput, NotFound
from pipeline.ffmpeg import decode_audio
from pipeline.models import AudioAnalysis

ANALYSIS_VERSION = 2  # bump when the numbers below change meaning, so old cache entries are not reused
SAMPLE_RATE = 22050
FINE_HOP = 512  # ~23 ms: the onset envelope the beat tracker reads
HOP = 2 * FINE_HOP  # ~46 ms: the frame-wise arrays handed out
N_FFT = 1024
MIN_BPM, MAX_BPM = 70.0, 180.0
PREFERRED_BPM = 120.0  # the tempo prior's centre, which settles half/double-tempo ambiguity
SILENCE_PEAK = 1e-4  # -80 dBFS: quieter than this is treated as silence (dither, encoder noise)
BLOCK_SECONDS = 0.25  # the grain of the repetition features
MAX_BLOCKS = 1500  # longer songs get coarser blocks, so the lag search stays small
MIN_REPEAT_LAG_SECONDS = 8.0  # shorter lags are a loop repeating inside a section, not a section coming back
REPEAT_SMOOTH_SECONDS = 4.0  # a repeat must hold this long to count: sections recur, single notes do not
CHROMA_WEIGHT = 0.7  # harmony and melody say more about a section coming back than timbre does
# A 2-hour mix decoded whole is ~1.4 GB of memory; the hook is looked for in its first 15 minutes instead.
MAX_ANALYSED_SECONDS = 900.0

AudioDecoder = Callable[..., np.ndarray]
"""decode_audio's shape: (path, sample_rate, *, ffmpeg, duration) -> mono float32 samples."""


def analyse_audio(
    path: Path,
    *,
    ffmpeg: str | None = None,
    cache_dir: Path | None = None,
    decode: AudioDecoder = decode_audio,
) -> AudioAnalysis:
    """Analyse a song once: decode it to mono and measure it, or read the cached result for the same bytes."""
    path = Path(path)
    if not path.is_file():
        raise NotFound(f"The song file {path.name} does not exist")
    cache_file = Path(cache_dir) / f"{_content_key(path)}.json" if cache_dir is not None else None
    if cache_file is None:
        return _analyse_file(path, ffmpeg, decode)
    cached = _read_cache(cache_file)
    if cached is not None:
        return cached
    # Two workers starting on the same new song: the second waits for the first's entry instead of decoding
    # and analysing it again (the benchmark's batch saw 3 analyses for 2 songs without this).
    with _cache_lock(cache_file):
        cached = _read_cache(cache_file)
        if cached is not None:
            return cached
        analysis = _analyse_file(path, ffmpeg, decode)
        _write_cache(cache_file, analysis)
    return analysis


def _analyse_file(path: Path, ffmpeg: str | None, decode: AudioDecoder) -> AudioAnalysis:
    samples = decode(path, SAMPLE_RATE, ffmpeg=ffmpeg, duration=MAX_ANALYSED_SECONDS)
    if samples.size == 0:
        raise BadInput(f"{path.name} has no audio samples")
    return analyse_samples(samples, SAMPLE_RATE)


def analyse_samples(samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> AudioAnalysis:
    """Measure mono samples: the pure part of analyse_audio."""
    y = np.asarray(samples, dtype=np.float32).ravel()
    if not np.all(np.isfinite(y)):
        y = np.nan_to_num(y, nan=0.0, posinf=1.0, neginf=-1.0)
    n_coarse = max(1, math.ceil(y.size / HOP))
    n_fine = 2 * n_coarse
    hop_seconds = HOP / sample_rate
    fine_seconds = FINE_HOP / sample_rate
    duration = y.size / sample_rate
    if y.size == 0 or float(np.max(np.abs(y))) < SILENCE_PEAK:
        zeros = (0.0,) * n_coarse
        return AudioAnalysis(duration=round(duration, 3), hop_seconds=hop_seconds, rms=zeros, onset=zeros,
                             beats=(), tempo=0.0, repetition=zeros)

    # One zero-padded copy serves both the segment energies and the STFT frames centred on them.
    padded = np.zeros(n_fine * FINE_HOP + N_FFT, dtype=np.float32)
    padded[N_FFT // 2 : N_FFT // 2 + y.size] = y
    del y
    rms = _rms_envelope(padded[N_FFT // 2 : N_FFT // 2 + n_fine * FINE_HOP].reshape(n_fine, FINE_HOP), n_coarse)
    flux, chroma, bands = _spectral_features(padded, n_fine, sample_rate)
    fine_onset = _normalise(flux)
    onset = fine_onset.reshape(n_coarse, 2).max(axis=1)
    tempo, beat_frames = _track_beats(fine_onset, fine_seconds)
    beats = [round(b * fine_seconds, 3) for b in beat_frames if b * fine_seconds < duration]
    repetition = _repetition(chroma, bands, n_coarse, fine_seconds)
    return AudioAnalysis(
        duration=round(duration, 3),
        hop_seconds=hop_seconds,
        rms=_rounded(_normalise(rms)),
        onset=_rounded(onset),
        beats=tuple(beats),
        tempo=round(tempo, 2),
        repetition=_rounded(repetition),
        downbeats=tuple(beats[::4]),
        beats_per_bar=4,
        steady_beat=tempo > 0 and len(beats) >= 8,
    )


def _rounded(values: np.ndarray) -> tuple[float, ...]:
    # Rounded so the fresh result and its JSON cache entry compare equal (and the cache stays small).
    return tuple(np.round(np.clip(values, 0.0, 1.0), 4).tolist())


def _normalise(values: np.ndarray) -> np.ndarray:
    """Scale to 0..1 by the song's own loudest (99.5th percentile, so one click does not flatten the rest)."""
    if values.size == 0:
        return values.astype(np.float64)
    ref = float(np.percentile(values, 99.5))
    if ref <= 1e-12:
        ref = float(values.max())
    if ref <= 1e-12:
        return np.zeros(values.shape)
    return np.clip(values / ref, 0.0, 1.0)


def _rms_envelope(segments: np.ndarray, n_coarse: int) -> np.ndarray:
    """RMS over ~93 ms windows centred on each coarse frame, from the energies of consecutive FINE_HOP segments."""
    energy = np.einsum("ij,ij->i", segments, segments).astype(np.float64)
    # Frame i is centred at i*HOP, so it covers the fine segments 2i-2 .. 2i+1.
    summed = np.concatenate([[0.0], np.cumsum(np.concatenate([[0.0, 0.0], energy, [0.0, 0.0]]))])
    idx = 2 * np.arange(n_coarse)
    return np.sqrt((summed[idx + 4] - summed[idx]) / (4 * FINE_HOP))


def _bin_maps(sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """Matrices from FFT bins to 12 pitch classes (55 Hz-5 kHz) and to 12 log-spaced bands (40 Hz-10 kHz)."""
    freqs = np.fft.rfftfreq(N_FFT, 1.0 / sample_rate)
    chroma_map = np.zeros((freqs.size, 12), dtype=np.float32)
    tonal = (freqs >= 55.0) & (freqs <= 5000.0)
    pitch_class = np.round(12 * np.log2(freqs[tonal] / 440.0) + 69).astype(int) % 12
    chroma_map[np.flatnonzero(tonal), pitch_class] = 1.0
    edges = np.geomspace(40.0, min(10000.0, sample_rate / 2), 13)
    band_map = np.zeros((freqs.size, 12), dtype=np.float32)
    band = np.searchsorted(edges, freqs, side="right") - 1
    inside = (band >= 0) & (band < 12)
    band_map[np.flatnonzero(inside), band[inside]] = 1.0
    return chroma_map, band_map


def _spectral_features(padded: np.ndarray, n_fine: int, sample_rate: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per fine frame: spectral flux (onset strength), chroma energy and band energy, computed in chunks.

    `padded` holds the samples after N_FFT/2 zeros, so frame k is centred on sample k*FINE_HOP.
    """
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::FINE_HOP][:n_fine]
    window = np.hanning(N_FFT).astype(np.float32)
    chroma_map, band_map = _bin_maps(sample_rate)
    flux = np.zeros(n_fine)
    chroma = np.zeros((n_fine, 12))
    bands = np.zeros((n_fine, 12))
    previous: np.ndarray | None = None
    chunk = 2048  # frames per FFT batch: bounds memory to a few MB whatever the song's length
    for lo in range(0, n_fine, chunk):
        mag = np.abs(np.fft.rfft(frames[lo : lo + chunk] * window, axis=1)).astype(np.float32)
        power = np.square(mag)
        chroma[lo : lo + chunk] = power @ chroma_map
        bands[lo : lo + chunk] = power @ band_map
        log_mag = np.log1p(mag)
        before = np.vstack([log_mag[:1] if previous is None else previous, log_mag[:-1]])
        flux[lo : lo + chunk] = np.maximum(log_mag - before, 0.0).sum(axis=1)
        previous = log_mag[-1:]
    return flux, chroma, bands


def _track_beats(onset: np.ndarray, frame_seconds: float) -> tuple[float, list[float]]:
    """Tempo from the onset envelope's autocorrelation (70-180 BPM), then beats that follow its peaks.

    Returns (bpm, beat positions in onset frames); (0, []) when nothing repeats at a beat-like period.
    """
    n = onset.size
    lag_min = max(1, math.floor(60.0 / MAX_BPM / frame_seconds))
    lag_max = math.ceil(60.0 / MIN_BPM / frame_seconds)
    # Onset peaks are a frame wide; blurred a little, a period between two whole lags is not split in two.
    kernel = np.exp(-0.5 * np.arange(-3, 4) ** 2)
    blurred = np.convolve(onset, kernel / kernel.sum(), mode="same")
    centred = blurred - blurred.mean()
    if n < 2 * lag_max + 2 or not np.any(centred):
        return 0.0, []
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
        return 0.0, []
    y0, y1, y2 = ac[best - 1], ac[best], ac[best + 1]
    curvature = y0 - 2 * y1 + y2
    delta = float(np.clip(0.5 * (y0 - y2) / curvature, -0.5, 0.5)) if curvature < 0 else 0.0
    period = best + delta

    # Phase: the grid offset that sums the most onset strength.
    phases = np.arange(math.ceil(period))
    grid = np.round(phases[:, None] + np.arange(int(n / period) + 1)[None, :] * period).astype(int)
    comb = np.where(grid < n, onset[np.minimum(grid, n - 1)], 0.0).sum(axis=1)
    position = float(phases[int(np.argmax(comb))])

    # Walk the grid, snapping each beat to a nearby onset peak so slow drift is followed.
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
    return 60.0 / (period * frame_seconds), beats


def _repetition(chroma: np.ndarray, bands: np.ndarray, n_coarse: int, fine_seconds: float) -> np.ndarray:
    """How strongly each coarse frame's stretch of music recurs elsewhere in the song, 0..1.

    Features are pooled into ~0.5 s blocks; for every lag the similarity along that diagonal is smoothed over a
    few seconds, and each block keeps the best lag. Memory stays O(blocks), never blocks x blocks.
    """
    n_fine = chroma.shape[0]
    block = max(1, round(BLOCK_SECONDS / fine_seconds), math.ceil(n_fine / MAX_BLOCKS))
    n_blocks = n_fine // block
    block_seconds = block * fine_seconds
    min_lag = math.ceil(MIN_REPEAT_LAG_SECONDS / block_seconds)
    if n_blocks <= min_lag:
        return np.zeros(n_coarse)
    used = n_blocks * block
    pitch = chroma[:used].reshape(n_blocks, block, 12).sum(axis=1)
    energy = bands[:used].reshape(n_blocks, block, 12).sum(axis=1)
    loudness = energy.sum(axis=1)
    pitch = pitch / (pitch.sum(axis=1, keepdims=True) + 1e-12)
    log_bands = np.log10(energy + 1e-10)
    timbre = log_bands - log_bands.mean(axis=1, keepdims=True)  # spectral shape, not level
    features = np.hstack([_standardise(pitch) * CHROMA_WEIGHT, _standardise(timbre) * (1 - CHROMA_WEIGHT)])
    # Near-silent blocks all look alike; they must not count as a section repeating.
    features[loudness < 1e-4 * loudness.max()] = 0.0
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    features = np.divide(features, norms, out=np.zeros_like(features), where=norms > 1e-12)

    smooth = max(1, round(REPEAT_SMOOTH_SECONDS / block_seconds))
    best = np.zeros(n_blocks)
    for lag in range(min_lag, n_blocks):
        similarity = _moving_average((features[:-lag] * features[lag:]).sum(axis=1), smooth)
        np.maximum(best[:-lag], similarity, out=best[:-lag])
        np.maximum(best[lag:], similarity, out=best[lag:])
    centres = (np.arange(n_blocks) + 0.5) * block_seconds
    frame_times = np.arange(n_coarse) * 2 * fine_seconds
    return np.clip(np.interp(frame_times, centres, best), 0.0, 1.0)


def _standardise(x: np.ndarray) -> np.ndarray:
    std = x.std(axis=0)
    return np.divide(x - x.mean(axis=0), std, out=np.zeros_like(x), where=std > 1e-9)


def _moving_average(x: np.ndarray, width: int) -> np.ndarray:
    """Centred moving average that averages only what exists at the edges."""
    if width <= 1 or x.size == 0:
        return x
    summed = np.concatenate([[0.0], np.cumsum(x)])
    idx = np.arange(x.size)
    lo = np.maximum(0, idx - width // 2)
    hi = np.minimum(x.size, lo + width)
    lo = np.maximum(0, hi - width)
    return (summed[hi] - summed[lo]) / (hi - lo)


# ---- cache ----------------------------------------------------------------------------------------------------


def _content_key(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return f"{digest.hexdigest()}-v{ANALYSIS_VERSION}"


@contextlib.contextmanager
def _cache_lock(cache_file: Path) -> Iterator[None]:
    """An exclusive lock on one cache entry, across threads and processes (none when the cache is unwritable)."""
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        handle = open(cache_file.with_suffix(".lock"), "a")  # noqa: SIM115 - held for the block below
    except OSError:
        yield
        return
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _read_cache(path: Path) -> AudioAnalysis | None:
    """The cached analysis, or None when there is none or it is unreadable (it is then simply redone)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return AudioAnalysis(
            duration=float(data["duration"]),
            hop_seconds=float(data["hop_seconds"]),
            rms=tuple(float(v) for v in data["rms"]),
            onset=tuple(float(v) for v in data["onset"]),
            beats=tuple(float(v) for v in data["beats"]),
            tempo=float(data["tempo"]),
            repetition=tuple(float(v) for v in data["repetition"]),
            downbeats=tuple(float(v) for v in data["downbeats"]),
            beats_per_bar=int(data["beats_per_bar"]),
            steady_beat=bool(data["steady_beat"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_cache(path: Path, analysis: AudioAnalysis) -> None:
    """Write atomically (temp file, then rename) so a concurrent run never reads half an entry."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".tmp")
    except OSError:
        return  # an unwritable cache only costs time
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(asdict(analysis), fh, separators=(",", ":"))
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
