"""A batch of remote runs waits on the providers side by side, not one run after another."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from tests.fake_remote import FAL_KEY, FakeRemote, max_overlap
from tests.servers import FAST_RENDER_ENV, KEY_A, running_studio

DEMO = "1873859c-dd37-4e9a-9bac-80d3558527a9"

pytestmark = pytest.mark.slow


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeRemote]:
    with FakeRemote(tmp_path / "fake") as server:
        server.latency.update({"image": 2.0, "video": 3.0})
        yield server


def remote_env(fake: FakeRemote, **over: str) -> dict[str, str]:
    return {**FAST_RENDER_ENV, "IMAGE_PROVIDER": "fal", "VIDEO_PROVIDER": "fal", "FAL_KEY": FAL_KEY,
            "FAL_BASE_URL": fake.fal_base_url, "PROVIDER_POLL_SECONDS": "0.2", "REMOTE_VIDEO_SECONDS": "4", **over}


def test_a_batch_of_remote_runs_overlaps_its_waits(tmp_path: Path, fake: FakeRemote) -> None:
    with running_studio(tmp_path, **remote_env(fake)) as studio:  # WORKERS=1: one run on the CPU at a time
        r = httpx.post(studio.url("/api/content/create"), headers={"x-api-key": KEY_A}, timeout=30,
                       json={"artist_account_id": DEMO, "batch": 4})
        assert r.status_code == 202, r.text
        runs = studio.wait_for(r.json()["runIds"], timeout=240)
    assert {run["status"] for run in runs.values()} == {"COMPLETED"}, runs
    assert all(run["output"]["providers"]["video"] == "fal:fal-ai/veo3.1/fast/image-to-video" for run in runs.values())
    # serialised runs would never have two jobs at fal at once
    assert fake.max_in_flight() > 1, [(j["model"], j["submitted"], j["fetched"]) for j in fake.jobs.values()]
    assert fake.max_in_flight("video") > 1 or fake.max_in_flight("image") > 1
    # ... while the renders took turns on the one CPU slot (WORKERS=1)
    renders = [(datetime.fromisoformat(t["startedAt"]).timestamp(), datetime.fromisoformat(t["finishedAt"]).timestamp())
               for run in runs.values() for t in run["timeline"] if t["step"] == "render"]
    assert len(renders) == 4 and max_overlap([(a + 0.01, b - 0.01) for a, b in renders]) == 1, renders


def test_the_in_flight_bound_holds_and_a_cancel_reaches_fal(tmp_path: Path, fake: FakeRemote) -> None:
    with running_studio(tmp_path, **remote_env(fake, FAL_MAX_IN_FLIGHT="2")) as studio:
        r = httpx.post(studio.url("/api/content/create"), headers={"x-api-key": KEY_A}, timeout=30,
                       json={"artist_account_id": DEMO, "batch": 3})
        runs = studio.wait_for(r.json()["runIds"], timeout=240)
        assert {run["status"] for run in runs.values()} == {"COMPLETED"}, runs
        assert fake.max_in_flight() == 2  # three runs, two jobs at fal at a time

        fake.latency["video"] = 120.0  # a job that would keep the run for two minutes
        videos_before = sum(j["model"].endswith("image-to-video") for j in fake.jobs.values())
        r = httpx.post(studio.url("/api/content/create"), headers={"x-api-key": KEY_A}, timeout=30,
                       json={"artist_account_id": DEMO})
        [run_id] = r.json()["runIds"]
        studio.wait_for([run_id], statuses={"EXECUTING"}, timeout=60, poll=0.2)
        deadline = time.monotonic() + 60
        while sum(j["model"].endswith("image-to-video") for j in fake.jobs.values()) == videos_before:
            assert time.monotonic() < deadline, studio.log_tail("worker")
            time.sleep(0.2)
        cancelled = httpx.post(studio.url(f"/api/tasks/runs/{run_id}/cancel"), headers={"x-api-key": KEY_A},
                               timeout=30)
        assert cancelled.status_code < 300, cancelled.text
        run = studio.wait_for([run_id], timeout=30)[run_id]
    assert run["status"] == "CANCELED" and run["error"]["stage"] == "video", run
    video_job = next(rid for rid, j in fake.jobs.items() if j["model"].endswith("image-to-video")
                     and j["fetched"] is None)
    assert video_job in fake.cancelled  # the job was cancelled at fal, not left running (and billed)
