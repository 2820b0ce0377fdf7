"""A loopback server that speaks OpenAI's REST API (/v1/...) and fal's queue API (/fal/...) for tests.

It does real work on real media: images are resized with Pillow, "videos" are encoded by ffmpeg from the
uploaded still (and the uploaded audio for lip-sync), so the pipeline's checks and render see real files.
Everything it receives is recorded for the tests to assert on; `script` forces failures per route.
"""

from __future__ import annotations

import base64
import email.parser
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
        self._lock = threading.Lock()
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

    def _openai(self, h: BaseHTTPRequestHandler, route: str, rec: Received) -> None:
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
            request_id = uuid.uuid4().hex
            app = "/".join(model.split("/")[:2])
            root = f"{base}/{app}/requests/{request_id}"
            self.jobs[request_id] = {"model": model, "arguments": rec.json, "polls": 0}
            self._send(h, 200, {"request_id": request_id, "status": "IN_QUEUE", "queue_position": 0,
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
            done = not self.never_done and job["polls"] > self.polls_until_done
            self._send(h, 200, {"status": "COMPLETED" if done else "IN_QUEUE", "queue_position": 0,
                                "response_url": f"{base}/x/requests/{parts[0]}"})
        else:
            maker = self.fal_results.get(job["model"]) or self._default_result(job["model"])
            self._send(h, 200, maker(job["arguments"]))

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
                               ["-t", f"{seconds:g}", "-vf", "scale=360:640,format=yuv420p", "-r", "12"])
        return {"video": {"url": url, "content_type": "video/mp4"}}

    def _lipsync(self, args: dict) -> dict:
        with tempfile.TemporaryDirectory() as tmp:
            still, audio = Path(tmp) / "in.img", Path(tmp) / "in.m4a"
            still.write_bytes(decode_data_uri(args["image_url"]))
            audio.write_bytes(decode_data_uri(args["audio_url"]))
            url = self._encode(["-loop", "1", "-framerate", "12", "-i", str(still), "-i", str(audio)],
                               ["-shortest", "-vf", "scale=360:640,format=yuv420p", "-r", "12", "-c:a", "aac"])
        return {"video": {"url": url, "content_type": "video/mp4"}}

    def _upscale_video(self, args: dict) -> dict:
        with tempfile.TemporaryDirectory() as tmp:
            src = Path(tmp) / "in.mp4"
            src.write_bytes(decode_data_uri(args["video_url"]))
            factor = int(args.get("upscale_factor", 2))
            url = self._encode(["-i", str(src)], ["-vf", f"scale=iw*{factor}:ih*{factor}", "-c:a", "copy"])
        return {"video": {"url": url, "content_type": "video/mp4"}}


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
