"""A client generated from /api/openapi.json by a standard generator (openapi-python-client) drives a real run.

The generator runs on the document the live server serves; the generated package is imported and used as a
client author would: create a run, poll it to COMPLETED, download the video, and read typed errors.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pipeline.ffmpeg import probe
from tests.servers import FAST_RENDER_ENV, KEY_A, Studio, running_studio

DEMO = "1873859c-dd37-4e9a-9bac-80d3558527a9"
PACKAGE = "studio_generated_client"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Studio]:
    with running_studio(tmp_path_factory.mktemp("generated"), **FAST_RENDER_ENV) as s:
        yield s


@pytest.fixture(scope="module")
def generated(studio: Studio, tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    root = tmp_path_factory.mktemp("client")
    spec = root / "openapi.json"
    spec.write_bytes(httpx.get(studio.url("/api/openapi.json"), timeout=30).content)
    config = root / "config.yaml"
    config.write_text(f"post_hooks: []\npackage_name_override: {PACKAGE}\nproject_name_override: {PACKAGE}\n")
    out = root / PACKAGE
    done = subprocess.run([str(Path(sys.executable).with_name("openapi-python-client")), "generate",
                           "--path", str(spec), "--meta", "none", "--config", str(config), "--output-path", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    # every JSON operation is generated; only the two binary downloads (video/mp4, image/*) have no parsed body
    skipped = [line for line in (done.stdout + done.stderr).splitlines() if line.startswith("WARNING parsing")]
    assert skipped == ["WARNING parsing GET /files/{run_id}/{name} within files.",
                       "WARNING parsing GET /artists/{account_id}/image within files."], done.stdout
    sys.path.insert(0, str(root))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(root))
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
            del sys.modules[name]


def _api(name: str):
    return importlib.import_module(f"{PACKAGE}.{name}")


def test_the_generated_client_creates_polls_and_downloads(studio: Studio, generated: object, tmp_path: Path) -> None:
    client_mod, models = _api("client"), _api("models")
    create, get_runs = _api("api.content.create_content"), _api("api.runs.get_runs")
    client = client_mod.AuthenticatedClient(base_url=studio.url("/api"), token=KEY_A, prefix="",
                                            auth_header_name="x-api-key", raise_on_unexpected_status=True)
    short = models.CreateContentRequestCaptionLength.SHORT
    body = models.CreateContentRequest(artist_account_id=DEMO, caption_length=short)
    created = create.sync(client=client, body=body)
    assert isinstance(created, models.CreateResponse) and created.status == "triggered" and len(created.run_ids) == 1
    run_id = created.run_ids[0]
    deadline = time.monotonic() + 180
    while True:
        answer = get_runs.sync(client=client, run_id=run_id)
        assert isinstance(answer, models.RunsResponse)
        run = answer.runs[0]
        if run.is_final or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert run.status == models.RunStatus.COMPLETED, run.error
    assert run.task_identifier == "create-content" and run.attempts[0].status == models.AttemptStatus.COMPLETED
    url = run.output["video"]["url"]
    video = client.get_httpx_client().get(url)  # the signed link, through the generated client's own session
    assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
    (tmp_path / "video.mp4").write_bytes(video.content)
    info = probe(tmp_path / "video.mp4")
    assert (info.width, info.height, info.video_codec) == (360, 640, "h264")


def test_errors_arrive_as_the_generated_error_models(studio: Studio, generated: object) -> None:
    client_mod, models = _api("client"), _api("models")
    create, template, estimate = (_api("api.content.create_content"), _api("api.content.template"),
                                  _api("api.content.estimate"))
    client = client_mod.AuthenticatedClient(base_url=studio.url("/api"), token=KEY_A, prefix="",
                                            auth_header_name="x-api-key")
    bad = create.sync(client=client, body=models.CreateContentRequest(artist_account_id=DEMO, template="nope"))
    assert isinstance(bad, models.CreateErrorResponse) and bad.error == "Unsupported template: nope"
    assert "artist-caption-stage" in bad.available_templates
    missing = template.sync_detailed(client=client, template_id="nope")
    assert missing.status_code == 404 and isinstance(missing.parsed, models.ErrorResponse)
    anonymous = client_mod.Client(base_url=studio.url("/api"))
    denied = estimate.sync_detailed(client=anonymous)
    assert denied.status_code == 401 and denied.parsed.error.startswith("Missing API key")
    priced = estimate.sync(client=client, compare=True, lipsync=True, batch=2)
    assert isinstance(priced, models.EstimateResponse) and len(priced.workflows) == 3 and priced.batch.count == 2


def test_the_openapi_document_has_models_real_errors_and_examples(studio: Studio) -> None:
    spec = httpx.get(studio.url("/api/openapi.json"), timeout=30).json()
    schemas = spec["components"]["schemas"]
    assert "HTTPValidationError" not in schemas and "ValidationError" not in schemas
    for path, item in spec["paths"].items():
        for method, op in item.items():
            responses = op["responses"]
            assert "422" not in responses, (method, path)  # validation failures are answered 400 here
            success = next(code for code in responses if code.startswith("2"))
            content = responses[success]["content"]
            if "application/json" in content:
                assert content["application/json"]["schema"]["$ref"].startswith("#/components/schemas/"), path
            for code, answer in responses.items():
                if code.startswith(("4", "5")):
                    ref = answer["content"]["application/json"]["schema"]["$ref"]
                    assert ref.rsplit("/", 1)[1] in ("ErrorResponse", "CreateErrorResponse"), (path, code)
    create = spec["paths"]["/content/create"]["post"]
    assert set(create["responses"]) == {"202", "400", "401", "404", "409", "413", "429", "503"}
    assert create["requestBody"]["content"]["application/json"]["examples"]["seed page"]["value"]["batch"] == 2
    assert "webhook_url" in schemas["CreateContentRequest"]["properties"]
    assert "unknown_fields" not in schemas["CreateContentRequest"]["properties"]
    assert schemas["Run"]["examples"][0]["taskIdentifier"] == "create-content"
    assert set(spec["paths"]["/tasks/runs"]["get"]["responses"]) == {"200", "400", "401", "403", "404", "429"}
