"""trigger(): the checks before anything is queued, the runs it writes, and partial queue failures."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from huey import RedisHuey

from pipeline.errors import BadInput, NotFound
from pipeline.request import CreateContentRequest
from pipeline.settings import Settings
from taskqueue.store import FAILED, QUEUED, RunStore
from taskqueue.trigger import NotReady, QueueUnavailable, trigger
from tests.test_artists import make_workspace

DEMO = "1873859c-dd37-4e9a-9bac-80d3558527a9"


@pytest.fixture
def store(settings: Settings) -> Iterator[RunStore]:
    s = RunStore(settings.sqlalchemy_url)
    yield s
    s.close()


def request(**body: object) -> CreateContentRequest:
    return CreateContentRequest.model_validate({"artist_account_id": DEMO, **body})


class Recorder:
    """A queue that records what it was given (the real queue is covered end to end in test_api_*)."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.calls = 0

    def __call__(self, run_ids: list[str]) -> None:
        self.calls += 1
        self.ids.extend(run_ids)


def test_a_batch_writes_one_queued_run_per_video_each_with_its_own_seed(settings: Settings, store: RunStore) -> None:
    queue = Recorder()
    body = {"template": "artist-caption-stage", "lipsync": True, "caption_length": "long", "upscale": True,
            "batch": 3, "songs": ["late-bus-home"]}
    answer = trigger(request(**body), "owner-a", settings=settings, store=store, enqueue=queue)
    assert answer == {"runIds": queue.ids, "status": "triggered", "artist_account_id": DEMO,
                      "template": "artist-caption-stage", "lipsync": True}
    runs = [store.get(rid, owner="owner-a") for rid in answer["runIds"]]
    assert len(runs) == 3 and all(r is not None and r.status == QUEUED for r in runs)
    assert len({r.seed for r in runs}) == 3  # type: ignore[union-attr]
    stored = runs[0].request  # type: ignore[union-attr]
    assert {k: stored[k] for k in body} == body and stored["images"] is None
    assert runs[0].artist_slug == "demo-artist" and runs[0].template == "artist-caption-stage"  # type: ignore[union-attr]


def test_malleable_mode_answers_template_null(settings: Settings, store: RunStore) -> None:
    answer = trigger(request(), "o", settings=settings, store=store, enqueue=Recorder())
    assert answer["template"] is None and answer["lipsync"] is False and len(answer["runIds"]) == 1
    assert "failed" not in answer


def test_unknown_template_artist_and_song_are_refused_before_anything_is_written(
        settings: Settings, store: RunStore) -> None:
    queue = Recorder()
    with pytest.raises(BadInput, match="Unsupported template: nope") as exc:
        trigger(request(template="nope"), "o", settings=settings, store=store, enqueue=queue)
    assert exc.value.field == ["template"]
    with pytest.raises(NotFound, match="Artist not found for the provided artist_account_id"):
        trigger(request(artist_account_id=str(uuid.uuid4())), "o", settings=settings, store=store, enqueue=queue)
    with pytest.raises(BadInput, match="'no-such-song'") as exc:
        trigger(request(songs=["late-bus-home", "no-such-song"]), "o", settings=settings, store=store, enqueue=queue)
    assert exc.value.field == ["songs"]
    assert queue.ids == [] and store.count() == 0


def test_an_artist_without_required_files_gets_the_list_and_the_fixes(settings: Settings, store: RunStore) -> None:
    aid = str(uuid.uuid4())
    make_workspace(settings.artists_dir / "bare", account_id=aid, face=False, songs=(), context=False)
    with pytest.raises(NotReady) as exc:
        trigger(request(artist_account_id=aid), "o", settings=settings, store=store, enqueue=Recorder())
    body = exc.value.to_dict()
    assert exc.value.status_code == 400 and body["status"] == "error"
    assert [m["file"] for m in body["missing"]] == ["context/images/face-guide.png", "songs/"]
    assert all(m["severity"] == "required" and m["fix"] for m in body["missing"])
    assert "face-guide.png" in body["error"] and "songs/" in body["error"]
    # song URLs and images stand in for the missing files (they are fetched by the run, not here)
    answer = trigger(request(artist_account_id=aid, songs=["https://example.com/a.mp3"],
                             images=["https://example.com/face.png"]),
                     "o", settings=settings, store=store, enqueue=Recorder())
    assert len(answer["runIds"]) == 1


def test_a_batch_is_queued_in_one_call(settings: Settings, store: RunStore) -> None:
    queue = Recorder()
    answer = trigger(request(batch=30), "o", settings=settings, store=store, enqueue=queue)
    assert queue.calls == 1 and queue.ids == answer["runIds"] and len(set(queue.ids)) == 30
    assert {r.id for r in store.list_runs("o", limit=50)} == set(answer["runIds"])


def test_a_queue_that_is_down_is_a_503_and_the_runs_are_failed(settings: Settings, store: RunStore,
                                                                 tmp_path: Path) -> None:
    dead = RedisHuey("studio-test", url="redis://127.0.0.1:1/0", results=False)  # nothing listens on port 1

    def enqueue(run_ids: list[str]) -> None:
        for run_id in run_ids:
            dead.storage.enqueue(run_id.encode(), None)

    with pytest.raises(QueueUnavailable) as exc:
        trigger(request(batch=2), "o", settings=settings, store=store, enqueue=enqueue)
    assert exc.value.status_code == 503
    assert [r.status for r in store.list_runs("o")] == [FAILED, FAILED]
