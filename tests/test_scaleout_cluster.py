"""Two "machines" (consumers with their own DATA_DIR) and one API server sharing Redis, PostgreSQL and an S3
bucket: a batch spreads over both, every video downloads through the API, and a consumer killed mid-run
loses nothing."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pipeline.ffmpeg import probe
from taskqueue.store import FINAL_STATUSES
from tests.conftest import REDIS_URL
from tests.s3_server import S3Server, running_s3
from tests.servers import KEY_A, Studio, free_port, running_studio, studio_env

DEMO = "1873859c-dd37-4e9a-9bac-80d3558527a9"
TINY_RENDER_ENV = {"CLIP_SECONDS": "2", "OUTPUT_WIDTH": "180", "OUTPUT_HEIGHT": "320"}

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    with running_s3() as server:
        yield server


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, postgres_url: str, queue_name: str,
            s3: S3Server) -> Iterator[tuple[Studio, list[Studio]]]:
    shared = {"DATABASE_URL": postgres_url, "REDIS_URL": REDIS_URL, "QUEUE_NAME": queue_name,
              **s3.env(), **TINY_RENDER_ENV}
    root = tmp_path_factory.mktemp("cluster")
    consumers = []
    for name in ("machine-a", "machine-b"):
        data_dir, logs_dir = root / name / "data", root / name / "logs"
        data_dir.mkdir(parents=True)
        logs_dir.mkdir(parents=True)
        port = free_port()  # no server on the worker machines; Studio wants a port all the same
        consumers.append(Studio(data_dir=data_dir, port=port, env=studio_env(data_dir, port, **shared),
                                logs_dir=logs_dir))
    with running_studio(root / "web", worker=False, **shared) as web:
        try:
            for consumer in consumers:
                consumer.start_worker()
            yield web, consumers
        finally:
            for consumer in consumers:
                consumer.stop()


def _create(web: Studio, batch: int, **body: object) -> list[str]:
    r = httpx.post(web.url("/api/content/create"), headers={"x-api-key": KEY_A},
                   json={"artist_account_id": DEMO, "caption_length": "short", "batch": batch, **body}, timeout=30)
    assert r.status_code == 202, r.text
    return r.json()["runIds"]


def _consumer_of(worker: str, consumers: list[Studio]) -> Studio | None:
    """Which consumer's process group the worker process (host:pid) belongs to."""
    pid = int(worker.rsplit(":", 1)[1])
    try:
        group = os.getpgid(pid)
    except ProcessLookupError:
        return None
    return next((c for c in consumers if c.worker is not None and c.worker.pid == group), None)


def _download_and_probe(run: dict, tmp_path: Path, size: tuple[int, int] = (180, 320)) -> None:
    url = run["output"]["video"]["url"]
    assert url == run["output"]["videoSourceUrl"]
    r = httpx.get(url, timeout=30)  # the signed link alone, as a browser or the SDK would
    assert r.status_code == 200 and r.headers["content-type"] == "video/mp4", r.text[:300]
    assert int(r.headers["content-length"]) == len(r.content) > 1000
    path = tmp_path / f"{run['id']}.mp4"
    path.write_bytes(r.content)
    info = probe(path)
    assert info.has_video and info.has_audio and (info.width, info.height) == size
    part = httpx.get(url, headers={"Range": "bytes=100-199"}, timeout=30)
    assert part.status_code == 206 and part.content == r.content[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(r.content)}"


def test_batch_spreads_over_two_machines_and_downloads_through_the_api(
        cluster: tuple[Studio, list[Studio]], s3: S3Server, tmp_path: Path) -> None:
    web, consumers = cluster
    run_ids = _create(web, 6)
    runs = web.wait_for(run_ids, timeout=150, poll=1.0)
    failed = {rid: (r["status"], r["error"]) for rid, r in runs.items() if r["status"] != "COMPLETED"}
    assert not failed, f"{failed}\n{consumers[0].log_tail('worker')}\n{consumers[1].log_tail('worker')}"
    workers = {r["worker"] for r in runs.values()}
    by_consumer = {id(_consumer_of(w, consumers)) for w in workers}
    assert len(by_consumer) == 2 and id(None) not in by_consumer, f"one machine rendered everything: {workers}"
    for run in runs.values():
        _download_and_probe(run, tmp_path)
    # The files are in the bucket, not left on the worker machines or the web server.
    keys = {o["Key"] for o in s3.client().list_objects_v2(Bucket=s3.bucket, Prefix="runs/")["Contents"]}
    for rid in run_ids:
        assert {f"runs/{rid}/video.mp4", f"runs/{rid}/poster.jpg", f"runs/{rid}/meta.json"} <= keys
    for studio in (web, *consumers):
        assert not list((studio.data_dir / "runs").glob("*/video.mp4"))

    health = httpx.get(web.url("/api/health"), headers={"x-api-key": KEY_A}, timeout=10).json()
    assert health["ok"] and health["queue"]["pending"] == 0 and health["queue"]["backend"] == "redis"
    assert health["runs"]["COMPLETED"] >= 6
    assert {w["name"] for w in health["workers"]} >= workers and health["liveWorkers"] == 2
    assert all(w["currentRun"] is None for w in health["workers"])
    assert httpx.get(web.url("/api/health"), timeout=10).json() == {"status": "ok", "ok": True}
    assert httpx.get(web.url("/api/health"), headers={"x-api-key": "wrong"}, timeout=10).status_code == 401


def test_a_machine_killed_mid_run_loses_nothing(cluster: tuple[Studio, list[Studio]], tmp_path: Path) -> None:
    web, consumers = cluster
    run_ids = _create(web, 2, upscale=True)  # 360x640: a render long enough to be caught mid-way
    deadline, victim_run, victim = time.monotonic() + 60, None, None
    while victim is None and time.monotonic() < deadline:
        for rid in run_ids:
            run = web.get_run(rid)
            if run["status"] == "EXECUTING" and run["worker"] and (run["progress"] or 0) > 0:
                victim_run, victim = run, _consumer_of(run["worker"], consumers)
                break
        time.sleep(0.2)
    assert victim is not None and victim_run is not None, "no run was seen executing"
    killed_worker = victim_run["worker"]
    os.killpg(victim.worker.pid, signal.SIGKILL)  # the machine dies: consumer, its workers, their ffmpeg
    victim.worker.wait(timeout=10)
    victim.worker = None

    runs = web.wait_for(run_ids, timeout=120, poll=1.0)
    assert all(r["status"] in FINAL_STATUSES for r in runs.values())
    killed = runs[victim_run["id"]]
    # a second consumer is alive and CRASH_RETRIES is 1: the run is queued again and finished there
    assert killed["status"] == "COMPLETED", (killed, consumers[0].log_tail("worker"), consumers[1].log_tail("worker"))
    assert killed["worker"] != killed_worker and killed["attemptCount"] == 2, killed
    for run in runs.values():
        assert run["status"] == "COMPLETED", run["error"]
        _download_and_probe(run, tmp_path, size=(360, 640))
    health = httpx.get(web.url("/api/health"), headers={"x-api-key": KEY_A}, timeout=10).json()
    # The dead machine's worker stopped beating: no longer listed live (its heartbeat is older than the
    # crash threshold by the time its run was reaped).
    assert killed_worker not in {w["name"] for w in health["workers"]} and health["liveWorkers"] == 1
    print(f"killed run ended {killed['status']} after {killed['attempts']} attempt(s) on {killed['worker']}")
