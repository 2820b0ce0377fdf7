"""Hook and beat-grid scores on the generated test songs: hook hit rate, beat and downbeat F-measure, for the
numpy analysis and (when librosa is installed) the same analysis on librosa's beat tracker and chroma.

    .venv/bin/python bench/hook_eval.py                 # generates the songs into a temporary folder
    .venv/bin/python bench/hook_eval.py --songs DIR     # songs from scripts/make_test_songs.py DIR
    .venv/bin/python bench/hook_eval.py --long          # also time a 10-minute song
    .venv/bin/python bench/hook_eval.py --loose 3       # the songs played 3x as loosely (timing and levels)

librosa is not a dependency of the studio (the numpy analysis scored as well or better, docs/PERFORMANCE.md);
to compare, install it beside the venv: `pip install --target /tmp/librosa librosa==0.11.0 numpy==2.4.6` and
pass `--librosa-path /tmp/librosa`.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as a script: the project root must be importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from pipeline.analyse_audio import SAMPLE_RATE, analyse_audio, analyse_samples  # noqa: E402
from pipeline.choose_clip import choose_clip  # noqa: E402
from pipeline.ffmpeg import decode_audio  # noqa: E402
from pipeline.lyrics import parse_lrc  # noqa: E402
from pipeline.models import AudioAnalysis, LyricLine  # noqa: E402
from scripts.make_test_songs import SongTruth, build_long, generate  # noqa: E402

TOLERANCE = 0.07  # seconds: a beat within this of a known beat is a hit (the usual +-70 ms)
CLIP_SECONDS = 15.0
SEEDS = (0, 1)

Analyser = Callable[[Path], AudioAnalysis]


def f_measure(found: Sequence[float], truth: Sequence[float], tolerance: float = TOLERANCE) -> float:
    """F-measure of found event times against known ones, each known event matched at most once."""
    if not found and not truth:
        return 1.0
    if not found or not truth:
        return 0.0
    truth_arr = np.asarray(truth, dtype=float)
    used = np.zeros(truth_arr.size, dtype=bool)
    hits = 0
    for t in found:
        free = np.flatnonzero(~used & (np.abs(truth_arr - t) <= tolerance))
        if free.size:
            used[free[np.argmin(np.abs(truth_arr[free] - t))]] = True
            hits += 1
    precision, recall = hits / len(found), hits / len(truth)
    return 0.0 if hits == 0 else 2 * precision * recall / (precision + recall)


def chorus_share(start: float, length: float, choruses: Sequence[tuple[float, float]]) -> float:
    """How much of the clip [start, start + length) lies inside a chorus, 0..1."""
    inside = sum(max(0.0, min(start + length, b) - max(start, a)) for a, b in choruses)
    return inside / length


def inside_a_word(t: float, lines: Sequence[LyricLine]) -> bool:
    return any(w.start + 0.02 < t < w.end - 0.02 for line in lines for w in line.words)


def load_truths(folder: Path) -> list[SongTruth]:
    return [SongTruth(**json.loads(p.read_text())) for p in sorted(folder.glob("*.json"))]


def lyrics_of(folder: Path, truth: SongTruth) -> list[LyricLine]:
    return parse_lrc((folder / truth.lrc).read_text(encoding="utf-8")) if truth.lrc else []


def evaluate(folder: Path, truths: Sequence[SongTruth], analyse: Analyser) -> dict:
    """Scores of one analyser over the songs: per song and in total."""
    rows = []
    picks = hits = on_grid = mid_word = 0
    for truth in truths:
        started = time.perf_counter()
        analysis = analyse(folder / truth.audio)
        seconds = time.perf_counter() - started
        row = {"song": truth.name, "seconds": round(seconds, 3), "tempo": analysis.tempo,
               "steady": analysis.steady_beat, "bpb": analysis.beats_per_bar}
        if not truth.steady:
            rows.append(row)
            continue
        row["beat_f"] = f_measure(analysis.beats, truth.beats)
        row["downbeat_f"] = f_measure(analysis.downbeats, truth.downbeats)
        lines = lyrics_of(folder, truth)
        line_starts = {line.start for line in lines}
        shares = []
        for seed in SEEDS:
            clip = choose_clip(analysis, lines, clip_seconds=CLIP_SECONDS, rng=random.Random(seed))
            share = chorus_share(clip.start, clip.duration, truth.choruses)
            shares.append(round(share, 2))
            picks += 1
            hits += share >= 0.5
            on_grid += clip.start in analysis.downbeats or clip.start in line_starts
            mid_word += inside_a_word(clip.start, lines)
        row["chorus_share"] = shares
        rows.append(row)
    scored = [r for r in rows if "beat_f" in r]
    return {
        "rows": rows,
        "hook_rate": hits / picks if picks else 0.0,
        "picks": picks,
        "on_grid": on_grid,
        "mid_word": mid_word,
        "beat_f": float(np.mean([r["beat_f"] for r in scored])),
        "downbeat_f": float(np.mean([r["downbeat_f"] for r in scored])),
        "no_beat_steady": {r["song"]: r["steady"] for r in rows if r not in scored},
    }


def numpy_analyser(path: Path) -> AudioAnalysis:
    return analyse_audio(path)


def librosa_analyser() -> Analyser | None:
    """The same analysis with librosa's onset envelope, beat tracker and chroma in place of the numpy ones."""
    try:
        import librosa
    except ImportError:
        return None
    from pipeline import analyse_audio as ours

    def track(samples: np.ndarray, sample_rate: int) -> ours.BeatFeatures:
        onset = librosa.onset.onset_strength(y=samples, sr=sample_rate, hop_length=ours.FINE_HOP)
        tempo, frames = librosa.beat.beat_track(onset_envelope=onset, sr=sample_rate, hop_length=ours.FINE_HOP)
        chroma = librosa.feature.chroma_stft(y=samples, sr=sample_rate, hop_length=ours.FINE_HOP).T
        return ours.BeatFeatures(tempo=float(np.atleast_1d(tempo)[0]), beat_frames=frames.astype(float),
                                 chroma=chroma)

    def analyse(path: Path) -> AudioAnalysis:
        samples = decode_audio(path, SAMPLE_RATE)
        return analyse_samples(samples, SAMPLE_RATE, tracker=track)

    return analyse


def report(name: str, result: dict) -> None:
    print(f"\n== {name} ==")
    for r in result["rows"]:
        extra = (f"beat F {r['beat_f']:.3f}  downbeat F {r['downbeat_f']:.3f}  chorus share {r['chorus_share']}"
                 if "beat_f" in r else f"steady_beat {r['steady']}")
        print(f"  {r['song']:<20} {r['seconds']:6.2f} s  {r['tempo']:7.2f} BPM  {r['bpb']}/bar  {extra}")
    print(f"  hook: {result['hook_rate']:.1%} of {result['picks']} picks with >= half the clip in a chorus; "
          f"{result['on_grid']} start on a downbeat or line start; {result['mid_word']} mid-word")
    print(f"  beat F (+-70 ms): {result['beat_f']:.3f}   downbeat F: {result['downbeat_f']:.3f}   "
          f"songs without a beat, steady_beat: {result['no_beat_steady']}")


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children (ffmpeg): less moved by a busy machine than wall time."""
    import resource

    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def time_long_song(folder: Path, repeats: int = 5) -> None:
    """The 10-minute song: analysis of decoded samples, and decode + analysis from a FLAC file (no cache), wall
    and CPU seconds, medians of `repeats`."""
    import os

    from pipeline.ffmpeg import ffmpeg_exe
    from scripts.make_test_songs import write_audio

    samples = build_long(10.0)
    path = folder / "long-10min.flac"
    write_audio(path, samples, ffmpeg_exe())
    load_before = os.getloadavg()[0]
    steps: dict[str, Callable[[], object]] = {
        "analysis": lambda: analyse_samples(samples, SAMPLE_RATE),
        "decode + analysis": lambda: analyse_audio(path),
    }
    timings: dict[str, list[tuple[float, float]]] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            wall, cpu = time.perf_counter(), _cpu_seconds()
            step()
            timings[name].append((time.perf_counter() - wall, _cpu_seconds() - cpu))
    for name, runs in timings.items():
        walls, cpus = sorted(w for w, _ in runs), sorted(c for _, c in runs)
        print(f"10-minute song, {name}: wall {', '.join(f'{w:.2f}' for w, _ in runs)} s "
              f"(median {walls[len(walls) // 2]:.2f} s), CPU median {cpus[len(cpus) // 2]:.2f} s")
    print(f"load average (1 min) before {load_before:.2f}, after {os.getloadavg()[0]:.2f}, on {os.cpu_count()} CPUs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--songs", type=Path, help="a folder written by scripts/make_test_songs.py")
    parser.add_argument("--librosa-path", help="a folder holding librosa (pip install --target ...)")
    parser.add_argument("--long", action="store_true", help="also time the analysis of a 10-minute song")
    parser.add_argument("--loose", type=float, default=1.0, help="generate the songs played this much more loosely")
    args = parser.parse_args()
    if args.librosa_path:
        sys.path.append(args.librosa_path)
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.songs or Path(tmp)
        truths = load_truths(folder) if args.songs else generate(folder, looseness=args.loose)
        report("numpy (pipeline.analyse_audio)", evaluate(folder, truths, numpy_analyser))
        librosa_analyse = librosa_analyser()
        if librosa_analyse is None:
            print("\nlibrosa: not installed, not compared (see this script's docstring)")
        else:
            report("librosa beats + chroma, same sections and downbeats", evaluate(folder, truths, librosa_analyse))
        if args.long:
            time_long_song(Path(tmp))


if __name__ == "__main__":
    main()
