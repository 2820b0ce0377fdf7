"""Every AI step on ComfyUI, through the real client against a loopback ComfyUI (HTTP + WebSocket, real media).

The runs use the example workflows shipped in assets/comfyui, so the fake also checks that they are graphs
ComfyUI takes once filled (placeholders all substituted, numbers as numbers, loaders naming uploaded files).
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.errors import Cancelled, ProviderError
from pipeline.ffmpeg import probe
from pipeline.run_video import run_video
from pipeline.settings import Settings
from taskqueue.store import CANCELED, COMPLETED, FAILED, NewRun, RunStore
from taskqueue.tasks import execute_run
from tests.fake_comfyui import FakeComfyUI
from tests.servers import free_port
from tests.test_providers_run import CLIP_SECONDS, plan, workspace

ALL_COMFYUI = dict(transcribe_provider="comfyui", image_provider="comfyui", video_provider="comfyui",
                   upscale_provider="comfyui")


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeComfyUI]:
    with FakeComfyUI(tmp_path / "comfyui") as server:
        yield server


@pytest.fixture
def store(tmp_path: Path) -> Iterator[RunStore]:
    s = RunStore(f"sqlite:///{tmp_path / 'runs.sqlite3'}")
    yield s
    s.close()


def comfy_settings(tmp_path: Path, url: str, **over: object) -> Settings:
    """Small runs; FETCH_ALLOW_HOSTS stays empty: COMFYUI_URL's own host is what lets /view reach loopback."""
    values: dict = dict(data_dir=tmp_path / "data", comfyui_url=url, clip_seconds=CLIP_SECONDS, output_width=360,
                        output_height=640, remote_video_seconds=4, remote_video_resolution="240p",
                        provider_retries=0, provider_poll_seconds=0.05, provider_timeout_seconds=30.0,
                        heartbeat_seconds=0.2, progress_interval_seconds=0.1, **ALL_COMFYUI)
    values.update(over)
    return Settings(_env_file=None, **values)


def queued(store: RunStore, aid: str, slug: str = "ana", **request: object) -> str:
    body = {"artist_account_id": aid, "template": "artist-caption-stage", "caption_length": "short",
            "lipsync": False, "upscale": False, "batch": 1, "songs": None, "images": None, **request}
    run = store.create_batch("o", [NewRun(artist_account_id=aid, artist_slug=slug, template=body["template"],
                                          request=body, seed=3)])[0]  # type: ignore[arg-type]
    return run.id


def submitted(fake: FakeComfyUI, prefix: str) -> list[dict]:
    """The graphs submitted whose output node saves under `prefix` (which workflow it was)."""
    return [body["prompt"] for body in fake.hits("POST", "/prompt")
            if any(n["inputs"].get("filename_prefix") == prefix or (prefix == "transcribe"
                   and n["class_type"] == "PreviewAny") for n in body["prompt"].values())]


def test_a_whole_run_with_every_ai_step_on_comfyui_completes(tmp_path: Path, fake: FakeComfyUI,
                                                             store: RunStore) -> None:
    settings = comfy_settings(tmp_path, fake.url)
    aid = workspace(settings)
    run_id = queued(store, aid, lipsync=True, upscale=True)
    assert execute_run(run_id, settings, store, enqueue=lambda *a, **k: None) == COMPLETED

    run = store.get(run_id)
    assert run is not None and run.status == COMPLETED
    info = probe(settings.runs_dir / run_id / "video.mp4")
    assert (info.width, info.height, info.video_codec, info.audio_codec) == (720, 1280, "h264", "aac")
    assert info.duration == pytest.approx(CLIP_SECONDS, abs=0.15)
    providers = run.output["providers"]
    assert {k: providers[k] for k in ("lyrics", "image", "video", "upscale")} == {
        "lyrics": "comfyui:transcribe.json", "image": "comfyui:image.json", "video": "comfyui:lipsync.json",
        "upscale": "comfyui:upscale_video.json"}
    # the fake's words ("la0", "la1", ...) became the run's timed lyrics
    assert run.output["audio"]["clipLyrics"].startswith("la")
    # each workflow ran once, filled: the face guide and the clip's audio were uploaded and named in the graph
    lipsync = submitted(fake, "studio/lipsync")
    assert len(lipsync) == 1 and len(submitted(fake, "studio/image")) == 1
    assert len(submitted(fake, "studio/clip-upscaled")) == 1 and len(submitted(fake, "transcribe")) == 1
    heard = fake.input_dir / lipsync[0]["6"]["inputs"]["audio"]
    assert probe(heard).duration == pytest.approx(CLIP_SECONDS, abs=0.1)
    face = settings.artists_dir / "ana" / "context" / "images" / "face-guide.png"
    edit = submitted(fake, "studio/image")[0]
    assert (fake.input_dir / edit["4"]["inputs"]["image"]).read_bytes() == face.read_bytes()
    assert isinstance(lipsync[0]["10"]["inputs"]["length"], int) and isinstance(edit["10"]["inputs"]["seed"], int)
    assert "Keep the person's face" in edit["6"]["inputs"]["prompt"]


def test_text_to_image_and_image_to_video_with_progress_moving(tmp_path: Path, fake: FakeComfyUI) -> None:
    fake.sampler_steps, fake.step_seconds = 8, 0.05
    settings = comfy_settings(tmp_path, fake.url, transcribe_provider="local", upscale_provider="local")
    aid = workspace(settings)
    seen: list[tuple[str, float]] = []
    no_face = dataclasses.replace(plan(settings, aid, caption_length="none", seed=2), template_id="album-record-store")
    result = run_video(no_face, settings, progress=lambda step, pct: seen.append((step, pct)))

    assert result.output["providers"]["image"] == "comfyui:text_to_image.json"
    assert result.output["providers"]["video"] == "comfyui:video.json"
    assert probe(result.video_path).duration == pytest.approx(CLIP_SECONDS, abs=0.15)
    t2i = submitted(fake, "studio/scene")[0]
    assert t2i["4"]["inputs"]["width"] * t2i["4"]["inputs"]["height"] <= 1024 * 1024  # asked at model size
    video_pcts = [pct for step, pct in seen if step == "video"]
    # ComfyUI's progress of the sampler moved the video step's share of the bar, forwards only
    assert len(set(video_pcts)) >= 5, video_pcts
    assert video_pcts == sorted(video_pcts)
    assert min(video_pcts) < max(video_pcts)


def test_upscaling_the_still_when_the_video_is_local(tmp_path: Path, fake: FakeComfyUI) -> None:
    settings = comfy_settings(tmp_path, fake.url, transcribe_provider="local", image_provider="local",
                              video_provider="local")
    aid = workspace(settings)
    result = run_video(plan(settings, aid, caption_length="none", upscale=True, seed=4), settings)
    assert result.output["providers"]["upscale"] == "comfyui:upscale_image.json"
    graph = submitted(fake, "studio/upscaled")[0]
    # the still went up at 1/2 and came back at its own size
    assert (graph["4"]["inputs"]["width"], graph["4"]["inputs"]["height"]) == (1080, 1920)
    assert probe(result.video_path).width == 720


def only_video(tmp_path: Path, url: str, **over: object) -> Settings:
    return comfy_settings(tmp_path, url, transcribe_provider="local", image_provider="local",
                          upscale_provider="local", **over)


def test_cancel_mid_step_interrupts_the_prompt(tmp_path: Path, fake: FakeComfyUI, store: RunStore) -> None:
    fake.fail = "hang"
    settings = only_video(tmp_path, fake.url)
    aid = workspace(settings)
    run_id = queued(store, aid, caption_length="none")

    def cancel_once_running() -> None:
        deadline = time.monotonic() + 60
        while not fake.progress_sent and time.monotonic() < deadline:
            time.sleep(0.05)
        store.request_cancel(run_id, None)

    canceller = threading.Thread(target=cancel_once_running)
    canceller.start()
    assert execute_run(run_id, settings, store, enqueue=lambda *a, **k: None) == CANCELED
    canceller.join()
    prompt_id = fake.progress_sent[0][0]
    assert {"prompt_id": prompt_id} in fake.interrupts  # this prompt only, not whatever the server runs
    assert prompt_id in fake.deletes
    deadline = time.monotonic() + 5
    while prompt_id not in fake.history and time.monotonic() < deadline:
        time.sleep(0.05)
    assert fake.history[prompt_id]["status"]["messages"][-1][0] == "execution_interrupted"
    run = store.get(run_id)
    assert run is not None and run.error["stage"] == "video"


def test_a_hang_times_out_and_stops_the_prompt(tmp_path: Path, fake: FakeComfyUI) -> None:
    fake.fail = "hang"
    settings = only_video(tmp_path, fake.url, provider_timeout_seconds=1.5)
    aid = workspace(settings)
    with pytest.raises(ProviderError, match=r"did not finish within 1.5 s .* and was stopped") as info:
        run_video(plan(settings, aid, caption_length="none", seed=5), settings)
    assert info.value.stage == "video" and info.value.transient
    assert [i["prompt_id"] for i in fake.interrupts] == [fake.progress_sent[0][0]]


def test_node_errors_name_the_node_and_the_input(tmp_path: Path, fake: FakeComfyUI) -> None:
    fake.models = {"some_other_model.safetensors"}  # the user's server lacks the workflow's model file
    settings = comfy_settings(tmp_path, fake.url, transcribe_provider="local", video_provider="local",
                              upscale_provider="local")
    aid = workspace(settings)
    with pytest.raises(ProviderError) as info:
        run_video(plan(settings, aid, caption_length="none", seed=6), settings)
    message = info.value.message
    assert info.value.stage == "image"
    assert message.startswith(f"ComfyUI at {fake.url} refused the workflow: ")
    assert "node 1 (UNETLoader) input unet_name: Value not in list" in message
    assert "'qwen_image_edit_fp8_e4m3fn.safetensors' not in ['some_other_model.safetensors']" in message
    assert "node 3 (VAELoader) input vae_name" in message


def test_an_execution_error_fails_the_run_naming_the_node_and_the_exception(tmp_path: Path, fake: FakeComfyUI,
                                                                           store: RunStore) -> None:
    fake.fail = "execution_error"
    settings = only_video(tmp_path, fake.url)
    aid = workspace(settings)
    run_id = queued(store, aid, caption_length="none")
    assert execute_run(run_id, settings, store, enqueue=lambda *a, **k: None) == FAILED
    run = store.get(run_id)
    assert run is not None and run.error == {
        "stage": "video", "message": f"ComfyUI at {fake.url}: node 11 (KSampler) failed: torch.OutOfMemoryError: "
                                     "Allocation on device 0 would exceed allowed memory. (out of memory)"}
    assert not (settings.runs_dir / run_id / "video.mp4").exists()


def test_a_dropped_socket_falls_back_to_polling_history(tmp_path: Path, fake: FakeComfyUI) -> None:
    fake.fail = "drop_socket"
    fake.step_seconds = 0.05
    settings = only_video(tmp_path, fake.url)
    aid = workspace(settings)
    result = run_video(plan(settings, aid, caption_length="none", seed=8), settings)
    assert result.output["providers"]["video"] == "comfyui:video.json"
    assert probe(result.video_path).duration == pytest.approx(CLIP_SECONDS, abs=0.15)
    assert fake.history_polls >= 2  # asked until the history had the outputs


def test_headers_reach_a_server_behind_a_proxy(tmp_path: Path, fake: FakeComfyUI) -> None:
    fake.token = "s3cret"
    settings = only_video(tmp_path, fake.url, comfyui_headers={"Authorization": "Bearer s3cret"})
    aid = workspace(settings)
    result = run_video(plan(settings, aid, caption_length="none", seed=9), settings)
    assert result.output["providers"]["video"] == "comfyui:video.json"  # HTTP, WebSocket and /view all let in

    wrong = only_video(tmp_path, fake.url, comfyui_headers={"Authorization": "Bearer nope"})
    with pytest.raises(ProviderError, match=r"refused \(401.*COMFYUI_HEADERS"):
        run_video(plan(wrong, aid, run_id="run_wrong", caption_length="none", seed=9), wrong)


def test_an_unreachable_server_fails_the_step_or_falls_back(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    settings = comfy_settings(tmp_path, url, transcribe_provider="local", video_provider="local",
                              upscale_provider="local", provider_backoff_seconds=0.01)
    aid = workspace(settings)
    with pytest.raises(ProviderError, match=rf"^ComfyUI at {url} did not answer \(could not connect") as info:
        run_video(plan(settings, aid, caption_length="none", seed=10), settings)
    assert info.value.stage == "image" and info.value.transient

    fallback = settings.model_copy(update={"fallback_to_local": True})
    result = run_video(plan(fallback, aid, run_id="run_fallback", caption_length="none", seed=10), fallback)
    assert result.output["providers"]["image"].startswith(
        f"local (fallback after comfyui:image.json: ComfyUI at {url} did not answer")
    assert json.loads(result.meta_path.read_text())["providers"]["image"] == result.output["providers"]["image"]


def test_cancel_while_waiting_on_history_stops_the_prompt(tmp_path: Path, fake: FakeComfyUI) -> None:
    fake.fail, fake.step_seconds = "drop_socket", 0.3  # no socket: the wait is on /history
    settings = only_video(tmp_path, fake.url)
    aid = workspace(settings)
    with pytest.raises(Cancelled):
        run_video(plan(settings, aid, caption_length="none", seed=11), settings,
                  should_cancel=lambda: fake.history_polls >= 2)
    prompt_id = fake.hits("POST", "/queue")[0]["delete"][0]
    assert {"prompt_id": prompt_id} in fake.interrupts


def test_the_fake_refuses_what_comfyui_would_and_what_we_must_never_send(tmp_path: Path, fake: FakeComfyUI) -> None:
    from pipeline.providers.comfyui.client import ComfyUIClient
    from pipeline.providers.comfyui.workflow import load_workflow
    from pipeline.settings import ASSETS_DIR

    client = ComfyUIClient(comfy_settings(tmp_path, fake.url))
    workflow = load_workflow(ASSETS_DIR / "comfyui", "upscale_image")
    with pytest.raises(ProviderError) as info:  # sent unfilled
        client.submit(workflow.graph, "c1")
    assert "node 1 (LoadImage) input image: Unfilled placeholder" in info.value.message
    assert "node 4 (ImageScale) input width: Unfilled placeholder" in info.value.message
    filled = workflow.fill({"image": "never-uploaded.png", "width": 64, "height": 64, "seed": 1})
    filled["4"]["inputs"]["width"] = "64"  # a string where ComfyUI wants an INT
    with pytest.raises(ProviderError) as info:
        client.submit(filled, "c1")
    assert "node 1 (LoadImage) input image: Value not in list (image: 'never-uploaded.png' not in" in info.value.message
    assert "node 4 (ImageScale) input width: Failed to convert an input value to a INT value" in info.value.message
    assert not fake.prompts  # nothing refused was queued


def test_a_result_over_the_fetch_limit_is_refused(tmp_path: Path, fake: FakeComfyUI) -> None:
    settings = only_video(tmp_path, fake.url, fetch_max_bytes=2000)
    aid = workspace(settings)
    with pytest.raises(ProviderError, match=r"ComfyUI_\d+_\.mp4 could not be downloaded: .* is larger than"):
        run_video(plan(settings, aid, caption_length="none", seed=12), settings)


def test_cancel_while_queued_behind_someone_elses_prompt_never_interrupts_theirs(tmp_path: Path,
                                                                                  fake: FakeComfyUI) -> None:
    import httpx

    fake.fail = "hang"  # another client's prompt holds the (shared) GPU
    theirs = httpx.post(f"{fake.url}/prompt", json={"prompt": {"1": {"class_type": "PreviewAny", "inputs": {
        "source": "hello"}}}, "client_id": "someone-else"}, timeout=10).json()["prompt_id"]
    settings = only_video(tmp_path, fake.url)
    aid = workspace(settings)
    with pytest.raises(Cancelled):
        run_video(plan(settings, aid, caption_length="none", seed=13), settings,
                  should_cancel=lambda: len(fake.prompts) >= 2)
    ours = next(p for p in fake.prompts if p != theirs)
    assert ours in fake.deletes  # taken out of the queue before it ran
    assert fake.interrupts == []  # this fake, like ComfyUI before 0.3.5x, would have stopped theirs
    assert fake.running is not None and fake.running.prompt_id == theirs and not fake.running.interrupted
