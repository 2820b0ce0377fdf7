"""Timed lyrics: LRC parsing, words spread over lines, clip windows, and where lyrics come from."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.ffmpeg import decode_audio
from pipeline.lyrics import (
    LAST_LINE_SECONDS,
    MAX_LINE_SECONDS,
    SYLLABLE_SECONDS,
    lines_in_window,
    load_lyrics,
    load_timed_lyrics,
    parse_lrc,
    syllables,
)
from pipeline.models import LyricLine, Song, Word
from tests.media import ffmpeg_make

LRC = """\ufeff[ti:Glass Summer]
[ar:Nova Reyes]
[al:Demo]
[by:someone]
[length:01:41]

[00:08.00]We were paper kings
[00:12.50][01:02.25]Oh glass summer let the light in
[00:16.00]
[00:18.00]Counting the freckles
[00:40]After a long gap
[01:10.10]The very last line
"""


def test_lines_come_in_time_order_without_metadata():
    lines = parse_lrc(LRC)
    assert [line.text for line in lines] == [
        "We were paper kings",
        "Oh glass summer let the light in",
        "Counting the freckles",
        "After a long gap",
        "Oh glass summer let the light in",
        "The very last line",
    ]
    assert [line.start for line in lines] == [8.0, 12.5, 18.0, 40.0, 62.25, 70.1]


def test_each_line_ends_where_the_next_begins_within_limits():
    lines = parse_lrc(LRC)
    assert lines[0].end == 12.5
    assert lines[1].end == 16.0, "a blank tag ends the line before it"
    assert lines[2].end == 18.0 + MAX_LINE_SECONDS, "a line does not run through a long instrumental gap"
    assert lines[3].end == 50.0
    assert lines[4].end == 70.1
    assert lines[5].end == pytest.approx(70.1 + LAST_LINE_SECONDS)


def test_offset_shifts_every_line():
    sooner = parse_lrc("[offset:+500]\n[00:10.00]one line\n[00:12.00]two line\n")
    later = parse_lrc("[00:10.00]one line\n[offset:-250]\n[00:12.00]two line\n")
    assert [line.start for line in sooner] == [9.5, 11.5]
    assert [line.start for line in later] == [10.25, 12.25]
    clamped = parse_lrc("[offset:+2000]\n[00:01.00]early\n")
    assert clamped[0].start == 0.0


def test_odd_but_common_time_formats():
    lines = parse_lrc("[01:02:50]colon hundredths\r\n[1:05.125]milliseconds\r\n[02:00]whole seconds\r\n")
    assert [line.start for line in lines] == [62.5, 65.125, 120.0]
    assert parse_lrc("just some words\nwithout any times\n") == []
    assert parse_lrc("") == []


def test_words_are_spread_over_the_line_by_syllables_in_order():
    line = parse_lrc("[00:10.00]strength in beautiful\n[00:12.00]next\n")[0]
    assert [w.text for w in line.words] == ["strength", "in", "beautiful"]
    assert line.words[0].start == line.start
    assert line.words[-1].end == pytest.approx(11.8, abs=0.002), "ends a breath (here 10 % of 2 s) before the next"
    for before, after in zip(line.words, line.words[1:], strict=False):
        assert before.end == after.start, "words follow one another without gaps or overlaps"
    lengths = [w.end - w.start for w in line.words]
    # 1 + 1 + 3 syllables (by characters "strength" would have outlasted "beautiful")
    assert lengths == pytest.approx([0.36, 0.36, 1.08], abs=0.002), "time is shared by syllables"
    assert " ".join(w.text for w in line.words) == line.text


def test_a_plain_line_before_a_gap_is_sung_at_a_singing_pace():
    line = parse_lrc("[00:10.00]oh no\n[00:19.00]next\n")[0]
    assert line.words[-1].end == pytest.approx(10.0 + 2 * SYLLABLE_SECONDS, abs=0.002)
    assert [syllables(w) for w in ("the", "time", "fire", "little", "beautiful", "we're")] == [1, 1, 1, 2, 3, 1]


def test_enhanced_word_tags_are_used_as_given():
    line = parse_lrc("[00:05.00]<00:05.00>Hey <00:05.80>there <00:07.00>you\n[00:09.00]next\n")[0]
    assert line.text == "Hey there you"
    assert [(w.text, w.start) for w in line.words] == [("Hey", 5.0), ("there", 5.8), ("you", 7.0)]
    assert line.words[-1].end == 9.0


def test_lines_in_window_are_relative_and_clipped():
    lines = parse_lrc("[00:10.00]first line here\n[00:14.00]second line\n[00:18.00]third\n[00:30.00]\n")
    clip = lines_in_window(lines, 12.0, 8.0)
    assert [line.text for line in clip] == ["first line here", "second line", "third"]
    assert (clip[0].start, clip[0].end) == (0.0, 2.0)
    assert (clip[1].start, clip[1].end) == (2.0, 6.0)
    assert (clip[2].start, clip[2].end) == (6.0, 8.0), "the last line is cut at the window's end"
    first_words = [w.text for w in clip[0].words]
    assert first_words == [], "words sung before the window are gone (a 3-syllable line is sung by 11.26 s)"
    assert [w.text for w in lines_in_window(lines, 10.5, 8.0)[0].words] == ["line", "here"]
    assert all(0.0 <= w.start <= w.end <= 8.0 for line in clip for w in line.words)
    assert lines_in_window(lines, 40.0, 5.0) == ()
    assert lines_in_window(lines, 13.95, 5.0)[0].text == "first line here"
    assert lines_in_window(lines, 13.95, 5.0, min_overlap=0.3)[0].text == "second line"


# ---- where lyrics come from -----------------------------------------------------------------------------------


class LoudnessTranscriber:
    """A real (if simple-minded) transcriber: one "la la" line for every stretch of the song that is not silent."""

    name = "loudness"

    def __init__(self) -> None:
        self.heard: list[Path] = []

    def transcribe(self, path: Path) -> list[LyricLine]:
        self.heard.append(path)
        rate = 100
        samples = decode_audio(path, 8000)
        loud = np.abs(samples[: samples.size // 80 * 80]).reshape(-1, 80).max(axis=1) > 0.05
        edges = np.flatnonzero(np.diff(np.concatenate([[0], loud.astype(int), [0]])))
        lines = []
        for start, end in zip(edges[::2] / rate, edges[1::2] / rate, strict=True):
            middle = (start + end) / 2
            words = (Word(start=start, end=middle, text="la"), Word(start=middle, end=end, text="la"))
            lines.append(LyricLine(start=float(start), end=float(end), text="la la", words=words))
        return lines


@pytest.fixture
def song_file(tmp_path: Path) -> Path:
    """One second of silence, a second of tone, a second of silence."""
    path = tmp_path / "song.wav"
    ffmpeg_make("-f", "lavfi", "-i", "aevalsrc=0.5*sin(2*PI*440*t)*between(t\\,1\\,2):d=3:s=8000", str(path))
    return path


def test_an_lrc_beside_the_song_wins(tmp_path: Path, song_file: Path):
    lrc = tmp_path / "song.lrc"
    lrc.write_text("[ar:Me]\n[00:01.00]from the file\n", encoding="utf-8")
    transcriber = LoudnessTranscriber()
    lines = load_lyrics(Song(slug="song", title="Song", path=song_file, lrc_path=lrc), transcriber)
    assert [line.text for line in lines] == ["from the file"]
    assert transcriber.heard == [], "no transcription when the lyrics are already timed"


def test_without_an_lrc_the_transcriber_listens(song_file: Path):
    transcriber = LoudnessTranscriber()
    lines = load_lyrics(Song(slug="song", title="Song", path=song_file), transcriber)
    assert transcriber.heard == [song_file]
    assert len(lines) == 1 and lines[0].text == "la la"
    assert lines[0].start == pytest.approx(1.0, abs=0.05) and lines[0].end == pytest.approx(2.0, abs=0.05)


def test_an_lrc_without_times_counts_as_none(tmp_path: Path, song_file: Path):
    plain = tmp_path / "song.lrc"
    plain.write_text("words with no timing\n", encoding="utf-8")
    transcriber = LoudnessTranscriber()
    lines = load_lyrics(Song(slug="song", title="Song", path=song_file, lrc_path=plain), transcriber)
    assert [line.text for line in lines] == ["la la"]


ENHANCED = "[00:01.00]<00:01.00>from <00:01.40>the <00:01.60>file\n"


def test_for_the_karaoke_a_transcription_s_word_times_come_before_the_files_tags(tmp_path: Path, song_file: Path):
    """Issue 16's order, best first: a transcriber's word times (heard in the audio), then the file's word tags."""
    lrc = tmp_path / "song.lrc"
    lrc.write_text(ENHANCED, encoding="utf-8")
    song = Song(slug="song", title="Song", path=song_file, lrc_path=lrc)
    transcriber = LoudnessTranscriber()
    lines, source = load_timed_lyrics(song, transcriber, words_wanted=True)
    assert source == "transcription" and transcriber.heard == [song_file]
    assert [w.text for w in lines[0].words] == ["la", "la"]
    assert lines[0].words[0].start == pytest.approx(1.0, abs=0.05)


def test_the_files_word_tags_serve_without_a_transcriber_or_when_it_hears_nothing(tmp_path: Path):
    silent = tmp_path / "silent.wav"
    ffmpeg_make("-f", "lavfi", "-i", "anullsrc=r=8000:cl=mono", "-t", "3", str(silent))
    lrc = tmp_path / "silent.lrc"
    lrc.write_text(ENHANCED, encoding="utf-8")
    song = Song(slug="silent", title="Silent", path=silent, lrc_path=lrc)
    for transcriber in (None, LoudnessTranscriber()):
        lines, source = load_timed_lyrics(song, transcriber, words_wanted=True)
        assert source == "lrc word tags"
        assert [(w.text, w.start) for w in lines[0].words] == [("from", 1.0), ("the", 1.4), ("file", 1.6)]


def test_lines_alone_need_no_transcription(tmp_path: Path, song_file: Path):
    lrc = tmp_path / "song.lrc"
    lrc.write_text(ENHANCED, encoding="utf-8")
    transcriber = LoudnessTranscriber()
    lines, source = load_timed_lyrics(Song(slug="song", title="Song", path=song_file, lrc_path=lrc), transcriber)
    assert source == "lrc word tags" and transcriber.heard == [] and lines[0].text == "from the file"


def test_no_lrc_and_no_transcriber_means_no_lyrics(tmp_path: Path, song_file: Path):
    assert load_lyrics(Song(slug="song", title="Song", path=song_file)) == []
    gone = Song(slug="song", title="Song", path=song_file, lrc_path=tmp_path / "missing.lrc")
    assert load_lyrics(gone) == []
