"""A batch of remote runs waits on the providers side by side, not one run after another."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fake_remote import FAL_KEY, FakeRemote
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
