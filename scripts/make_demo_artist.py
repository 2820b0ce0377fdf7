"""Generate the bundled demo artist in assets/demo-artist: face guide, two original songs with .lrc, context files.

The output is committed; run this only to rebuild it. It is deterministic (fixed seeds, fixed voices).

How to run, from the repository root:

    sudo apt-get install espeak-ng                 # the voices (Debian/Ubuntu package)
    python3 -m venv /tmp/skv
    /tmp/skv/bin/pip install scikit-image imageio-ffmpeg
    /tmp/skv/bin/python scripts/make_demo_artist.py

What it needs: numpy, scikit-image (only for NASA's public-domain astronaut portrait, `skimage.data.astronaut()`),
Pillow (comes with scikit-image), imageio-ffmpeg's ffmpeg (or set FFMPEG=/path/to/ffmpeg) to encode the MP3s, and
the `espeak-ng` command. None of these are runtime dependencies of the studio, so they stay out of requirements.txt.

The music is synthesised here with numpy (drums, bass, pads, a chorus arpeggio); the vocals are espeak-ng speaking
the lyrics, placed at the times the .lrc files give. Each chorus is rendered once and pasted at every chorus, so
the hook repeats exactly, and it is fuller and louder than the verses.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "assets" / "demo-artist"
ACCOUNT_ID = "1873859c-dd37-4e9a-9bac-80d3558527a9"
ARTIST_NAME = "Nova Reyes"
SR = 44100
MP3_BITRATE = "80k"
VOICE = "en-us+f3"  # espeak-ng voice and variant: the artist's voice
LEAD_PITCH, DOUBLE_PITCH = 52, 74  # the chorus doubles the lead a step higher


@dataclass(frozen=True)
class Section:
    kind: str  # intro | verse | chorus | bridge | outro
    bars: int
    lines: tuple[str, ...] = ()  # one vocal line every two bars, from the section's start


@dataclass(frozen=True)
class SongSpec:
    slug: str
    title: str
    bpm: float
    chords: dict[str, tuple[tuple[int, ...], ...]]  # per section kind, one chord (MIDI notes) per bar, looped
    sections: tuple[Section, ...]
    seed: int


# Chords as MIDI notes (root position, around middle C).
AM, F, C, G, DM, EM = (57, 60, 64), (53, 57, 60), (48, 52, 55), (55, 59, 62), (50, 53, 57), (52, 55, 59)
C_HI, AM_LO = (60, 64, 67), (45, 48, 52)

LATE_BUS_CHORUS = (
    "Take the late bus home, take the long way round",
    "Let the engine hum the only honest sound",
    "I don't need the map, I don't need the crown",
    "Take the late bus home, take the long way round",
)
GLASS_SUMMER_CHORUS = (
    "Oh, glass summer, let the light come through",
    "Every colour that I ever knew",
    "If it breaks we'll dance on every piece",
    "Glass summer, bring me back to you",
)

SONGS = (
    SongSpec(
        slug="late-bus-home",
        title="Late Bus Home",
        bpm=100.0,
        chords={
            "intro": (AM, F, C, G),
            "verse": (AM, F, C, G),
            "chorus": (F, G, AM, C),
            "bridge": (DM, EM, F, G),
            "outro": (AM, F, C, AM),
        },
        sections=(
            Section("intro", 4),
            Section("verse", 8, (
                "Counting streetlights from the back seat window",
                "Every stop a little further from the noise",
                "Headphones humming something I can't name yet",
                "While the city folds away its neon toys",
            )),
            Section("chorus", 8, LATE_BUS_CHORUS),
            Section("verse", 8, (
                "Driver nods like he has heard it all before",
                "Rain is writing letters on the glass",
                "Someone laughing softly two rows from the door",
                "And for a minute nothing has to last",
            )),
            Section("chorus", 8, LATE_BUS_CHORUS),
            Section("outro", 4, ("Take the long way round",)),
        ),
        seed=11,
    ),
    SongSpec(
        slug="glass-summer",
        title="Glass Summer",
        bpm=120.0,
        chords={
            "intro": (C, G, AM, F),
            "verse": (C, G, AM, F),
            "chorus": (F, G, C_HI, AM),
            "bridge": (DM, EM, F, G),
            "outro": (C, C),
        },
        sections=(
            Section("intro", 4),
            Section("verse", 8, (
                "We were paper kings on a borrowed roof",
                "Sunburnt promises and nothing to prove",
                "You said the summer was made of glass",
                "Hold it too tightly and it will not last",
            )),
            Section("chorus", 8, GLASS_SUMMER_CHORUS),
            Section("verse", 8, (
                "Bikes on the gravel and a radio song",
                "Counting the freckles where the days went wrong",
                "Now every window that I pass",
                "Shows me a summer made of glass",
            )),
            Section("chorus", 8, GLASS_SUMMER_CHORUS),
            Section("bridge", 4, (
                "And if it shatters, let it shatter",
                "We were brighter than the light",
            )),
            Section("chorus", 8, GLASS_SUMMER_CHORUS),
            Section("outro", 2),
        ),
        seed=23,
    ),
)

# How each kind of section is played: the chorus is the fullest and loudest.
ARRANGEMENT = {
    #          pad gain, pad harmonics, bass, kick, snare, hats, hat step, arp, four-on-the-floor
    "intro": dict(pad=0.10, harm=3, bass=0.0, kick=0.0, snare=0.0, hats=0.03, hat_step=4, arp=0.0, four=False),
    "verse": dict(pad=0.09, harm=4, bass=0.16, kick=0.30, snare=0.14, hats=0.035, hat_step=2, arp=0.0, four=False),
    "chorus": dict(pad=0.17, harm=9, bass=0.26, kick=0.50, snare=0.30, hats=0.07, hat_step=1, arp=0.10, four=True),
    "bridge": dict(pad=0.12, harm=5, bass=0.18, kick=0.32, snare=0.18, hats=0.04, hat_step=2, arp=0.04, four=False),
    "outro": dict(pad=0.10, harm=3, bass=0.08, kick=0.0, snare=0.0, hats=0.0, hat_step=4, arp=0.0, four=False),
}
VOCAL_GAIN = {"chorus": 0.9, "verse": 0.6, "bridge": 0.6, "outro": 0.5, "intro": 0.5}


def hz(midi: float) -> float:
    return 440.0 * 2 ** ((midi - 69) / 12)


def env_ad(n: int, attack: float, decay: float) -> np.ndarray:
    t = np.arange(n) / SR
    return np.minimum(1.0, t / max(attack, 1e-4)) * np.exp(-t / decay)


def kick(rng: np.random.Generator) -> np.ndarray:
    n = int(0.35 * SR)
    t = np.arange(n) / SR
    freq = 45 + 85 * np.exp(-t / 0.035)
    body = np.sin(2 * np.pi * np.cumsum(freq) / SR) * np.exp(-t / 0.16)
    click = rng.standard_normal(n) * np.exp(-t / 0.004) * 0.3
    return body + click


def snare(rng: np.random.Generator) -> np.ndarray:
    n = int(0.25 * SR)
    t = np.arange(n) / SR
    noise = np.diff(rng.standard_normal(n + 1)) * 0.5 * np.exp(-t / 0.07)
    tone = np.sin(2 * np.pi * 185 * t) * np.exp(-t / 0.05)
    return noise + 0.6 * tone


def hat(rng: np.random.Generator, open_: bool = False) -> np.ndarray:
    n = int((0.22 if open_ else 0.06) * SR)
    t = np.arange(n) / SR
    noise = np.diff(np.diff(rng.standard_normal(n + 2)))  # second difference: a bright, high-passed hiss
    return noise * 0.35 * np.exp(-t / (0.08 if open_ else 0.015))


def crash(rng: np.random.Generator) -> np.ndarray:
    n = int(1.6 * SR)
    t = np.arange(n) / SR
    return np.diff(rng.standard_normal(n + 1)) * 0.4 * np.exp(-t / 0.5)


def add(buf: np.ndarray, sound: np.ndarray, at: int, gain: float) -> None:
    end = min(len(buf), at + len(sound))
    if at < end:
        buf[at:end] += gain * sound[: end - at]


def pad_bar(chord: tuple[int, ...], n: int, harmonics: int) -> np.ndarray:
    """A soft, detuned saw-ish chord for one bar (band-limited: a few harmonics only)."""
    t = np.arange(n) / SR
    out = np.zeros(n)
    for note in (*chord, chord[0] + 12):
        for detune in (-0.06, 0.06):
            f = hz(note + detune)
            for k in range(1, harmonics + 1):
                if f * k < SR / 2.5:
                    out += np.sin(2 * np.pi * f * k * t + k) / k
    fade = min(n // 2, int(0.04 * SR))
    shape = np.ones(n)
    shape[:fade] = np.linspace(0, 1, fade)
    shape[-fade:] = np.linspace(1, 0, fade)
    return out * shape / (2 * (len(chord) + 1))


def bass_note(midi: int, n: int) -> np.ndarray:
    t = np.arange(n) / SR
    f = hz(midi)
    tone = np.sin(2 * np.pi * f * t) + 0.35 * np.sin(4 * np.pi * f * t) + 0.15 * np.sin(6 * np.pi * f * t)
    shape = np.minimum(1, t / 0.005) * np.minimum(1, (n / SR - t) / 0.02) * np.exp(-t / 0.9)
    return np.tanh(1.5 * tone) * shape


def pluck(midi: int, n: int) -> np.ndarray:
    t = np.arange(n) / SR
    f = hz(midi)
    tone = np.sin(2 * np.pi * f * t) + 0.5 * np.sin(4 * np.pi * f * t) + 0.25 * np.sin(6 * np.pi * f * t)
    return tone * env_ad(n, 0.003, 0.12)


def render_section(kind: str, chords: tuple[tuple[int, ...], ...], bars: int, bpm: float, seed: int) -> np.ndarray:
    a = ARRANGEMENT[kind]
    rng = np.random.default_rng(seed)
    drums = {"kick": kick(rng), "snare": snare(rng), "hat": hat(rng), "open": hat(rng, True), "crash": crash(rng)}
    bar_n = int(round(4 * 60 / bpm * SR))
    step_n = bar_n // 16
    out = np.zeros(bar_n * bars + SR)  # a second of tail for the crash and release
    for b in range(bars):
        chord = chords[b % len(chords)]
        start = b * bar_n
        add(out, pad_bar(chord, bar_n, a["harm"]), start, a["pad"])
        root = chord[0] - 12 if chord[0] >= 48 else chord[0]
        if a["bass"]:
            steps = range(0, 16, 2) if kind == "chorus" else (0, 8)
            for s in steps:
                note = root + (12 if kind == "chorus" and s in (6, 14) else 0)
                add(out, bass_note(note, step_n * (2 if kind == "chorus" else 8)), start + s * step_n, a["bass"])
        for s in range(16):
            at = start + s * step_n
            if a["kick"] and (s % 4 == 0 if a["four"] else s in (0, 8, 10)):
                add(out, drums["kick"], at, a["kick"])
            if a["snare"] and s in ((8,) if kind == "bridge" else (4, 12)):
                add(out, drums["snare"], at, a["snare"])
            if a["hats"] and s % a["hat_step"] == 0:
                accent = 1.0 if s % 4 == 2 else 0.6
                add(out, drums["open"] if a["four"] and s % 4 == 2 else drums["hat"], at, a["hats"] * accent)
            if a["arp"]:
                tones = (*chord, chord[0] + 12)
                add(out, pluck(tones[s % len(tones)] + 12, step_n * 2), at, a["arp"])
        if kind == "chorus" and b == 0:
            add(out, drums["crash"], start, 0.25)
    return out


def espeak(text: str, *, pitch: int, speed: int, workdir: Path) -> np.ndarray:
    """One spoken line from espeak-ng, at SR, leading and trailing silence trimmed, peak 1."""
    path = workdir / "line.wav"
    subprocess.run(["espeak-ng", "-v", VOICE, "-s", str(speed), "-p", str(pitch), "-w", str(path), text], check=True)
    with wave.open(str(path)) as w:
        rate = w.getframerate()
        data = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).astype(np.float64) / 32768
    data = np.interp(np.arange(int(len(data) * SR / rate)) * rate / SR, np.arange(len(data)), data)
    loud = np.flatnonzero(np.abs(data) > 0.02 * np.abs(data).max())
    data = data[loud[0] : loud[-1] + 1]
    return data / np.abs(data).max()


def sing_line(text: str, slot: float, doubled: bool, workdir: Path) -> np.ndarray:
    """The line, sped up until it fits its slot; the chorus adds a second voice a step higher."""
    for speed in range(150, 260, 10):
        lead = espeak(text, pitch=LEAD_PITCH, speed=speed, workdir=workdir)
        if len(lead) / SR <= slot - 0.35:
            break
    if not doubled:
        return lead
    double = espeak(text, pitch=DOUBLE_PITCH, speed=speed, workdir=workdir)
    n = max(len(lead), len(double))
    mix = np.zeros(n)
    mix[: len(lead)] += lead
    mix[: len(double)] += 0.8 * double
    return mix / np.abs(mix).max()


def lrc_time(seconds: float) -> str:
    cs = int(round(seconds * 100))
    return f"{cs // 6000:02d}:{cs % 6000 / 100:05.2f}"


@dataclass(frozen=True)
class BuiltSong:
    spec: SongSpec
    audio: np.ndarray
    lines: tuple[tuple[float, str], ...]
    choruses: tuple[tuple[float, float], ...]


def build_song(spec: SongSpec, workdir: Path) -> BuiltSong:
    bar = 4 * 60 / spec.bpm
    bar_n = int(round(bar * SR))
    total_bars = sum(s.bars for s in spec.sections)
    audio = np.zeros(total_bars * bar_n + 2 * SR)
    rendered: dict[str, np.ndarray] = {}
    sung: dict[str, np.ndarray] = {}
    lines: list[tuple[float, str]] = []
    choruses: list[tuple[float, float]] = []
    at_bar = 0
    for section in spec.sections:
        key = f"{section.kind}:{section.bars}"
        if key not in rendered:  # every chorus is the same recording: the hook repeats exactly
            rendered[key] = render_section(section.kind, spec.chords[section.kind], section.bars, spec.bpm,
                                           spec.seed + len(rendered))
        start = at_bar * bar_n
        add(audio, rendered[key], start, 1.0)
        if section.kind == "chorus":
            choruses.append((at_bar * bar, (at_bar + section.bars) * bar))
        for i, text in enumerate(section.lines):
            if text not in sung:
                sung[text] = sing_line(text, 2 * bar, section.kind == "chorus", workdir)
            line_bar = at_bar + 2 * i
            add(audio, sung[text], line_bar * bar_n, VOCAL_GAIN[section.kind])
            lines.append((line_bar * bar, text))
        at_bar += section.bars
    audio = audio[: total_bars * bar_n + SR]  # one second of ring-out after the last bar
    fade = int(1.5 * SR)
    audio[-fade:] *= np.linspace(1, 0, fade)
    audio *= 0.9 / np.abs(audio).max()
    return BuiltSong(spec, audio.astype(np.float32), tuple(lines), tuple(choruses))


def rms_ratio(song: BuiltSong) -> float:
    mask = np.zeros(len(song.audio), dtype=bool)
    for a, b in song.choruses:
        mask[int(a * SR) : int(b * SR)] = True
    rms = lambda x: float(np.sqrt(np.mean(np.square(x))))  # noqa: E731
    return rms(song.audio[mask]) / rms(song.audio[~mask])


def ffmpeg_exe() -> str:
    if os.environ.get("FFMPEG"):
        return os.environ["FFMPEG"]
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except ImportError:
        found = shutil.which("ffmpeg")
        if not found:
            sys.exit("No ffmpeg: pip install imageio-ffmpeg, or set FFMPEG=/path/to/ffmpeg")
        return found


def write_mp3(song: BuiltSong, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-nostdin", "-v", "error", "-y", "-f", "f32le", "-ar", str(SR), "-ac", "1",
         "-i", "pipe:0", "-c:a", "libmp3lame", "-b:a", MP3_BITRATE, "-ar", str(SR), "-ac", "1",
         "-metadata", f"title={song.spec.title}", "-metadata", f"artist={ARTIST_NAME}", "-bitexact", str(path)],
        input=song.audio.tobytes(), check=True,
    )


def write_lrc(song: BuiltSong, path: Path) -> None:
    duration = len(song.audio) / SR
    head = [f"[ti:{song.spec.title}]", f"[ar:{ARTIST_NAME}]", f"[length:{lrc_time(duration)[:5]}]"]
    body = [f"[{lrc_time(t)}]{text}" for t, text in song.lines]
    path.write_text("\n".join(head + body) + "\n", encoding="utf-8")


def write_face_guide(path: Path) -> None:
    from PIL import Image
    from skimage import data

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(data.astronaut()).save(path, optimize=True)


ARTIST_MD = """# Nova Reyes

Nova Reyes is a synth-pop songwriter who writes and records everything in a small bedroom studio: a
second-hand keyboard, a drum machine older than she is, and a microphone propped on a stack of books.
Her songs are about night buses, city lights, leaving home and the strange calm of travelling alone
after midnight.

She grew up in a coastal city, worked night shifts in a bakery through her first two records, and still
writes most of her lyrics on her phone on the way home. Her sound is warm analogue synths, steady
programmed beats and a voice that is closer to talking than singing: confessional, a little deadpan, never
shouting.

The current era is "Late Bus Home": songs about the in-between hours, when the city is folding up and
the only honest sound is the engine. "Glass Summer" is the bright one: a song about a summer that felt
too perfect to hold on to.

She is independent, releases singles every few months, and plays small rooms where the crowd sings the
chorus back louder than the speakers.
"""

AUDIENCE_MD = """# Who listens

Mostly 18 to 30: students, night-shift workers and people who just moved to a new city, listening on
headphones on the bus, on the walk home, or in the kitchen after midnight. They find songs through
friends' stories and late-night playlists, and they save the ones that sound like their own commute.

They love synth-pop, bedroom pop and anything with a chorus they can sing back. They like honesty more
than polish: a voice note, a messy room and a real story land better than a glossy video. Rooftops,
city lights, rain on bus windows and summer evenings are the pictures they share.

They comment with the lyric that got them, send the song to the one person it is about, and come to
the small shows in groups. Captions that feel like a text from a friend work; ads and hype do not.
"""

RECOUP_MD = """# Nova Reyes: notes

- Demo artist bundled with the studio: every file here is generated by `scripts/make_demo_artist.py`.
- Fictional artist; songs and lyrics are original to this project. The face guide is a public-domain
  stand-in (see SOURCES.md); it does not depict or imply any real artist.
- Focus tracks: `late-bus-home` (the single), `glass-summer` (the bright one).
- Captions: lowercase, honest, no hashtags; quote the lyric that hits.
"""


def sources_md(songs: list[BuiltSong]) -> str:
    lines = [
        "# Sources of the demo artist",
        "",
        "Everything here is made by `scripts/make_demo_artist.py` (deterministic: run it again to rebuild).",
        "",
        "## Face guide",
        "",
        "`context/images/face-guide.png` is scikit-image's `skimage.data.astronaut()`: NASA astronaut Eileen",
        "Collins' official portrait, downloaded by scikit-image from the NASA Great Images database",
        "(https://flic.kr/p/r9qvLn). A work of the US government (NASA): no known copyright restrictions,",
        "released into the public domain. Saved unchanged as a 512x512 PNG. It stands in as the face of a",
        "fictional artist and implies no endorsement.",
        "",
        "## Songs",
        "",
        "Original music and lyrics written for this project, synthesised with numpy (drums, bass, pads,",
        "arpeggio) and voiced with espeak-ng (voice `en-us+f3`); same licence as the project. Mono MP3,",
        f"44.1 kHz, {MP3_BITRATE}bps. The .lrc times are where each vocal line starts. Structure and chorus",
        "ranges, in seconds (tests of the hook finder use them):",
        "",
    ]
    for song in songs:
        duration = len(song.audio) / SR
        structure = ", ".join(f"{s.kind} {s.bars} bars" for s in song.spec.sections)
        ranges = ", ".join(f"{a:.2f}-{b:.2f}" for a, b in song.choruses)
        lines.append(f"- `{song.spec.slug}` ({song.spec.title}): {duration:.2f} s, {song.spec.bpm:g} BPM; "
                     f"{structure}. Chorus: {ranges}")
    return "\n".join(lines) + "\n"


def main() -> None:
    if not shutil.which("espeak-ng"):
        sys.exit("espeak-ng is needed for the vocals: sudo apt-get install espeak-ng")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "artist.json").write_text(json.dumps({"account_id": ACCOUNT_ID, "name": ARTIST_NAME}, indent=2) + "\n")
    (OUT / "context").mkdir(exist_ok=True)
    (OUT / "context" / "artist.md").write_text(ARTIST_MD, encoding="utf-8")
    (OUT / "context" / "audience.md").write_text(AUDIENCE_MD, encoding="utf-8")
    (OUT / "RECOUP.md").write_text(RECOUP_MD, encoding="utf-8")
    write_face_guide(OUT / "context" / "images" / "face-guide.png")
    built = []
    with tempfile.TemporaryDirectory() as tmp:
        for spec in SONGS:
            song = build_song(spec, Path(tmp))
            folder = OUT / "songs" / spec.slug
            write_mp3(song, folder / f"{spec.slug}.mp3")
            write_lrc(song, folder / f"{spec.slug}.lrc")
            built.append(song)
            print(f"{spec.slug}: {len(song.audio) / SR:.2f} s, chorus/rest RMS {rms_ratio(song):.2f}, "
                  f"{(folder / f'{spec.slug}.mp3').stat().st_size // 1024} KiB")
    (OUT / "SOURCES.md").write_text(sources_md(built), encoding="utf-8")


if __name__ == "__main__":
    main()
