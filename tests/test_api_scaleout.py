"""Scale-out by settings alone: the same server and consumer with the run store on PostgreSQL and the queue
on Redis, a run polled to COMPLETED."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest
from redis import Redis

from tests.servers import FAST_RENDER_ENV, KEY_A, Studio, running_studio
from tests.test_store import postgres_url  # noqa: F401 - the session's throwaway database

DEMO = "1873859c-dd37-4e9a-9bac-80d3558527a9"
REDIS_URL = "redis://127.0.0.1:6379/0"

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]


@pytest.fixture(scope="module")
def queue_name() -> Iterator[str]:
    name = "studio-test-" + uuid.uuid4().hex[:8]
    try:
        Redis.from_url(REDIS_URL).ping()
    except Exception as exc:  # pragma: no cover - depends on the machine
        pytest.skip(f"Redis is not reachable at {REDIS_URL}: {type(exc).__name__}")
    yield name
    conn = Redis.from_url(REDIS_URL)
    for key in conn.scan_iter(f"huey.*{name}*"):
        conn.delete(key)


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory, postgres_url: str, queue_name: str) -> Iterator[Studio]:  # noqa: F811
    with running_studio(tmp_path_factory.mktemp("scaleout"), DATABASE_URL=postgres_url, REDIS_URL=REDIS_URL,
                        QUEUE_NAME=queue_name, **FAST_RENDER_ENV) as s:
        yield s


def test_postgres_and_redis_by_settings_alone(studio: Studio, postgres_url: str, queue_name: str) -> None:  # noqa: F811
    r = httpx.post(studio.url("/api/content/create"), headers={"x-api-key": KEY_A},
                   json={"artist_account_id": DEMO, "caption_length": "short"}, timeout=30)
    assert r.status_code == 202, r.text
    (run_id,) = r.json()["runIds"]
    run = studio.wait_for([run_id], timeout=180)[run_id]
    assert run["status"] == "COMPLETED", run["error"]
    assert not (studio.data_dir / "runs.sqlite3").exists() and not (studio.data_dir / "queue.sqlite3").exists()
    from sqlalchemy import create_engine, text

    engine = create_engine(postgres_url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT status FROM runs WHERE id = :id"), {"id": run_id}).scalar() == "COMPLETED"
    engine.dispose()
