"""OpenAI (or any OpenAI-compatible server) behind the step protocols: captions, transcription, image edits.

The official SDK does the HTTP; its own retries are off so that one policy (ours) decides.
"""

from __future__ import annotations

import base64
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import openai

from pipeline.errors import ProviderError
from pipeline.models import CaptionLength, LyricLine, StyledImage, Word
from pipeline.providers.audio_cuts import compact_audio
from pipeline.providers.http_retries import Retryable, RetryPolicy, call_with_retries, malformed, raise_for_status
from pipeline.providers.prompts import image_prompt
from pipeline.providers.results import ResultDownloader, check_image, fit_still, styled_from_file
from pipeline.providers.transcripts import TranscriptCache, lines_from_words
from pipeline.providers.waits import remote_wait, sleep_unless_cancelled, wait_cancellable
from pipeline.settings import Settings
from pipeline.write_caption import CaptionContext, check_caption_length, word_bounds

if TYPE_CHECKING:
    from pipeline.templates import Template

KEY_NAME = "OPENAI_API_KEY"
UPLOAD_LIMIT_BYTES = 24 * 1024 * 1024  # the transcription endpoint takes files up to 25 MB
LENGTH_GUIDE = {
    "short": "1-2 punchy lines",
    "medium": "1-2 sentences",
    "long": "a short paragraph",
}
CAPTION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"caption": {"type": "string", "description": "the caption text, nothing else"}},
    "required": ["caption"],
    "additionalProperties": False,
}


def make_client(settings: Settings) -> openai.OpenAI:
    return openai.OpenAI(api_key=settings.openai_api_key or "", base_url=settings.openai_base_url or None,
                         timeout=settings.provider_timeout_seconds, max_retries=0)


def call_openai(label: str, policy: RetryPolicy, request: Any, max_in_flight: int) -> Any:
    """One SDK call under our retry policy, with its failures turned into clear ProviderErrors.

    The call holds no CPU slot while it waits; a synchronous request cannot be cancelled at OpenAI, so a cancel
    takes effect when it returns (or at the provider time-out)."""

    def attempt() -> Any:
        try:
            return wait_cancellable(request)
        except openai.APITimeoutError:
            raise Retryable(f"no answer within {policy.timeout_seconds:g} s") from None
        except openai.APIConnectionError as exc:
            raise Retryable(f"could not connect ({exc.__cause__ or exc})") from None
        except openai.APIResponseValidationError as exc:
            raise malformed(label, str(exc)) from None
        except openai.APIStatusError as exc:
            raise_for_status(label, exc.status_code, exc.body if exc.body is not None else exc.response.text,
                             exc.response.headers, KEY_NAME)
            raise
        except openai.OpenAIError as exc:  # e.g. missing credentials
            raise ProviderError(f"{label}: {exc}") from None

    with remote_wait("openai", max_in_flight):
        return call_with_retries(attempt, policy, label, sleep_unless_cancelled)


# ---- captions -------------------------------------------------------------------------------------------------


def caption_messages(ctx: CaptionContext, length: CaptionLength, bounds: tuple[int, int]) -> list[dict[str, str]]:
    """The prompt: the template's caption guide and examples, then this clip's song, lyrics, mood and people."""
    guide = ctx.template.caption.guide
    lo, hi = bounds
    system = [
        "You write the on-screen caption for a short vertical music video (TikTok, Reels, Shorts) of an artist.",
        f"Template style: {guide.templateStyle}" if guide.templateStyle else "",
        f"The caption's role: {guide.captionRole}" if guide.captionRole else "",
        f"Tone: {guide.tone}" if guide.tone else "",
    ]
    if guide.rules:
        system.append("Rules:\n" + "\n".join(f"- {rule}" for rule in guide.rules))
    if guide.formats:
        system.append("Formats that work:\n" + "\n".join(f"- {fmt}" for fmt in guide.formats))
    if ctx.template.caption.examples:
        system.append("Examples of captions in this style:\n"
                      + "\n".join(f"- {ex}" for ex in ctx.template.caption.examples))
    system.append(f"Length: {length} — {LENGTH_GUIDE.get(length, '')}, between {lo} and {hi} words. "
                  "Answer with JSON: {\"caption\": \"...\"}.")
    lyrics = "\n".join(line.text for line in ctx.lyrics) or "(no lyrics in this clip)"
    user = [
        f"Artist: {ctx.artist_name}",
        f"About the artist:\n{ctx.artist_context.strip()}" if ctx.artist_context else "",
        f"Their audience:\n{ctx.audience_context.strip()}" if ctx.audience_context else "",
        f"Song: {ctx.song_title}",
        f"Mood of the clip: {ctx.mood}",
        f"Lyrics heard in the clip:\n{lyrics}",
    ]
    return [{"role": "system", "content": "\n\n".join(p for p in system if p)},
            {"role": "user", "content": "\n\n".join(p for p in user if p)}]


def parse_caption(label: str, completion: Any) -> str:
    try:
        content = completion.choices[0].message.content
        refusal = getattr(completion.choices[0].message, "refusal", None)
    except (AttributeError, IndexError, TypeError):
        raise malformed(label, "no message in the answer") from None
    if refusal:
        raise ProviderError(f"{label} refused: {refusal}")
    if not isinstance(content, str) or not content.strip():
        raise malformed(label, "the answer is empty")
    try:
        caption = json.loads(content)["caption"]
    except (ValueError, KeyError, TypeError):
        raise malformed(label, f"expected JSON with a caption, got {content[:120]!r}") from None
    if not isinstance(caption, str) or not caption.strip():
        raise malformed(label, "the caption is empty")
    return " ".join(caption.split())


@dataclass
class OpenAICaptionWriter:
    settings: Settings
    name: str = ""

    def __post_init__(self) -> None:
        self.name = self.name or f"openai:{self.settings.openai_caption_model}"
        self.client = make_client(self.settings)
        self.policy = RetryPolicy.from_settings(self.settings)

    def write(self, ctx: CaptionContext, length: CaptionLength, rng: random.Random) -> str:
        messages: list[dict[str, str]] = caption_messages(ctx, length, word_bounds(length))
        seed = rng.randrange(2**31)
        text = ""
        for _ in range(2):  # one re-ask when the length is wrong
            asked = list(messages)
            completion = call_openai(self.name, self.policy, lambda asked=asked: self.client.chat.completions.create(
                model=self.settings.openai_caption_model, messages=asked, seed=seed, temperature=0.9,
                response_format={"type": "json_schema",
                                 "json_schema": {"name": "caption", "schema": CAPTION_SCHEMA, "strict": True}},
            ), self.settings.openai_max_in_flight)
            text = parse_caption(self.name, completion)
            problem = length_problem(text, length)
            if not problem:
                return text
            messages = [*messages, {"role": "assistant", "content": json.dumps({"caption": text})},
                        {"role": "user", "content": f"{problem} Write it again within the length."}]
        raise ProviderError(f"{self.name}: the caption does not fit the {length} length after a second try: {text!r}")


def length_problem(text: str, length: CaptionLength) -> str | None:
    """None when the caption fits its length class, else what is wrong (in words the model can act on)."""
    if check_caption_length(text, length):
        return None
    lo, hi = word_bounds(length)
    return f"That caption has {len(text.split())} words; it must have between {lo} and {hi}."


# ---- transcription --------------------------------------------------------------------------------------------


def lines_from_verbose(label: str, answer: Any) -> list[LyricLine]:
    """verbose_json with word timestamps → lyric lines (segments give the line breaks)."""
    raw = answer.model_dump() if hasattr(answer, "model_dump") else answer
    if not isinstance(raw, dict) or "text" not in raw:
        raise malformed(label, "expected a verbose_json transcription")
    try:
        words = [Word(float(w["start"]), float(w["end"]), str(w["word"])) for w in raw.get("words") or []]
        segments = [(float(s["start"]), float(s["end"])) for s in raw.get("segments") or []]
    except (KeyError, TypeError, ValueError):
        raise malformed(label, "the word timestamps are not readable") from None
    if not words and raw["text"].strip():
        raise malformed(label, "the transcription has no word timestamps")
    return lines_from_words(words, segments)


@dataclass
class OpenAITranscriber:
    settings: Settings
    name: str = ""

    def __post_init__(self) -> None:
        self.name = self.name or f"openai:{self.settings.openai_transcribe_model}"
        self.client = make_client(self.settings)
        self.policy = RetryPolicy.from_settings(self.settings)
        self.cache = TranscriptCache(self.settings.cache_dir / "transcripts")

    def transcribe(self, path: Path) -> list[LyricLine]:
        cached = self.cache.get(path, self.name)
        if cached is not None:
            return cached
        upload = path
        if path.stat().st_size > UPLOAD_LIMIT_BYTES:
            (self.settings.cache_dir / "transcripts").mkdir(parents=True, exist_ok=True)  # absent on a new install
            upload = compact_audio(path, self.settings.cache_dir / "transcripts" / f".{path.stem}.mp3",
                                   self.settings.ffmpeg_binary)

        def request() -> Any:
            with upload.open("rb") as fh:
                return self.client.audio.transcriptions.create(
                    file=(upload.name, fh.read()), model=self.settings.openai_transcribe_model,
                    response_format="verbose_json", timestamp_granularities=["word", "segment"],
                )

        try:
            lines = lines_from_verbose(self.name, call_openai(self.name, self.policy, request,
                                                              self.settings.openai_max_in_flight))
        finally:
            if upload != path:
                upload.unlink(missing_ok=True)  # the compacted copy was only for this request
        self.cache.put(path, self.name, lines)
        return lines


# ---- images ---------------------------------------------------------------------------------------------------


@dataclass
class OpenAIImageMaker:
    settings: Settings
    name: str = ""

    def __post_init__(self) -> None:
        self.name = self.name or f"openai:{self.settings.openai_image_model}"
        self.client = make_client(self.settings)
        self.policy = RetryPolicy.from_settings(self.settings)
        self.downloader = ResultDownloader(self.settings)

    def make(self, face_guide: Path | None, template: Template, *, width: int, height: int, rng: random.Random,
             out_path: Path) -> StyledImage:
        prompt = image_prompt(template, reference=face_guide is not None)
        model, size = self.settings.openai_image_model, self.settings.openai_image_size

        def request() -> Any:
            if face_guide is None:  # nothing to edit: the scene is made from the prompt alone
                return self.client.images.generate(prompt=prompt, model=model, size=size, n=1)
            return self.client.images.edit(image=(face_guide.name, face_guide.read_bytes()), prompt=prompt,
                                           model=model, size=size, n=1)

        answer = call_openai(self.name, self.policy, request, self.settings.openai_max_in_flight)
        raw = out_path.with_name(out_path.stem + ".model" + ".img")
        try:
            item = answer.data[0]
        except (AttributeError, IndexError, TypeError):
            raise malformed(self.name, "no image in the answer") from None
        if getattr(item, "b64_json", None):
            try:
                raw.write_bytes(base64.b64decode(item.b64_json, validate=True))
            except ValueError:
                raise malformed(self.name, "the image is not valid base64") from None
        elif getattr(item, "url", None):
            self.downloader.download(item.url, raw, self.name)
        else:
            raise malformed(self.name, "the answer has neither b64_json nor url")
        check_image(raw, self.name)
        fit_still(raw, out_path, width, height)
        raw.unlink(missing_ok=True)
        return styled_from_file(out_path, width, height, self.name)
