"""The OpenAI providers driven through the real SDK against a loopback server that speaks OpenAI's API."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from pipeline.errors import ProviderError
from pipeline.models import LyricLine
from pipeline.providers.openai_provider import OpenAICaptionWriter, OpenAIImageMaker, OpenAITranscriber
from pipeline.templates import load_template, malleable_template
from pipeline.write_caption import CaptionContext
from tests.fake_remote import Answer, FakeRemote, make_still, remote_settings, words_transcript
from tests.media import make_tone


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeRemote]:
    with FakeRemote(tmp_path / "fake") as server:
        yield server


def context(template_id: str | None = "artist-caption-stage") -> CaptionContext:
    template = load_template(template_id) if template_id else malleable_template()
    return CaptionContext(
        song_title="Hiccups", mood="euphoric", artist_name="Ana Lua",
        lyrics=(LyricLine(0.0, 1.5, "hold my breath until the morning"), LyricLine(1.6, 3.0, "count the lights")),
        artist_context="Ana Lua writes bedroom pop about night buses.",
        audience_context="Students who study with headphones on.", template=template,
    )


def test_caption_prompt_carries_guide_examples_lyrics_and_context(tmp_path: Path, fake: FakeRemote) -> None:
    writer = OpenAICaptionWriter(remote_settings(tmp_path, fake, openai_caption_model="gpt-4o-mini"))
    ctx = context()
    assert writer.write(ctx, "short", random.Random(1)) == "late drives and open windows"
    assert writer.name == "openai:gpt-4o-mini"
    (hit,) = fake.hits("chat")
    body = hit.json
    assert body["model"] == "gpt-4o-mini"
    assert body["response_format"]["type"] == "json_schema"
    assert body["response_format"]["json_schema"]["schema"]["required"] == ["caption"]
    system, user = body["messages"][0]["content"], body["messages"][1]["content"]
    guide = ctx.template.caption.guide
    for needle in (guide.tone, guide.rules[0], guide.formats[0], ctx.template.caption.examples[0], "between 1 and 10"):
        assert needle in system
    for needle in ("hold my breath until the morning", "count the lights", "Hiccups", "euphoric", "Ana Lua",
                   "night buses", "study with headphones"):
        assert needle in user


def test_caption_of_the_wrong_length_is_asked_again_then_refused(tmp_path: Path, fake: FakeRemote) -> None:
    writer = OpenAICaptionWriter(remote_settings(tmp_path, fake))
    too_long = " ".join(["word"] * 14)
    fake.captions = [too_long, "just right this time"]
    assert writer.write(context(), "short", random.Random(0)) == "just right this time"
    second = fake.hits("chat")[1].json["messages"]
    assert "has 14 words" in second[-1]["content"] and too_long in second[-2]["content"]
    fake.captions, fake.chat_served = [too_long], 0
    with pytest.raises(ProviderError, match="does not fit the short length after a second try"):
        writer.write(context(), "short", random.Random(0))
    assert len(fake.hits("chat")) == 4


def test_rate_limit_is_retried_after_the_servers_wait(tmp_path: Path, fake: FakeRemote) -> None:
    fake.script("chat", Answer(429, {"error": {"message": "Rate limit reached"}}, {"Retry-After": "1"}))
    writer = OpenAICaptionWriter(remote_settings(tmp_path, fake, provider_backoff_seconds=0.01))
    start = time.monotonic()
    assert writer.write(context(), "short", random.Random(0))
    assert time.monotonic() - start >= 0.95  # Retry-After beat the 0.01 s backoff
    assert len(fake.hits("chat")) == 2


def test_server_errors_until_retries_run_out(tmp_path: Path, fake: FakeRemote) -> None:
    fake.always["chat"] = Answer(500, {"error": {"message": "The server had an error"}})
    writer = OpenAICaptionWriter(remote_settings(tmp_path, fake, provider_retries=2))
    expected = r"gave up after 3 tries: server error 500: The server had an error"
    with pytest.raises(ProviderError, match=expected) as info:
        writer.write(context(), "short", random.Random(0))
    assert info.value.transient is True
    assert len(fake.hits("chat")) == 3


def test_a_hung_server_hits_the_time_out(tmp_path: Path, fake: FakeRemote) -> None:
    fake.always["chat"] = Answer(status=0, hang_seconds=3)
    writer = OpenAICaptionWriter(remote_settings(tmp_path, fake, provider_timeout_seconds=0.5, provider_retries=1))
    start = time.monotonic()
    with pytest.raises(ProviderError, match=r"gave up after 2 tries: no answer within 0.5 s") as info:
        writer.write(context(), "short", random.Random(0))
    assert time.monotonic() - start < 3
    assert info.value.transient is True


def test_a_malformed_answer_is_a_clear_error(tmp_path: Path, fake: FakeRemote) -> None:
    fake.chat_content = "Sure! Here is a caption: late drives"
    writer = OpenAICaptionWriter(remote_settings(tmp_path, fake))
    with pytest.raises(ProviderError, match="malformed answer: expected JSON with a caption") as info:
        writer.write(context(), "short", random.Random(0))
    assert info.value.transient is False
    assert len(fake.hits("chat")) == 1  # not retried


def test_a_bad_key_is_not_retried(tmp_path: Path, fake: FakeRemote) -> None:
    writer = OpenAICaptionWriter(remote_settings(tmp_path, fake, openai_api_key="sk-wrong"))
    with pytest.raises(ProviderError, match=r"the API key was refused \(401, bad key\).*Check OPENAI_API_KEY"):
        writer.write(context(), "short", random.Random(0))
    assert len(fake.hits("chat")) == 1


def test_a_refusal_gives_the_models_reason(tmp_path: Path, fake: FakeRemote) -> None:
    fake.always["chat"] = Answer(400, {"error": {"message": "Invalid schema for response_format 'caption'",
                                                 "type": "invalid_request_error"}})
    writer = OpenAICaptionWriter(remote_settings(tmp_path, fake))
    with pytest.raises(ProviderError, match=r"refused the input \(400\): Invalid schema for response_format"):
        writer.write(context(), "medium", random.Random(0))


def test_transcription_asks_for_word_timestamps_and_is_cached(tmp_path: Path, fake: FakeRemote) -> None:
    song = make_tone(tmp_path / "song.mp3", seconds=2.0)
    fake.transcript = words_transcript([[(0.2, 0.5, "hold"), (0.5, 0.8, "my"), (0.8, 1.2, "breath")],
                                        [(1.5, 1.7, "count"), (1.7, 1.9, "lights")]])
    settings = remote_settings(tmp_path, fake, openai_transcribe_model="whisper-1")
    lines = OpenAITranscriber(settings).transcribe(song)
    assert [line.text for line in lines] == ["hold my breath", "count lights"]
    assert [w.text for w in lines[0].words] == ["hold", "my", "breath"]
    assert lines[1].start == pytest.approx(1.5) and lines[1].end == pytest.approx(1.9)
    (hit,) = fake.hits("transcriptions")
    assert hit.fields["model"] == ["whisper-1"] and hit.fields["response_format"] == ["verbose_json"]
    assert set(hit.fields["timestamp_granularities[]"]) == {"word", "segment"}
    assert hit.files["file"] == song.read_bytes()
    # a second run (a new provider, as in a batch) reads the cache: the song is transcribed once
    assert OpenAITranscriber(settings).transcribe(song) == lines
    assert len(fake.hits("transcriptions")) == 1


def test_transcription_without_word_timestamps_is_malformed(tmp_path: Path, fake: FakeRemote) -> None:
    fake.transcript = {"task": "transcribe", "language": "english", "duration": 2.0, "text": "hello there"}
    with pytest.raises(ProviderError, match="no word timestamps"):
        OpenAITranscriber(remote_settings(tmp_path, fake)).transcribe(make_tone(tmp_path / "s.mp3", seconds=1.0))


def test_image_edit_sends_the_face_guide_and_scene(tmp_path: Path, fake: FakeRemote) -> None:
    face = tmp_path / "face.png"
    face.write_bytes(make_still(400, 500, seed=3))
    settings = remote_settings(tmp_path, fake, openai_image_model="gpt-image-2", openai_image_size="1024x1536")
    maker = OpenAIImageMaker(settings)
    template = load_template("artist-caption-bedroom")
    image = maker.make(face, template, width=540, height=960, rng=random.Random(0), out_path=tmp_path / "still.jpg")
    assert (image.width, image.height, image.provider) == (540, 960, "openai:gpt-image-2")
    with Image.open(image.path) as img:
        assert img.size == (540, 960)
    (hit,) = fake.hits("image_edit")
    assert hit.files["image"] == face.read_bytes()
    assert hit.fields["model"] == ["gpt-image-2"] and hit.fields["size"] == ["1024x1536"]
    prompt = hit.fields["prompt"][0]
    assert template.image.prompt in prompt and template.image.style_rules.camera in prompt
    assert "reference photo" in prompt


def test_image_answer_that_is_not_an_image_is_refused(tmp_path: Path, fake: FakeRemote) -> None:
    fake.always["image_edit"] = Answer(200, {"created": 1, "data": [{"b64_json": "bm90IGFuIGltYWdl"}]})
    face = tmp_path / "face.png"
    face.write_bytes(make_still(200, 200))
    with pytest.raises(ProviderError, match="returned image could not be decoded"):
        OpenAIImageMaker(remote_settings(tmp_path, fake)).make(
            face, malleable_template(), width=180, height=320, rng=random.Random(0), out_path=tmp_path / "s.jpg")
