"""Workflow files: the shipped examples, what is refused (and how it is said), filling, and refusal at start."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.errors import ProviderError
from pipeline.providers.comfyui.workflow import (
    INTEGER_SLOTS,
    SPECS,
    WorkflowError,
    load_workflow,
    parse_workflow,
    workflow_problems,
)
from pipeline.settings import ASSETS_DIR, PROJECT_ROOT, Settings

EXAMPLES = ASSETS_DIR / "comfyui"


def readme_sections() -> dict[str, str]:
    text = (EXAMPLES / "README.md").read_text(encoding="utf-8")
    parts = re.split(r"^## (\S+\.json)\s*$", text, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


@pytest.mark.parametrize("name", sorted(SPECS))
def test_each_example_is_an_api_graph_with_its_placeholders_and_its_nodes_named(name: str) -> None:
    workflow = load_workflow(EXAMPLES, name)  # raises on anything wrong
    spec = SPECS[name]
    assert spec.needs <= workflow.slots.keys() <= spec.fills
    raw = json.loads((EXAMPLES / spec.file).read_text())
    assert all(set(node) >= {"class_type", "inputs"} for node in raw.values())
    section = readme_sections()[spec.file]
    for node in workflow.graph.values():
        assert f"`{node['class_type']}`" in section, f"{spec.file}: {node['class_type']} not in its README section"


def test_the_readme_says_plainly_they_were_not_run_here() -> None:
    assert "These workflows have not been run here." in (EXAMPLES / "README.md").read_text()


def test_filling_puts_numbers_where_numbers_are_due() -> None:
    workflow = load_workflow(EXAMPLES, "video")
    graph = workflow.fill({"prompt": "slow push in", "negative_prompt": "", "image": "studio-1.jpg", "seed": 7.0,
                           "width": 480.4, "height": 848, "fps": 16, "frames": 81, "seconds": 5})
    assert graph["9"]["inputs"]["length"] == 81 and graph["9"]["inputs"]["width"] == 480
    assert graph["11"]["inputs"]["seed"] == 7 and isinstance(graph["11"]["inputs"]["seed"], int)
    assert graph["5"]["inputs"]["image"] == "studio-1.jpg"
    assert "{{" not in json.dumps(graph)
    assert "{{" in json.dumps(workflow.graph)  # the loaded workflow itself is left as it was
    assert {"seed", "width", "height", "frames", "fps"} == INTEGER_SLOTS


def refused(text: str, name: str = "video") -> str:
    with pytest.raises(WorkflowError) as info:
        parse_workflow(text, name, Path(f"/w/{SPECS[name].file}"))
    return str(info.value)


def test_not_json_says_to_export_the_api_format() -> None:
    message = refused("{not json")
    assert message.startswith("video.json is not JSON (") and '"Export (API)"' in message


def test_the_ui_save_format_is_refused_with_the_way_out() -> None:
    ui = {"last_node_id": 3, "nodes": [{"id": 1, "type": "LoadImage", "widgets_values": ["x.png"]}], "links": [],
          "version": 0.4}
    message = refused(json.dumps(ui))
    assert "UI format" in message and 'Workflow → "Export (API)"' in message


def test_a_missing_placeholder_names_the_file_and_the_node_to_put_it_in() -> None:
    graph = json.loads((EXAMPLES / "video.json").read_text())
    graph["5"]["inputs"]["image"] = "fixed.png"
    message = refused(json.dumps(graph))
    assert message == ('video.json: no node takes {{image}}, which video.json (image-to-video) needs (put '
                       "\"{{image}}\" in node 5 (LoadImage)'s image input)")


def test_a_placeholder_the_step_cannot_fill_names_file_node_and_input() -> None:
    graph = json.loads((EXAMPLES / "video.json").read_text())
    graph["20"] = {"class_type": "LoadAudio", "inputs": {"audio": "{{audio}}"}}
    message = refused(json.dumps(graph))
    assert message.startswith("video.json: node 20 (LoadAudio) input audio: {{audio}} cannot be filled for "
                              "video.json (image-to-video)")
    graph["20"]["inputs"]["audio"] = "song-{{seed}}.mp3"
    assert "is not exactly one placeholder" in refused(json.dumps(graph))
    graph["20"]["inputs"]["audio"] = "{{colour}}"
    assert "{{colour}} cannot be filled" in refused(json.dumps(graph))


def test_a_link_to_a_node_that_is_not_there_is_refused() -> None:
    graph = json.loads((EXAMPLES / "upscale_image.json").read_text())
    graph["3"]["inputs"]["image"] = ["99", 0]
    message = refused(json.dumps(graph), "upscale_image")
    assert message == ("upscale_image.json: node 3 (ImageUpscaleWithModel) input image links to node 99, "
                       "which is not in the workflow")


def test_problems_per_file_and_a_provider_refuses_to_start_with_one(tmp_path: Path) -> None:
    shutil.copytree(EXAMPLES, tmp_path / "wf")
    (tmp_path / "wf" / "lipsync.json").unlink()
    (tmp_path / "wf" / "video.json").write_text('{"nodes": [], "links": []}')
    problems = workflow_problems(tmp_path / "wf", ["video", "image"])
    assert problems["image.json"] is None and problems["text_to_image.json"] is None
    assert "UI format" in problems["video.json"]
    assert problems["lipsync.json"].startswith(f"lipsync.json is missing from {tmp_path / 'wf'}")

    from pipeline.providers.comfyui.video import ComfyUIVideoMaker

    settings = Settings(_env_file=None, data_dir=tmp_path / "data", comfyui_url="http://127.0.0.1:9",
                        comfyui_workflows_dir=tmp_path / "wf")
    with pytest.raises(ProviderError, match=r"^ComfyUI workflow refused: video.json is in ComfyUI's UI format"):
        ComfyUIVideoMaker(settings)


def test_the_worker_refuses_to_start_with_a_bad_workflow_or_no_url(tmp_path: Path) -> None:
    shutil.copytree(EXAMPLES, tmp_path / "wf")
    (tmp_path / "wf" / "upscale_video.json").write_text("[1, 2")
    env = {"PATH": "/usr/bin:/bin", "DATA_DIR": str(tmp_path / "data"), "UPSCALE_PROVIDER": "comfyui",
           "COMFYUI_URL": "http://127.0.0.1:9", "COMFYUI_WORKFLOWS_DIR": str(tmp_path / "wf")}
    done = subprocess.run([sys.executable, "-m", "taskqueue", "worker"], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "error: upscale_video.json is not JSON" in done.stderr and "Traceback" not in done.stderr

    env.pop("COMFYUI_URL")
    done = subprocess.run([sys.executable, "-m", "taskqueue", "worker"], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "error: UPSCALE_PROVIDER=comfyui needs COMFYUI_URL to be set" in done.stderr


def test_the_estimate_knows_comfyui_steps(tmp_path: Path) -> None:
    from pipeline.estimate import estimate_seconds

    settings = Settings(_env_file=None, data_dir=tmp_path / "data", comfyui_url="http://127.0.0.1:9",
                        image_provider="comfyui", video_provider="comfyui", upscale_provider="comfyui",
                        transcribe_provider="comfyui")
    estimate = estimate_seconds(settings, lipsync=True, upscale=True)
    assert estimate.providers == {"transcribe": "comfyui", "caption": "local", "image": "comfyui",
                                  "video": "comfyui", "upscale": "comfyui"}
    assert set(estimate.steps) == {"prepare", "transcribe", "image", "video", "upscale", "render"}
