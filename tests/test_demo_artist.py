"""The bundled demo artist: found by the seed's account id, ready to run, real songs with a louder repeated chorus."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from pipeline.artists import check_readiness, find_artist, list_songs, read_context
from pipeline.ffmpeg import decode_audio, probe
from pipeline.models import Artist
from pipeline.settings import DEMO_ARTIST_DIR, Settings

ACCOUNT_ID = "1873859c-dd37-4e9a-9bac-80d3558527a9"
SR = 22050
_LRC_LINE = re.compile(r"^\[(\d{2}):(\d{2}\.\d{2})\](.*)$")


@pytest.fixture
def demo(settings: Settings) -> Artist:
    return find_artist(settings, ACCOUNT_ID)


def chorus_ranges() -> dict[str, list[tuple[float, float]]]:
    """The chorus time ranges SOURCES.md records for each song."""
    text = (DEMO_ARTIST_DIR / "SOURCES.md").read_text(encoding="utf-8")
    found = {}
    for m in re.finditer(r"^- `([a-z0-9-]+)`.*Chorus: ([0-9.,\s-]+)$", text, re.M):
        found[m[1]] = [(float(a), float(b)) for a, b in re.findall(r"(\d+\.\d+)-(\d+\.\d+)", m[2])]
    return found


def parse_lrc(path: Path) -> tuple[dict[str, str], list[tuple[float, str]]]:
    tags: dict[str, str] = {}
    lines: list[tuple[float, str]] = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        if m := _LRC_LINE.match(raw):
            lines.append((int(m[1]) * 60 + float(m[2]), m[3].strip()))
        elif m := re.match(r"^\[([a-z]+):(.*)\]$", raw):
            tags[m[1]] = m[2]
    return tags, lines


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def band_energy(x: np.ndarray, lo: float = 1000, hi: float = 4000) -> float:
    """Energy in the speech band, where the voice stands out from the (bass, kick, pad) verse music."""
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x)))) ** 2
    return float(spectrum[int(lo * len(x) / SR) : int(hi * len(x) / SR)].sum() / len(x))


def test_found_by_account_id_and_slug(settings: Settings, demo: Artist) -> None:
    assert demo.account_id == ACCOUNT_ID
    assert demo.root == DEMO_ARTIST_DIR
    assert find_artist(settings, "demo-artist").account_id == ACCOUNT_ID
    meta = json.loads((DEMO_ARTIST_DIR / "artist.json").read_text())
    assert meta["name"] == demo.name and "repository" not in meta


def test_ready_with_nothing_missing(demo: Artist) -> None:
    assert check_readiness(demo) == []
    artist_md, audience_md = read_context(demo)
    assert len(artist_md.split()) > 80 and len(audience_md.split()) > 80
    assert (DEMO_ARTIST_DIR / "RECOUP.md").is_file()


def test_whole_demo_artist_is_small() -> None:
    total = sum(p.stat().st_size for p in DEMO_ARTIST_DIR.rglob("*") if p.is_file())
    assert total <= 4 * 1024 * 1024


def test_face_guide_has_a_detectable_face(demo: Artist) -> None:
    import cv2

    if not hasattr(cv2, "CascadeClassifier"):
        pytest.fail(f"OpenCV {cv2.__version__} ships no Haar cascades (OpenCV 5 moved them out); "
                    "pin opencv-python-headless to 4.x")
    image = cv2.imread(str(demo.face_guide), cv2.IMREAD_GRAYSCALE)
    assert image is not None and image.shape == (512, 512)
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    faces = cascade.detectMultiScale(image, scaleFactor=1.1, minNeighbors=5, minSize=(60, 60))
    assert len(faces) >= 1
    x, y, w, h = max(faces, key=lambda f: f[2] * f[3])
    assert w * h > 0.02 * image.size  # a real face, not a speck


def test_songs_are_60_to_120_seconds_with_parsing_lrc(demo: Artist, ffmpeg: str) -> None:
    songs = list_songs(demo)
    assert len(songs) >= 2
    ranges = chorus_ranges()
    for song in songs:
        info = probe(song.path, ffmpeg)
        assert info.has_audio and info.sample_rate == 44100
        assert 60 <= info.duration <= 120, (song.slug, info.duration)
        assert song.path.stat().st_size < 1.2 * 1024 * 1024
        assert song.lrc_path is not None
        tags, lines = parse_lrc(song.lrc_path)
        assert tags["ti"] and tags["ar"] == demo.name
        assert len(lines) >= 12 and all(text for _, text in lines)
        times = [t for t, _ in lines]
        assert times == sorted(times) and times[0] > 0 and times[-1] < info.duration
        # the chorus repeats the same words every time
        assert song.slug in ranges and len(ranges[song.slug]) >= 2
        sung = [[text for t, text in lines if a <= t < b] for a, b in ranges[song.slug]]
        assert all(s == sung[0] and len(s) >= 2 for s in sung)


@pytest.mark.parametrize("slug", ["late-bus-home", "glass-summer"])
def test_chorus_is_louder_and_repeats_the_same_music(demo: Artist, ffmpeg: str, slug: str) -> None:
    song = next(s for s in list_songs(demo) if s.slug == slug)
    audio = decode_audio(song.path, SR, ffmpeg=ffmpeg)
    ranges = chorus_ranges()[slug]
    in_chorus = np.zeros(len(audio), dtype=bool)
    for a, b in ranges:
        in_chorus[int(a * SR) : int(b * SR)] = True
    rest = rms(audio[~in_chorus])
    assert rms(audio[in_chorus]) > 1.5 * rest
    for a, b in ranges:
        assert rms(audio[int(a * SR) : int(b * SR)]) > 1.4 * rest
    segments = [audio[int(a * SR) : int(b * SR)] for a, b in ranges]
    n = min(len(s) for s in segments)
    for other in segments[1:]:
        assert np.corrcoef(segments[0][:n], other[:n])[0, 1] > 0.9


@pytest.mark.parametrize("slug", ["late-bus-home", "glass-summer"])
def test_verse_lines_start_where_the_lrc_says(demo: Artist, ffmpeg: str, slug: str) -> None:
    """Silence in the speech band just before each verse line's time, the voice just after it."""
    song = next(s for s in list_songs(demo) if s.slug == slug)
    audio = decode_audio(song.path, SR, ffmpeg=ffmpeg)
    ranges = chorus_ranges()[slug]
    _, lines = parse_lrc(song.lrc_path)
    # lines in a chorus sit on denser music, and a line right after a chorus has it in the "before" window
    verse = [(t, text) for t, text in lines if not any(a - 0.5 <= t < b + 0.5 for a, b in ranges)]
    assert len(verse) >= 6
    for t, text in verse:
        i = int(t * SR)
        before = band_energy(audio[i - int(0.4 * SR) : i])
        after = band_energy(audio[i : i + int(0.5 * SR)])
        assert after > 4 * before, (t, text, after / before)
