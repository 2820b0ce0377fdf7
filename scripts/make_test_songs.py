"""Generate the hook and beat-grid test songs: numpy-synthesised songs whose choruses, beats and bars are known.

Each chorus is the same chords and the same melody every time it comes back; verses share their chords but get a
new tune each time; the one-off sections (a loud bridge, a loud outro, a drop intro, a solo) happen once and are
the loudest part of their song. Songs with vocals get a voice-like synthesised singer and an `.lrc`.

    .venv/bin/python scripts/make_test_songs.py OUT_DIR      # writes NAME.flac/.mp3, NAME.lrc, NAME.json

The tests and `bench/hook_eval.py` call `generate()` instead, into a temporary folder; nothing here is committed
but this script.
"""

from __future__ import annotations

import json
import subprocess
import sys
import zlib
from dataclasses import asdict, dataclass, field, replace
from functools import cache
from pathlib import Path

import numpy as np

SR = 22050
LEAD_IN = 0.37  # seconds of silence before the first beat: real files rarely start exactly on one
ONE_OFF_KINDS = ("loud_bridge", "loud_outro", "drop", "solo")

# Chord progressions as scale degrees of a major key, one chord per bar, looped over the section.
PROGRESSIONS = {
    "intro": (0, 5, 3, 4),
    "verse": (0, 4, 5, 3),
    "chorus": (3, 4, 0, 5),
    "bridge": (1, 2, 3, 4),
    "loud_bridge": (5, 1, 2, 4),
    "loud_outro": (1, 4, 2, 5),
    "drop": (5, 5, 3, 4),
    "solo": (2, 5, 1, 4),
    "outro": (0, 3, 0, 3),
}
MAJOR = (0, 2, 4, 5, 7, 9, 11)
WORDS = ("light", "road", "night", "fire", "rain", "heart", "home", "city", "river", "stone", "gold", "sky", "echo",
         "window", "summer", "shadow", "morning", "open", "paper", "silver", "wild", "slow", "again", "alone")
VOWELS = {"a": (800, 1200, 2500), "e": (400, 2000, 2600), "i": (300, 2300, 3000), "o": (500, 850, 2500),
          "u": (350, 700, 2400)}


@dataclass(frozen=True)
class SongSpec:
    name: str
    bpm: float
    layout: tuple[tuple[str, int], ...]  # (section kind, bars)
    vocals: bool = False
    beats_per_bar: int = 4
    key: int = 57  # MIDI note of the tonic (A3)
    seed: int = 0
    pickup: bool = False  # sung lines start half a beat before the bar, as singers often do
    verse_tune: bool = False  # every verse has the same tune (with new words), as in most songs
    looseness: float = 1.0  # how loosely it is played: x timing jitter (5 ms) and x level spread (+-15 %)
    fmt: str = "flac"


@dataclass
class SongTruth:
    """What a generated song is known to contain, for the tests and the evaluation."""

    name: str
    audio: str
    lrc: str | None
    bpm: float
    beats_per_bar: int
    duration: float
    beats: list[float]
    downbeats: list[float]
    sections: list[tuple[str, float, float]]  # (kind, start, end)
    steady: bool = True
    one_off_loudest: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def choruses(self) -> list[tuple[float, float]]:
        return [(a, b) for k, a, b in self.sections if k == "chorus"]


def _kinds_with(*, verse: int = 8, chorus: int = 8) -> tuple[tuple[str, int], ...]:
    return (("intro", 4), ("verse", verse), ("chorus", chorus), ("verse", verse), ("chorus", chorus), ("outro", 4))


SONGS: tuple[SongSpec, ...] = (
    SongSpec("pop-96", 96, _kinds_with(), vocals=True, verse_tune=True, seed=1, fmt="mp3"),
    SongSpec("chorus-first-128", 128, (("chorus", 8), ("verse", 8), ("chorus", 8), ("verse", 8), ("chorus", 8),
                                       ("outro", 2)), vocals=True, seed=2, key=60),
    SongSpec("late-chorus-84", 84, (("intro", 4), ("verse", 8), ("verse", 8), ("bridge", 4), ("chorus", 8),
                                    ("chorus", 8), ("outro", 2)), seed=3, key=55),
    SongSpec("long-intro-112", 112, (("intro", 16), ("verse", 8), ("chorus", 8), ("verse", 8), ("chorus", 8)),
             vocals=True, seed=4, key=62, pickup=True),
    SongSpec("loud-bridge-120", 120, (("verse", 8), ("chorus", 8), ("verse", 8), ("chorus", 8), ("loud_bridge", 8),
                                      ("chorus", 8)), vocals=True, verse_tune=True, seed=5, key=58),
    SongSpec("loud-outro-140", 140, (("intro", 4), ("verse", 8), ("chorus", 8), ("verse", 8), ("chorus", 8),
                                     ("loud_outro", 16)), seed=6, key=53, fmt="mp3"),
    SongSpec("drop-intro-150", 150, (("drop", 16), ("verse", 8), ("chorus", 12), ("verse", 8), ("chorus", 12)),
             vocals=True, seed=7, key=57),
    SongSpec("solo-105", 105, (("intro", 4), ("verse", 8), ("chorus", 8), ("verse", 8), ("solo", 8), ("chorus", 8),
                               ("outro", 4)), vocals=True, verse_tune=True, seed=8, key=52, pickup=True),
    SongSpec("fast-168", 168, (("intro", 8), ("verse", 16), ("chorus", 16), ("verse", 16), ("chorus", 16),
                               ("chorus", 16)), verse_tune=True, seed=9, key=64),
    SongSpec("ballad-70", 70, (("verse", 4), ("chorus", 4), ("verse", 4), ("chorus", 4), ("outro", 2)), vocals=True,
             seed=10, key=55),
    SongSpec("waltz-90", 90, (("intro", 4), ("verse", 8), ("chorus", 8), ("verse", 8), ("chorus", 8)),
             beats_per_bar=3, verse_tune=True, seed=11, key=60),
    SongSpec("loud-bridge-160", 160, (("verse", 16), ("chorus", 16), ("verse", 16), ("loud_bridge", 16),
                                      ("chorus", 16), ("outro", 4)), verse_tune=True, seed=12, key=59),
    SongSpec("three-choruses-100", 100, (("intro", 2), ("chorus", 8), ("verse", 8), ("chorus", 8), ("bridge", 4),
                                         ("verse", 8), ("chorus", 8)), vocals=True, verse_tune=True, seed=13, key=56,
             fmt="mp3"),
    SongSpec("solo-late-132", 132, (("verse", 8), ("chorus", 8), ("verse", 8), ("chorus", 8), ("solo", 16),
                                    ("outro", 4)), seed=14, key=61),
)
AMBIENT = SongSpec("ambient-swells", 0, (), seed=20)


# ---- instruments ----------------------------------------------------------------------------------------------


def hz(midi: float) -> float:
    return 440.0 * 2 ** ((midi - 69) / 12)


def _decay(n: int, seconds: float) -> np.ndarray:
    return np.exp(-np.arange(n) / (seconds * SR))


@cache
def _drum(name: str, variant: int = 0) -> np.ndarray:
    """A drum hit; each variant is the same drum with its own noise, as no two real hits are alike."""
    rng = np.random.default_rng([zlib.crc32(name.encode()), variant])
    if name == "kick":
        t = np.arange(int(0.3 * SR)) / SR
        return np.sin(2 * np.pi * np.cumsum(45 + 90 * np.exp(-t / 0.03)) / SR) * np.exp(-t / 0.12)
    if name == "snare":
        n = int(0.22 * SR)
        t = np.arange(n) / SR
        return np.diff(rng.standard_normal(n + 1)) * 0.45 * _decay(n, 0.06) + 0.6 * np.sin(2 * np.pi * 190 * t) * \
            _decay(n, 0.04)
    if name == "hat":
        n = int(0.05 * SR)
        return np.diff(np.diff(rng.standard_normal(n + 2))) * 0.3 * _decay(n, 0.012)
    if name == "crash":
        n = int(1.5 * SR)
        return np.diff(rng.standard_normal(n + 1)) * 0.35 * _decay(n, 0.45)
    raise ValueError(name)


@cache
def _tone(midi: float, n: int, kind: str) -> np.ndarray:
    """A note of `n` samples: 'pad' soft and sustained, 'bass' round, 'pluck' short, 'saw' bright and loud."""
    t = np.arange(n) / SR
    f = hz(midi)
    harmonics = {"pad": 4, "bass": 3, "pluck": 3, "saw": 10}[kind]
    wave = sum(np.sin(2 * np.pi * f * k * t + k) / k for k in range(1, harmonics + 1) if f * k < SR / 2.5)
    if kind == "pad":
        shape = np.minimum(1, t / 0.05) * np.minimum(1, (n / SR - t) / 0.05)
    elif kind == "bass":
        shape = np.minimum(1, t / 0.005) * np.minimum(1, (n / SR - t) / 0.02) * np.exp(-t / 0.8)
        wave = np.tanh(1.5 * wave)
    elif kind == "pluck":
        shape = np.minimum(1, t / 0.003) * np.exp(-t / 0.15)
    else:
        shape = np.minimum(1, t / 0.005) * np.minimum(1, (n / SR - t) / 0.02)
        wave = np.tanh(2.0 * wave)
    return wave * np.clip(shape, 0, 1)


def _voice(midi: float, n: int, word: str, rng: np.random.Generator) -> np.ndarray:
    """A sung syllable: a harmonic source with vibrato shaped by the formants of the word's vowel."""
    t = np.arange(n) / SR
    vowel = next((c for c in word if c in VOWELS), "a")
    f0 = hz(midi) * 2 ** (0.25 / 12 * np.sin(2 * np.pi * 5.5 * t) * np.minimum(1, t / 0.3))
    phase = 2 * np.pi * np.cumsum(f0) / SR
    out = np.zeros(n)
    base = hz(midi)
    for k in range(1, 14):
        if base * k > 4500:
            break
        gain = sum(1 / (1 + ((base * k - fm) / 120) ** 2) for fm in VOWELS[vowel]) / k**0.5
        out += gain * np.sin(k * phase)
    shape = np.minimum(1, t / 0.04) * np.clip((n / SR - t) / 0.06, 0, 1)
    out *= shape
    onset = min(n, int(0.03 * SR))
    out[:onset] += np.diff(rng.standard_normal(onset + 1)) * 0.4 * _decay(onset, 0.01)  # the consonant
    return out


def _add(buf: np.ndarray, at: float, sound: np.ndarray, gain: float) -> None:
    i = int(round(at * SR))
    if i < 0:
        sound, i = sound[-i:], 0
    n = min(sound.size, buf.size - i)
    if n > 0:
        buf[i : i + n] += gain * sound[:n]


# ---- arrangement ----------------------------------------------------------------------------------------------

# Per kind: gains of pad, bass, kick, snare, hats, lead, arp; hat division (per beat); lead instrument.
ARRANGEMENT = {
    "intro": dict(pad=0.10, bass=0.0, kick=0.0, snare=0.0, hats=0.03, lead=0.0, arp=0.04, hat_div=1, inst="pluck"),
    "verse": dict(pad=0.07, bass=0.22, kick=0.30, snare=0.16, hats=0.05, lead=0.14, arp=0.0, hat_div=1, inst="pluck"),
    "chorus": dict(pad=0.13, bass=0.32, kick=0.50, snare=0.38, hats=0.10, lead=0.20, arp=0.06, hat_div=2,
                   inst="pluck"),
    "bridge": dict(pad=0.12, bass=0.12, kick=0.15, snare=0.0, hats=0.03, lead=0.0, arp=0.05, hat_div=1, inst="pluck"),
    "outro": dict(pad=0.10, bass=0.10, kick=0.12, snare=0.0, hats=0.0, lead=0.0, arp=0.0, hat_div=1, inst="pluck"),
    # the one-offs: louder and busier than the chorus
    "loud_bridge": dict(pad=0.22, bass=0.50, kick=0.80, snare=0.60, hats=0.18, lead=0.22, arp=0.10, hat_div=4,
                        inst="saw"),
    "loud_outro": dict(pad=0.22, bass=0.50, kick=0.80, snare=0.60, hats=0.18, lead=0.20, arp=0.10, hat_div=4,
                       inst="saw"),
    "drop": dict(pad=0.18, bass=0.60, kick=0.90, snare=0.60, hats=0.20, lead=0.20, arp=0.12, hat_div=4, inst="saw"),
    "solo": dict(pad=0.18, bass=0.45, kick=0.75, snare=0.55, hats=0.16, lead=0.30, arp=0.0, hat_div=2, inst="saw"),
}


def _chord(spec: SongSpec, kind: str, bar: int) -> list[int]:
    degrees = PROGRESSIONS[kind]
    d = degrees[bar % len(degrees)]
    return [spec.key + MAJOR[(d + i) % 7] + 12 * ((d + i) // 7) for i in (0, 2, 4)]


def _melody(spec: SongSpec, kind: str, bars: int, rng: np.random.Generator) -> list[tuple[float, float, int]]:
    """(beat offset, length in beats, MIDI note) for a tune over the section: phrases of two bars, rests between."""
    bpb = spec.beats_per_bar
    notes: list[tuple[float, float, int]] = []
    fast = kind in ("solo",)
    for phrase in range(0, bars, 2):
        beat = phrase * bpb - (0.5 if spec.pickup and spec.vocals else 0.0)
        end = (phrase + 2) * bpb - (0.5 if fast else 1.0)
        while beat < end - 0.24:
            length = 0.25 if fast else float(rng.choice([0.5, 0.5, 1.0, 1.0, 1.5]))
            length = min(length, end - beat)
            chord = _chord(spec, kind, max(0, int(beat // bpb)))
            pitch = int(rng.choice(chord)) + 12 + int(rng.choice([0, 0, 2, -1]))
            notes.append((beat, length, pitch))
            beat += length
    return notes


@dataclass
class _Player:
    """Plays sounds into the song like a person: every hit a few ms off the grid, a little louder or softer, and
    every drum hit with its own noise."""

    buf: np.ndarray
    feel: np.random.Generator
    looseness: float = 1.0

    def play(self, at: float, sound: np.ndarray, gain: float, jitter: float = 0.005) -> None:
        jitter *= self.looseness
        spread = min(0.9, 0.15 * self.looseness)
        offset = float(np.clip(self.feel.normal(0, jitter), -2.5 * jitter, 2.5 * jitter))
        _add(self.buf, at + offset, sound, gain * float(self.feel.uniform(1 - spread, 1 + spread)))

    def drum(self, name: str) -> np.ndarray:
        return _drum(name, int(self.feel.integers(4)))


def _render(spec: SongSpec, kind: str, bars: int, start: float, instance: int, buf: np.ndarray,
            lines: list[tuple[float, str]], *, last: bool = False) -> None:
    """Mix one section into `buf` from `start`. Choruses (and every other kind but verses) come back with the same
    chords and tune, played by a human; the last chorus adds a layer (a bigger final chorus)."""
    tune = 0 if kind != "verse" or spec.verse_tune else instance
    rng = np.random.default_rng([spec.seed, zlib.crc32(kind.encode()), tune])
    player = _Player(buf, np.random.default_rng([spec.seed, zlib.crc32(kind.encode()), instance, 7]), spec.looseness)
    _render_band(spec, kind, bars, start, player, big_finish=last and kind == "chorus")
    if ARRANGEMENT[kind]["lead"]:
        _render_tune(spec, kind, _melody(spec, kind, bars, rng), start, instance, player, lines)


def _render_band(spec: SongSpec, kind: str, bars: int, start: float, player: _Player, *, big_finish: bool) -> None:
    """Pads, bass, drums and arpeggio, bar by bar."""
    a = ARRANGEMENT[kind]
    beat = 60.0 / spec.bpm
    bpb = spec.beats_per_bar
    bar_n = int(round(bpb * beat * SR))
    play, drum = player.play, player.drum
    for b in range(bars):
        t_bar = start + b * bpb * beat
        chord = _chord(spec, kind, b)
        for note in (*chord, chord[0] + 12):
            play(t_bar, _tone(note, bar_n, "pad"), a["pad"] / 4, jitter=0.002)
        for k in range(bpb):
            t = t_bar + k * beat
            if a["bass"]:
                play(t, _tone(chord[0] - 12, int(beat * SR), "bass"), a["bass"])
            if a["kick"] and (k == 0 or (bpb == 4 and k == 2) or (kind == "drop")):
                play(t, drum("kick"), a["kick"])
            if a["snare"] and ((bpb == 4 and k in (1, 3)) or (bpb == 3 and k in (1, 2))):
                play(t, drum("snare"), a["snare"] * (1.0 if bpb == 4 or k == 1 else 0.6))
            for h in range(a["hat_div"]):
                if a["hats"]:
                    play(t + h * beat / a["hat_div"], drum("hat"), a["hats"] * (1.0 if h == 0 else 0.6))
            if a["arp"]:
                tone = (*chord, chord[0] + 12)[k % 4] + 12
                play(t, _tone(tone, int(beat * SR), "pluck"), a["arp"])
                if big_finish:
                    play(t + beat / 2, _tone(tone + 12, int(beat * SR / 2), "pluck"), 0.8 * a["arp"])
        if kind in ONE_OFF_KINDS or (kind == "chorus" and b == 0):
            play(t_bar, drum("crash"), 0.2)


def _render_tune(spec: SongSpec, kind: str, melody: list[tuple[float, float, int]], start: float, instance: int,
                 player: _Player, lines: list[tuple[float, str]]) -> None:
    """The lead: an instrument, or (verses and choruses of songs with vocals) a singer, one word per note and a
    new line at each phrase (two bars), the lines appended to `lines`."""
    a = ARRANGEMENT[kind]
    beat = 60.0 / spec.bpm
    if not (spec.vocals and kind in ("verse", "chorus")):
        for at, length, pitch in melody:
            player.play(start + at * beat, _tone(pitch, int(length * beat * SR), a["inst"]), a["lead"], jitter=0.01)
        return
    line_words: list[str] = []
    line_start = 0.0
    phrase = None
    word_rng = np.random.default_rng([spec.seed, zlib.crc32(kind.encode()), 1 if kind != "verse" else 100 + instance])
    for at, length, pitch in melody:
        this_phrase = int((at + 0.5) // (2 * spec.beats_per_bar))
        if this_phrase != phrase:
            if line_words:
                lines.append((line_start, " ".join(line_words)))
            phrase, line_words, line_start = this_phrase, [], round(start + at * beat, 3)
        word = str(word_rng.choice(WORDS))
        line_words.append(word)
        voice = _voice(pitch - 12, int(length * beat * SR), word, player.feel)
        player.play(start + at * beat, voice, a["lead"] * 1.2, jitter=0.01)
    if line_words:
        lines.append((line_start, " ".join(line_words)))


def build(spec: SongSpec) -> tuple[np.ndarray, SongTruth, list[tuple[float, str]]]:
    """The song's samples (mono float32 at SR), what is known about it, and its sung lines (start, text)."""
    beat = 60.0 / spec.bpm
    bpb = spec.beats_per_bar
    total_beats = sum(bars for _, bars in spec.layout) * bpb
    duration = LEAD_IN + total_beats * beat + 2.0
    buf = np.zeros(int(duration * SR) + SR)
    sections: list[tuple[str, float, float]] = []
    lines: list[tuple[float, str]] = []
    t = LEAD_IN
    seen: dict[str, int] = {}
    choruses = sum(kind == "chorus" for kind, _ in spec.layout)
    for kind, bars in spec.layout:
        instance = seen.get(kind, 0)
        seen[kind] = instance + 1
        _render(spec, kind, bars, t, instance, buf, lines, last=kind == "chorus" and instance == choruses - 1)
        end = t + bars * bpb * beat
        sections.append((kind, round(t, 4), round(end, 4)))
        t = end
    buf = buf[: int(duration * SR)]
    samples = (0.9 * buf / np.max(np.abs(buf))).astype(np.float32)
    beats = [round(LEAD_IN + k * beat, 4) for k in range(total_beats)]
    loud = {kind: _rms(samples, a, b) for kind, a, b in sections}
    loudest = max(loud, key=loud.get)
    truth = SongTruth(
        name=spec.name, audio=f"{spec.name}.{spec.fmt}", lrc=f"{spec.name}.lrc" if spec.vocals else None,
        bpm=spec.bpm, beats_per_bar=bpb, duration=round(duration, 3), beats=beats, downbeats=beats[::bpb],
        sections=sections, one_off_loudest=loudest in ONE_OFF_KINDS,
    )
    return samples, truth, lines


def build_ambient(spec: SongSpec = AMBIENT, seconds: float = 60.0) -> tuple[np.ndarray, SongTruth]:
    """No beat at all: slow-swelling chords changing at uneven times and a few soft bell notes off any grid."""
    rng = np.random.default_rng(spec.seed)
    buf = np.zeros(int(seconds * SR) + 6 * SR)
    t = 0.0
    while t < seconds:
        length = float(rng.uniform(2.5, 6.0))
        chord = [spec.key + MAJOR[(d + i) % 7] for d in (int(rng.integers(7)),) for i in (0, 2, 4)]
        n = int(length * SR)
        swell = np.sin(np.pi * np.arange(n) / n) ** 2
        for note in chord:
            _add(buf, t, _tone(note, n, "pad") * swell, 0.08)
        for _ in range(int(rng.integers(0, 3))):
            _add(buf, t + float(rng.uniform(0, length)), _tone(int(rng.choice(chord)) + 12, SR, "pluck"), 0.05)
        t += length
    buf = buf[: int(seconds * SR)]
    samples = (0.9 * buf / np.max(np.abs(buf))).astype(np.float32)
    truth = SongTruth(name=spec.name, audio=f"{spec.name}.flac", lrc=None, bpm=0.0, beats_per_bar=4,
                      duration=seconds, beats=[], downbeats=[], sections=[], steady=False)
    return samples, truth


def build_rubato(seconds: float = 60.0, seed: int = 21) -> tuple[np.ndarray, SongTruth]:
    """A pianist playing freely: a note on every beat, but the tempo swells and relaxes between 60 and 100 BPM."""
    rng = np.random.default_rng(seed)
    buf = np.zeros(int(seconds * SR) + 2 * SR)
    t, n = 0.5, 0
    while t < seconds - 1.0:
        chord = _chord(AMBIENT, "verse", n // 4)
        _add(buf, t, _tone(int(rng.choice(chord)) + 12, int(0.5 * SR), "pluck"), float(rng.uniform(0.25, 0.35)))
        if n % 4 == 0:
            _add(buf, t, _tone(chord[0] - 12, int(1.5 * SR), "bass"), 0.2)
        t += 60.0 / (80.0 * (1 + 0.25 * np.sin(2 * np.pi * t / 20.0)))
        n += 1
    samples = (0.9 * buf[: int(seconds * SR)] / np.max(np.abs(buf))).astype(np.float32)
    truth = SongTruth(name="rubato-piano", audio="rubato-piano.flac", lrc=None, bpm=0.0, beats_per_bar=4,
                      duration=seconds, beats=[], downbeats=[], sections=[], steady=False)
    return samples, truth


def build_long(minutes: float = 10.0) -> np.ndarray:
    """A song of `minutes` (verse, chorus, bridge over and over) for the cost measurement."""
    bars = int(minutes * 60 / (4 * 60 / 120)) // 20
    spec = SongSpec("long", 120, (("verse", 8), ("chorus", 8), ("bridge", 4)) * (bars + 1), seed=30)
    samples, _, _ = build(spec)
    return samples[: int(minutes * 60 * SR)]


def _rms(samples: np.ndarray, start: float, end: float) -> float:
    part = samples[int(start * SR) : int(end * SR)].astype(np.float64)
    return float(np.sqrt(np.mean(part**2))) if part.size else 0.0


# ---- files ----------------------------------------------------------------------------------------------------


def lrc_text(lines: list[tuple[float, str]], sections: list[tuple[str, float, float]]) -> str:
    """The sung lines, each section's singing closed by a blank tag at its end (the instrumental gap after)."""
    def stamp(t: float) -> str:
        return f"[{int(t // 60):02d}:{t % 60:05.2f}]"

    events = [(t, text) for t, text in lines]
    events += [(end - 0.05, "") for kind, _, end in sections if kind in ("verse", "chorus")]
    return "[ti:Generated test song]\n" + "".join(f"{stamp(t)}{text}\n" for t, text in sorted(events))


def write_audio(path: Path, samples: np.ndarray, ffmpeg: str) -> None:
    """Encode with the real ffmpeg (FLAC lossless, MP3 at 96k: small, and a real decoder path)."""
    codec = ["-c:a", "libmp3lame", "-b:a", "96k"] if path.suffix == ".mp3" else []
    subprocess.run([ffmpeg, "-hide_banner", "-nostdin", "-v", "error", "-y", "-f", "f32le", "-ar", str(SR),
                    "-ac", "1", "-i", "pipe:0", *codec, str(path)],
                   input=np.ascontiguousarray(samples, dtype=np.float32).tobytes(), check=True)


def generate(out_dir: Path, *, ffmpeg: str | None = None, specs: tuple[SongSpec, ...] = SONGS,
             ambient: bool = True, looseness: float = 1.0) -> list[SongTruth]:
    """Write every song (audio, .lrc, truth .json) into `out_dir`; return what is known about each.

    `ambient`: also the two songs without a steady beat; `looseness`: every song played that much more loosely.
    """
    if ffmpeg is None:
        import imageio_ffmpeg

        ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    out_dir.mkdir(parents=True, exist_ok=True)
    truths: list[SongTruth] = []
    for spec in specs:
        samples, truth, lines = build(replace(spec, looseness=spec.looseness * looseness))
        write_audio(out_dir / truth.audio, samples, ffmpeg)
        if truth.lrc:
            (out_dir / truth.lrc).write_text(lrc_text(lines, truth.sections), encoding="utf-8")
        truths.append(truth)
    if ambient:
        for samples, truth in (build_ambient(), build_rubato()):
            write_audio(out_dir / truth.audio, samples, ffmpeg)
            truths.append(truth)
    for truth in truths:
        (out_dir / f"{truth.name}.json").write_text(json.dumps(asdict(truth), indent=1), encoding="utf-8")
    return truths


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit("usage: make_test_songs.py OUT_DIR")
    for truth in generate(Path(sys.argv[1])):
        flag = " (loudest section is a one-off)" if truth.one_off_loudest else ""
        grid = f"{truth.bpm:g} BPM, {truth.beats_per_bar}/4" if truth.steady else "no steady beat"
        print(f"{truth.name}: {truth.duration:.1f} s, {grid}{flag}")


if __name__ == "__main__":
    main()
