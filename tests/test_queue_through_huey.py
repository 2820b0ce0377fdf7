"""The queue paths that a stand-in used to cover, through the real Huey (its SQLite storage, its messages, its
schedule): a delayed retry after a provider failure, `recover_queue`, and an upload to S3 that fails."""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.settings import Settings, get_settings
from taskqueue import tasks
from taskqueue.huey_app import make_huey
from taskqueue.store import COMPLETED, FAILED, QUEUED, NewRun, RunStore
from tests.fake_remote import OPENAI_KEY, Answer, FakeRemote
from tests.s3_server import S3Server, running_s3

DEMO = "1873859c-dd37-4e9a-9bac-80d3558527a9"
RETRY_DELAY = 30.0  # long enough that "not yet due" is certain; the test moves Huey's clock, it never waits


@pytest.fixture
def queue(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """The real Huey on SQLite in its own DATA_DIR (what a consumer on this machine would read)."""
    env = {"DATA_DIR": str(tmp_path / "data"), "CLIP_SECONDS": "3", "OUTPUT_WIDTH": "180", "OUTPUT_HEIGHT": "320",
           "HEARTBEAT_SECONDS": "0.2", "RETRY_DELAY_SECONDS": str(RETRY_DELAY), "TASK_RETRIES": "1",
           "PROVIDER_RETRIES": "0", "FALLBACK_TO_LOCAL": "false"}
    for name in ("DATABASE_URL", "REDIS_URL", "STORAGE_URL", "ARTISTS_DIR"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    monkeypatch.setattr(tasks.huey, "storage", make_huey(get_settings()).storage)
    yield get_settings()
    get_settings.cache_clear()


def _new_run(settings: Settings) -> str:
    body = {"artist_account_id": DEMO, "template": None, "caption_length": "short", "lipsync": False,
            "upscale": False, "batch": 1, "songs": None, "images": None}
    store = tasks.process_store(settings)
    return store.create_batch("o", [NewRun(artist_account_id=DEMO, artist_slug="demo-artist", template=None,
                                           request=body, seed=5)])[0].id


def _later(seconds: float) -> datetime.datetime:
    return tasks.huey._get_timestamp() + datetime.timedelta(seconds=seconds)  # noqa: SLF001 - Huey's own clock


def test_a_transient_failure_is_retried_after_its_delay_through_huey(queue: Settings, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeRemote(tmp_path / "remote") as remote:
        for name, value in {"CAPTION_PROVIDER": "openai", "OPENAI_API_KEY": OPENAI_KEY,
                            "OPENAI_BASE_URL": remote.openai_base_url}.items():
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()
        settings = get_settings()
        remote.script("chat", Answer(status=503, body={"error": {"message": "overloaded"}}))
        run_id = _new_run(settings)
        store: RunStore = tasks.process_store(settings)
        tasks.enqueue_runs([run_id])

        first = tasks.huey.dequeue()
        assert first is not None and first.id == run_id
        tasks.huey.execute(first)  # the consumer's step: the caption service answers 503
        waiting = store.get(run_id)
        assert waiting is not None and waiting.status == QUEUED and waiting.attempts == 1
        assert waiting.error is not None and waiting.error["stage"] == "caption"

        retry = tasks.huey.dequeue()  # the retry's message, as the consumer reads it
        assert retry is not None and retry.id == run_id and retry.eta is not None
        assert not tasks.huey.ready_to_run(retry)  # RETRY_DELAY_SECONDS later, not now
        assert tasks.huey.ready_to_run(retry, _later(RETRY_DELAY + 1))
        tasks.huey.add_schedule(retry)
        assert tasks.huey.read_schedule(_later(0)) == []
        due = tasks.huey.read_schedule(_later(RETRY_DELAY + 1))
        assert [t.id for t in due] == [run_id]
        real_clock = store.clock  # the run store waits the delay out too (not_before): move its clock as well
        monkeypatch.setattr(store, "clock", lambda: real_clock() + RETRY_DELAY + 1)
        tasks.huey.execute(due[0], _later(RETRY_DELAY + 1))
        done = store.get(run_id)
        assert done is not None and done.status == COMPLETED and done.attempts == 2, done
        assert tasks.huey.pending_count() == 0 and tasks.huey.scheduled_count() == 0


def test_recover_queue_requeues_only_queued_runs_without_a_message(queue: Settings) -> None:
    store = tasks.process_store(queue)
    lost, waiting, delayed = _new_run(queue), _new_run(queue), _new_run(queue)
    tasks.enqueue_runs([waiting])
    tasks.enqueue_run(delayed, delay=RETRY_DELAY)
    tasks.huey.add_schedule(_take(delayed))  # as the consumer parks a message that is not due yet
    assert tasks.recover_queue(store) == [lost]
    assert sorted(t.id for t in tasks.huey.pending()) == sorted([waiting, lost])
    assert [t.id for t in tasks.huey.scheduled()] == [delayed]
    assert tasks.recover_queue(store) == []  # nothing twice


def _take(run_id: str):  # noqa: ANN202 - a Huey Task
    """Dequeue messages until `run_id`'s, putting the others back in order."""
    others, found = [], None
    while (task := tasks.huey.dequeue()) is not None:
        if task.id == run_id and found is None:
            found = task
        else:
            others.append(task)
    for task in others:
        tasks.huey.enqueue(task)
    assert found is not None
    return found


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    with running_s3() as server:
        yield server


def test_a_failed_s3_upload_fails_the_run_clearly_and_leaves_no_object(queue: Settings, s3: S3Server,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    env = s3.env("runs")
    env["STORAGE_URL"] = "s3://no-such-bucket/runs"  # the server answers NoSuchBucket to every put
    for name, value in {**env, "TASK_RETRIES": "0"}.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    settings = get_settings()
    tasks._storages.clear()  # noqa: SLF001 - the storage client is per process; this test changes STORAGE_URL
    run_id = _new_run(settings)
    tasks.enqueue_runs([run_id])
    tasks.huey.execute(tasks.huey.dequeue())
    run = tasks.process_store(settings).get(run_id)
    assert run is not None and run.status == FAILED, run
    assert run.error is not None and run.error["stage"] == "storage"
    assert "Could not store the run's files" in run.error["message"] and "STORAGE_URL" in run.error["message"]
    listed = s3.client().list_objects_v2(Bucket=s3.bucket, Prefix="runs/")
    assert not [o["Key"] for o in listed.get("Contents", []) if run_id in o["Key"]]
    tasks._storages.clear()  # noqa: SLF001
