"""The fair queue with a real consumer (one CPU slot): A queues 10, then B queues 1, and B's run starts before A's
third. On SQLite + SqliteHuey and on PostgreSQL + Redis."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import nullcontext

import httpx
import pytest

from taskqueue.__main__ import DEMO_ARTIST_ID
from taskqueue.store import FINAL_STATUSES, RunStore
from tests.conftest import REDIS_URL, throwaway_database
from tests.servers import ACCOUNT_A, KEY_A, KEY_B, Studio, running_studio

pytestmark = pytest.mark.slow
TINY_RENDER_ENV = {"CLIP_SECONDS": "1.5", "OUTPUT_WIDTH": "90", "OUTPUT_HEIGHT": "160", "X264_PRESET": "ultrafast"}


@pytest.fixture(params=["sqlite", pytest.param("postgres+redis", marks=[pytest.mark.postgres, pytest.mark.redis])])
def one_worker(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Studio,
                                                                                                           str]]:
    root = tmp_path_factory.mktemp("fair")
    server_db = request.param != "sqlite"
    with throwaway_database("studio_fair_") if server_db else nullcontext() as url:
        extra = {"WORKERS": "1", **TINY_RENDER_ENV}
        if server_db:
            queue = request.getfixturevalue("queue_name")
            extra |= {"DATABASE_URL": url, "REDIS_URL": REDIS_URL, "QUEUE_NAME": queue}
        with running_studio(root, **extra) as studio:
            yield studio, url or f"sqlite:///{studio.data_dir / 'runs.sqlite3'}"


def create(studio: Studio, key: str, batch: int) -> list[str]:
    r = httpx.post(studio.url("/api/content/create"), headers={"x-api-key": key},
                   json={"artist_account_id": DEMO_ARTIST_ID, "batch": batch}, timeout=30)
    assert r.status_code == 202, r.text
    return r.json()["runIds"]


def test_a_single_run_of_another_account_waits_for_at_most_one_run(one_worker: tuple[Studio, str]) -> None:
    studio, url = one_worker
    a_runs = create(studio, KEY_A, 10)
    (b_run,) = create(studio, KEY_B, 1)
    studio.wait_for([b_run], key=KEY_B, timeout=120)
    store = RunStore(url)
    try:
        b_started = store.get(b_run).started_at
        a_started = sorted(t for t in (store.get(r).started_at for r in a_runs) if t is not None)
        assert b_started is not None and len([t for t in a_started if t < b_started]) <= 2, (a_started, b_started)
        with studio.client(KEY_A) as api:  # the rest of A's batch is not needed
            for run_id in a_runs:
                api.post(f"/api/tasks/runs/{run_id}/cancel")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if all(r.status in FINAL_STATUSES for r in store.list_runs(ACCOUNT_A, limit=20)):
                break
            time.sleep(0.5)
    finally:
        store.close()
