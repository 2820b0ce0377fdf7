"""Timed words into lyric lines, and transcripts cached by song content so a batch transcribes each song once."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from pipeline.models import LyricLine, Word

LINE_GAP_SECONDS = 0.8  # a pause this long between words starts a new lyric line
MAX_WORDS_PER_LINE = 10


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class TranscriptCache:
    """Transcripts kept by song content and provider, so a batch transcribes each song once."""

    folder: Path

    def _path(self, song: Path, provider: str) -> Path:
        tag = "".join(c if c.isalnum() or c in "-." else "_" for c in provider)
        return self.folder / f"{file_sha256(song)[:32]}-{tag}.json"

    def get(self, song: Path, provider: str) -> list[LyricLine] | None:
        path = self._path(song, provider)
        if not path.exists():
            return None
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            return [LyricLine(line["start"], line["end"], line["text"],
                              tuple(Word(w["start"], w["end"], w["text"]) for w in line["words"])) for line in raw]
        except (ValueError, KeyError, TypeError):
            return None  # a damaged cache entry is simply redone

    def put(self, song: Path, provider: str, lines: list[LyricLine]) -> None:
        path = self._path(song, provider)
        path.parent.mkdir(parents=True, exist_ok=True)
        raw = [{"start": ln.start, "end": ln.end, "text": ln.text,
                "words": [{"start": w.start, "end": w.end, "text": w.text} for w in ln.words]} for ln in lines]
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".part-")
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(raw, out)
        os.replace(tmp, path)


def lines_from_words(words: Iterable[Word], segments: Iterable[tuple[float, float]] = ()) -> list[LyricLine]:
    """Group timed words into lyric lines: by the model's segments when given, else by pauses and length."""
    ordered = sorted((w for w in words if w.text.strip()), key=lambda w: w.start)
    bounds = sorted(segments)
    groups: list[list[Word]] = []
    if bounds:
        for start, end in bounds:
            group = [w for w in ordered if start - 0.05 <= (w.start + w.end) / 2 < end + 0.05]
            if group:
                groups.append(group)
        placed = {id(w) for g in groups for w in g}
        stray = [w for w in ordered if id(w) not in placed]
        if stray:
            groups.extend(lines_as_groups(stray))
        groups.sort(key=lambda g: g[0].start)
    else:
        groups = lines_as_groups(ordered)
    return [LyricLine(g[0].start, g[-1].end, " ".join(w.text.strip() for w in g), tuple(g)) for g in groups]


def lines_as_groups(words: list[Word]) -> list[list[Word]]:
    groups: list[list[Word]] = []
    for word in words:
        if groups and word.start - groups[-1][-1].end < LINE_GAP_SECONDS and len(groups[-1]) < MAX_WORDS_PER_LINE:
            groups[-1].append(word)
        else:
            groups.append([word])
    return groups
