"""ComfyUI's native server protocol: upload, submit, follow the WebSocket (or poll /history), download, stop.

ComfyUI has no authentication of its own; COMFYUI_HEADERS (a proxy's bearer token) go with every request.
COMFYUI_URL is the user's own server, so its host is allowed for downloads even on a private address.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import mimetypes
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
from websockets.sync.client import ClientConnection, connect

from pipeline.errors import Cancelled, FetchError, ProviderError
from pipeline.fetch import Fetcher, limits_from_settings
from pipeline.providers.http_retries import Retryable, RetryPolicy, call_with_retries, malformed, raise_for_status
from pipeline.providers.step_hooks import StepHooks
from pipeline.settings import Settings

KEY_NAME = "COMFYUI_HEADERS"
REQUEST_TIMEOUT_CAP = 120.0  # one HTTP request never waits longer than this
SOCKET_TICK_SECONDS = 0.25  # how often a wait on the socket looks at the run's cancel flag and the deadline
MAX_MESSAGE_BYTES = 64 * 1024 * 1024  # binary preview frames can be large; bigger ones close the socket
HISTORY_SETTLE_TRIES = 20  # after "done", /history may lag a moment behind the socket


@dataclass(frozen=True)
class OutputFile:
    filename: str
    subfolder: str
    type: str


def describe_node_errors(label: str, body: Any) -> str:
    """ComfyUI's 400 answer to /prompt as one readable line: each node (class_type), the input and the reason."""
    if not isinstance(body, dict):
        return f"{label} refused the workflow: {str(body)[:300]}"
    parts: list[str] = []
    for node_id, entry in (body.get("node_errors") or {}).items():
        if not isinstance(entry, dict):
            continue
        for err in entry.get("errors") or []:
            extra = err.get("extra_info") if isinstance(err.get("extra_info"), dict) else {}
            where = f"node {node_id} ({entry.get('class_type', '?')})"
            if extra.get("input_name"):
                where += f" input {extra['input_name']}"
            reason = err.get("message") or err.get("type") or "invalid"
            parts.append(f"{where}: {reason}" + (f" ({err['details']})" if err.get("details") else ""))
    error = body.get("error")
    summary = error.get("message") if isinstance(error, dict) else error
    if not parts:
        details = error.get("details") if isinstance(error, dict) else None
        return f"{label} refused the workflow: {summary or 'no reason given'}" + (f" ({details})" if details else "")
    return f"{label} refused the workflow: " + "; ".join(parts)


def describe_execution_error(label: str, data: dict) -> str:
    node = f"node {data.get('node_id', '?')} ({data.get('node_type', '?')})"
    kind = data.get("exception_type") or "error"
    return f"{label}: {node} failed: {kind}: {str(data.get('exception_message') or 'no message').strip()[:400]}"


@dataclass
class Progress:
    """ComfyUI's `progress {value, max}` of the running node as the step's fraction; never moves back."""

    report: Callable[[float], None]
    fraction: float = 0.0

    def node(self, value: Any, maximum: Any) -> None:
        try:
            fraction = float(value) / float(maximum)
        except (TypeError, ValueError, ZeroDivisionError):
            return
        if fraction > self.fraction:
            self.fraction = min(1.0, fraction)
            self.report(self.fraction)


@dataclass
class Job:
    """One submitted prompt being followed."""

    prompt_id: str


@dataclass
class ComfyUIClient:
    settings: Settings
    sleep: Callable[[float], None] = time.sleep
    policy: RetryPolicy = field(init=False)

    def __post_init__(self) -> None:
        if not self.settings.comfyui_url:
            raise ProviderError("COMFYUI_URL is not set: it should be your ComfyUI server, e.g. http://127.0.0.1:8188")
        self.base = self.settings.comfyui_url.rstrip("/")
        self.label = f"ComfyUI at {self.base}"
        self.policy = RetryPolicy.from_settings(self.settings)
        self.headers = dict(self.settings.comfyui_headers)
        self.request_timeout = min(self.policy.timeout_seconds, REQUEST_TIMEOUT_CAP)
        self.http = httpx.Client(base_url=self.base, headers=self.headers, timeout=httpx.Timeout(self.request_timeout),
                                 trust_env=False)

    # ---- plain requests ------------------------------------------------------------------------------------

    def _request(self, method: str, path: str, *, keep: tuple[int, ...] = (), **kwargs: Any) -> httpx.Response:
        """One request with retries on time-outs, 429 and 5xx; statuses in `keep` come back for the caller."""
        unreachable: list[str] = []

        def attempt() -> httpx.Response:
            try:
                resp = self.http.request(method, path, **kwargs)
            except httpx.TimeoutException:
                unreachable.append(f"no answer within {self.request_timeout:g} s")
                raise Retryable(unreachable[-1]) from None
            except httpx.TransportError as exc:
                unreachable.append(f"could not connect: {type(exc).__name__}")
                raise Retryable(unreachable[-1]) from None
            unreachable.clear()
            if resp.status_code not in keep:
                raise_for_status(self.label, resp.status_code, resp.content, resp.headers, KEY_NAME)
            return resp

        try:
            return call_with_retries(attempt, self.policy, self.label, self.sleep)
        except ProviderError as exc:
            if unreachable:
                tries = self.policy.retries + 1
                raise ProviderError(f"{self.label} did not answer ({unreachable[-1]}; {tries} "
                                    f"{'try' if tries == 1 else 'tries'}): is ComfyUI running, and is COMFYUI_URL "
                                    "right?", transient=True) from None
            raise exc from None

    def _json(self, resp: httpx.Response) -> Any:
        try:
            return resp.json()
        except ValueError:
            raise malformed(self.label, f"expected JSON, got {resp.text[:120]!r}") from None

    def system_stats(self) -> dict:
        stats = self._json(self._request("GET", "/system_stats"))
        if not isinstance(stats, dict):
            raise malformed(self.label, "/system_stats is not a JSON object")
        return stats

    def upload(self, path: Path) -> str:
        """Put an input file (image, audio or video: /upload/image takes them all) where loaders find it."""
        name = f"studio-{uuid.uuid4().hex[:12]}{path.suffix.lower()}"  # runs never overwrite each other's inputs
        mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        with path.open("rb") as fh:
            resp = self._request("POST", "/upload/image", files={"image": (name, fh, mime)},
                                 data={"type": "input", "overwrite": "true"})
        answer = self._json(resp)
        if not isinstance(answer, dict) or not answer.get("name"):
            raise malformed(self.label, "the upload answer has no name")
        return f"{answer['subfolder']}/{answer['name']}" if answer.get("subfolder") else str(answer["name"])

    def submit(self, graph: dict, client_id: str) -> str:
        resp = self._request("POST", "/prompt", json={"prompt": graph, "client_id": client_id}, keep=(400,))
        body = self._json(resp)
        if resp.status_code == 400:
            raise ProviderError(describe_node_errors(self.label, body))
        if not isinstance(body, dict) or not body.get("prompt_id"):
            raise malformed(self.label, "the /prompt answer has no prompt_id")
        if body.get("node_errors"):  # some outputs were dropped as invalid: say which, instead of a partial result
            raise ProviderError(describe_node_errors(self.label, body))
        return str(body["prompt_id"])

    def history(self, prompt_id: str) -> dict | None:
        """The prompt's history entry, or None while it has none (queued or running)."""
        body = self._json(self._request("GET", f"/history/{prompt_id}"))
        entry = body.get(prompt_id) if isinstance(body, dict) else None
        return entry if isinstance(entry, dict) else None

    def stop(self, job: Job) -> None:
        """Best effort: out of the queue if it waits there, interrupted if it is the one running.

        ComfyUI before 0.3.5x ignores /interrupt's prompt_id and stops whatever runs, so the queue is asked
        first: a prompt of someone else's is never interrupted for ours.
        """
        with contextlib.suppress(httpx.HTTPError, ValueError, TypeError, IndexError):
            self.http.post("/queue", json={"delete": [job.prompt_id]}, timeout=10)
            running = self.http.get("/queue", timeout=10).json().get("queue_running") or []
            if any(isinstance(item, list) and len(item) > 1 and item[1] == job.prompt_id for item in running):
                self.http.post("/interrupt", json={"prompt_id": job.prompt_id}, timeout=10)

    def download(self, ref: OutputFile, out_path: Path) -> Path:
        """GET /view through the safe fetcher (its size limit and time-out), this server's host allowed."""
        url = f"{self.base}/view?" + urlencode({"filename": ref.filename, "subfolder": ref.subfolder, "type": ref.type})
        limits = limits_from_settings(self.settings)
        host = (urlsplit(self.base).hostname or "").lower()
        limits = dataclasses.replace(limits, allow_hosts=(*limits.allow_hosts, host))
        with tempfile.TemporaryDirectory(dir=out_path.parent, prefix=".comfyui-") as tmp:
            # a fresh cache each time: ComfyUI reuses output names once its output folder is cleared
            fetcher = Fetcher(Path(tmp), limits, headers=self.headers)
            try:
                fetched = fetcher.fetch(url, field_name="result", suffix=Path(ref.filename).suffix[:8])
            except FetchError as exc:
                raise ProviderError(f"{self.label}: {ref.filename} could not be downloaded: {exc.message}",
                                    transient=True) from None
            shutil.move(fetched, out_path)
        return out_path

    # ---- following a prompt --------------------------------------------------------------------------------

    def open_socket(self, client_id: str) -> ClientConnection | None:
        """The WebSocket for this client id, or None when it cannot be opened (then /history is polled)."""
        scheme = "wss" if self.base.startswith("https") else "ws"
        url = f"{scheme}://{self.base.split('://', 1)[1]}/ws?clientId={client_id}"
        try:
            return connect(url, additional_headers=self.headers or None, open_timeout=min(10.0, self.request_timeout),
                           max_size=MAX_MESSAGE_BYTES, proxy=None)
        except (OSError, InvalidHandshake, InvalidURI, TimeoutError):
            return None

    def wait(self, job: Job, socket: ClientConnection | None, hooks: StepHooks) -> dict:
        """Follow the prompt to its end (socket first, /history when it drops); its history entry.

        On the run's cancel or the time-out the prompt is stopped at ComfyUI before this raises.
        """
        deadline = time.monotonic() + self.policy.timeout_seconds
        progress = Progress(hooks.progress)
        try:
            if socket is not None and self._follow_socket(job, socket, hooks, progress, deadline):
                return self._settled_history(job, hooks, deadline)
            return self._poll_history(job, hooks, deadline)
        except Cancelled:
            self.stop(job)
            raise

    def _check(self, job: Job, hooks: StepHooks, deadline: float) -> None:
        if hooks.cancelled():
            raise Cancelled("The run was cancelled")
        if time.monotonic() >= deadline:
            self.stop(job)
            raise ProviderError(f"{self.label}: the prompt did not finish within {self.policy.timeout_seconds:g} s "
                                "(PROVIDER_TIMEOUT_SECONDS) and was stopped", transient=True)

    def _follow_socket(self, job: Job, socket: ClientConnection, hooks: StepHooks, progress: Progress,
                       deadline: float) -> bool:
        """Read messages until this prompt is done (True) or the socket drops (False)."""
        while True:
            self._check(job, hooks, deadline)
            try:
                raw = socket.recv(timeout=SOCKET_TICK_SECONDS)
            except TimeoutError:
                continue
            except ConnectionClosed:
                return False
            if isinstance(raw, bytes):
                continue  # a preview image
            try:
                message = json.loads(raw)
                kind, data = message["type"], message.get("data") or {}
            except (ValueError, KeyError, TypeError):
                continue
            if not isinstance(data, dict) or data.get("prompt_id", job.prompt_id) != job.prompt_id:
                continue  # the queue's status, or another prompt
            if kind == "progress":
                progress.node(data.get("value"), data.get("max"))
            elif kind == "executing" and data.get("node") is None and "prompt_id" in data:
                return True
            elif kind == "execution_error":
                raise ProviderError(describe_execution_error(self.label, data))
            elif kind == "execution_interrupted":
                raise ProviderError(f"{self.label}: the prompt was interrupted on the ComfyUI server "
                                    f"(at node {data.get('node_id', '?')} ({data.get('node_type', '?')}))")

    def _settled_history(self, job: Job, hooks: StepHooks, deadline: float) -> dict:
        for _ in range(HISTORY_SETTLE_TRIES):
            entry = self.history(job.prompt_id)
            if entry is not None:
                return finished_entry(self.label, entry) or entry
            self._check(job, hooks, deadline)
            self.sleep(min(self.policy.poll_seconds, 0.25))
        raise malformed(self.label, f"prompt {job.prompt_id} ended but /history has nothing for it")

    def _poll_history(self, job: Job, hooks: StepHooks, deadline: float) -> dict:
        while True:
            self._check(job, hooks, deadline)
            entry = self.history(job.prompt_id)
            if entry is not None:
                done = finished_entry(self.label, entry)
                if done is not None:
                    return done
            end = time.monotonic() + self.policy.poll_seconds
            while time.monotonic() < end:  # a poll interval that still notices a cancel
                self._check(job, hooks, deadline)
                self.sleep(min(SOCKET_TICK_SECONDS, max(0.0, end - time.monotonic())))


def finished_entry(label: str, entry: dict) -> dict | None:
    """The entry when the prompt ended well, None while it runs; ProviderError when it ended in an error."""
    status = entry.get("status") if isinstance(entry.get("status"), dict) else {}
    if status.get("status_str") == "error":
        for message in status.get("messages") or []:
            if isinstance(message, list) and len(message) == 2 and message[0] == "execution_error":
                raise ProviderError(describe_execution_error(label, message[1]))
            if isinstance(message, list) and len(message) == 2 and message[0] == "execution_interrupted":
                raise ProviderError(f"{label}: the prompt was interrupted on the ComfyUI server")
        raise ProviderError(f"{label}: the prompt ended in an error")
    if status.get("completed") or (not status and entry.get("outputs")):
        return entry
    return None


def output_files(entry: dict, suffixes: tuple[str, ...]) -> list[OutputFile]:
    """Files in a history entry's outputs with one of `suffixes`, saved outputs before temporary previews."""
    found: list[OutputFile] = []
    for node_output in (entry.get("outputs") or {}).values():
        if not isinstance(node_output, dict):
            continue
        for items in node_output.values():  # images / gifs / videos / audio: the file's kind is in its name
            for item in items if isinstance(items, list) else []:
                if isinstance(item, dict) and str(item.get("filename", "")).lower().endswith(suffixes):
                    found.append(OutputFile(str(item["filename"]), str(item.get("subfolder") or ""),
                                            str(item.get("type") or "output")))
    return sorted(found, key=lambda f: f.type != "output")


def output_texts(entry: dict) -> list[str]:
    """Text outputs (`text` lists, e.g. core PreviewAny's), in node order."""
    texts: list[str] = []
    for node_output in (entry.get("outputs") or {}).values():
        if isinstance(node_output, dict) and isinstance(node_output.get("text"), list):
            texts.extend(str(t) for t in node_output["text"])
    return texts
