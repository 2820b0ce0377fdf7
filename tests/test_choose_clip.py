"""Hook choice on synthetic songs whose chorus is known, and the audio analysis under it (real files, real ffmpeg)."""

from __future__ import annotations

import json
import random
import re
import subprocess
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from pipeline.analyse_audio import SAMPLE_RATE, analyse_audio, analyse_samples
from pipeline.choose_clip import choose_clip
from pipeline.errors import BadInput, NotFound
from pipeline.ffmpeg import decode_audio, ffmpeg_exe
from pipeline.lyrics import parse_lrc
from pipeline.models import AudioAnalysis, LyricLine

SR = 22050
BPM = 120.0
BEAT = 60.0 / BPM
SCALE = [220.0, 246.94, 277.18, 329.63, 369.99, 440.0, 493.88, 554.37, 659.25]  # A major pentatonic-ish


# ---- synthetic songs ------------------------------------------------------------------------------------------


def _env(n: int, decay: float, sr: int = SR) -> np.ndarray:
    return np.exp(-np.arange(n) / (decay * sr))


def _kick(sr: int = SR) -> np.ndarray:
    t = np.arange(int(0.15 * sr)) / sr
    return np.sin(2 * np.pi * (50 + 80 * np.exp(-t / 0.03)) * t) * _env(t.size, 0.05, sr)


def _noise_hit(rng: np.random.Generator, seconds: float, decay: float, bright: bool, sr: int = SR) -> np.ndarray:
    noise = rng.standard_normal(int(seconds * sr))
    if bright:
        noise = np.diff(noise, prepend=0.0)
    return noise * _env(noise.size, decay, sr) * 0.5


def _note(freq: float, seconds: float, sr: int = SR) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    tone = np.sin(2 * np.pi * freq * t) + 0.3 * np.sin(4 * np.pi * freq * t)
    fade = np.minimum(1.0, np.minimum(t / 0.01, (seconds - t) / 0.05))
    return tone * np.clip(fade, 0.0, 1.0)


def _add(buf: np.ndarray, at: float, sound: np.ndarray, gain: float, sr: int = SR) -> None:
    i = int(round(at * sr))
    n = min(sound.size, buf.size - i)
    if n > 0:
        buf[i : i + n] += gain * sound[:n]


def _section(kind: str, seconds: float, rng: np.random.Generator, sr: int = SR) -> np.ndarray:
    """One section: 'verse' quiet and sparse with fresh random notes; 'chorus' loud and dense; 'drop' loudest and
    densest with no tune to sing; 'intro' a soft pad."""
    buf = np.zeros(int(round(seconds * sr)))
    beats = int(round(seconds / BEAT))
    if kind == "intro":
        for b in range(0, beats, 4):
            _add(buf, b * BEAT, _note(SCALE[0], 4 * BEAT, sr) + _note(SCALE[3], 4 * BEAT, sr), 0.04, sr)
        return buf
    if kind == "verse":
        for b in range(beats):
            if b % 2 == 0:
                _add(buf, b * BEAT, _kick(sr), 0.2, sr)
            _add(buf, b * BEAT, _note(float(rng.choice(SCALE)), BEAT, sr), 0.07, sr)
        return buf
    loud = kind == "drop"
    for b in range(beats):
        _add(buf, b * BEAT, _kick(sr), 0.8 if loud else 0.5, sr)
        if b % 2 == 1:
            _add(buf, b * BEAT, _noise_hit(rng, 0.2, 0.06, False, sr), 0.6 if loud else 0.35, sr)
        for half in (0.0, 0.5):
            _add(buf, (b + half) * BEAT, _noise_hit(rng, 0.05, 0.01, True, sr), 0.25 if loud else 0.12, sr)
        if loud:
            _add(buf, b * BEAT, _note(55.0 * (1 + b % 3), BEAT, sr), 0.35, sr)
            _add(buf, (b + 0.5) * BEAT, _noise_hit(rng, 0.1, 0.03, True, sr), 0.2, sr)
        else:
            for half in (0.0, 0.5):
                _add(buf, (b + half) * BEAT, _note(float(rng.choice(SCALE)), BEAT / 2, sr), 0.18, sr)
            chord = SCALE[(b // 4) % 3]
            _add(buf, b * BEAT, _note(chord / 2, BEAT, sr) + _note(chord * 1.25 / 2, BEAT, sr), 0.06, sr)
    return buf


@dataclass
class Song:
    samples: np.ndarray
    sections: list[tuple[str, float, float]]  # (kind, start, end)

    def ranges(self, kind: str) -> list[tuple[float, float]]:
        return [(a, b) for k, a, b in self.sections if k == kind]


def make_song(layout: list[tuple[str, float]], seed: int = 0, sr: int = SR) -> Song:
    """A song from (kind, seconds) sections; each kind's material is made once, so choruses (and drops) repeat
    note for note while every verse is new."""
    rng = np.random.default_rng(seed)
    made: dict[str, np.ndarray] = {}
    parts, sections, t = [], [], 0.0
    for kind, seconds in layout:
        if kind == "verse" or kind not in made:
            made[kind] = _section(kind, seconds, rng, sr)
        parts.append(made[kind][: int(round(seconds * sr))])
        sections.append((kind, t, t + seconds))
        t += seconds
    samples = np.concatenate(parts)
    samples = 0.9 * samples / np.max(np.abs(samples))
    return Song(samples=samples.astype(np.float32), sections=sections)


def write_audio(path: Path, samples: np.ndarray, sr: int = SR, channels: int = 1) -> Path:
    """Encode float samples to the file type of `path` (wav, mp3, ...) with the real ffmpeg."""
    data = np.repeat(samples[:, None], channels, axis=1) if channels > 1 else samples
    subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-nostdin", "-v", "error", "-y", "-f", "f32le", "-ar", str(sr), "-ac",
         str(channels), "-i", "pipe:0", str(path)],
        input=np.ascontiguousarray(data, dtype=np.float32).tobytes(), check=True,
    )
    return path


POP_LAYOUT = [("intro", 8.0), ("verse", 16.0), ("chorus", 16.0), ("verse", 16.0), ("chorus", 16.0), ("intro", 8.0)]
VERSE_WORDS = ["walking", "down", "the", "empty", "road", "alone", "tonight"]
CHORUS_WORDS = ["hold", "on", "hold", "on", "we", "are", "burning", "brighter", "than", "the", "sun", "tonight"]


def lrc_for(song: Song, *, verse_every: float = 4.0, chorus_every: float = 2.0) -> str:
    """An .lrc: sparse lines through verses, dense lines through choruses, nothing in intros and drops."""
    def stamp(t: float) -> str:
        return f"[{int(t // 60):02d}:{t % 60:05.2f}]"

    out = ["[ti:Synthetic]", "[ar:Test Artist]"]
    for kind, a, b in song.sections:
        if kind == "verse":
            out += [f"{stamp(t)}{' '.join(VERSE_WORDS[:4])}" for t in np.arange(a + 0.25, b - 1, verse_every)]
        elif kind == "chorus":
            # Sung a little ahead of the beat, as singers do: the downbeat falls inside the first word.
            out += [f"{stamp(t)}{' '.join(CHORUS_WORDS)}" for t in np.arange(a - 0.3, b - 1.0, chorus_every)]
        out.append(stamp(b - 0.5))  # a blank tag: the singing stops before the next section
    return "\n".join(out) + "\n"


def _overlap(a: float, b: float, ranges: list[tuple[float, float]]) -> float:
    return sum(max(0.0, min(b, hi) - max(a, lo)) for lo, hi in ranges)


def in_section(start: float, length: float, ranges: list[tuple[float, float]]) -> bool:
    """The clip starts inside one of the ranges or is mostly inside them."""
    return any(lo - 0.5 <= start < hi for lo, hi in ranges) or _overlap(start, start + length, ranges) > length / 2


def inside_a_word(t: float, lines: list[LyricLine]) -> bool:
    return any(w.start + 0.02 < t < w.end - 0.02 for line in lines for w in line.words)


# ---- fixtures -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pop(tmp_path_factory: pytest.TempPathFactory) -> tuple[Song, Path, AudioAnalysis, list[LyricLine]]:
    song = make_song(POP_LAYOUT, seed=1)
    folder = tmp_path_factory.mktemp("pop")
    path = write_audio(folder / "pop.mp3", song.samples)
    lines = parse_lrc(lrc_for(song))
    return song, path, analyse_audio(path), lines


@pytest.fixture(scope="module")
def drop_song(tmp_path_factory: pytest.TempPathFactory) -> tuple[Song, AudioAnalysis, list[LyricLine]]:
    """The loudest, busiest part is an instrumental drop; the sung chorus is quieter but full of words."""
    layout = [("intro", 4.0), ("chorus", 16.0), ("drop", 16.0), ("verse", 12.0), ("chorus", 16.0), ("drop", 16.0)]
    song = make_song(layout, seed=2)
    path = write_audio(tmp_path_factory.mktemp("drop") / "drop.wav", song.samples)
    return song, analyse_audio(path), parse_lrc(lrc_for(song, chorus_every=1.5))


def analysis_by_hand(duration: float, loud: tuple[float, float], beats: np.ndarray) -> AudioAnalysis:
    """A made-up analysis: quiet everywhere but one loud, busy, repeated stretch."""
    hop = 0.05
    t = np.arange(int(duration / hop)) * hop
    hot = ((t >= loud[0]) & (t < loud[1])).astype(float)
    level = tuple((0.1 + 0.8 * hot).tolist())
    return AudioAnalysis(duration=duration, hop_seconds=hop, rms=level, onset=level, beats=tuple(beats.tolist()),
                         tempo=120.0, repetition=level)


# ---- the analysis ---------------------------------------------------------------------------------------------


def test_analysis_finds_the_tempo_the_beats_and_what_repeats(pop):
    song, _, analysis, _ = pop
    assert abs(analysis.tempo - BPM) / BPM < 0.02
    beats = np.array(analysis.beats)
    error = np.abs(beats - np.round(beats / BEAT) * BEAT)
    assert np.mean(error < 0.05) > 0.9, "beats should sit on the kick drum"
    assert len(beats) > 0.9 * analysis.duration / BEAT
    n = round(analysis.duration / analysis.hop_seconds)
    assert abs(len(analysis.rms) - n) <= 3 and len(analysis.rms) == len(analysis.onset) == len(analysis.repetition)

    def mean(values: tuple[float, ...], kind: str) -> float:
        frames = [values[int(a / analysis.hop_seconds) : int(b / analysis.hop_seconds)] for a, b in song.ranges(kind)]
        return float(np.mean(np.concatenate(frames)))

    assert mean(analysis.rms, "chorus") > 2 * mean(analysis.rms, "verse")
    assert mean(analysis.onset, "chorus") > 2 * mean(analysis.onset, "verse")
    assert mean(analysis.repetition, "chorus") > mean(analysis.repetition, "verse") + 0.15
    for values in (analysis.rms, analysis.onset, analysis.repetition):
        assert min(values) >= 0.0 and max(values) <= 1.0


# ---- the choice -----------------------------------------------------------------------------------------------


def test_every_seed_lands_in_a_chorus_on_a_beat_or_line_and_never_mid_word(pop):
    song, _, analysis, lines = pop
    line_starts = {line.start for line in lines}
    for seed in range(20):
        clip = choose_clip(analysis, lines, clip_seconds=15.0, rng=random.Random(seed))
        assert in_section(clip.start, clip.duration, song.ranges("chorus")), (seed, clip)
        assert clip.duration == 15.0 and clip.start >= 0.0 and clip.start + clip.duration <= analysis.duration
        assert clip.start in analysis.beats or clip.start in line_starts
        assert not inside_a_word(clip.start, lines)
        assert clip.reason.startswith("chorus") and "lyric line" in clip.reason
        assert 0.0 < clip.score <= 1.0
        assert clip.lyrics and all(0.0 <= line.start <= line.end <= clip.duration for line in clip.lyrics)
        assert {line.text for line in clip.lyrics} <= {line.text for line in lines}


def test_a_batch_varies_but_each_run_is_reproducible(pop):
    _, _, analysis, lines = pop
    starts = [choose_clip(analysis, lines, clip_seconds=15.0, rng=random.Random(seed)).start for seed in range(10)]
    assert len(set(starts)) >= 2
    again = [choose_clip(analysis, lines, clip_seconds=15.0, rng=random.Random(seed)).start for seed in range(10)]
    assert again == starts
    only_best = {choose_clip(analysis, lines, clip_seconds=15.0, rng=random.Random(s), top_k=1).start for s in range(5)}
    assert len(only_best) == 1


def test_without_lyrics_the_hook_is_still_found_and_starts_on_a_beat(pop):
    song, _, analysis, _ = pop
    for seed in range(10):
        clip = choose_clip(analysis, [], clip_seconds=10.0, rng=random.Random(seed))
        assert in_section(clip.start, clip.duration, song.ranges("chorus"))
        assert clip.start in analysis.beats and clip.lyrics == ()


def test_a_beat_inside_a_word_moves_the_start_to_the_line_start():
    analysis = analysis_by_hand(40.0, loud=(10.0, 25.0), beats=np.arange(0.0, 40.0, 0.5))
    # The line starts just before the loud part, so the best beat (10.0) falls inside its first word.
    lines = parse_lrc("[00:09.80]Shining all the way\n[00:12.30]down the line\n[00:14.00]\n")
    assert inside_a_word(10.0, lines)
    clip = choose_clip(analysis, lines, clip_seconds=12.0, rng=random.Random(0), top_k=1)
    assert clip.start == 9.8
    assert clip.lyrics[0].start == 0.0 and clip.lyrics[0].text == "Shining all the way"
    assert clip.lyrics[1].start == pytest.approx(2.5)


def test_prefer_lyrics_moves_from_an_instrumental_drop_to_the_sung_chorus(drop_song):
    song, analysis, lines = drop_song
    drops, choruses = song.ranges("drop"), song.ranges("chorus")
    for seed in range(10):
        plain = choose_clip(analysis, lines, clip_seconds=15.0, rng=random.Random(seed))
        assert _overlap(plain.start, plain.start + 15.0, drops) >= _overlap(plain.start, plain.start + 15.0, choruses)
        sung = choose_clip(analysis, lines, clip_seconds=15.0, rng=random.Random(seed), prefer_lyrics=True)
        assert in_section(sung.start, sung.duration, choruses), (seed, sung)
        assert len(sung.lyrics) >= 5 and not inside_a_word(sung.start, lines)


def test_a_song_shorter_than_the_clip_is_used_whole(tmp_path: Path):
    path = write_audio(tmp_path / "short.wav", make_song([("chorus", 6.0)], seed=4).samples)
    analysis = analyse_audio(path)
    lines = parse_lrc("[00:01.00]short and sweet\n")
    clip = choose_clip(analysis, lines, clip_seconds=15.0, rng=random.Random(1))
    assert clip.start == 0.0 and clip.duration == analysis.duration == pytest.approx(6.0, abs=0.05)
    assert "whole song" in clip.reason and clip.lyrics[0].text == "short and sweet"


def test_a_clip_length_that_is_not_positive_is_refused(pop):
    _, _, analysis, lines = pop
    with pytest.raises(BadInput):
        choose_clip(analysis, lines, clip_seconds=0.0, rng=random.Random(0))


# ---- awkward inputs -------------------------------------------------------------------------------------------


def _drum_loop(seconds: float, sr: int) -> np.ndarray:
    song = make_song([("chorus", seconds)], seed=5, sr=sr)
    return song.samples


@pytest.mark.parametrize(
    ("name", "sr", "channels", "make"),
    [
        ("silent.wav", 22050, 1, lambda sr: np.zeros(5 * sr)),
        ("one-second.mp3", 44100, 2, lambda sr: 0.5 * np.sin(2 * np.pi * 440 * np.arange(sr) / sr)),
        ("eight-k.wav", 8000, 1, lambda sr: _drum_loop(10.0, sr)),
        ("ninety-six-k.flac", 96000, 2, lambda sr: _drum_loop(10.0, sr)),
        ("mono.ogg", 44100, 1, lambda sr: _drum_loop(10.0, sr)),
    ],
)
def test_awkward_audio_gives_a_plain_result(tmp_path: Path, name: str, sr: int, channels: int, make):
    path = write_audio(tmp_path / name, np.asarray(make(sr), dtype=np.float32), sr=sr, channels=channels)
    analysis = analyse_audio(path, cache_dir=tmp_path / "cache")
    assert len(analysis.rms) == len(analysis.onset) == len(analysis.repetition) >= 1
    for values in (analysis.rms, analysis.onset, analysis.repetition):
        assert all(0.0 <= v <= 1.0 for v in values)
    assert all(0.0 <= b < analysis.duration for b in analysis.beats)
    if name == "silent.wav":
        assert analysis.tempo == 0.0 and analysis.beats == () and max(analysis.rms) == 0.0
    elif name != "one-second.mp3":
        assert abs(analysis.tempo - BPM) < 3, "resampled audio keeps its tempo"
    for seconds in (3.0, 30.0):
        clip = choose_clip(analysis, [], clip_seconds=seconds, rng=random.Random(0))
        assert clip.start >= 0.0 and clip.start + clip.duration <= analysis.duration + 1e-9
    if name == "silent.wav":
        assert choose_clip(analysis, [], clip_seconds=3.0, rng=random.Random(0)).start == 0.0


def test_what_is_not_audio_is_a_clear_error(tmp_path: Path):
    text = tmp_path / "notes.mp3"
    text.write_text("not a song at all")
    with pytest.raises(BadInput, match="notes.mp3"):
        analyse_audio(text)
    with pytest.raises(NotFound, match="does not exist"):
        analyse_audio(tmp_path / "missing.mp3")


# ---- cache and cost -------------------------------------------------------------------------------------------


class CountingDecoder:
    """The real decoder, counting its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, path: Path, sample_rate: int, *, ffmpeg: str | None = None,
                 duration: float | None = None) -> np.ndarray:
        self.calls += 1
        return decode_audio(path, sample_rate, ffmpeg=ffmpeg, duration=duration)


def test_a_song_is_analysed_once_by_content(tmp_path: Path):
    import hashlib

    path = write_audio(tmp_path / "song.wav", make_song([("verse", 8.0), ("chorus", 8.0)] * 2, seed=6).samples)
    cache = tmp_path / "cache"
    decoder = CountingDecoder()
    first = analyse_audio(path, cache_dir=cache, decode=decoder)
    assert decoder.calls == 1
    entries = list(cache.glob("*.json"))
    assert len(entries) == 1 and entries[0].name.startswith(hashlib.sha256(path.read_bytes()).hexdigest())
    assert json.loads(entries[0].read_text())["tempo"] == first.tempo

    # Same bytes under another name and a newer mtime: the cache answers, nothing is decoded.
    copy = tmp_path / "copy.wav"
    copy.write_bytes(path.read_bytes())
    started = time.perf_counter()
    assert analyse_audio(copy, cache_dir=cache, decode=decoder) == first
    assert time.perf_counter() - started < 0.5
    assert decoder.calls == 1

    # Different bytes are a different song; a damaged entry is simply redone.
    other = write_audio(tmp_path / "other.wav", make_song([("chorus", 8.0)], seed=7).samples)
    analyse_audio(other, cache_dir=cache, decode=decoder)
    assert decoder.calls == 2
    entries[0].write_text("{not json")
    assert analyse_audio(path, cache_dir=cache, decode=decoder) == first
    assert decoder.calls == 3
    assert sorted(p.suffix for p in cache.iterdir() if p.suffix != ".lock") == [".json", ".json"], \
        "no temp files are left behind"


def test_workers_starting_on_the_same_new_song_analyse_it_once(tmp_path: Path):
    path = write_audio(tmp_path / "song.wav", make_song([("verse", 8.0), ("chorus", 8.0)], seed=8).samples)
    decoder = CountingDecoder()

    def slow(*args, **kwargs) -> np.ndarray:  # a wide window for the race the lock closes
        time.sleep(0.3)
        return decoder(*args, **kwargs)

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: analyse_audio(path, cache_dir=tmp_path / "cache", decode=slow), range(4)))
    assert decoder.calls == 1 and all(r == results[0] for r in results)


def test_a_ten_minute_song_is_quick_and_small(tmp_path: Path):
    song = make_song([("intro", 8.0)] + [("verse", 16.0), ("chorus", 16.0), ("drop", 16.0)] * 13 + [("intro", 8.0)])
    assert len(song.samples) / SR >= 600
    tracemalloc.start()
    try:
        analysis = analyse_samples(song.samples, SAMPLE_RATE)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 300 * 2**20, f"analysis of 10 minutes peaked at {peak / 2**20:.0f} MiB"
    path = write_audio(tmp_path / "long.wav", song.samples)
    started = time.perf_counter()
    decoded = analyse_audio(path)
    assert time.perf_counter() - started < 5.0, "decoding and analysing 10 minutes takes a few seconds at most"
    assert decoded.tempo == pytest.approx(analysis.tempo, abs=0.5)
    assert np.allclose(decoded.rms, analysis.rms, atol=0.01)  # the WAV is 16-bit, the samples were float
    assert abs(analysis.tempo - BPM) < 2
    clip = choose_clip(analysis, [], clip_seconds=15.0, rng=random.Random(0))
    assert in_section(clip.start, clip.duration, song.ranges("chorus") + song.ranges("drop"))


# ---- the demo artist ------------------------------------------------------------------------------------------

DEMO = Path(__file__).resolve().parent.parent / "assets" / "demo-artist"


def _demo_choruses() -> dict[str, list[tuple[float, float]]]:
    """Chorus ranges per song, as SOURCES.md states them (`- `slug` ... Chorus: 24.00-40.00, 56.00-72.00`)."""
    sources = DEMO / "SOURCES.md"
    if not sources.is_file():
        return {}
    found: dict[str, list[tuple[float, float]]] = {}
    for line in sources.read_text().splitlines():
        m = re.match(r"\s*-\s*`([\w-]+)`.*Chorus:\s*(.+)$", line)
        if m:
            found[m[1]] = [(float(a), float(b)) for a, b in re.findall(r"([\d.]+)\s*-\s*([\d.]+)", m[2])]
    return found


@pytest.mark.skipif(not _demo_choruses(), reason="the demo artist's SOURCES.md is not there")
@pytest.mark.parametrize("slug", sorted(_demo_choruses()))
def test_the_demo_songs_clips_land_in_their_choruses(slug: str):
    choruses = _demo_choruses()[slug]
    folder = DEMO / "songs" / slug
    audio = next(p for p in sorted(folder.iterdir()) if p.suffix in {".mp3", ".wav", ".m4a", ".flac", ".ogg"})
    lrc = folder / f"{slug}.lrc"
    lines = parse_lrc(lrc.read_text(encoding="utf-8")) if lrc.is_file() else []
    analysis = analyse_audio(audio)
    for prefer_lyrics in (False, True):
        for seed in range(8):
            clip = choose_clip(analysis, lines, clip_seconds=15.0, rng=random.Random(seed), prefer_lyrics=prefer_lyrics)
            assert in_section(clip.start, clip.duration, choruses), (slug, seed, prefer_lyrics, clip)
            assert not inside_a_word(clip.start, lines)
