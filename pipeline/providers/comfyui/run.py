"""One workflow run on ComfyUI: socket open, inputs uploaded, graph filled and submitted, followed, output fetched."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from pipeline.errors import ProviderError
from pipeline.providers.comfyui.client import ComfyUIClient, Job, output_files, output_texts
from pipeline.providers.comfyui.workflow import Workflow, WorkflowError, load_workflow
from pipeline.providers.step_hooks import current_step
from pipeline.providers.waits import remote_wait
from pipeline.settings import Settings

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
VIDEO_SUFFIXES = (".mp4", ".webm", ".mov", ".mkv", ".gif")


def load_step_workflows(settings: Settings, names: tuple[str, ...]) -> dict[str, Workflow]:
    """The workflows a provider runs, read once when it is made; a bad one is refused with file and node named."""
    folder = Path(settings.comfyui_workflows_dir)
    try:
        return {name: load_workflow(folder, name) for name in names}
    except WorkflowError as exc:
        raise ProviderError(f"ComfyUI workflow refused: {exc}") from None


def execute(client: ComfyUIClient, workflow: Workflow, values: dict[str, Any], uploads: dict[str, Path]) -> dict:
    """Run `workflow` with `values` (and `uploads`: placeholder -> local file) to its history entry."""
    hooks = current_step()
    client_id = uuid.uuid4().hex
    # the run holds no CPU slot while ComfyUI works (a render of another run may use it)
    with remote_wait("comfyui", client.settings.comfyui_max_in_flight):
        socket = client.open_socket(client_id)  # before submitting, so no message of this prompt is missed
        try:
            names = {slot: client.upload(path) for slot, path in uploads.items() if slot in workflow.slots}
            prompt_id = client.submit(workflow.fill({**values, **names}), client_id)
            return client.wait(Job(prompt_id), socket, hooks)
        finally:
            if socket is not None:
                socket.close()


def fetch_output(client: ComfyUIClient, workflow: Workflow, entry: dict, suffixes: tuple[str, ...],
                 out_path: Path) -> Path:
    files = output_files(entry, suffixes)
    if not files:
        raise ProviderError(f"{client.label}: {workflow.path.name} produced no {'/'.join(suffixes)} output "
                            "(does it end in a Save node?)")
    return client.download(files[0], out_path)


def fetch_text(client: ComfyUIClient, workflow: Workflow, entry: dict) -> str:
    texts = output_texts(entry)
    if not texts:
        raise ProviderError(f"{client.label}: {workflow.path.name} produced no text output (end it in a "
                            "PreviewAny node that shows the words)")
    return texts[0]
