"""The Huey instance: SqliteHuey in DATA_DIR by default (no server), RedisHuey when REDIS_URL is set.

Consumers: `python -m taskqueue worker`, or `huey_consumer taskqueue.huey_app.huey -k process -w N`.
"""

from __future__ import annotations

from huey import Huey, RedisHuey, SqliteHuey

from pipeline.settings import Settings, get_settings


def make_huey(settings: Settings) -> Huey:
    if settings.redis_url:
        return RedisHuey(settings.queue_name, url=settings.redis_url, results=False)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return SqliteHuey(settings.queue_name, filename=str(settings.data_dir / "queue.sqlite3"), results=False, timeout=30)


huey = make_huey(get_settings())

# Registers the tasks on `huey`, so `huey_consumer taskqueue.huey_app.huey` finds them.
import taskqueue.tasks  # noqa: E402, F401
