"""Scale-out by settings alone: the same server and consumer with the run store on PostgreSQL and the queue
on Redis, a run polled to COMPLETED."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import REDIS_URL
from tests.servers import FAST_RENDER_ENV, KEY_A, Studio, running_studio

DEMO = "1873859c-dd37-4e9a-9bac-80d3558527a9"

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory, postgres_url: str, queue_name: str) -> Iterator[Studio]:
    with running_studio(tmp_path_factory.mktemp("scaleout"), DATABASE_URL=postgres_url, REDIS_URL=REDIS_URL,
                        QUEUE_NAME=queue_name, **FAST_RENDER_ENV) as s:
        yield s


def test_postgres_and_redis_by_settings_alone(studio: Studio, postgres_url: str, queue_name: str) -> None:
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
