"""Time-synced lyrics: parse `.lrc` files into lines with words, or ask a transcriber when there is none.

Words get times spread over their line by syllables (an `.lrc` only times lines), unless the file has
enhanced `<mm:ss.xx>` word tags, which are used as given.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path

from pipeline.models import LyricLine, Song, Word
from pipeline.providers.base import Transcriber

LAST_LINE_SECONDS = 6.0  # the last line has no successor to end it
MAX_LINE_SECONDS = 10.0  # a line before a long instrumental gap is not sung through the whole gap
SYLLABLE_SECONDS = 0.42  # a plain LRC line's words are sung at most this slowly (pop sits near 0.2-0.35)
BREATH_SECONDS = 0.25  # the words of a plain LRC line end this long before the next line
MAX_LRC_BYTES = 256 * 1024  # read of an .lrc (the UI's upload cap): lyrics are never bigger

_TIME_TAG = re.compile(r"\[(\d{1,3}):(\d{1,2}(?:[.:]\d{1,3})?)\]")
_OFFSET_TAG = re.compile(r"^\s*\[offset:\s*([+-]?\d+)\s*\]\s*$", re.IGNORECASE)
_WORD_TAG = re.compile(r"<(\d{1,3}):(\d{1,2}(?:[.:]\d{1,3})?)>")


def _seconds(minutes: str, seconds: str) -> float:
    # Some writers use `mm:ss:xx` for hundredths; treat it like `mm:ss.xx`.
    return int(minutes) * 60 + float(seconds.replace(":", "."))


def syllables(word: str) -> int:
    """Sung syllables in a word, by its vowel groups (a silent final e dropped); scripts without Latin vowels
    count a syllable per two letters."""
    letters = "".join(ch for ch in word.lower() if ch.isalpha())
    if not letters:
        return 1
    if not re.search(r"[a-zà-ÿ]", letters):
        return max(1, len(letters) // 2)
    groups = len(re.findall(r"[aeiouyà-ÿ]+", letters))
    if letters.endswith("e") and not letters.endswith(("le", "ee")) and groups > 1:
        groups -= 1
    return max(1, groups)


def _spread_words(text: str, start: float, end: float, *, paced: bool = True) -> tuple[Word, ...]:
    """Words laid end to end from the line's start, each as long as its share of the line's syllables, sung at
    most SYLLABLE_SECONDS a syllable and ending a breath before the next line (a plain LRC times only lines)."""
    tokens = text.split()
    if not tokens or end <= start:
        return ()
    counts = [syllables(t) for t in tokens]
    total = sum(counts)
    span = end - start
    if paced:  # unpaced: the words between two enhanced-LRC tags, which fill the time between the tags
        sung_end = min(end - min(BREATH_SECONDS, span * 0.1), start + total * SYLLABLE_SECONDS)
        span = sung_end - start
    words: list[Word] = []
    used = 0
    for token, count in zip(tokens, counts, strict=True):
        w_start = start + span * used / total
        used += count
        words.append(Word(start=round(w_start, 3), end=round(start + span * used / total, 3), text=token))
    return tuple(words)


def _tagged_words(body: str, start: float, end: float, offset: float) -> tuple[str, tuple[Word, ...]] | None:
    """Enhanced LRC (`<00:12.30>word <00:12.80>word`): the words as timed, or None when there are no tags."""
    parts = _WORD_TAG.split(body)
    if len(parts) < 4:
        return None
    timed: list[tuple[float, str]] = []
    if parts[0].strip():
        timed.append((start, parts[0].strip()))
    for i in range(1, len(parts), 3):
        text = parts[i + 2].strip()
        if text:
            timed.append((max(0.0, _seconds(parts[i], parts[i + 1]) - offset), text))
    words: list[Word] = []
    for n, (w_start, w_text) in enumerate(timed):
        w_end = max(timed[n + 1][0] if n + 1 < len(timed) else end, w_start)
        spread = _spread_words(w_text, w_start, w_end, paced=False)
        words.extend(spread or (Word(start=round(w_start, 3), end=round(w_start, 3), text=t) for t in w_text.split()))
    text = " ".join(t for _, t in timed)
    return text, tuple(words)


def parse_lrc(text: str) -> list[LyricLine]:
    """Parse LRC text into lines in time order, each ending where the next begins.

    A line may carry several time tags (a repeated chorus); `[offset:+ms]` shifts every tag earlier (as the
    format says, positive means the lyrics come sooner); metadata tags (`[ti:]`, `[ar:]`, ...) are ignored; a
    time tag with no text ends the line before it (an instrumental gap).
    """
    offset = 0.0
    entries: list[tuple[float, int, str]] = []  # (time, order in file, body)
    for order, raw in enumerate(text.lstrip("\ufeff").splitlines()):
        m = _OFFSET_TAG.match(raw)
        if m:
            offset = int(m[1]) / 1000.0
            continue
        line = raw.strip()
        times: list[float] = []
        while True:
            tag = _TIME_TAG.match(line)
            if not tag:
                break
            times.append(_seconds(tag[1], tag[2]))
            line = line[tag.end() :].lstrip()
        entries.extend((t, order, line) for t in times)
    # The offset applies to the whole file wherever it is written.
    timed = sorted(((max(0.0, t - offset), order, body) for t, order, body in entries), key=lambda e: (e[0], e[1]))

    lines: list[LyricLine] = []
    for i, (start, _, body) in enumerate(timed):
        if not _WORD_TAG.sub("", body).strip():
            continue  # a blank entry only marks where the previous line stops
        next_start = timed[i + 1][0] if i + 1 < len(timed) else start + LAST_LINE_SECONDS
        end = max(min(next_start, start + MAX_LINE_SECONDS), start)
        tagged = _tagged_words(body, start, end, offset)
        if tagged is not None:
            line_text, words = tagged
        else:
            line_text = " ".join(body.split())
            words = _spread_words(line_text, start, end)
        lines.append(LyricLine(start=round(start, 3), end=round(end, 3), text=line_text, words=words))
    return lines


def load_lyrics(song: Song, transcriber: Transcriber | None = None) -> list[LyricLine]:
    """The song's timed lyrics: its `.lrc` when it has one, else a transcription when a transcriber is given."""
    return load_timed_lyrics(song, transcriber)[0]


def load_timed_lyrics(song: Song, transcriber: Transcriber | None = None, *,
                      words_wanted: bool = False) -> tuple[list[LyricLine], str]:
    """The lyrics and where their timing comes from: "lrc word tags", "lrc lines (words by syllables)",
    "transcription" or "none".

    Best first when words are wanted (the karaoke) and a transcriber is set: its word times, heard in the audio
    itself; then the `.lrc`'s enhanced word tags; then its line times with the words spread by syllables. For
    lines alone the `.lrc` is enough and no transcription is paid for. An `.lrc` without any time tags (plain
    lyrics) tells nothing about timing, so it counts as absent.
    """
    lines: list[LyricLine] = []
    tagged = False
    if song.lrc_path is not None and song.lrc_path.is_file():
        with open(song.lrc_path, "rb") as f:  # at most the cap: an endless or huge file must not fill memory
            text = f.read(MAX_LRC_BYTES).decode("utf-8-sig", errors="replace")
        lines, tagged = parse_lrc(text), bool(_WORD_TAG.search(text))
    from_file = "lrc word tags" if tagged else "lrc lines (words by syllables)"
    if lines and (not words_wanted or transcriber is None):
        return lines, from_file
    if transcriber is not None:
        heard = sorted(transcriber.transcribe(Path(song.path)), key=lambda line: line.start)
        if heard:
            return heard, "transcription"
    return lines, (from_file if lines else "none")


def _clip_words(words: Iterable[Word], start: float, end: float) -> tuple[Word, ...]:
    return tuple(
        Word(start=round(max(w.start, start) - start, 3), end=round(min(w.end, end) - start, 3), text=w.text)
        for w in words
        if w.end > start and w.start < end
    )


def lines_in_window(
    lines: Sequence[LyricLine], start: float, duration: float, *, min_overlap: float = 0.0
) -> tuple[LyricLine, ...]:
    """The lines heard in [start, start + duration), with times relative to `start` and clipped to the window.

    Lines overlapping the window by less than `min_overlap` seconds are left out (a line's last few
    milliseconds at the clip's start are not heard as a line).
    """
    start = float(start)
    end = start + float(duration)
    return tuple(
        replace(
            line,
            start=round(max(line.start, start) - start, 3),
            end=round(min(line.end, end) - start, 3),
            words=_clip_words(line.words, start, end),
        )
        for line in lines
        if line.end > start and line.start < end and min(line.end, end) - max(line.start, start) >= min_overlap
    )
