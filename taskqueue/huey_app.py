"""The Huey instance: Huey on SQLite in DATA_DIR by default (no server), RedisHuey when REDIS_URL is set.

Consumers: `python -m taskqueue worker` (thread workers with CPU slots: taskqueue/consumer.py).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from huey import Huey, RedisHuey
from huey.api import Task
from huey.storage import RedisStorage, SqliteStorage

from pipeline.settings import Settings, get_settings


class QueueStorage(SqliteStorage):
    """Huey's SQLite storage with the run store's durability: WAL with synchronous=NORMAL.

    Huey leaves SQLite at FULL, an fsync on every commit, two per API request with the run store's. NORMAL
    never corrupts; a power cut may lose the last messages, and `recover_queue` (every minute) queues
    again any QUEUED run without one, as it does for a Redis that lost its data.
    """

    def _create_connection(self) -> sqlite3.Connection:
        conn = super()._create_connection()
        conn.execute("pragma synchronous=NORMAL")
        return conn


def make_huey(settings: Settings) -> Huey:
    if settings.redis_url:
        return RedisHuey(settings.queue_name, url=settings.redis_url, results=False)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return Huey(settings.queue_name, storage_class=QueueStorage, filename=str(settings.data_dir / "queue.sqlite3"),
                results=False, timeout=30)


def enqueue_all(queue: Huey, tasks: Sequence[Task]) -> None:
    """Queue the tasks in one write, all or none: one SQLite transaction, or one LPUSH on Redis.

    Huey's own enqueue commits once per message; a batch of 30 runs spent ~9 ms of a ~15 ms request on
    those commits (docs/PERFORMANCE.md). Other storages, and immediate mode, take Huey's path one by one.
    """
    storage = queue.storage
    known = type(storage) in (QueueStorage, SqliteStorage, RedisStorage)
    if queue.immediate or any(t.priority for t in tasks) or not known:
        for task in tasks:
            queue.enqueue(task)
        return
    for task in tasks:
        if task.expires:
            task.resolve_expires(queue.utc)
    messages = [queue.serialize_task(task) for task in tasks]
    if isinstance(storage, RedisStorage):
        # LPUSH a b c leaves c b a; the consumer pops from the right, so a is still served first
        storage.conn.lpush(storage.queue_key, *messages)
        return
    with storage.db(commit=True) as cursor:
        cursor.executemany("insert into task (queue, data, priority) values (?, ?, ?)",
                           [(storage.name, storage.to_blob(m), 0) for m in messages])


huey = make_huey(get_settings())

# Registers the tasks on `huey`, so `huey_consumer taskqueue.huey_app.huey` finds them.
import taskqueue.tasks  # noqa: E402, F401
