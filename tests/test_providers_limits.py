"""Requests that fit each model's documented limits, held to them by the schema-enforcing fakes."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.errors import Cancelled, ProviderError
from pipeline.ffmpeg import probe
from pipeline.models import StyledImage
from pipeline.providers.clip_segments import plan_segments
from pipeline.providers.fal_provider import FalQueue, FalVideoMaker
from pipeline.providers.openai_provider import OpenAIImageMaker
from pipeline.providers.results import data_uri
from pipeline.providers.step_hooks import StepHooks, lend, no_progress
from pipeline.templates import load_template
from tests.fake_remote import FakeRemote, make_still, remote_settings
from tests.media import make_tone


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeRemote]:
    with FakeRemote(tmp_path / "fake") as server:
        yield server


def still(tmp_path: Path) -> StyledImage:
    path = tmp_path / "still.png"
    path.write_bytes(make_still(360, 640))
    return StyledImage(path=path, width=360, height=640, face=None)


def test_a_wrong_argument_is_refused_like_fal_does(tmp_path: Path, fake: FakeRemote) -> None:
    queue = FalQueue(remote_settings(tmp_path, fake))
    image = data_uri(still(tmp_path).path)
    with pytest.raises(ProviderError, match=r"refused the input \(422\): duration: Input should be '4s', '6s', '8s'"):
        queue.run("fal-ai/veo3.1/fast/image-to-video", {"prompt": "p", "image_url": image, "duration": "15s"})
    with pytest.raises(ProviderError, match=r"image_url: Field required; image: Extra inputs are not permitted"):
        queue.run("fal-ai/veo3.1/fast/image-to-video", {"prompt": "p", "image": image})
    with pytest.raises(ProviderError, match=r"audio_url: Audio duration must be between 2 and 10 seconds, got 12"):
        queue.run("fal-ai/ltx-2/audio-to-video", {"prompt": "p", "image_url": image,
                                                  "audio_url": data_uri(make_tone(tmp_path / "long.m4a", 12.0))})
    assert fake.hits("fal_status") == []  # refused at submit, nothing queued


def test_requests_ask_for_what_the_model_takes_in_portrait(tmp_path: Path, fake: FakeRemote) -> None:
    # veo takes 4, 6 or 8 s and 720p, 1080p or 4k: what it cannot take is made right, not sent for a 422
    settings = remote_settings(tmp_path, fake, remote_video_seconds=5, remote_video_resolution="480p")
    FalVideoMaker(settings).make(still(tmp_path), "p", duration=5.0, audio_clip=None, out_path=tmp_path / "a.mp4")
    FalVideoMaker(settings).make(still(tmp_path), "p", duration=3.0, audio_clip=make_tone(tmp_path / "c.m4a", 3.0),
                                 out_path=tmp_path / "b.mp4")
    video, lipsync = fake.hits("fal_submit")
    assert (video.json["duration"], video.json["aspect_ratio"], video.json["resolution"]) == ("6s", "9:16", "720p")
    assert lipsync.path.endswith("ltx-2-19b/audio-to-video") and lipsync.json["video_size"] == "portrait_16_9"


def test_pieces_fit_the_limits_and_cut_at_the_given_points() -> None:
    assert plan_segments(8.0, 10.0, 2.0, [3.0]) == [(0.0, 8.0)]
    pieces = plan_segments(15.0, 10.0, 2.0, [2.5, 6.1, 9.4, 12.8])
    assert pieces == [(0.0, 9.4), (9.4, 15.0)]
    assert plan_segments(21.0, 10.0, 2.0, []) == [(0.0, 10.0), (10.0, 19.0), (19.0, 21.0)]
    for total in (10.5, 12.0, 19.9, 30.0):
        cut = plan_segments(total, 10.0, 2.0, [1.0, 4.0, 9.9])
        assert cut[0][0] == 0 and cut[-1][1] == total and all(2.0 <= b - a <= 10.0 for a, b in cut)
        assert all(a[1] == b[0] for a, b in zip(cut, cut[1:], strict=False))


@pytest.mark.slow
def test_a_lipsync_clip_longer_than_the_model_takes_goes_in_pieces(tmp_path: Path, fake: FakeRemote) -> None:
    settings = remote_settings(tmp_path, fake, fal_lipsync_model="fal-ai/ltx-2/audio-to-video")
    maker = FalVideoMaker(settings)
    audio = make_tone(tmp_path / "clip.m4a", seconds=12.0)
    out = maker.make(still(tmp_path), "sing", duration=12.0, audio_clip=audio, out_path=tmp_path / "lip.mp4",
                     cut_points=[1.9, 4.2, 7.6, 11.0])
    submits = fake.hits("fal_submit")
    assert len(submits) == 2  # the fake answers 422 to any piece outside 2..10 s, so both fit
    heard = []
    for i, submit in enumerate(submits):
        piece = tmp_path / f"heard{i}.m4a"
        piece.write_bytes(submit.files["audio_url"])
        heard.append(probe(piece).duration)
    assert heard[0] == pytest.approx(7.6, abs=0.1) and heard[1] == pytest.approx(4.4, abs=0.1)
    assert submits[1].files["image_url"] != submits[0].files["image_url"]  # from the first piece's last frame
    assert probe(out).duration == pytest.approx(12.0, abs=0.15)
    assert maker.note and "2 pieces joined at 7.60 s" in maker.note


def test_shorten_instead_of_pieces(tmp_path: Path, fake: FakeRemote) -> None:
    settings = remote_settings(tmp_path, fake, fal_lipsync_model="fal-ai/ltx-2/audio-to-video",
                               remote_lipsync_long="shorten")
    maker = FalVideoMaker(settings)
    out = maker.make(still(tmp_path), "sing", duration=12.0, audio_clip=make_tone(tmp_path / "c.m4a", 12.0),
                     out_path=tmp_path / "lip.mp4", cut_points=[4.0, 9.2, 11.0])
    submit, = fake.hits("fal_submit")
    heard = tmp_path / "heard.m4a"
    heard.write_bytes(submit.files["audio_url"])
    assert probe(heard).duration == pytest.approx(9.2, abs=0.1) and probe(out).has_video  # cut at the 9.2 s line
    assert maker.note and "shortened to 9.20 s" in maker.note


def test_a_cancel_while_waiting_cancels_the_job_at_fal(tmp_path: Path, fake: FakeRemote) -> None:
    fake.latency["video"] = 30.0
    cancel_at = time.monotonic() + 0.5
    with lend(StepHooks(progress=no_progress, cancelled=lambda: time.monotonic() >= cancel_at)), \
            pytest.raises(Cancelled):
        FalVideoMaker(remote_settings(tmp_path, fake, provider_poll_seconds=0.1)).make(
            still(tmp_path), "p", duration=4.0, audio_clip=None, out_path=tmp_path / "a.mp4")
    assert time.monotonic() - cancel_at < 3
    submit, = fake.hits("fal_submit")
    assert len(fake.cancelled) == 1 and fake.hits("fal_cancel") and not fake.hits("fal_result")
    statuses = fake.hits("fal_status")
    assert statuses  # it was waiting (IN_QUEUE / IN_PROGRESS) when the cancel came


def test_openai_refuses_what_its_reference_does_not_take(tmp_path: Path, fake: FakeRemote) -> None:
    face = tmp_path / "face.png"
    face.write_bytes(make_still(300, 400))
    settings = remote_settings(tmp_path, fake, openai_image_size="1080x1920")  # not one of gpt-image's sizes
    with pytest.raises(ProviderError, match=r"refused the input \(400\): Invalid value for 'size'"):
        OpenAIImageMaker(settings).make(face, load_template("artist-caption-outside"), width=270, height=480,
                                        rng=random.Random(0), out_path=tmp_path / "image.jpg")
    edit, = fake.hits("image_edit")
    assert edit.fields["size"] == ["1080x1920"] and "image" in edit.files
