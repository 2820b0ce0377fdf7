"""Faults with real processes: a worker SIGKILLed mid-encode, a full disk, a consumer restarted with 50 runs queued."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from taskqueue.store import COMPLETED, RunStore
from tests.conftest import missing_tool
from tests.servers import KEY_A, Studio, running_studio

DEMO = "1873859c-dd37-4e9a-9bac-80d3558527a9"
TINY_RENDER_ENV = {"CLIP_SECONDS": "1.5", "OUTPUT_WIDTH": "90", "OUTPUT_HEIGHT": "160", "X264_PRESET": "ultrafast"}

pytestmark = pytest.mark.slow


def _create(studio: Studio, **body: object) -> list[str]:
    r = httpx.post(studio.url("/api/content/create"), json={"artist_account_id": DEMO, **body},
                   headers={"x-api-key": KEY_A}, timeout=30)
    assert r.status_code == 202, r.text
    return r.json()["runIds"]


def _work_dirs(studio: Studio) -> list[Path]:
    runs = studio.data_dir / "runs"
    return [p for p in runs.iterdir() if ".work-" in p.name] if runs.is_dir() else []


def _wait(predicate, timeout: float, poll: float = 0.1) -> bool:  # noqa: ANN001 - a no-argument callable
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(poll)
    return False


# --- a worker killed mid-encode ------------------------------------------------------------------


@pytest.fixture(scope="module")
def crashing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Studio]:
    # a render long enough to be caught in the middle; no crash retries so the run ends CRASHED
    env = {"CLIP_SECONDS": "20", "OUTPUT_WIDTH": "540", "OUTPUT_HEIGHT": "960", "X264_PRESET": "medium",
           "CRASH_RETRIES": "0", "CRASH_AFTER_SECONDS": "4"}
    with running_studio(tmp_path_factory.mktemp("crash"), **env) as s:
        yield s


def test_a_worker_killed_mid_encode_leaves_no_partial_file_and_no_work_folder(crashing: Studio) -> None:
    run_id = _create(crashing)[0]
    in_render = _wait(lambda: (r := crashing.get_run(run_id))["step"] == "render" and r["progress"] > 55, 120)
    assert in_render, crashing.get_run(run_id)
    assert _work_dirs(crashing), "the encode should be writing into its work folder"
    crashing.stop_worker(kill=True)
    started = time.monotonic()
    run = crashing.wait_for([run_id], timeout=60)[run_id]
    assert run["status"] == "CRASHED" and "worker" in run["error"]["message"].lower(), run
    assert time.monotonic() - started < 60
    assert _wait(lambda: not _work_dirs(crashing), 10), _work_dirs(crashing)  # the reaper removed it
    assert not (crashing.data_dir / "runs" / run_id / "video.mp4").exists()
    r = httpx.get(crashing.url(f"/api/files/{run_id}/video.mp4"), headers={"x-api-key": KEY_A}, timeout=10)
    assert r.status_code == 404 and r.headers["content-type"].startswith("application/json"), r.text
    assert crashing.client().get("/api/tasks/runs").status_code == 200  # the service is still up


# --- the consumer restarted with 50 runs queued --------------------------------------------------


@pytest.fixture(scope="module")
def queued(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Studio]:
    with running_studio(tmp_path_factory.mktemp("fifty"), worker=False, WORKERS="2", **TINY_RENDER_ENV) as s:
        yield s


def test_fifty_queued_runs_survive_a_consumer_restart_and_complete_once(queued: Studio) -> None:
    ids = _create(queued, batch=30) + _create(queued, batch=20)
    assert len(set(ids)) == 50
    queued.start_worker()
    assert _wait(lambda: sum(queued.get_run(i)["status"] == COMPLETED for i in ids[:12]) >= 3, 120, poll=0.5)
    queued.stop_worker()  # SIGTERM mid-batch: interrupted runs go back to the queue
    done_before = sum(queued.get_run(i)["status"] == COMPLETED for i in ids)
    assert done_before < 50
    queued.start_worker()
    runs = queued.wait_for(ids, timeout=240)
    assert {r["status"] for r in runs.values()} == {COMPLETED}, {i: r["error"] for i, r in runs.items()}
    store = RunStore(f"sqlite:///{queued.data_dir / 'runs.sqlite3'}")
    try:
        attempts = {i: store.get(i).attempts for i in ids}  # type: ignore[union-attr]
    finally:
        store.close()
    assert set(attempts.values()) == {1}, attempts  # none ran twice (an interrupted try is not counted)
    log = (queued.logs_dir / "worker.log").read_text(errors="replace")
    for run_id in ids:
        assert log.count(f"run {run_id}: attempt") <= 2, run_id  # at most once more after the interruption
    assert not _work_dirs(queued)


# --- a full disk -------------------------------------------------------------------------------


def _mount_tiny_disk(path: Path, size_kb: int, *options: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join([f"size={size_kb}k", *options]), "tmpfs",
                             str(path)],
                            capture_output=True, text=True)
    return result.returncode == 0


@contextmanager
def _studio_on_tiny_disk(root: Path, *options: str) -> Iterator[Studio]:
    runs = root / "data" / "runs"
    if not _mount_tiny_disk(runs, 64, *options):
        missing_tool("cannot mount a small tmpfs here (needs root and CAP_SYS_ADMIN)")
    try:
        env = {**TINY_RENDER_ENV, "CLIP_SECONDS": "6", "OUTPUT_WIDTH": "360", "OUTPUT_HEIGHT": "640"}
        with running_studio(root, **env) as s:
            yield s
    finally:
        subprocess.run(["umount", "-l", str(runs)], check=False)


@pytest.fixture(scope="module")
def full_disk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Studio]:
    # the outputs' folder on a 64 KB file system: a real ENOSPC for the encoder, not a simulation of one
    with _studio_on_tiny_disk(tmp_path_factory.mktemp("diskfull")) as s:
        yield s


def test_a_full_disk_fails_the_run_with_that_reason_and_the_service_stays_up(full_disk: Studio) -> None:
    run_id = _create(full_disk)[0]
    run = full_disk.wait_for([run_id], timeout=120)[run_id]
    assert run["status"] == "FAILED", run
    message = run["error"]["message"].lower()
    assert "disk is full" in message and "no space left" in message, run["error"]
    assert "traceback" not in message
    assert not _work_dirs(full_disk)
    with full_disk.client() as c:
        assert c.get("/api/tasks/runs", params={"runId": run_id}).status_code == 200
        assert c.get("/api/content/templates").status_code == 200


def test_a_read_only_output_folder_fails_the_run_with_that_reason(tmp_path: Path) -> None:
    # root ignores permission bits, so the folder is a read-only mount
    with _studio_on_tiny_disk(tmp_path, "ro") as studio:
        run_id = _create(studio)[0]
        run = studio.wait_for([run_id], timeout=120)[run_id]
        assert run["status"] == "FAILED", run
        assert "read-only" in run["error"]["message"], run["error"]
        assert studio.client().get("/api/content/templates").status_code == 200


def test_only_work_folders_of_live_runs_are_kept(tmp_path: Path) -> None:
    from taskqueue.store import NewRun
    from taskqueue.workdirs import clean_work_dirs

    store = RunStore(f"sqlite:///{tmp_path / 'runs.sqlite3'}")
    live, dead, done = (store.create_batch("o", [NewRun("a", "a", None, {}, 1)])[0].id for _ in range(3))
    store.claim(live, "host:111")
    store.claim(dead, "host:222")
    store.claim(done, "host:333")
    store.fail(done, "FAILED", "render", "x")
    runs = tmp_path / "runs"
    folders = {name: runs / name for name in (f".{live}.work-111", f".{dead}.work-999", f".{done}.work-333",
                                              ".run_unknown.work-5", "run_keep", ".other")}
    for folder in folders.values():
        folder.mkdir(parents=True)
        (folder / "video.mp4").write_bytes(b"partial")
    removed = {p.name for p in clean_work_dirs(runs, store)}
    store.close()
    assert removed == {f".{dead}.work-999", f".{done}.work-333", ".run_unknown.work-5"}
    assert {p.name for p in runs.iterdir()} == {f".{live}.work-111", "run_keep", ".other"}
