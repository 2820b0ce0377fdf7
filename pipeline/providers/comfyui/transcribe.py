"""Timed lyrics on ComfyUI, when a transcribe.json is given: its text output holds the words with their times.

The text is JSON (a list of {start, end, value|text|word}, e.g. ComfyUI-Whisper's words alignment shown by
PreviewAny) or SRT.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from pipeline.ffmpeg import probe
from pipeline.models import LyricLine, Word
from pipeline.providers.audio_cuts import compacted_upload
from pipeline.providers.comfyui.client import ComfyUIClient
from pipeline.providers.comfyui.run import execute, fetch_text, load_step_workflows
from pipeline.providers.http_retries import malformed
from pipeline.providers.transcripts import TranscriptCache, lines_from_words
from pipeline.settings import Settings

SRT_TIME = re.compile(r"(\d+):(\d\d):(\d\d)[,.](\d{1,3})")


def _srt_seconds(stamp: str) -> float:
    h, m, s, ms = SRT_TIME.fullmatch(stamp.strip()).groups()  # type: ignore[union-attr]
    return int(h) * 3600 + int(m) * 60 + int(s) + int(ms.ljust(3, "0")) / 1000


def words_from_text(label: str, text: str) -> list[Word]:
    """Timed words (or timed lines, as one word each) from the workflow's JSON or SRT text."""
    try:
        items = json.loads(text)
    except ValueError:
        items = None
    if isinstance(items, dict):
        items = items.get("words") or items.get("segments") or items.get("chunks")
    if isinstance(items, list):
        words: list[Word] = []
        for item in items:
            if not isinstance(item, dict):
                continue
            said = item.get("value", item.get("text", item.get("word")))
            try:
                start, end = float(item["start"]), float(item["end"])
            except (KeyError, TypeError, ValueError):
                raise malformed(label, "a transcribed word has no start and end") from None
            if said is not None and str(said).strip():
                words.append(Word(start, max(end, start + 0.05), str(said).strip()))
        return words
    blocks = [b for b in re.split(r"\n\s*\n", text.strip()) if "-->" in b]
    if not blocks:
        raise malformed(label, "the text output is neither JSON words nor SRT")
    words = []
    for block in blocks:
        lines = [ln for ln in block.splitlines() if ln.strip()]
        times = next(i for i, ln in enumerate(lines) if "-->" in ln)
        start, end = (_srt_seconds(part) for part in lines[times].split("-->"))
        words.append(Word(start, end, " ".join(lines[times + 1:]).strip()))
    return words


@dataclass
class ComfyUITranscriber:
    settings: Settings
    name: str = "comfyui:transcribe.json"

    def __post_init__(self) -> None:
        self.workflow = load_step_workflows(self.settings, ("transcribe",))["transcribe"]
        self.client = ComfyUIClient(self.settings)
        self.cache = TranscriptCache(self.settings.cache_dir / "transcripts")

    def transcribe(self, path: Path) -> list[LyricLine]:
        cached = self.cache.get(path, self.name)
        if cached is not None:
            return cached
        with compacted_upload(path, self.cache.folder, self.settings.ffmpeg_binary) as upload:
            seconds = probe(upload, self.settings.ffmpeg_binary).duration or 0.0
            entry = execute(self.client, self.workflow, {"seconds": seconds}, {"audio": upload})
        lines = lines_from_words(words_from_text(self.name, fetch_text(self.client, self.workflow, entry)))
        self.cache.put(path, self.name, lines)
        return lines
