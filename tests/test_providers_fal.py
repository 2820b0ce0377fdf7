"""The fal providers driven with httpx through fal's queue protocol (submit, status, result, cancel) on loopback."""

from __future__ import annotations

import base64
import io
import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from pipeline.errors import ProviderError
from pipeline.ffmpeg import probe
from pipeline.models import StyledImage
from pipeline.providers.fal_provider import FalImageMaker, FalQueue, FalTranscriber, FalUpscaler, FalVideoMaker
from pipeline.templates import load_template
from tests.fake_remote import FAL_KEY, Answer, FakeRemote, make_still, remote_settings, words_transcript
from tests.media import make_tone

# A body fal-ai/whisper's schema takes (the URL is never fetched by the fake)
WHISPER = {"audio_url": "https://example.com/song.mp3", "task": "transcribe"}


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeRemote]:
    with FakeRemote(tmp_path / "fake") as server:
        yield server


def still(tmp_path: Path, width: int = 360, height: int = 640) -> StyledImage:
    path = tmp_path / "still.png"
    path.write_bytes(make_still(width, height))
    return StyledImage(path=path, width=width, height=height, face=None)


def test_queue_protocol_submit_poll_result(tmp_path: Path, fake: FakeRemote) -> None:
    fake.polls_until_done = 2
    fake.fal_results["fal-ai/some/deep/model"] = lambda args: {"echo": args["x"]}
    result = FalQueue(remote_settings(tmp_path, fake)).run("fal-ai/some/deep/model", {"x": 7})
    assert result == {"echo": 7}
    submit, = fake.hits("fal_submit")
    assert submit.path == "/fal/fal-ai/some/deep/model" and submit.json == {"x": 7}
    assert submit.headers["authorization"] == f"Key {FAL_KEY}"
    # status and result live under owner/app, not the model's sub-path (as fal's answer says)
    assert [h.path.split("/requests/")[0] for h in fake.hits("fal_status")] == ["/fal/fal-ai/some"] * 3
    assert len(fake.hits("fal_result")) == 1 and not fake.hits("fal_cancel")


def test_image_edit_uploads_the_face_guide_and_fits_the_result(tmp_path: Path, fake: FakeRemote) -> None:
    face = tmp_path / "face.png"
    face.write_bytes(make_still(300, 400, seed=2))
    settings = remote_settings(tmp_path, fake, fal_image_model="fal-ai/nano-banana-2/edit")
    template = load_template("artist-caption-outside")
    image = FalImageMaker(settings).make(face, template, width=270, height=480, rng=random.Random(0),
                                         out_path=tmp_path / "image.jpg")
    assert image.provider == "fal:fal-ai/nano-banana-2/edit" and (image.width, image.height) == (270, 480)
    with Image.open(image.path) as img:
        assert img.size == (270, 480)
    submit, = fake.hits("fal_submit")
    assert submit.path == "/fal/fal-ai/nano-banana-2/edit"
    assert submit.files["image_urls[0]"] == face.read_bytes()
    assert template.image.prompt in submit.json["prompt"] and submit.json["aspect_ratio"] == "9:16"


def test_image_to_video_asks_for_the_set_duration_and_checks_the_clip(tmp_path: Path, fake: FakeRemote) -> None:
    settings = remote_settings(tmp_path, fake, remote_video_seconds=4, remote_video_resolution="720p")
    maker = FalVideoMaker(settings)
    out = maker.make(still(tmp_path), "Static camera. Movement: sway. Energy: calm.", duration=3.0, audio_clip=None,
                     out_path=tmp_path / "source.mp4")
    info = probe(out)
    assert info.has_video and info.duration == pytest.approx(4.0, abs=0.2)
    assert maker.name == "fal:fal-ai/veo3.1/fast/image-to-video"
    submit, = fake.hits("fal_submit")
    assert submit.json["duration"] == "4s" and submit.json["resolution"] == "720p"
    assert submit.json["prompt"].startswith("Static camera.") and "audio_url" not in submit.json


def test_lipsync_sends_the_clip_audio_to_the_audio_to_video_model(tmp_path: Path, fake: FakeRemote) -> None:
    clip = make_tone(tmp_path / "clip.m4a", seconds=2.0)
    maker = FalVideoMaker(remote_settings(tmp_path, fake))
    out = maker.make(still(tmp_path), "sing", duration=2.0, audio_clip=clip, out_path=tmp_path / "source.mp4")
    assert maker.name == "fal:fal-ai/ltx-2-19b/audio-to-video"
    assert probe(out).has_audio
    submit, = fake.hits("fal_submit")
    assert submit.path == "/fal/fal-ai/ltx-2-19b/audio-to-video" and submit.files["audio_url"] == clip.read_bytes()


def test_upscale_image_and_video(tmp_path: Path, fake: FakeRemote) -> None:
    up = FalUpscaler(remote_settings(tmp_path, fake))
    image = up.upscale_image(still(tmp_path, 360, 640), tmp_path / "up.jpg")
    assert (image.width, image.height) == (360, 640) and "fal:fal-ai/seedvr/upscale/image" in image.provider
    sent = fake.hits("fal_submit")[0]
    with Image.open(io.BytesIO(sent.files["image_url"])) as img:
        assert img.size == (180, 320)  # half size goes up, the model's 2x comes back at full size
    clip = FalVideoMaker(remote_settings(tmp_path, fake, remote_video_seconds=2)).make(
        image, "p", duration=2.0, audio_clip=None, out_path=tmp_path / "clip.mp4")
    bigger = up.upscale_video(clip, tmp_path / "clip-up.mp4")
    assert (probe(bigger).width, probe(bigger).height) == (720, 1280)
    assert up.name == "fal:fal-ai/seedvr/upscale/video"


def test_a_job_that_never_finishes_is_cancelled_at_the_time_out(tmp_path: Path, fake: FakeRemote) -> None:
    fake.never_done = True
    settings = remote_settings(tmp_path, fake, provider_timeout_seconds=0.6, provider_poll_seconds=0.05)
    start = time.monotonic()
    with pytest.raises(ProviderError, match=r"did not finish within 0.6 s and was cancelled") as info:
        FalVideoMaker(settings).make(still(tmp_path), "p", duration=3.0, audio_clip=None,
                                     out_path=tmp_path / "s.mp4")
    assert 0.5 < time.monotonic() - start < 3 and info.value.transient
    assert len(fake.cancelled) == 1 and fake.hits("fal_cancel")[0].path.endswith("/cancel")


def test_rate_limit_on_submit_then_success(tmp_path: Path, fake: FakeRemote) -> None:
    fake.script("fal_submit", Answer(429, {"detail": "Too many requests"}, {"Retry-After": "1"}))
    start = time.monotonic()
    FalQueue(remote_settings(tmp_path, fake)).run("fal-ai/whisper", WHISPER)
    assert time.monotonic() - start >= 0.95 and len(fake.hits("fal_submit")) == 2


def test_status_errors_until_retries_run_out(tmp_path: Path, fake: FakeRemote) -> None:
    fake.always["fal_status"] = Answer(503, {"detail": "upstream unavailable"})
    with pytest.raises(ProviderError, match=r"gave up after 4 tries: server error 503: upstream unavailable") as info:
        FalQueue(remote_settings(tmp_path, fake, provider_retries=3)).run("fal-ai/whisper", WHISPER)
    assert info.value.transient and len(fake.hits("fal_status")) == 4


def test_a_hung_status_request_times_out(tmp_path: Path, fake: FakeRemote) -> None:
    fake.always["fal_status"] = Answer(status=0, hang_seconds=3)
    with pytest.raises(ProviderError, match=r"no answer within 0.5 s"):
        FalQueue(remote_settings(tmp_path, fake, provider_timeout_seconds=0.5, provider_retries=0)).run(
            "fal-ai/whisper", WHISPER)


def test_a_refused_input_gives_the_validation_reason(tmp_path: Path, fake: FakeRemote) -> None:
    fake.always["fal_submit"] = Answer(422, {"detail": [{"loc": ["body", "audio_url"], "msg": "Audio must be 2 to "
                                                         "10 seconds long", "type": "value_error"}]})
    with pytest.raises(ProviderError, match=r"refused the input \(422\): audio_url: Audio must be 2 to 10 seconds"):
        FalVideoMaker(remote_settings(tmp_path, fake)).make(
            still(tmp_path), "p", duration=3.0, audio_clip=make_tone(tmp_path / "c.m4a", 1.0),
            out_path=tmp_path / "s.mp4")
    assert len(fake.hits("fal_submit")) == 1


def test_a_bad_key_is_clear(tmp_path: Path, fake: FakeRemote) -> None:
    with pytest.raises(ProviderError, match=r"bad key.*Check FAL_KEY"):
        FalQueue(remote_settings(tmp_path, fake, fal_key="wrong")).run("fal-ai/whisper", {})


def test_malformed_results_are_refused(tmp_path: Path, fake: FakeRemote) -> None:
    settings = remote_settings(tmp_path, fake)
    fake.fal_results[settings.fal_video_model] = lambda args: {"video": {"content_type": "video/mp4"}}
    with pytest.raises(ProviderError, match="malformed answer: the result has no video URL"):
        FalVideoMaker(settings).make(still(tmp_path), "p", duration=3.0, audio_clip=None, out_path=tmp_path / "a.mp4")
    not_video = "data:video/mp4;base64," + base64.b64encode(b"<html>nope</html>" * 20).decode()
    fake.fal_results[settings.fal_video_model] = lambda args: {"video": {"url": not_video}}
    with pytest.raises(ProviderError, match="returned video could not be decoded"):
        FalVideoMaker(settings).make(still(tmp_path), "p", duration=3.0, audio_clip=None, out_path=tmp_path / "b.mp4")
    fake.always["fal_submit"] = Answer(200, {"status": "IN_QUEUE"})
    with pytest.raises(ProviderError, match="submit answer has no request_id"):
        FalQueue(settings).run("a/b", {})


def test_failed_job_reports_the_error(tmp_path: Path, fake: FakeRemote) -> None:
    fake.always["fal_status"] = Answer(200, {"status": "COMPLETED", "error": "Face not detected in the image",
                                             "error_type": "content_policy"})
    with pytest.raises(ProviderError, match=r"failed: Face not detected in the image \(content_policy\)"):
        FalQueue(remote_settings(tmp_path, fake)).run("fal-ai/nano-banana-2/edit", {
            "prompt": "p", "image_urls": ["https://example.com/face.png"]})


def test_whisper_transcription_uses_word_chunks_and_the_cache(tmp_path: Path, fake: FakeRemote) -> None:
    fake.transcript = words_transcript([[(0.1, 0.4, "neon"), (0.4, 0.9, "lights")], [(2.0, 2.4, "again")]])
    song = make_tone(tmp_path / "song.wav", seconds=3.0)
    settings = remote_settings(tmp_path, fake)
    lines = FalTranscriber(settings).transcribe(song)
    assert [ln.text for ln in lines] == ["neon lights", "again"]
    assert [(w.start, w.end) for w in lines[0].words] == [(0.1, 0.4), (0.4, 0.9)]
    submit, = fake.hits("fal_submit")
    assert submit.path == "/fal/fal-ai/whisper" and submit.json["chunk_level"] == "word"
    uploaded = tmp_path / "uploaded.mp3"
    uploaded.write_bytes(submit.files["audio_url"])
    assert probe(uploaded).duration == pytest.approx(3.0, abs=0.15)
    assert FalTranscriber(settings).transcribe(song) == lines and len(fake.hits("fal_submit")) == 1
