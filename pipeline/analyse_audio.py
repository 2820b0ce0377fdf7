"""What a song sounds like over time (loudness, onsets, beats and bars, sections and what repeats), in numpy.

Features here; the beat grid in pipeline.beat_grid, the sections in pipeline.song_sections. The clip chooser, the
edit and the audio-reactive motion read it; results are cached by the file's content hash.
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
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from pipeline import beat_grid, song_sections
from pipeline.errors import BadInput, NotFound
from pipeline.ffmpeg import decode_audio
from pipeline.models import AudioAnalysis, Section

ANALYSIS_VERSION = 3  # bump when the numbers below change meaning, so old cache entries are not reused
SAMPLE_RATE = 22050
FINE_HOP = 512  # ~23 ms: the onset envelope the beat tracker reads
HOP = 2 * FINE_HOP  # ~46 ms: the frame-wise arrays handed out
N_FFT = 1024
SILENCE_PEAK = 1e-4  # -80 dBFS: quieter than this is treated as silence (dither, encoder noise)
LOW_BAND_HZ = 300.0  # kick, snare body and bass: where the beat is, without the hi-hats that double it
BLOCK_SECONDS_WITHOUT_BEAT = 2.0  # the grain of the sections when there are no bars to cut on
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


@dataclass(frozen=True)
class BeatFeatures:
    """What a replacement beat tracker hands back (bench/hook_eval.py compares librosa's through this)."""

    tempo: float
    beat_frames: np.ndarray  # beat positions in FINE_HOP frames (frame k centred on sample k * FINE_HOP)
    chroma: np.ndarray | None = None  # per FINE_HOP frame x 12, in place of the numpy chroma


BeatTracker = Callable[[np.ndarray, int], BeatFeatures]


def analyse_samples(samples: np.ndarray, sample_rate: int = SAMPLE_RATE, *,
                    tracker: BeatTracker | None = None) -> AudioAnalysis:
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

    replaced = tracker(y, sample_rate) if tracker is not None else None
    # One zero-padded copy serves both the segment energies and the STFT frames centred on them.
    padded = np.zeros(n_fine * FINE_HOP + N_FFT, dtype=np.float32)
    padded[N_FFT // 2 : N_FFT // 2 + y.size] = y
    del y
    rms = _normalise(_rms_envelope(padded[N_FFT // 2 : N_FFT // 2 + n_fine * FINE_HOP].reshape(n_fine, FINE_HOP),
                                   n_coarse))
    flux, low_flux, chroma, bands = _spectral_features(padded, n_fine, sample_rate)
    fine_onset = _normalise(flux)
    low_onset = _normalise(low_flux)
    onset = fine_onset.reshape(n_coarse, 2).max(axis=1)
    if replaced is not None:
        tempo, beat_frames = replaced.tempo, np.asarray(replaced.beat_frames, dtype=float)
        period = 60.0 / tempo / fine_seconds if tempo > 0 else 0.0
        steady = beat_grid.is_steady(fine_onset, beat_frames, period, fine_seconds)
        if replaced.chroma is not None:
            chroma = _fit_frames(replaced.chroma, n_fine)
    else:
        tempo, beat_frames, steady = beat_grid.track_beats(fine_onset, low_onset, fine_seconds)
    grid = _grid(tempo, beat_frames, steady, chroma, low_onset, fine_seconds, duration)
    sections = _sections(grid, chroma, bands, rms, fine_seconds, hop_seconds, duration)
    return AudioAnalysis(
        duration=round(duration, 3),
        hop_seconds=hop_seconds,
        rms=_rounded(rms),
        onset=_rounded(onset),
        beats=grid.beats,
        tempo=round(grid.tempo, 2),
        repetition=_rounded(_section_repetition(sections, n_coarse, hop_seconds)),
        downbeats=grid.downbeats,
        beats_per_bar=grid.beats_per_bar,
        steady_beat=grid.steady,
        sections=sections,
    )


def _grid(tempo: float, beat_frames: np.ndarray, steady: bool, chroma: np.ndarray, low_onset: np.ndarray,
          fine_seconds: float, duration: float) -> beat_grid.BeatGrid:
    """Beats and bar lines in seconds; no grid at all without a steady beat (the edit then does not cut on it)."""
    beat_frames = beat_frames[beat_frames * fine_seconds < duration]
    if not steady or beat_frames.size == 0:
        return beat_grid.NO_GRID
    first, per_bar = beat_grid.find_downbeats(beat_frames, chroma, low_onset)
    beats = tuple(round(float(b) * fine_seconds, 3) for b in beat_frames)
    return beat_grid.BeatGrid(tempo=float(tempo), beats=beats, downbeats=tuple(beats[i] for i in first),
                              beats_per_bar=per_bar, steady=True)


def _sections(grid: beat_grid.BeatGrid, chroma: np.ndarray, bands: np.ndarray, rms: np.ndarray,
              fine_seconds: float, hop_seconds: float, duration: float) -> tuple[Section, ...]:
    """The song cut into sections on its bar lines (or on fixed blocks without a steady beat)."""
    if len(grid.downbeats) >= 2:
        starts = np.array(grid.downbeats)
        parts = grid.beats_per_bar
    else:
        starts = np.arange(0.0, duration, BLOCK_SECONDS_WITHOUT_BEAT)
        parts = 4
    if starts.size < 2:
        return ()
    edges = np.append(np.round(starts / fine_seconds), chroma.shape[0]).astype(int)
    features = song_sections.bar_features(chroma, bands, edges, parts)
    summed = np.concatenate([[0.0], np.cumsum(rms)])
    lo = np.clip(np.round(starts / hop_seconds).astype(int), 0, rms.size)
    hi = np.append(lo[1:], rms.size)
    loudness = (summed[hi] - summed[lo]) / np.maximum(hi - lo, 1)
    return song_sections.find_sections(features, starts, round(duration, 3), loudness)


def _section_repetition(sections: tuple[Section, ...], n_coarse: int, hop_seconds: float) -> np.ndarray:
    """Per frame: how closely its section matches another section of the song (0 for a one-off)."""
    values = np.zeros(n_coarse)
    for section in sections:
        if section.count >= 2:
            lo, hi = round(section.start / hop_seconds), round(section.end / hop_seconds)
            values[max(0, lo) : max(0, hi)] = section.similarity
    return values


def _fit_frames(x: np.ndarray, n: int) -> np.ndarray:
    """Rows cut or zero-padded to `n`."""
    x = np.asarray(x, dtype=np.float64)
    return x[:n] if x.shape[0] >= n else np.vstack([x, np.zeros((n - x.shape[0], x.shape[1]))])


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


def _spectral_features(padded: np.ndarray, n_fine: int, sample_rate: int
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per fine frame: spectral flux (onset strength), its low-band part, chroma energy and band energy, computed
    in chunks. `padded` holds the samples after N_FFT/2 zeros, so frame k is centred on sample k*FINE_HOP.
    """
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::FINE_HOP][:n_fine]
    window = np.hanning(N_FFT).astype(np.float32)
    both_maps = np.hstack(_bin_maps(sample_rate))  # one product gives chroma and bands
    low_bins = int(np.searchsorted(np.fft.rfftfreq(N_FFT, 1.0 / sample_rate), LOW_BAND_HZ))
    flux = np.zeros(n_fine)
    low_flux = np.zeros(n_fine)
    energies = np.zeros((n_fine, 24))
    previous: np.ndarray | None = None
    chunk = 2048  # frames per FFT batch: bounds memory to a few MB whatever the song's length
    for lo in range(0, n_fine, chunk):
        mag = np.abs(np.fft.rfft(frames[lo : lo + chunk] * window, axis=1)).astype(np.float32, copy=False)
        energies[lo : lo + chunk] = np.square(mag) @ both_maps
        log_mag = np.log1p(mag, out=mag)
        rise = np.empty_like(log_mag)
        rise[0] = log_mag[0] - (log_mag[0] if previous is None else previous)
        np.subtract(log_mag[1:], log_mag[:-1], out=rise[1:])
        np.maximum(rise, 0.0, out=rise)
        low_flux[lo : lo + chunk] = rise[:, :low_bins].sum(axis=1)
        flux[lo : lo + chunk] = rise.sum(axis=1)
        previous = log_mag[-1].copy()
    return flux, low_flux, energies[:, :12], energies[:, 12:]


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
            sections=tuple(Section(**section) for section in data["sections"]),
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
