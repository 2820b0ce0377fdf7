"""A loopback server that speaks OpenAI's REST API (/v1/...) and fal's queue API (/fal/...) for tests.

It does real work on real media: images are resized with Pillow, "videos" are encoded by ffmpeg from the
uploaded still (and the uploaded audio for lip-sync), so the pipeline's checks and render see real files.
Every request is checked against the model's documented input schema (tests/fake_schemas.py) and refused the
way the service does (fal: 422 with a `detail` list; OpenAI: 400 with an `error`). `latency` makes jobs take
time (fal jobs sit IN_QUEUE with a queue position, then IN_PROGRESS); `jobs` keeps when each was submitted and
fetched, so a test can see how many were in flight at once. Everything received is recorded; `script` forces
failures per route.
"""

from __future__ import annotations

import base64
import email.parser
import hashlib
import io
import json
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from pipeline.ffmpeg import ffmpeg_exe
from pipeline.settings import Settings
from tests.fake_schemas import FAL_SCHEMAS, OPENAI_SCHEMAS, validate, validate_fal, validate_openai_form

OPENAI_KEY = "sk-test-key"
FAL_KEY = "fal-test-key"


@dataclass
class Received:
    route: str  # chat | transcriptions | image_edit | image_generation | fal_submit | fal_status | fal_result | ...
    path: str
    headers: dict[str, str]
    json: Any = None
    fields: dict[str, list[str]] = field(default_factory=dict)  # multipart text fields
    files: dict[str, bytes] = field(default_factory=dict)  # multipart files / decoded data URIs


@dataclass
class Answer:
    """A forced answer: a status with a JSON (or raw) body and headers, or a hang."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    hang_seconds: float = 0.0
    raw: bytes | None = None


def make_still(width: int = 576, height: int = 1024, seed: int = 0) -> bytes:
    """A portrait-shaped picture with some structure (so resizes and encodes are real work)."""
    img = Image.new("RGB", (width, height), (40 + seed * 20 % 200, 30, 60))
    draw = ImageDraw.Draw(img)
    for i in range(0, height, 64):
        draw.rectangle([0, i, width, i + 32], fill=(90, 60 + i % 160, 120))
    draw.ellipse([width * 0.3, height * 0.2, width * 0.7, height * 0.45], fill=(220, 180, 150))
    out = io.BytesIO()
    img.save(out, "PNG")
    return out.getvalue()


def ffmpeg(*args: str) -> None:
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-v", "error", "-y", *args], check=True, timeout=120)


def decode_data_uri(uri: str) -> bytes:
    header, _, payload = uri.partition(",")
    assert header.startswith("data:") and header.endswith(";base64"), header[:40]
    return base64.b64decode(payload, validate=True)


class FakeRemote:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.files_dir = workdir / "served"
        self.files_dir.mkdir(parents=True, exist_ok=True)
        self.received: list[Received] = []
        self.scripts: dict[str, list[Answer]] = {}  # route -> answers used (and removed) before normal service
        self.always: dict[str, Answer] = {}  # route -> answer given every time
        self.polls_until_done = 1  # status answers IN_QUEUE this many times, then COMPLETED
        self.never_done = False
        self.captions: list[str] = ["late drives and open windows"]  # chat answers in turn (last one repeats)
        self.chat_served = 0
        self.chat_content: str | None = None  # raw message content (overrides captions), e.g. malformed JSON
        self.transcript: dict = {}
        self.fal_results: dict[str, Callable[[dict], dict]] = {}  # model -> result maker (defaults below)
        self.jobs: dict[str, dict] = {}
        self.cancelled: list[str] = []
        self.latency: dict[str, float] = {}  # kind (see model_kind) -> seconds a job or request takes
        self.openai_calls: list[tuple[float, float]] = []  # (start, end) of each OpenAI request served
        self._lock = threading.Lock()
        self._made: dict[str, dict] = {}  # default results by their inputs
        self._made_lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                fake._handle(self, "GET")

            def do_POST(self) -> None:  # noqa: N802
                fake._handle(self, "POST")

            def do_PUT(self) -> None:  # noqa: N802
                fake._handle(self, "PUT")

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    # ---- set-up --------------------------------------------------------------------------------------------

    @property
    def openai_base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def fal_base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/fal"

    def script(self, route: str, *answers: Answer) -> None:
        self.scripts.setdefault(route, []).extend(answers)

    def hits(self, route: str) -> list[Received]:
        return [r for r in self.received if r.route == route]

    def __enter__(self) -> FakeRemote:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    # ---- plumbing ------------------------------------------------------------------------------------------

    def _send(self, h: BaseHTTPRequestHandler, status: int, body: Any, headers: dict[str, str] | None = None,
              raw: bytes | None = None, content_type: str = "application/json") -> None:
        data = raw if raw is not None else json.dumps(body).encode()
        h.send_response(status)
        h.send_header("Content-Type", content_type)
        h.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(data)

    def _forced(self, route: str) -> Answer | None:
        with self._lock:
            queue = self.scripts.get(route)
            if queue:
                return queue.pop(0)
        return self.always.get(route)

    def _handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        path = h.path.split("?", 1)[0]
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in h.headers.items()}
        if path.startswith("/files/") and method == "GET":
            target = self.files_dir / Path(path).name
            if not target.exists():
                self._send(h, 404, {"detail": "no such file"})
                return
            self._send(h, 200, None, raw=target.read_bytes(), content_type="application/octet-stream")
            return
        route, rec = self._record(method, path, headers, body)
        forced = self._forced(route)
        if forced is not None:
            if forced.hang_seconds:
                time.sleep(forced.hang_seconds)
                if forced.status == 0:  # never answers
                    return
            self._send(h, forced.status, forced.body, forced.headers, raw=forced.raw)
            return
        if path.startswith("/v1/"):
            if headers.get("authorization") != f"Bearer {OPENAI_KEY}":
                self._send(h, 401, {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error",
                                              "code": "invalid_api_key"}})
                return
            self._openai(h, route, rec)
        elif path.startswith("/fal/"):
            if headers.get("authorization") != f"Key {FAL_KEY}":
                self._send(h, 401, {"detail": "Invalid API key"})
                return
            self._fal(h, route, rec, path)
        else:
            self._send(h, 404, {"detail": "not found"})

    def _record(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[str, Received]:
        route = "unknown"
        rec = Received(route, path, headers)
        ctype = headers.get("content-type", "")
        if ctype.startswith("multipart/form-data"):
            msg = email.parser.BytesParser().parsebytes(b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + body)
            for part in msg.get_payload():
                name = part.get_param("name", header="content-disposition")
                payload = part.get_payload(decode=True) or b""
                if part.get_filename():
                    rec.files[name] = payload
                else:
                    rec.fields.setdefault(name, []).append(payload.decode())
        elif body:
            try:
                rec.json = json.loads(body)
            except ValueError:
                rec.json = body.decode(errors="replace")
        if path.startswith("/v1/"):
            route = {"/v1/chat/completions": "chat", "/v1/audio/transcriptions": "transcriptions",
                     "/v1/images/edits": "image_edit", "/v1/images/generations": "image_generation"}.get(path, route)
        elif path.startswith("/fal/"):
            if "/requests/" not in path and method == "POST":
                route = "fal_submit"
                for key, value in (rec.json or {}).items() if isinstance(rec.json, dict) else ():
                    if isinstance(value, str) and value.startswith("data:"):
                        rec.files[key] = decode_data_uri(value)
                    elif isinstance(value, list):
                        for i, item in enumerate(value):
                            if isinstance(item, str) and item.startswith("data:"):
                                rec.files[f"{key}[{i}]"] = decode_data_uri(item)
            elif method == "PUT" and path.endswith("/cancel"):
                route = "fal_cancel"
            elif path.endswith("/status"):
                route = "fal_status"
            else:
                route = "fal_result"
        rec.route = route
        with self._lock:
            self.received.append(rec)
        return route, rec

    # ---- OpenAI --------------------------------------------------------------------------------------------

    def _openai_problem(self, route: str, rec: Received) -> str | None:
        if route in ("chat", "image_generation"):
            errors = validate(OPENAI_SCHEMAS[route], rec.json)
            return f"{'.'.join(map(str, errors[0]['loc'][1:]))}: {errors[0]['msg']}" if errors else None
        if route in ("transcriptions", "image_edit"):
            return validate_openai_form(route, rec.fields, rec.files)
        return None

    def _openai(self, h: BaseHTTPRequestHandler, route: str, rec: Received) -> None:
        problem = self._openai_problem(route, rec)
        if problem:
            self._send(h, 400, {"error": {"message": problem, "type": "invalid_request_error", "param": None,
                                          "code": None}})
            return
        start = time.monotonic()
        time.sleep(self.latency.get("chat" if route == "chat" else route, 0.0))
        with self._lock:
            self.openai_calls.append((start, time.monotonic()))
        if route == "chat":
            with self._lock:
                text = self.captions[min(self.chat_served, len(self.captions) - 1)]
                self.chat_served += 1
            content = self.chat_content if self.chat_content is not None else json.dumps({"caption": text})
            self._send(h, 200, {
                "id": f"chatcmpl-{uuid.uuid4().hex[:12]}", "object": "chat.completion", "created": int(time.time()),
                "model": rec.json["model"],
                "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                             "message": {"role": "assistant", "content": content, "refusal": None}}],
                "usage": {"prompt_tokens": 100, "completion_tokens": 12, "total_tokens": 112},
            })
        elif route == "transcriptions":
            self._send(h, 200, self.transcript)
        elif route in ("image_edit", "image_generation"):
            still = make_still(1024, 1536)
            self._send(h, 200, {"created": int(time.time()),
                                "data": [{"b64_json": base64.b64encode(still).decode()}]})
        else:
            self._send(h, 404, {"error": {"message": f"Unknown path {rec.path}"}})

    # ---- fal queue -----------------------------------------------------------------------------------------

    def _fal(self, h: BaseHTTPRequestHandler, route: str, rec: Received, path: str) -> None:
        base = self.fal_base_url
        if route == "fal_submit":
            model = path[len("/fal/"):]
            # a model a test serves itself (fal_results) without a documented schema is taken as it comes
            errors = [] if model not in FAL_SCHEMAS and model in self.fal_results else validate_fal(model, rec.json)
            if errors:
                self._send(h, 404 if errors[0]["type"] == "not_found" else 422, {"detail": errors})
                return
            request_id = uuid.uuid4().hex
            app = "/".join(model.split("/")[:2])
            root = f"{base}/{app}/requests/{request_id}"
            now = time.monotonic()
            with self._lock:
                self.jobs[request_id] = {"model": model, "arguments": rec.json, "polls": 0, "submitted": now,
                                         "ready": now + self.latency.get(model_kind(model), 0.0), "fetched": None}
                position = self._queue_position(request_id)
            self._send(h, 200, {"request_id": request_id, "status": "IN_QUEUE", "queue_position": position,
                                "status_url": f"{root}/status", "response_url": root, "cancel_url": f"{root}/cancel"})
            return
        parts = path.split("/requests/", 1)[1].split("/")
        job = self.jobs.get(parts[0])
        if job is None:
            self._send(h, 404, {"detail": "Request not found"})
            return
        if route == "fal_cancel":
            self.cancelled.append(parts[0])
            self._send(h, 202, {"status": "CANCELLATION_REQUESTED"})
        elif route == "fal_status":
            job["polls"] += 1
            ready = time.monotonic() >= job["ready"] and parts[0] not in self.cancelled
            done = not self.never_done and job["polls"] > self.polls_until_done and ready
            with self._lock:
                position = self._queue_position(parts[0])
            state = "COMPLETED" if done else "IN_QUEUE" if position else "IN_PROGRESS"
            answer: dict[str, Any] = {"status": state, "response_url": f"{base}/x/requests/{parts[0]}"}
            if state == "IN_QUEUE":
                answer["queue_position"] = position
            self._send(h, 200, answer)
        else:
            maker = self.fal_results.get(job["model"])
            if maker is not None:
                result = maker(job["arguments"])
            else:  # the same inputs make the same media: made once (the fake's CPU is not what a bench measures)
                key = hashlib.sha256(json.dumps([job["model"], job["arguments"]], sort_keys=True).encode()).hexdigest()
                with self._made_lock:
                    if key not in self._made:
                        self._made[key] = self._default_result(job["model"])(job["arguments"])
                    result = self._made[key]
            job["fetched"] = time.monotonic()
            self._send(h, 200, result)

    def _queue_position(self, request_id: str) -> int:
        """Jobs of the same model submitted earlier and still running: a job waits for about half of them."""
        job = self.jobs[request_id]
        now = time.monotonic()
        ahead = [j for j in self.jobs.values() if j["model"] == job["model"] and j["submitted"] < job["submitted"]
                 and j["ready"] > now]
        return len(ahead) // 2

    def max_in_flight(self, kind: str | None = None) -> int:
        """The most fal jobs (of one kind) that were submitted and not yet fetched at the same moment."""
        with self._lock:
            spans = [(j["submitted"], j["fetched"] or time.monotonic()) for j in self.jobs.values()
                     if kind is None or model_kind(j["model"]) == kind]
        return max_overlap(spans)

    def serve(self, name: str, data: bytes) -> str:
        (self.files_dir / name).write_bytes(data)
        return f"http://127.0.0.1:{self.port}/files/{name}"

    def _default_result(self, model: str) -> Callable[[dict], dict]:
        if "whisper" in model:
            return lambda args: self.transcript
        if model.endswith("upscale/image"):
            return self._upscale_image
        if model.endswith("upscale/video"):
            return self._upscale_video
        if "audio-to-video" in model:
            return self._lipsync
        if "video" in model:
            return self._image_to_video
        return self._image

    def _image(self, args: dict) -> dict:
        url = self.serve(f"{uuid.uuid4().hex}.png", make_still(720, 1280))
        return {"images": [{"url": url, "content_type": "image/png", "width": 720, "height": 1280}],
                "description": ""}

    def _upscale_image(self, args: dict) -> dict:
        src = Image.open(io.BytesIO(decode_data_uri(args["image_url"])))
        factor = int(args.get("upscale_factor", 2))
        out = io.BytesIO()
        src.resize((src.width * factor, src.height * factor), Image.Resampling.BICUBIC).save(out, "PNG")
        return {"image": {"url": self.serve(f"{uuid.uuid4().hex}.png", out.getvalue())}}

    def _encode(self, inputs: list[str], out_args: list[str]) -> str:
        name = f"{uuid.uuid4().hex}.mp4"
        ffmpeg(*inputs, *out_args, "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
               str(self.files_dir / name))
        return f"http://127.0.0.1:{self.port}/files/{name}"

    def _image_to_video(self, args: dict) -> dict:
        with tempfile.TemporaryDirectory() as tmp:
            still = Path(tmp) / "in.img"
            still.write_bytes(decode_data_uri(args["image_url"]))
            seconds = float(str(args.get("duration", "4s")).rstrip("s"))
            url = self._encode(["-loop", "1", "-framerate", "12", "-i", str(still)],
                               # a slow turn: every frame differs, as a model's clip does
                               ["-t", f"{seconds:g}", "-vf", "scale=360:640,rotate=a=0.12*t,format=yuv420p",
                                "-r", "12"])
        return {"video": {"url": url, "content_type": "video/mp4"}}

    def _lipsync(self, args: dict) -> dict:
        with tempfile.TemporaryDirectory() as tmp:
            still, audio = Path(tmp) / "in.img", Path(tmp) / "in.m4a"
            still.write_bytes(decode_data_uri(args["image_url"]))
            audio.write_bytes(decode_data_uri(args["audio_url"]))
            url = self._encode(["-loop", "1", "-framerate", "12", "-i", str(still), "-i", str(audio)],
                               ["-shortest", "-vf", "scale=360:640,rotate=a=0.12*t,format=yuv420p", "-r", "12",
                                "-c:a", "aac"])
        return {"video": {"url": url, "content_type": "video/mp4"}}

    def _upscale_video(self, args: dict) -> dict:
        with tempfile.TemporaryDirectory() as tmp:
            src = Path(tmp) / "in.mp4"
            src.write_bytes(decode_data_uri(args["video_url"]))
            factor = int(args.get("upscale_factor", 2))
            url = self._encode(["-i", str(src)], ["-vf", f"scale=iw*{factor}:ih*{factor}", "-c:a", "copy"])
        return {"video": {"url": url, "content_type": "video/mp4"}}


def model_kind(model: str) -> str:
    """What a fal model does, for `latency`: image, video, lipsync, upscale or transcribe."""
    if "whisper" in model:
        return "transcribe"
    if "upscale" in model:
        return "upscale"
    if "audio-to-video" in model:
        return "lipsync"
    return "video" if "video" in model else "image"


def max_overlap(spans: list[tuple[float, float]]) -> int:
    """The most (start, end) spans open at one moment."""
    edges = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans], key=lambda x: (x[0], x[1]))
    most = open_now = 0
    for _, step in edges:
        open_now += step
        most = max(most, open_now)
    return most


def words_transcript(lines: list[list[tuple[float, float, str]]]) -> dict:
    """An OpenAI verbose_json body (and, via `chunks`, a fal whisper body) from timed words grouped in lines."""
    words = [{"word": w, "start": s, "end": e} for line in lines for s, e, w in line]
    segments = [{"id": i, "seek": 0, "start": line[0][0], "end": line[-1][1], "text": " ".join(w for _, _, w in line),
                 "tokens": [], "temperature": 0.0, "avg_logprob": -0.2, "compression_ratio": 1.2,
                 "no_speech_prob": 0.01} for i, line in enumerate(lines)]
    return {"task": "transcribe", "language": "english", "duration": words[-1]["end"] if words else 0.0,
            "text": " ".join(w["word"] for w in words), "words": words, "segments": segments,
            "chunks": [{"timestamp": [w["start"], w["end"]], "text": w["word"]} for w in words]}


def remote_settings(tmp_path: Path, fake: FakeRemote, **over: Any) -> Settings:
    """Settings pointing every remote service at the fake, with tiny waits so failure tests stay fast."""
    values: dict[str, Any] = dict(
        data_dir=tmp_path / "data", openai_api_key=OPENAI_KEY, openai_base_url=fake.openai_base_url,
        fal_key=FAL_KEY, fal_base_url=fake.fal_base_url, fetch_allow_hosts=["127.0.0.1"], provider_retries=2,
        provider_backoff_seconds=0.01, provider_poll_seconds=0.01, provider_timeout_seconds=5.0,
    )
    values.update(over)
    return Settings(_env_file=None, **values)
