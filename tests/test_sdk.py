"""The original's official Python SDK (`recoupable`), unchanged, against our server on 127.0.0.1."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from recoupable import APIError, Client

from pipeline.ffmpeg import probe
from pipeline.settings import DEMO_ARTIST_DIR
from tests.http_server import LocalServer, serve_file
from tests.servers import ACCOUNT_A, FAST_RENDER_ENV, KEY_A, Studio, running_studio

DEMO = "1873859c-dd37-4e9a-9bac-80d3558527a9"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Studio]:
    with running_studio(tmp_path_factory.mktemp("sdk"), **FAST_RENDER_ENV) as s:
        yield s


@pytest.fixture(scope="module")
def client(studio: Studio) -> Client:
    return Client(api_key=KEY_A, base_url=studio.base_url)


def poll(client: Client, run_ids: list[str], timeout: float = 240) -> dict[str, dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = {rid: client.request("GET", "/api/tasks/runs", query={"runId": rid})["runs"][0]  # type: ignore[index]
                for rid in run_ids}
        if all(r["isFinal"] for r in runs.values()):
            return runs
        time.sleep(0.5)
    raise AssertionError(f"runs not finished in {timeout} s: {runs}")


def test_identity_with_either_credential(studio: Studio, client: Client) -> None:
    assert client.get_account_id() == {"status": "success", "accountId": ACCOUNT_A}
    bearer = Client(access_token=KEY_A, base_url=studio.base_url)
    assert bearer.get_account_id() == {"status": "success", "accountId": ACCOUNT_A}


def test_create_with_every_option_and_poll_the_batch_to_completed(client: Client, tmp_path: Path) -> None:
    with LocalServer() as images:
        images.routes["/face.png"] = serve_file(DEMO_ARTIST_DIR / "context" / "images" / "face-guide.png",
                                                "image/png")
        answer = client.request("POST", "/api/content/create", body={
            "artist_account_id": DEMO, "template": "artist-caption-outside", "lipsync": True,
            "caption_length": "medium", "upscale": True, "batch": 2, "songs": ["glass-summer"],
            "images": [images.url("/face.png")],
        })
        assert isinstance(answer, dict)
        assert answer["status"] == "triggered" and answer["template"] == "artist-caption-outside"
        assert answer["lipsync"] is True and len(answer["runIds"]) == 2 and "failed" not in answer
        runs = poll(client, answer["runIds"])
        assert images.hits  # the runs fetched the caller's face image
    for run in runs.values():
        assert run["status"] == "COMPLETED", run["error"]
        out = run["output"]
        assert out["lipsync"] is True and out["upscale"] is True and out["audio"]["songFilename"] == "glass-summer.mp3"
        assert 15 <= len(out["captionText"].split()) <= 30
        video = tmp_path / f"{run['id']}.mp4"
        video.write_bytes(httpx.get(out["video"]["url"], timeout=60).content)  # the SDK is JSON-only
        info = probe(video)
        assert (info.width, info.height) == (720, 1280)  # upscale renders at 2x
    listed = client.request("GET", "/api/tasks/runs", query={"limit": 2})["runs"]  # type: ignore[index]
    assert {r["id"] for r in listed} == set(answer["runIds"])


def test_errors_arrive_as_api_errors_with_status_and_body(studio: Studio, client: Client) -> None:
    with pytest.raises(APIError) as bad:
        client.request("POST", "/api/content/create", body={"artist_account_id": DEMO, "batch": 31})
    assert bad.value.status == 400 and bad.value.body["field"] == ["batch"]  # type: ignore[index]
    assert bad.value.body["status"] == "error" and "30" in bad.value.body["error"]  # type: ignore[index]
    with pytest.raises(APIError) as missing:
        client.request("POST", "/api/content/create", body={})
    assert missing.value.body == {"status": "error", "error": "artist_account_id is required",
                                  "field": ["artist_account_id"]}
    with pytest.raises(APIError) as unauthorized:
        Client(api_key="not-a-key", base_url=studio.base_url).get_account_id()
    assert unauthorized.value.status == 401 and unauthorized.value.body == {"status": "error",
                                                                           "error": "Invalid API key"}
    with pytest.raises(APIError) as unknown_run:
        client.request("GET", "/api/tasks/runs", query={"runId": "run_0000000000000000"})
    assert unknown_run.value.status == 404 and unknown_run.value.body["error"] == "Run not found"  # type: ignore[index]
    with pytest.raises(APIError) as unknown_template:
        client.request("GET", "/api/content/templates/nope")
    assert (unknown_template.value.status, unknown_template.value.body) == (404, {"status": "error",
                                                                                  "error": "Template not found"})
    with pytest.raises(APIError) as no_artist:
        client.request("POST", "/api/content/create", body={"artist_account_id": str(uuid.UUID(int=7))})
    assert no_artist.value.status == 404
    assert no_artist.value.body["error"] == "Artist not found for the provided artist_account_id"  # type: ignore[index]
    assert no_artist.value.headers["content-type"] == "application/json"


def test_every_read_endpoint_answers_json_the_sdk_accepts(client: Client) -> None:
    for path, query in (("/api/content/templates", None), ("/api/artists", None),
                        ("/api/content/validate", {"artist_account_id": DEMO}),
                        ("/api/content/estimate", {"lipsync": "true", "batch": 2}), ("/api/tasks/runs", None)):
        answer = client.request("GET", path, query=query)
        assert isinstance(answer, dict) and answer["status"] == "success", path
