"""/api/health and the Templates page say which provider runs each step and whether ComfyUI answers."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pipeline.providers.overview import provider_overview
from pipeline.settings import ASSETS_DIR, Settings
from tests.fake_comfyui import FakeComfyUI
from tests.servers import KEY_A, free_port, running_studio
from tests.test_ui_apptest import app, data_dir, texts  # noqa: F401 - data_dir is a fixture

GIB = 1024**3


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeComfyUI]:
    with FakeComfyUI(tmp_path / "comfyui") as server:
        yield server


@pytest.mark.slow
def test_health_with_a_key_shows_each_steps_provider_and_comfyuis_state(tmp_path: Path, fake: FakeComfyUI) -> None:
    with running_studio(tmp_path / "studio", worker=False, COMFYUI_URL=fake.url, IMAGE_PROVIDER="comfyui",
                        VIDEO_PROVIDER="comfyui") as studio:
        health = httpx.get(studio.url("/api/health"), headers={"x-api-key": KEY_A}, timeout=30).json()
        anonymous = httpx.get(studio.url("/api/health"), timeout=30).json()
    providers = health["providers"]
    assert providers["steps"] == {"transcribe": "local", "caption": "local", "image": "comfyui", "video": "comfyui",
                                  "upscale": "local"}
    assert providers["comfyui"] == {
        "configured": True, "url": fake.url, "ok": True, "version": "0.3.66",
        "gpu": "cuda:0 NVIDIA GeForce RTX 4090 : cudaMallocAsync", "vramFreeBytes": 21 * GIB,
        "vramTotalBytes": 24 * GIB, "workflows": {"image.json": None, "text_to_image.json": None,
                                                  "video.json": None, "lipsync.json": None}}
    assert anonymous == {"status": "ok", "ok": True}  # nothing about the GPU server without a key


def test_an_unreachable_server_and_a_refused_workflow_are_reported(tmp_path: Path) -> None:
    shutil.copytree(ASSETS_DIR / "comfyui", tmp_path / "wf")
    (tmp_path / "wf" / "image.json").write_text('{"1": {"class_type": "LoadImage", "inputs": {}}}')
    url = f"http://127.0.0.1:{free_port()}"
    settings = Settings(_env_file=None, data_dir=tmp_path / "data", comfyui_url=url, image_provider="comfyui",
                        video_provider="fal", comfyui_workflows_dir=tmp_path / "wf")
    overview = provider_overview(settings)
    assert overview["steps"]["image"] == "comfyui"
    assert overview["steps"]["video"] == "unavailable: VIDEO_PROVIDER=fal needs FAL_KEY to be set"
    assert overview["comfyui"]["ok"] is False
    assert overview["comfyui"]["error"].startswith(f"ComfyUI at {url} did not answer (could not connect")
    refusal = overview["comfyui"]["workflows"]["image.json"]
    assert refusal.startswith("image.json: no node takes {{image}}, which image.json (edit the face guide")


def test_the_templates_page_shows_providers_and_comfyui(data_dir: Path, fake: FakeComfyUI,  # noqa: F811
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.settings import get_settings

    monkeypatch.setenv("COMFYUI_URL", fake.url)
    monkeypatch.setenv("VIDEO_PROVIDER", "comfyui")
    get_settings.cache_clear()
    page = texts(app("templates"))
    assert "| Video / lip-sync | comfyui |" in page and "| Scene image | local |" in page
    assert f"ComfyUI 0.3.66 at {fake.url} answers · cuda:0 NVIDIA GeForce RTX 4090 : cudaMallocAsync · 21.0 of " \
           "24.0 GiB VRAM free" in page
