"""A loopback ComfyUI for tests: ComfyUI's HTTP routes and a real WebSocket, with real media made by ffmpeg.

It checks what it gets the way ComfyUI does, and more strictly where a test needs it (every placeholder
substituted, numbers where numbers are due, loaders naming uploaded files), answering a bad graph with
ComfyUI's 400 `{error, node_errors}`. It runs a graph by walking up from its output nodes to the loaders
and numbers that feed them, then makes the image, video or text such a graph would. `fail` makes it fail
the ways a real server does: `execution_error`, `hang` (until interrupted) and `drop_socket`.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import socket
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from PIL import Image, ImageDraw, ImageOps
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from pipeline.ffmpeg import ffmpeg_exe, probe

LOADERS = {"LoadImage": ("image", "image"), "LoadAudio": ("audio", "audio"), "LoadVideo": ("file", "video"),
           "VHS_LoadVideo": ("video", "video")}
IMAGE_OUTPUTS = {"SaveImage", "PreviewImage"}
VIDEO_OUTPUTS = {"SaveVideo", "VHS_VideoCombine"}
TEXT_OUTPUTS = {"PreviewAny"}
NUMERIC_INPUTS = {"seed", "noise_seed", "width", "height", "length", "frames", "num_frames", "fps", "frame_rate",
                  "batch_size", "steps", "cfg", "denoise", "shift", "megapixels", "guidance", "strength"}
MODEL_SUFFIXES = (".safetensors", ".pth", ".pt", ".ckpt", ".gguf", ".bin")
VERSION = "0.3.66"


def busy(class_type: str) -> bool:
    """Nodes that take a while and report `progress` (samplers, model upscalers)."""
    return "Sampler" in class_type or "UpscaleWithModel" in class_type


def is_link(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[1], int)


def upstream(graph: dict, node_id: str) -> list[str]:
    """The node and every node feeding it, nearest first."""
    seen: list[str] = []
    todo = [node_id]
    while todo:
        current = todo.pop(0)
        if current in seen or current not in graph:
            continue
        seen.append(current)
        todo.extend(str(v[0]) for v in graph[current]["inputs"].values() if is_link(v))
    return seen


def order(graph: dict) -> list[str]:
    """Nodes in an order where every node comes after the ones it reads."""
    done: list[str] = []
    for node_id in graph:
        for dep in reversed(upstream(graph, node_id)):
            if dep not in done:
                done.append(dep)
    return done


def node_error(kind: str, message: str, details: str, input_name: str | None = None) -> dict:
    extra = {"input_name": input_name, "received_value": None} if input_name else {}
    return {"type": kind, "message": message, "details": details, "extra_info": extra}


@dataclass
class Prompt:
    prompt_id: str
    number: int
    graph: dict
    client_id: str
    interrupted: bool = False


@dataclass
class FakeComfyUI:
    workdir: Path
    token: str | None = None  # when set, every request needs `Authorization: Bearer <token>` (a proxy's)
    fail: str | None = None  # None | "execution_error" | "hang" | "drop_socket": how every prompt goes
    models: set[str] | None = None  # the model files "installed"; None: any name is
    step_seconds: float = 0.02  # per sampler step
    sampler_steps: int = 6
    received: list[tuple[str, str, Any]] = field(default_factory=list)  # (method, path, JSON body or fields)
    prompts: dict[str, Prompt] = field(default_factory=dict)
    history: dict[str, dict] = field(default_factory=dict)
    interrupts: list[dict] = field(default_factory=list)
    deletes: list[str] = field(default_factory=list)
    progress_sent: list[tuple[str, int, int]] = field(default_factory=list)
    history_polls: int = 0

    def __post_init__(self) -> None:
        self.input_dir = self.workdir / "input"
        self.output_dir = self.workdir / "output"
        self.input_dir.mkdir(parents=True, exist_ok=True)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.sockets: dict[str, WebSocket] = {}
        self.running: Prompt | None = None
        self.counter = 0
        self.number = 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        app = Starlette(routes=[
            Route("/upload/image", self._upload, methods=["POST"]),
            Route("/prompt", self._prompt, methods=["POST"]),
            Route("/history/{prompt_id}", self._history, methods=["GET"]),
            Route("/view", self._view, methods=["GET"]),
            Route("/interrupt", self._interrupt, methods=["POST"]),
            Route("/queue", self._queue, methods=["POST"]),
            Route("/queue", self._queue_state, methods=["GET"]),
            Route("/system_stats", self._system_stats, methods=["GET"]),
            WebSocketRoute("/ws", self._ws),
        ], lifespan=self._lifespan)
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", ws="websockets-sansio",
                                                    lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def hits(self, method: str, path: str) -> list[Any]:
        return [body for m, p, body in self.received if m == method and p == path]

    def __enter__(self) -> FakeComfyUI:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the fake ComfyUI did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Starlette):  # noqa: ANN202 - Starlette's lifespan shape
        self.queue: asyncio.Queue[Prompt] = asyncio.Queue()
        worker = asyncio.create_task(self._worker())
        yield
        worker.cancel()

    # ---- HTTP ----------------------------------------------------------------------------------------------

    def _refused(self, request: Request | WebSocket) -> bool:
        return self.token is not None and request.headers.get("authorization") != f"Bearer {self.token}"

    async def _upload(self, request: Request) -> Response:
        if self._refused(request):
            return Response(status_code=401)
        form = await request.form()
        upload = form.get("image")
        self.received.append(("POST", "/upload/image", {k: v for k, v in form.items() if isinstance(v, str)}))
        kind = str(form.get("type") or "input")
        if upload is None or isinstance(upload, str) or kind not in ("input", "temp", "output") \
                or not upload.filename or "/" in upload.filename or ".." in upload.filename:
            return Response(status_code=400)
        subfolder = str(form.get("subfolder") or "")
        folder = self.input_dir / subfolder
        folder.mkdir(parents=True, exist_ok=True)
        name = upload.filename
        if (folder / name).exists() and str(form.get("overwrite")).lower() not in ("true", "1"):
            name = f"{Path(name).stem} (1){Path(name).suffix}"
        (folder / name).write_bytes(await upload.read())
        return JSONResponse({"name": name, "subfolder": subfolder, "type": kind})

    async def _prompt(self, request: Request) -> Response:
        if self._refused(request):
            return Response(status_code=401)
        try:
            body = await request.json()
        except ValueError:
            body = None
        self.received.append(("POST", "/prompt", body))
        if not isinstance(body, dict) or not isinstance(body.get("prompt"), dict):
            return JSONResponse({"error": node_error("no_prompt", "No prompt provided", "No prompt provided"),
                                 "node_errors": {}}, status_code=400)
        graph = body["prompt"]
        refusal = self.validate(graph)
        if refusal is not None:
            return JSONResponse(refusal, status_code=400)
        if not isinstance(body.get("client_id"), str):  # ComfyUI allows none; without one no socket hears it
            return JSONResponse({"error": node_error("invalid_prompt", "no client_id", "send this run's client_id"),
                                 "node_errors": {}}, status_code=400)
        prompt = Prompt(str(uuid.uuid4()), self.number, graph, body["client_id"])
        self.number += 1
        self.prompts[prompt.prompt_id] = prompt
        await self.queue.put(prompt)
        return JSONResponse({"prompt_id": prompt.prompt_id, "number": prompt.number, "node_errors": {}})

    def validate(self, graph: dict) -> dict | None:
        """ComfyUI's 400 body for a graph it would refuse, or None."""
        node_errors: dict[str, dict] = {}
        outputs = []
        for node_id, node in graph.items():
            if not isinstance(node, dict) or not isinstance(node.get("class_type"), str) \
                    or not isinstance(node.get("inputs"), dict):
                return {"error": node_error("invalid_prompt", "Cannot execute because a node is missing the "
                                            "class_type property.", f"Node ID '#{node_id}'"), "node_errors": {}}
            errors = [e for name, value in node["inputs"].items() if (e := self._input_error(graph, node, name, value))]
            if errors:
                node_errors[node_id] = {"errors": errors, "dependent_outputs": [], "class_type": node["class_type"]}
            if node["class_type"] in IMAGE_OUTPUTS | VIDEO_OUTPUTS | TEXT_OUTPUTS:
                outputs.append(node_id)
        if not outputs:
            return {"error": node_error("prompt_no_outputs", "Prompt has no outputs", ""), "node_errors": {}}
        if node_errors:
            for node_id in outputs:
                for bad in node_errors:
                    if bad in upstream(graph, node_id):
                        node_errors[bad]["dependent_outputs"].append(node_id)
            details = "\n".join(f"{e['message']}: {e['details']}" for n in node_errors.values() for e in n["errors"])
            error = node_error("prompt_outputs_failed_validation", "Prompt outputs failed validation", details)
            return {"error": error, "node_errors": node_errors}
        return None

    def _input_error(self, graph: dict, node: dict, name: str, value: Any) -> dict | None:
        if is_link(value):
            if str(value[0]) not in graph:
                return node_error("bad_linked_input", "Bad linked input", f"{name}: node {value[0]} does not exist",
                                  name)
            return None
        if isinstance(value, str) and "{{" in value:
            return node_error("custom_validation_failed", "Unfilled placeholder", f"{name}: {value}", name)
        if name in NUMERIC_INPUTS and (isinstance(value, bool) or not isinstance(value, (int, float))):
            kind = "FLOAT" if name in ("cfg", "denoise", "shift", "megapixels", "guidance", "strength") else "INT"
            return node_error("invalid_input_type", f"Failed to convert an input value to a {kind} value",
                              f"{name}, {value}", name)
        loader = LOADERS.get(node["class_type"])
        if loader and name == loader[0] and not (isinstance(value, str) and (self.input_dir / value).is_file()):
            present = sorted(p.name for p in self.input_dir.iterdir())[:5]
            return node_error("value_not_in_list", "Value not in list", f"{name}: '{value}' not in {present}", name)
        if isinstance(value, str) and value.endswith(MODEL_SUFFIXES) and self.models is not None \
                and value not in self.models:
            return node_error("value_not_in_list", "Value not in list",
                              f"{name}: '{value}' not in {sorted(self.models)}", name)
        return None

    async def _history(self, request: Request) -> Response:
        if self._refused(request):
            return Response(status_code=401)
        prompt_id = request.path_params["prompt_id"]
        self.history_polls += 1
        entry = self.history.get(prompt_id)
        return JSONResponse({prompt_id: entry} if entry else {})

    async def _view(self, request: Request) -> Response:
        if self._refused(request):
            return Response(status_code=401)
        name, sub = request.query_params.get("filename", ""), request.query_params.get("subfolder", "")
        kind = request.query_params.get("type", "output")
        if not name or "/" in name or ".." in name or ".." in sub or sub.startswith("/") or kind not in (
                "output", "input", "temp"):
            return Response(status_code=400)
        path = (self.output_dir if kind == "output" else self.input_dir) / sub / name
        return FileResponse(path) if path.is_file() else Response(status_code=404)

    async def _interrupt(self, request: Request) -> Response:
        if self._refused(request):
            return Response(status_code=401)
        body = await _json_or_empty(request)
        self.interrupts.append(body)
        self.received.append(("POST", "/interrupt", body))
        if self.running is not None:  # like ComfyUI before 0.3.5x: whatever runs stops, prompt_id or not
            self.running.interrupted = True
        return Response(status_code=200)

    async def _queue_state(self, request: Request) -> Response:
        if self._refused(request):
            return Response(status_code=401)

        def item(p: Prompt) -> list:
            return [p.number, p.prompt_id, p.graph, {"client_id": p.client_id}, []]

        running = [item(self.running)] if self.running else []
        pending = [item(p) for p in self.prompts.values() if p is not self.running and not p.interrupted
                   and p.prompt_id not in self.history]
        return JSONResponse({"queue_running": running, "queue_pending": pending})

    async def _queue(self, request: Request) -> Response:
        if self._refused(request):
            return Response(status_code=401)
        body = await _json_or_empty(request)
        self.received.append(("POST", "/queue", body))
        for prompt_id in body.get("delete") or []:
            self.deletes.append(prompt_id)
            if prompt_id in self.prompts and (self.running is None or self.running.prompt_id != prompt_id):
                self.prompts[prompt_id].interrupted = True  # taken out before it runs
        return Response(status_code=200)

    async def _system_stats(self, request: Request) -> Response:
        if self._refused(request):
            return Response(status_code=401)
        gib = 1024**3
        return JSONResponse({
            "system": {"os": "posix", "ram_total": 64 * gib, "ram_free": 40 * gib, "comfyui_version": VERSION,
                       "required_frontend_version": "1.28.7", "python_version": "3.12.3", "pytorch_version":
                       "2.8.0+cu128", "embedded_python": False, "argv": ["main.py", "--listen"]},
            "devices": [{"name": "cuda:0 NVIDIA GeForce RTX 4090 : cudaMallocAsync", "type": "cuda", "index": 0,
                         "vram_total": 24 * gib, "vram_free": 21 * gib, "torch_vram_total": 0,
                         "torch_vram_free": 0}],
        })

    # ---- WebSocket -----------------------------------------------------------------------------------------

    async def _ws(self, ws: WebSocket) -> None:
        if self._refused(ws):
            await ws.close(code=1008)
            return
        client_id = ws.query_params.get("clientId") or uuid.uuid4().hex
        await ws.accept()
        self.sockets[client_id] = ws
        await ws.send_text(json.dumps({"type": "status", "data": {"status": {"exec_info": {
            "queue_remaining": self.queue.qsize()}}, "sid": client_id}}))
        try:
            while True:
                await ws.receive_text()
        except WebSocketDisconnect:
            pass
        finally:
            if self.sockets.get(client_id) is ws:
                del self.sockets[client_id]

    async def _send(self, prompt: Prompt, kind: str, data: dict) -> None:
        ws = self.sockets.get(prompt.client_id)
        if ws is not None:
            with contextlib.suppress(Exception):  # a client that went away misses its messages, as with ComfyUI
                await ws.send_text(json.dumps({"type": kind, "data": data}))

    # ---- running prompts -----------------------------------------------------------------------------------

    async def _worker(self) -> None:
        while True:
            prompt = await self.queue.get()
            if prompt.interrupted:  # deleted while queued
                continue
            self.running = prompt
            try:
                await self._run(prompt)
            finally:
                self.running = None

    async def _run(self, prompt: Prompt) -> None:
        pid, graph, now = prompt.prompt_id, prompt.graph, lambda: int(time.time() * 1000)
        messages: list[list] = [["execution_start", {"prompt_id": pid, "timestamp": now()}]]
        await self._send(prompt, "execution_start", messages[0][1])
        await self._send(prompt, "execution_cached", {"nodes": [], "prompt_id": pid, "timestamp": now()})
        if self.fail == "drop_socket" and prompt.client_id in self.sockets:
            await self.sockets.pop(prompt.client_id).close(code=1011)
        nodes = order(graph)
        slow = next((n for n in nodes if busy(graph[n]["class_type"])), nodes[-1])
        outputs: dict[str, dict] = {}
        for node_id in nodes:
            node = graph[node_id]
            await self._send(prompt, "executing", {"node": node_id, "display_node": node_id, "prompt_id": pid})
            stopped = node_id == slow and await self._busy_node(prompt, node_id)
            if stopped or prompt.interrupted:
                return await self._end(prompt, messages, "execution_interrupted", {
                    "prompt_id": pid, "node_id": node_id, "node_type": node["class_type"], "executed": list(outputs),
                    "timestamp": now()})
            if node_id == slow and self.fail == "execution_error":
                return await self._end(prompt, messages, "execution_error", {
                    "prompt_id": pid, "node_id": node_id, "node_type": node["class_type"], "executed": list(outputs),
                    "exception_message": "Allocation on device 0 would exceed allowed memory. (out of memory)",
                    "exception_type": "torch.OutOfMemoryError", "traceback": ["  File \"execution.py\", line 1"],
                    "current_inputs": {}, "current_outputs": {}, "timestamp": now()})
            if node["class_type"] in IMAGE_OUTPUTS | VIDEO_OUTPUTS | TEXT_OUTPUTS:
                outputs[node_id] = await asyncio.to_thread(self._make_output, graph, node_id)
                await self._send(prompt, "executed", {"node": node_id, "display_node": node_id,
                                                      "output": outputs[node_id], "prompt_id": pid})
        messages.append(["execution_success", {"prompt_id": pid, "timestamp": now()}])
        await self._send(prompt, "execution_success", messages[-1][1])
        self.history[pid] = self._entry(prompt, outputs, "success", messages)
        await self._send(prompt, "executing", {"node": None, "prompt_id": pid})

    async def _busy_node(self, prompt: Prompt, node_id: str) -> bool:
        """Steps with `progress` (and one binary preview); True when interrupted. A hang waits for that."""
        steps = self.sampler_steps
        for step in range(1, steps + 1):
            await asyncio.sleep(self.step_seconds)
            if prompt.interrupted:
                return True
            self.progress_sent.append((prompt.prompt_id, step, steps))
            await self._send(prompt, "progress", {"value": step, "max": steps, "prompt_id": prompt.prompt_id,
                                                  "node": node_id})
            if step == 1 and (ws := self.sockets.get(prompt.client_id)) is not None:
                with contextlib.suppress(Exception):  # event 1 (preview), format 1 (JPEG), then the picture
                    await ws.send_bytes(b"\x00\x00\x00\x01\x00\x00\x00\x01" + _jpeg())
            while self.fail == "hang" and step == steps // 2:
                await asyncio.sleep(0.05)
                if prompt.interrupted:
                    return True
        return False

    async def _end(self, prompt: Prompt, messages: list[list], kind: str, data: dict) -> None:
        messages.append([kind, data])
        await self._send(prompt, kind, data)
        self.history[prompt.prompt_id] = self._entry(prompt, {}, "error", messages)
        await self._send(prompt, "executing", {"node": None, "prompt_id": prompt.prompt_id})

    def _entry(self, prompt: Prompt, outputs: dict, status: str, messages: list[list]) -> dict:
        return {"prompt": [prompt.number, prompt.prompt_id, prompt.graph, {"client_id": prompt.client_id},
                           list(outputs)],
                "outputs": outputs,
                "status": {"status_str": status, "completed": status == "success", "messages": messages},
                "meta": {n: {"node_id": n, "display_node": n, "parent_node": None, "real_node_id": n}
                         for n in outputs}}

    # ---- making media --------------------------------------------------------------------------------------

    def _fed(self, graph: dict, node_id: str) -> tuple[dict[str, Path], dict[str, float]]:
        """The uploaded files (image/audio/video) and the numbers that feed an output node."""
        files: dict[str, Path] = {}
        numbers: dict[str, float] = {}
        for nid in upstream(graph, node_id):
            node = graph[nid]
            loader = LOADERS.get(node["class_type"])
            if loader:
                files.setdefault(loader[1], self.input_dir / node["inputs"][loader[0]])
            for name, value in node["inputs"].items():
                if name in NUMERIC_INPUTS and isinstance(value, (int, float)):
                    numbers.setdefault(name, float(value))
        return files, numbers

    def _name(self, suffix: str) -> str:
        self.counter += 1
        return f"ComfyUI_{self.counter:05d}_{suffix}"

    def _make_output(self, graph: dict, node_id: str) -> dict:
        kind = graph[node_id]["class_type"]
        files, numbers = self._fed(graph, node_id)
        if kind in TEXT_OUTPUTS:
            seconds = probe(files["audio"]).duration or 1.0 if "audio" in files else 2.0
            words = [{"value": f"la{i}", "start": round(i * 0.5 + 0.1, 2), "end": round(i * 0.5 + 0.4, 2)}
                     for i in range(int(seconds / 0.5))]
            return {"text": [json.dumps(words, indent=4)]}
        if kind in IMAGE_OUTPUTS:
            name = self._name(".png")
            self._image(files.get("image"), numbers, self.output_dir / name)
            return {"images": [{"filename": name, "subfolder": "", "type": "output"}]}
        name = self._name(".mp4")
        fps = self._video(files, numbers, self.output_dir / name)
        if kind == "VHS_VideoCombine":
            return {"gifs": [{"filename": name, "subfolder": "", "type": "output", "format": "video/h264-mp4",
                              "frame_rate": fps}]}
        return {"images": [{"filename": name, "subfolder": "", "type": "output"}], "animated": [True]}

    def _image(self, source: Path | None, numbers: dict[str, float], out: Path) -> None:
        img = Image.open(source).convert("RGB") if source else Image.new("RGB", (512, 768), (60, 40, 90))
        size = (int(numbers.get("width", img.width)), int(numbers.get("height", img.height)))
        img = ImageOps.fit(img, size, method=Image.Resampling.BICUBIC)
        ImageDraw.Draw(img).rectangle([size[0] // 8, size[1] // 8, size[0] // 4, size[1] // 4], fill=(230, 120, 40))
        img.save(out, "PNG")

    def _video(self, files: dict[str, Path], numbers: dict[str, float], out: Path) -> int:
        fps = int(numbers.get("fps") or numbers.get("frame_rate") or 16)
        frames = numbers.get("length") or numbers.get("frames") or numbers.get("num_frames")
        if frames:
            seconds = frames / fps
        elif "audio" in files:
            seconds = probe(files["audio"]).duration or 1.0
        else:
            seconds = probe(files["video"]).duration or 1.0 if "video" in files else 2.0
        picture = (["-i", str(files["video"])] if "video" in files else
                   ["-loop", "1", "-framerate", str(fps), "-i", str(files["image"])] if "image" in files else
                   ["-f", "lavfi", "-i", f"testsrc2=r={fps}:s=320x576"])
        sound = ["-i", str(files["audio"])] if "audio" in files else []
        width, height = int(numbers.get("width", 320)) // 2 * 2, int(numbers.get("height", 576)) // 2 * 2
        subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-v", "error", "-y", *picture, *sound,
                        "-t", f"{seconds:.3f}", "-vf", f"scale={width}:{height},format=yuv420p", "-r", str(fps),
                        "-c:v", "libx264", "-preset", "ultrafast", *(["-c:a", "aac"] if sound else []), str(out)],
                       check=True, timeout=120)
        return fps


def _jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 100, 50)).save(out, "JPEG")
    return out.getvalue()


async def _json_or_empty(request: Request) -> dict:
    try:
        body = await request.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
