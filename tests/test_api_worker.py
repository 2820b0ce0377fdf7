"""Workers that stop, die or restart, and the CLI door: runs are never lost and never stuck EXECUTING."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime

import httpx
import pytest

from pipeline.settings import PROJECT_ROOT
from tests.servers import FAST_RENDER_ENV, KEY_A, Studio, running_studio

DEMO = "1873859c-dd37-4e9a-9bac-80d3558527a9"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Studio]:
    with running_studio(tmp_path_factory.mktemp("worker"), worker=False, **FAST_RENDER_ENV) as s:
        yield s


def create(studio: Studio, **body: object) -> list[str]:
    r = httpx.post(studio.url("/api/content/create"), headers={"x-api-key": KEY_A},
                   json={"artist_account_id": DEMO, **body}, timeout=30)
    assert r.status_code == 202, r.text
    return r.json()["runIds"]


def wait_until_one_executes(studio: Studio, run_ids: list[str], timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for run_id in run_ids:
            if studio.get_run(run_id)["status"] == "EXECUTING":
                return run_id
        time.sleep(0.1)
    raise AssertionError(f"none of {run_ids} started:\n{studio.log_tail('worker')}")


def test_queued_runs_wait_for_a_consumer_and_survive_a_shutdown_mid_run(studio: Studio) -> None:
    first, second = create(studio, batch=2, upscale=True)
    time.sleep(2)
    assert {studio.get_run(r)["status"] for r in (first, second)} == {"QUEUED"}  # no consumer yet
    studio.start_worker()
    running = wait_until_one_executes(studio, [first, second])
    studio.stop_worker()  # SIGTERM: the consumer interrupts the render and puts the run back
    back = studio.get_run(running)
    assert back["status"] == "QUEUED" and back["attemptCount"] == 0, (back, studio.log_tail("worker"))
    studio.start_worker()  # a restarted consumer picks up everything still queued
    runs = studio.wait_for([first, second], timeout=180)
    assert {r["status"] for r in runs.values()} == {"COMPLETED"}, runs
    assert runs[running]["attemptCount"] == 1
    studio.stop_worker()


def test_a_killed_worker_is_retried_once_then_crashed_never_stuck(studio: Studio) -> None:
    (run_id,) = create(studio, upscale=True)
    studio.start_worker()
    studio.wait_for([run_id], {"EXECUTING"}, timeout=60, poll=0.1)
    studio.stop_worker(kill=True)  # SIGKILL to the consumer, its workers and ffmpeg
    killed_at = time.monotonic()
    requeued = studio.wait_for([run_id], {"QUEUED", "CRASHED"}, timeout=30)[run_id]
    assert requeued["status"] == "QUEUED" and requeued["error"]["stage"] == "worker"
    assert time.monotonic() - killed_at >= 5  # only after CRASH_AFTER_SECONDS without a heartbeat
    studio.start_worker()
    studio.wait_for([run_id], {"EXECUTING"}, timeout=60, poll=0.1)
    assert studio.get_run(run_id)["attemptCount"] == 2
    studio.stop_worker(kill=True)
    crashed = studio.wait_for([run_id], {"CRASHED"}, timeout=30)[run_id]
    assert crashed["error"]["stage"] == "worker" and "heartbeat" in crashed["error"]["message"]
    assert crashed["finishedAt"] and crashed["output"] is None


def test_the_cli_triggers_and_waits_and_makes_keys(studio: Studio) -> None:
    studio.start_worker()
    try:
        proc = subprocess.run([sys.executable, "-m", "taskqueue", "trigger", "--artist", "demo-artist",
                               "--caption-length", "short", "--song", "late-bus-home", "--wait"],
                              env=studio.env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=180)
    finally:
        studio.stop_worker()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    head, _, progress = proc.stdout.partition("}\n")
    answer = json.loads(head + "}")
    (run_id,) = answer["runIds"]
    assert answer["status"] == "triggered" and answer["artist_account_id"] == DEMO
    lines = [line for line in progress.splitlines() if line.startswith(run_id)]
    statuses = [line.split()[1] for line in lines[:-1]]
    order = ["QUEUED", "EXECUTING", "COMPLETED"]
    assert statuses[-1] == "COMPLETED" and statuses == sorted(statuses, key=order.index)
    done = httpx.get(studio.url("/api/tasks/runs"), params={"runId": run_id},
                     headers={"x-api-key": (studio.data_dir / "api-key.txt").read_text().strip()}).json()["runs"][0]
    # the CLI polls every 0.25 s: a run that executed for longer than two polls must have been seen executing
    took = (datetime.fromisoformat(done["finishedAt"].replace("Z", "+00:00"))
            - datetime.fromisoformat(done["startedAt"].replace("Z", "+00:00"))).total_seconds()
    if took > 0.5:
        assert "EXECUTING" in statuses, lines
    assert lines[-1].endswith("video.mp4") and (studio.data_dir / "runs" / run_id / "video.mp4").is_file()
    # the CLI's runs belong to this install's own key (made on first use), so the API shows them to it
    local_key = (studio.data_dir / "api-key.txt").read_text().strip()
    r = httpx.get(studio.url("/api/tasks/runs"), params={"runId": run_id}, headers={"x-api-key": local_key})
    assert r.status_code == 200 and r.json()["runs"][0]["output"]["audio"]["songFilename"] == "late-bus-home.mp3"

    bad = subprocess.run([sys.executable, "-m", "taskqueue", "trigger", "--artist", DEMO, "--batch", "31"],
                         env=studio.env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "batch" in json.loads(bad.stderr)["error"]
