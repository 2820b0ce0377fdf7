"""The hook and the beat grid on the generated song set (scripts/make_test_songs.py): choruses found by what
repeats, one-off loud sections passed over, beats and bar lines against the known grid. Real files, real ffmpeg."""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import pytest

from bench.hook_eval import chorus_share, f_measure, inside_a_word, lyrics_of
from pipeline.analyse_audio import SAMPLE_RATE, analyse_audio, analyse_samples
from pipeline.choose_clip import choose_clip
from pipeline.lyrics import parse_lrc
from pipeline.models import AudioAnalysis, LyricLine, Section
from scripts.make_test_songs import ONE_OFF_KINDS, SONGS, SongTruth, generate
from tests.test_choose_clip import DEMO, _demo_choruses

CLIP = 15.0
SEEDS = (0, 1)


@dataclass(frozen=True)
class Analysed:
    truth: SongTruth
    analysis: AudioAnalysis
    lines: list[LyricLine]


@pytest.fixture(scope="session")
def song_set(tmp_path_factory: pytest.TempPathFactory) -> list[Analysed]:
    """The generated songs, analysed (~5 s to make, ~5 s to analyse, once per session: its tests are slow)."""
    folder = tmp_path_factory.mktemp("test-songs")
    cache = folder / "cache"
    out = []
    for truth in generate(folder):
        analysis = analyse_audio(folder / truth.audio, cache_dir=cache)
        out.append(Analysed(truth, analysis, lyrics_of(folder, truth)))
    # The cache gives back the same grid and sections, field for field.
    for song in out[:3]:
        assert analyse_audio(folder / song.truth.audio, cache_dir=cache) == song.analysis
    return out


@pytest.fixture(scope="session")
def loose_set(tmp_path_factory: pytest.TempPathFactory) -> list[Analysed]:
    """The songs with a loud one-off, played three times as loosely: hits up to ~40 ms off the grid, every note
    +-45 % in level, so no two choruses are alike bar for bar."""
    folder = tmp_path_factory.mktemp("loose-songs")
    specs = tuple(spec for spec in SONGS if any(kind in ONE_OFF_KINDS for kind, _ in spec.layout))
    return [Analysed(truth, analyse_audio(folder / truth.audio), lyrics_of(folder, truth))
            for truth in generate(folder, specs=specs, ambient=False, looseness=3.0)]


def steady(song_set: list[Analysed]) -> list[Analysed]:
    return [s for s in song_set if s.truth.steady]


@pytest.mark.slow
def test_the_set_is_what_the_issue_asks_for(song_set):
    songs = steady(song_set)
    assert len(songs) >= 12
    tempos = [s.truth.bpm for s in songs]
    assert min(tempos) <= 70 and max(tempos) >= 165
    assert sum(s.truth.one_off_loudest for s in songs) >= 4
    assert any(s.lines for s in songs) and any(not s.lines for s in songs)
    assert any(s.truth.sections[0][0] == "chorus" for s in songs)  # chorus first
    assert any(s.truth.choruses[0][0] > 30 for s in songs)  # late, after a long intro
    for s in songs:
        if s.lines:  # the chorus's lines come back word for word
            texts = [line.text for line in s.lines if line.text]
            assert len(set(texts)) < len(texts)


@pytest.mark.slow
def test_the_hook_is_a_chorus_even_where_a_one_off_is_louder(song_set):
    picks = hits = 0
    for song in steady(song_set):
        one_offs = [(a, b) for k, a, b in song.truth.sections if k in ONE_OFF_KINDS]
        for seed in SEEDS:
            clip = choose_clip(song.analysis, song.lines, clip_seconds=CLIP, rng=random.Random(seed))
            picks += 1
            hits += chorus_share(clip.start, clip.duration, song.truth.choruses) >= 0.5
            assert chorus_share(clip.start, clip.duration, one_offs) < 0.5, (song.truth.name, clip)
    assert hits / picks >= 0.95, f"{hits} of {picks} picks in a chorus"


@pytest.mark.slow
def test_a_loosely_played_chorus_is_still_the_hook(loose_set):
    assert len(loose_set) >= 4
    for song in loose_set:
        one_offs = [(a, b) for k, a, b in song.truth.sections if k in ONE_OFF_KINDS]
        for seed in SEEDS:
            clip = choose_clip(song.analysis, song.lines, clip_seconds=CLIP, rng=random.Random(seed))
            assert chorus_share(clip.start, clip.duration, song.truth.choruses) >= 0.5, (song.truth.name, clip)
            assert chorus_share(clip.start, clip.duration, one_offs) < 0.5


@pytest.mark.slow
def test_the_clip_starts_on_a_bar_line_or_a_sung_line_and_never_mid_word(song_set):
    for song in steady(song_set):
        line_starts = {line.start for line in song.lines}
        for seed in range(4):
            for prefer_lyrics in (False, True):
                clip = choose_clip(song.analysis, song.lines, clip_seconds=CLIP, rng=random.Random(seed),
                                   prefer_lyrics=prefer_lyrics)
                assert clip.start in song.analysis.downbeats or clip.start in line_starts, (song.truth.name, clip)
                assert not inside_a_word(clip.start, song.lines)
                # a section start: the start of a section that repeats, or a line sung into one (a beat before
                # its first bar line to a bar after it)
                beat = 60.0 / song.analysis.tempo
                bar = beat * song.analysis.beats_per_bar
                assert any(-beat <= clip.start - s.start <= bar and s.count >= 2 for s in song.analysis.sections), (
                    song.truth.name, clip.start, [(s.start, s.count) for s in song.analysis.sections])


@pytest.mark.slow
def test_a_batch_draws_among_the_returns_of_the_chorus(song_set):
    varied = 0
    for song in steady(song_set):
        starts = {choose_clip(song.analysis, song.lines, clip_seconds=CLIP, rng=random.Random(seed)).start
                  for seed in range(10)}
        assert all(chorus_share(t, CLIP, song.truth.choruses) >= 0.5 for t in starts), song.truth.name
        varied += len(starts) >= 2
    assert varied >= len(steady(song_set)) - 1, "nearly every song has two or more choruses to draw from"


@pytest.mark.slow
def test_beats_and_bar_lines_match_the_known_grid(song_set):
    beat_f, downbeat_f = [], []
    for song in steady(song_set):
        a, t = song.analysis, song.truth
        assert a.steady_beat
        assert abs(a.tempo - t.bpm) / t.bpm < 0.03, (t.name, a.tempo)
        assert a.beats_per_bar == t.beats_per_bar, t.name
        assert set(a.downbeats) <= set(a.beats)
        beat_f.append(f_measure(a.beats, t.beats))
        downbeat_f.append(f_measure(a.downbeats, t.downbeats))
    assert np.mean(beat_f) >= 0.9 and min(beat_f) >= 0.8, beat_f
    assert np.mean(downbeat_f) >= 0.8 and min(downbeat_f) >= 0.6, downbeat_f


@pytest.mark.slow
def test_sections_find_each_chorus_and_keep_the_one_offs_apart(song_set):
    exact = total = 0
    for song in steady(song_set):
        sections = song.analysis.sections
        bar = song.truth.beats_per_bar * 60.0 / song.truth.bpm
        assert sections and all(a.end <= b.start + 1e-6 for a, b in zip(sections, sections[1:], strict=False))
        for start, _ in song.truth.choruses:
            assert any(abs(s.start - start) <= 1.01 * bar and s.count >= 2 for s in sections), (song.truth.name,
                                                                                                 start)
            total += 1
            exact += any(abs(s.start - start) <= 0.07 and s.count >= 2 for s in sections)
        for kind, a, b in song.truth.sections:
            if kind in ONE_OFF_KINDS:
                repeated = sum(max(0.0, min(b, s.end) - max(a, s.start)) for s in sections if s.count >= 2)
                assert repeated < 0.25 * (b - a), (song.truth.name, kind)
        assert any(s.label == "chorus" for s in sections)
    assert exact >= 0.9 * total, f"{exact} of {total} chorus starts on their own bar line (the rest a bar off)"


@pytest.mark.slow
def test_songs_without_a_steady_beat_have_no_grid(song_set):
    """Ambient swells (no beat at all) and a pianist's rubato (a note on every beat, the tempo 60-100 BPM)."""
    free = [s for s in song_set if not s.truth.steady]
    assert {s.truth.name for s in free} == {"ambient-swells", "rubato-piano"}
    for song in free:
        a = song.analysis
        assert not a.steady_beat and a.downbeats == () and a.beats == () and a.tempo == 0.0, song.truth.name
        clip = choose_clip(a, [], clip_seconds=CLIP, rng=random.Random(0))
        assert 0.0 <= clip.start <= a.duration - CLIP


def test_silence_has_no_grid_and_no_sections():
    a = analyse_samples(np.zeros(10 * SAMPLE_RATE, dtype=np.float32), SAMPLE_RATE)
    assert (a.steady_beat, a.downbeats, a.sections, a.tempo) == (False, (), (), 0.0)


def test_a_bar_with_a_beat_missing_moves_the_bar_lines_after_it():
    """A click track in 4/4 (accented bar lines, a chord change per bar) where one bar has three beats, as when a
    band skips a beat: the beat goes on evenly, but every bar line after the short bar comes a beat earlier."""
    sr = SAMPLE_RATE
    beat = 0.5
    times = [0.5 + k * beat for k in range(96)]
    position = [k % 4 if k < 50 else (k + 1) % 4 for k in range(96)]  # the bar from beat 48 has three beats
    bars = [t for t, p in zip(times, position, strict=True) if p == 0]
    y = np.zeros(int((times[-1] + 2) * sr))
    chords = [(220.0, 277.2, 329.6), (196.0, 246.9, 293.7), (174.6, 220.0, 261.6), (164.8, 207.7, 246.9)]
    t = np.arange(int(0.12 * sr)) / sr
    click = np.sin(2 * np.pi * 60 * t) * np.exp(-t / 0.03)
    for at, p in zip(times, position, strict=True):
        n = int(at * sr)
        y[n : n + click.size] += (1.0 if p == 0 else 0.5) * click
    for k, at in enumerate(bars):
        n, m = int(at * sr), int((bars[k + 1] if k + 1 < len(bars) else at + 4 * beat) * sr)
        span = np.arange(m - n) / sr
        y[n:m] += sum(0.1 * np.sin(2 * np.pi * f * span) for f in chords[k % 4])
    a = analyse_samples(y.astype(np.float32), sr)
    assert a.steady_beat and a.beats_per_bar == 4
    assert f_measure(a.beats, times) >= 0.95
    short_bar_end = times[51]
    assert f_measure([d for d in a.downbeats if d > short_bar_end], [b for b in bars if b > short_bar_end]) >= 0.9
    assert f_measure(a.downbeats, bars) >= 0.9


def _hand_analysis(layout: list[tuple[str, float, float, int]], duration: float = 120.0,
                   louder: str | None = None) -> AudioAnalysis:
    """A made-up analysis at 120 BPM from (kind, start, end, group) sections: the repeated ones equally loud (the
    kind `louder` a little louder), the one-offs quiet."""
    hop = 0.05
    t = np.arange(round(duration / hop)) * hop
    counts = {g: sum(x[3] == g for x in layout) for _, _, _, g in layout}
    sections = tuple(Section(start=a, end=b, group=g, count=counts[g], label=kind, energy=0.5,
                             similarity=0.95 if counts[g] > 1 else 0.0) for kind, a, b, g in layout)
    repeated = np.zeros(t.size, dtype=bool)
    for section in sections:
        repeated |= (t >= section.start) & (t < section.end) & (section.count > 1)
    level = np.where(repeated, 0.5, 0.1)
    for kind, a, b, _ in layout:
        if kind == louder:
            level[(t >= a) & (t < b)] = 0.6
    beats = tuple(np.round(np.arange(0.0, duration, 0.5), 3).tolist())
    return AudioAnalysis(duration=duration, hop_seconds=hop, rms=tuple(level), onset=tuple(level), beats=beats,
                         tempo=120.0, repetition=tuple(np.where(repeated, 0.95, 0.0)), downbeats=beats[::4],
                         beats_per_bar=4, steady_beat=True, sections=sections)


def test_a_clip_does_not_start_in_a_piece_of_a_chorus_too_short_to_hold_it():
    """A chorus found in two pieces (20-30, 30-40): a 15 s clip from 30 would leave it after 10 s."""
    analysis = _hand_analysis([("verse", 0.0, 20.0, 0), ("chorus", 20.0, 30.0, 1), ("chorus", 30.0, 40.0, 1),
                               ("verse", 40.0, 60.0, 0), ("chorus", 60.0, 80.0, 1), ("outro", 80.0, 120.0, 2)],
                              louder="chorus")
    starts = {choose_clip(analysis, [], clip_seconds=CLIP, rng=random.Random(seed)).start for seed in range(20)}
    assert starts and starts <= {20.0, 60.0}, starts
    # a clip short enough to fit in the piece may start there
    assert 30.0 in {choose_clip(analysis, [], clip_seconds=8.0, rng=random.Random(seed)).start for seed in range(30)}


def test_lines_that_come_back_make_the_hook_when_the_music_cannot_tell():
    """Verses and choruses that both repeat and sound alike: the chorus is where the words repeat too."""
    layout = [("verse", 0.0, 20.0, 0), ("chorus", 20.0, 40.0, 1), ("verse", 40.0, 60.0, 0),
              ("chorus", 60.0, 80.0, 1), ("outro", 80.0, 120.0, 2)]
    analysis = _hand_analysis(layout)
    def stamp(seconds: float) -> str:
        return f"[{int(seconds // 60):02d}:{seconds % 60:05.2f}]"

    lrc = []
    for kind, a, b, _ in layout[:4]:
        for k, at in enumerate(np.arange(a, b, 4.0)):
            words = "we rise again tonight" if kind == "chorus" else f"verse line {int(at)} number {k}"
            lrc.append(f"{stamp(at)}{words}")
    lines = parse_lrc("\n".join(lrc) + f"\n{stamp(80.0)}\n")
    for seed in range(10):
        clip = choose_clip(analysis, lines, clip_seconds=CLIP, rng=random.Random(seed))
        assert clip.start in (20.0, 60.0), (seed, clip)


@pytest.mark.skipif(not _demo_choruses(), reason="the demo artist's SOURCES.md is not there")
@pytest.mark.parametrize("slug", sorted(_demo_choruses()))
def test_the_demo_songs_choruses_are_found_on_their_bar_lines(slug: str):
    """The bundled songs (synthesised band, espeak-ng voice): every chorus SOURCES.md states starts a repeated
    section, on its bar line, and the analysis calls that group the chorus."""
    audio = DEMO / "songs" / slug / f"{slug}.mp3"
    analysis = analyse_audio(audio)
    for start, _ in _demo_choruses()[slug]:
        found = [s for s in analysis.sections if abs(s.start - start) <= 0.07]
        assert found and found[0].count >= 2 and found[0].label == "chorus", (slug, start, analysis.sections)
