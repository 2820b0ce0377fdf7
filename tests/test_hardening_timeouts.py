"""Hangs and restarts with real processes: a song URL or a remote provider that never answers ends the run at the
set limit with that reason, and a web server restarted while runs are active shows their true state after."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fake_remote import OPENAI_KEY, Answer, FakeRemote
from tests.http_server import LocalServer, hang
from tests.servers import KEY_A, Studio, running_studio

DEMO = "1873859c-dd37-4e9a-9bac-80d3558527a9"
RENDER_ENV = {"CLIP_SECONDS": "3", "OUTPUT_WIDTH": "180", "OUTPUT_HEIGHT": "320"}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def hanging(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalServer, FakeRemote]]:
    with LocalServer() as srv, FakeRemote(tmp_path_factory.mktemp("remote")) as fake:
        srv.routes["/never.mp3"] = hang(60)
        fake.always["chat"] = Answer(status=0, hang_seconds=60)
        yield srv, fake


def _remote_env(fake: FakeRemote, **over: str) -> dict[str, str]:
    return {**RENDER_ENV, "CAPTION_PROVIDER": "openai", "OPENAI_API_KEY": OPENAI_KEY,
            "OPENAI_BASE_URL": fake.openai_base_url, "PROVIDER_RETRIES": "0", "TASK_RETRIES": "0", **over}


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory, hanging) -> Iterator[Studio]:
    _, fake = hanging
    # one CPU slot: the restart test's renders then take turns, and outlast the server's restart
    env = _remote_env(fake, FETCH_TIMEOUT_SECONDS="2", PROVIDER_TIMEOUT_SECONDS="2", WORKERS="1",
                      CRASH_AFTER_SECONDS="60")  # the restart test holds the worker while the server starts
    with running_studio(tmp_path_factory.mktemp("timeouts"), **env) as s:
        yield s


def _create(studio: Studio, **body: object) -> list[str]:
    r = httpx.post(studio.url("/api/content/create"), json={"artist_account_id": DEMO, **body},
                   headers={"x-api-key": KEY_A}, timeout=30)
    assert r.status_code == 202, r.text
    return r.json()["runIds"]


def _elapsed(run: dict) -> float:
    from datetime import datetime

    started, finished = (datetime.fromisoformat(run[k].replace("Z", "+00:00")) for k in ("startedAt", "finishedAt"))
    return (finished - started).total_seconds()


def test_a_song_url_that_hangs_fails_at_the_fetch_limit(studio: Studio, hanging) -> None:
    srv, _ = hanging
    [run_id] = _create(studio, songs=[srv.url("/never.mp3")])
    run = studio.wait_for([run_id], timeout=60)[run_id]
    assert run["status"] == "FAILED", run
    assert run["error"]["stage"] == "song"
    assert "did not answer within 2 s" in run["error"]["message"]
    assert _elapsed(run) < 2 + 8  # the limit, plus the run's own start-up on a busy machine


def test_a_remote_provider_that_hangs_fails_at_the_provider_limit(studio: Studio) -> None:
    [run_id] = _create(studio, caption_length="short")
    run = studio.wait_for([run_id], timeout=90)[run_id]
    assert run["status"] == "FAILED", run
    assert run["error"]["stage"] == "caption"
    assert "2 s" in run["error"]["message"]
    assert _elapsed(run) < 2 + 15


def test_a_run_stuck_in_a_provider_is_timed_out_at_the_run_limit(tmp_path: Path, hanging) -> None:
    _, fake = hanging
    env = _remote_env(fake, PROVIDER_TIMEOUT_SECONDS="300", RUN_TIMEOUT_SECONDS="4")
    with running_studio(tmp_path, **env) as studio:
        [run_id] = _create(studio, caption_length="short")
        run = studio.wait_for([run_id], timeout=90)[run_id]
        assert run["status"] == "TIMED_OUT", run
        assert "longer than 4 s" in run["error"]["message"]
        # a provider request that never returns is left behind at the run limit (waits.wait_cancellable)
        assert _elapsed(run) < 4 + 8  # the limit, plus the run's start-up on a busy machine (no 15 s grace now)
        r = httpx.get(studio.url("/api/accounts/id"), headers={"x-api-key": KEY_A}, timeout=10)
        assert r.status_code == 200  # the service is still up


def test_a_server_restarted_while_runs_are_active_shows_their_true_state(studio: Studio) -> None:
    run_ids = _create(studio, batch=8, upscale=True)  # 360x640 renders, one at a time
    studio.wait_for(run_ids[:1], statuses={"EXECUTING", "COMPLETED"}, timeout=60, poll=0.2)
    assert studio.server is not None and studio.worker is not None
    studio.server.terminate()
    studio.server.wait(timeout=20)
    with pytest.raises(httpx.HTTPError):
        httpx.get(studio.url("/api/accounts/id"), timeout=2)
    time.sleep(0.5)  # the worker keeps rendering while no one serves the API
    # Then it is held (with its ffmpeg) while the server comes back, so runs are surely active across the restart:
    # a slow start-up on a busy machine let the whole batch finish first (CRASH_AFTER_SECONDS is 60 here)
    os.killpg(studio.worker.pid, signal.SIGSTOP)
    try:
        studio.start_server()
        seen = {rid: studio.get_run(rid)["status"] for rid in run_ids}
    finally:
        os.killpg(studio.worker.pid, signal.SIGCONT)
    assert set(seen.values()) <= {"QUEUED", "EXECUTING", "COMPLETED"}, seen  # nothing marked crashed
    assert set(seen.values()) != {"COMPLETED"}, seen  # some were still active across the restart
    runs = studio.wait_for(run_ids, timeout=120)
    assert {r["status"] for r in runs.values()} == {"COMPLETED"}, runs
    assert all(r["attemptCount"] == 1 for r in runs.values())  # the restart did not make any run start again
    listed = httpx.get(studio.url("/api/tasks/runs"), params={"limit": 100}, headers={"x-api-key": KEY_A}, timeout=30)
    by_id = {r["id"]: r for r in listed.json()["runs"]}
    assert all(by_id[rid]["status"] == "COMPLETED" for rid in run_ids)
    video = httpx.get(runs[run_ids[-1]]["output"]["video"]["url"], timeout=30)
    assert video.status_code == 200 and video.content[4:8] == b"ftyp"
