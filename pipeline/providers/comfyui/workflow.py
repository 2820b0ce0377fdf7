"""Workflow files: ComfyUI graphs in API format whose string values that are exactly `{{name}}` get filled per run.

Pure: reading, checking (API format, every needed placeholder present, none it cannot fill) and filling.
Every problem names the file and, where there is one, the node.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PLACEHOLDER = re.compile(r"\{\{\s*([a-z_]+)\s*\}\}")
INTEGER_SLOTS = frozenset({"seed", "width", "height", "frames", "fps"})  # filled with JSON numbers, not strings
NUMBER_SLOTS = INTEGER_SLOTS | {"seconds"}
_PICTURE = frozenset({"prompt", "negative_prompt", "seed", "width", "height"})
_CLIP = _PICTURE | {"frames", "fps", "seconds"}


@dataclass(frozen=True)
class WorkflowSpec:
    file: str
    purpose: str
    needs: frozenset[str]  # placeholders the workflow must have
    fills: frozenset[str]  # every placeholder the step can fill


SPECS: dict[str, WorkflowSpec] = {spec.file.removesuffix(".json"): spec for spec in (
    WorkflowSpec("image.json", "edit the face guide into the template's scene", frozenset({"prompt", "image"}),
                 _PICTURE | {"image"}),
    WorkflowSpec("text_to_image.json", "the scene from the prompt (templates without a face)",
                 frozenset({"prompt"}), _PICTURE),
    WorkflowSpec("video.json", "image-to-video", frozenset({"image", "prompt"}), _CLIP | {"image"}),
    WorkflowSpec("lipsync.json", "image + the clip's audio to a singing video", frozenset({"image", "audio"}),
                 _CLIP | {"image", "audio"}),
    WorkflowSpec("upscale_image.json", "upscale the still", frozenset({"image"}),
                 frozenset({"image", "width", "height", "seed"})),
    WorkflowSpec("upscale_video.json", "upscale the model's clip", frozenset({"video"}),
                 frozenset({"video", "width", "height", "fps", "frames", "seconds", "seed"})),
    WorkflowSpec("transcribe.json", "timed lyrics from the song", frozenset({"audio"}),
                 frozenset({"audio", "seconds"})),
)}
# The workflows each pipeline step runs.
STEP_WORKFLOWS: dict[str, tuple[str, ...]] = {
    "image": ("image", "text_to_image"), "video": ("video", "lipsync"),
    "upscale": ("upscale_image", "upscale_video"), "transcribe": ("transcribe",),
}
# Where a missing placeholder usually goes, for the message (core ComfyUI node and input).
WHERE_IT_GOES = {"image": ("LoadImage", "image"), "audio": ("LoadAudio", "audio"), "video": ("LoadVideo", "file"),
                 "prompt": ("CLIPTextEncode", "text")}


class WorkflowError(ValueError):
    """A workflow file that cannot be used; the message names the file and the node."""


@dataclass(frozen=True)
class Workflow:
    name: str  # "video"
    path: Path
    graph: dict[str, dict[str, Any]]
    slots: dict[str, tuple[tuple[str, str], ...]]  # placeholder -> ((node id, input name), ...)

    @property
    def label(self) -> str:
        return f"comfyui:{self.path.name}"

    def fill(self, values: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """A copy of the graph with every placeholder replaced (numbers as numbers)."""
        graph = copy.deepcopy(self.graph)
        for name, places in self.slots.items():
            value = values[name]
            if name in INTEGER_SLOTS:
                value = int(round(value))
            elif name in NUMBER_SLOTS:
                value = round(float(value), 3)
            for node_id, input_name in places:
                graph[node_id]["inputs"][input_name] = value
        return graph


def _node_label(node_id: str, node: Any) -> str:
    kind = node.get("class_type") if isinstance(node, dict) else None
    return f"node {node_id} ({kind})" if kind else f"node {node_id}"


def check_api_format(data: Any, file: str) -> dict[str, dict[str, Any]]:
    """The graph, if `data` is ComfyUI's API format ({id: {class_type, inputs}}); WorkflowError otherwise."""
    export = 'open it in ComfyUI and save it with Workflow → "Export (API)"'
    if isinstance(data, dict) and isinstance(data.get("nodes"), list) and "links" in data:
        raise WorkflowError(f"{file} is in ComfyUI's UI format (the one \"Save\" writes, with nodes and links), "
                            f"not the API format: {export}")
    if isinstance(data, dict) and isinstance(data.get("prompt"), dict):
        data = data["prompt"]  # a whole /prompt request body: its graph is what counts
    if not isinstance(data, dict) or not data:
        raise WorkflowError(f"{file} is not a ComfyUI workflow in API format (expected an object of nodes): {export}")
    for node_id, node in data.items():
        if not isinstance(node, dict) or not isinstance(node.get("class_type"), str) \
                or not isinstance(node.get("inputs"), dict):
            raise WorkflowError(f"{file}: {_node_label(node_id, node)} has no class_type and inputs, so this is not "
                                f"the API format: {export}")
        for input_name, value in node["inputs"].items():
            if isinstance(value, list) and len(value) == 2 and isinstance(value[1], int) \
                    and isinstance(value[0], (str, int)) and str(value[0]) not in data:
                raise WorkflowError(f"{file}: {_node_label(node_id, node)} input {input_name} links to node "
                                    f"{value[0]}, which is not in the workflow")
    return data


Slots = dict[str, tuple[tuple[str, str], ...]]


def find_slots(graph: dict[str, dict[str, Any]], spec: WorkflowSpec, file: str) -> Slots:
    """Where each placeholder sits; WorkflowError for one the step cannot fill or one half-written."""
    slots: dict[str, list[tuple[str, str]]] = {}
    for node_id, node in graph.items():
        for input_name, value in node["inputs"].items():
            if not isinstance(value, str) or "{{" not in value:
                continue
            where = f"{file}: {_node_label(node_id, node)} input {input_name}"
            match = PLACEHOLDER.fullmatch(value.strip())
            if match is None:
                raise WorkflowError(f"{where}: {value!r} is not exactly one placeholder (a placeholder is the whole "
                                    "value, e.g. \"{{prompt}}\")")
            name = match.group(1)
            if name not in spec.fills:
                raise WorkflowError(f"{where}: {{{{{name}}}}} cannot be filled for {file} ({spec.purpose}); it can "
                                    f"fill {', '.join('{{' + n + '}}' for n in sorted(spec.fills))}")
            slots.setdefault(name, []).append((node_id, input_name))
    for name in sorted(spec.needs - slots.keys()):
        hint = WHERE_IT_GOES.get(name)
        nodes = [i for i, n in graph.items() if hint and n["class_type"] == hint[0]]
        place = (f" (put \"{{{{{name}}}}}\" in {_node_label(nodes[0], graph[nodes[0]])}'s {hint[1]} input)" if nodes
                 else f" (usually a {hint[0]} node's {hint[1]} input)" if hint else "")
        raise WorkflowError(f"{file}: no node takes {{{{{name}}}}}, which {file} ({spec.purpose}) needs{place}")
    return {name: tuple(places) for name, places in slots.items()}


def parse_workflow(text: str, name: str, path: Path) -> Workflow:
    spec = SPECS[name]
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise WorkflowError(f"{path.name} is not JSON ({exc.msg}, line {exc.lineno}): export the workflow from "
                            "ComfyUI with Workflow → \"Export (API)\"") from None
    graph = check_api_format(data, path.name)
    return Workflow(name=name, path=path, graph=graph, slots=find_slots(graph, spec, path.name))


def load_workflow(folder: Path, name: str) -> Workflow:
    path = folder / SPECS[name].file
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise WorkflowError(f"{path.name} is missing from {folder} (COMFYUI_WORKFLOWS_DIR): it should hold the "
                            f"workflow that does: {SPECS[name].purpose}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise WorkflowError(f"{path.name} could not be read ({type(exc).__name__})") from None
    return parse_workflow(text, name, path)


def workflow_problems(folder: Path, steps: list[str]) -> dict[str, str | None]:
    """Every workflow the given steps run: None when usable, else what is wrong with it."""
    problems: dict[str, str | None] = {}
    for step in steps:
        for name in STEP_WORKFLOWS[step]:
            try:
                load_workflow(folder, name)
                problems[SPECS[name].file] = None
            except WorkflowError as exc:
                problems[SPECS[name].file] = str(exc)
    return problems
