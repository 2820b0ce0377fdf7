"""A request's runs go on the real queue in one write (SQLite transaction or Redis LPUSH), in order, and a
consumer gets each as an ordinary task."""

from __future__ import annotations

from pathlib import Path

import pytest
from huey import Huey, MemoryHuey, RedisHuey, SqliteHuey

from pipeline.settings import Settings
from taskqueue.huey_app import QueueStorage, enqueue_all, make_huey
from tests.conftest import REDIS_URL


def queue_of(kind: str, tmp_path: Path, name: str) -> Huey:
    if kind == "sqlite":  # the studio's own queue, as `make_huey` builds it without REDIS_URL
        return make_huey(Settings(_env_file=None, data_dir=tmp_path / "data", queue_name=name, redis_url=None))
    if kind == "redis":
        return RedisHuey(name, url=REDIS_URL, results=False)
    return MemoryHuey(name, results=False)


@pytest.mark.parametrize("kind", ["sqlite", "redis", "memory"])
def test_a_batch_is_queued_whole_and_in_order(kind: str, tmp_path: Path, queue_name: str) -> None:
    queue = queue_of(kind, tmp_path, f"{queue_name}-{kind}")
    seen: list[str] = []

    @queue.task()
    def render(run_id: str) -> None:
        seen.append(run_id)

    writes: list[int] = []
    if kind == "sqlite":  # count the commits: one for the whole batch
        storage = queue.storage
        real_db = storage.db

        def counting_db(commit: bool = False, close: bool = False):  # noqa: ANN202 - huey's signature
            if commit:
                writes.append(1)
            return real_db(commit=commit, close=close)

        storage.db = counting_db  # type: ignore[method-assign]
    ids = [f"run_{i:02d}" for i in range(30)]
    enqueue_all(queue, [render.s(run_id, id=run_id) for run_id in ids])
    if kind == "sqlite":
        assert writes == [1]
    assert queue.pending_count() == 30
    for _ in ids:  # what a consumer does: dequeue, then run
        task = queue.dequeue()
        assert task is not None and task.id == task.args[0]
        queue.execute(task)
    assert seen == ids and queue.pending_count() == 0
    queue.storage.flush_all()


def test_the_sqlite_queue_syncs_like_the_run_store(tmp_path: Path) -> None:
    # WAL with synchronous=NORMAL (1): no fsync per commit; Huey's default leaves SQLite at FULL (2)
    queue = queue_of("sqlite", tmp_path, "sync")
    assert isinstance(queue.storage, QueueStorage)
    with queue.storage.db() as cursor:
        assert cursor.execute("pragma synchronous").fetchone()[0] == 1
        assert cursor.execute("pragma journal_mode").fetchone()[0] == "wal"
    plain = SqliteHuey("plain", filename=str(tmp_path / "plain.sqlite3"), results=False)
    with plain.storage.db() as cursor:
        assert cursor.execute("pragma synchronous").fetchone()[0] == 2


def test_immediate_mode_runs_the_tasks_at_once(tmp_path: Path) -> None:
    queue = SqliteHuey("immediate", filename=str(tmp_path / "q.sqlite3"), results=False, immediate=True)
    seen: list[int] = []

    @queue.task()
    def add(n: int) -> None:
        seen.append(n)

    enqueue_all(queue, [add.s(n) for n in range(3)])
    assert seen == [0, 1, 2]
