"""A request's runs go on the real queue in one write (SQLite transaction or Redis LPUSH), in order, and a
consumer gets each as an ordinary task."""

from __future__ import annotations

from pathlib import Path

import pytest
from huey import Huey, MemoryHuey, RedisHuey, SqliteHuey

from taskqueue.huey_app import enqueue_all
from tests.conftest import REDIS_URL


def queue_of(kind: str, tmp_path: Path, name: str) -> Huey:
    if kind == "sqlite":
        return SqliteHuey(name, filename=str(tmp_path / "q.sqlite3"), results=False)
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


def test_immediate_mode_runs_the_tasks_at_once(tmp_path: Path) -> None:
    queue = SqliteHuey("immediate", filename=str(tmp_path / "q.sqlite3"), results=False, immediate=True)
    seen: list[int] = []

    @queue.task()
    def add(n: int) -> None:
        seen.append(n)

    enqueue_all(queue, [add.s(n) for n in range(3)])
    assert seen == [0, 1, 2]
