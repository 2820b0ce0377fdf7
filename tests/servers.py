"""Real studio processes for tests: the web server (UI + API, one port) and a Huey consumer, on 127.0.0.1.

Each `Studio` has its own DATA_DIR, port and logs; test modules share one per module (see `running_studio`).
The consumer runs in its own process group so a test can SIGKILL it with its workers and ffmpeg.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from pipeline.settings import PROJECT_ROOT
from taskqueue.store import FINAL_STATUSES, account_for_configured_key

KEY_A = "test-key-owner-a-0123456789"
KEY_B = "test-key-owner-b-9876543210"
ACCOUNT_A = account_for_configured_key(KEY_A)
ACCOUNT_B = account_for_configured_key(KEY_B)

# Small, quick renders for the end-to-end tests (the pipeline reads these settings).
FAST_RENDER_ENV = {"CLIP_SECONDS": "4", "OUTPUT_WIDTH": "360", "OUTPUT_HEIGHT": "640"}

# Settings the parent's environment must not leak into a test studio unless a test asks for them.
_ISOLATED = ("DATABASE_URL", "REDIS_URL", "PUBLIC_BASE_URL", "SECRET_KEY", "API_KEYS", "ARTISTS_DIR", "WORKERS")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def studio_env(data_dir: Path, port: int, **overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k.upper() not in _ISOLATED}
    env.update({
        "DATA_DIR": str(data_dir),
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "API_KEYS": json.dumps([KEY_A, KEY_B]),
        "WORKERS": "1",
        "HEARTBEAT_SECONDS": "1",
        "CRASH_AFTER_SECONDS": "6",
        "REAPER_INTERVAL_SECONDS": "1",
        "FETCH_ALLOW_HOSTS": json.dumps(["127.0.0.1"]),
        "RATE_LIMIT_PER_MINUTE": "100000",  # tests poll fast; test_hardening_api sets its own limit
        "PYTHONUNBUFFERED": "1",
        "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false",
        "STREAMLIT_SERVER_HEADLESS": "true",
    })
    env.update(overrides)
    return env


@dataclass
class Studio:
    data_dir: Path
    port: int
    env: dict[str, str]
    logs_dir: Path
    server: subprocess.Popen | None = None
    worker: subprocess.Popen | None = None
    worker_starts: int = 0
    _logs: list = field(default_factory=list)
    # httpx response hooks for every client() and get_run() (test_api_contract checks the original's schemas)
    response_hooks: list = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        log = open(self.logs_dir / f"{name}.log", "ab")  # noqa: SIM115 - closed in stop()
        self._logs.append(log)
        return subprocess.Popen(args, cwd=PROJECT_ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)

    def start_server(self, timeout: float = 90.0) -> None:
        self.server = self._spawn("server", [sys.executable, "-m", "uvicorn", "server:app", "--host", "127.0.0.1",
                                             "--port", str(self.port), "--log-level", "warning"])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.server.poll() is not None:
                raise RuntimeError(f"server exited ({self.server.returncode}):\n{self.log_tail('server')}")
            with suppress(httpx.HTTPError):
                if httpx.get(self.url("/api/accounts/id"), headers={"x-api-key": KEY_A}, timeout=2).status_code == 200:
                    return
            time.sleep(0.3)
        raise RuntimeError(f"server did not answer in {timeout} s:\n{self.log_tail('server')}")

    def start_worker(self) -> None:
        self.worker_starts += 1
        self.worker = self._spawn("worker", [sys.executable, "-m", "taskqueue", "worker"])

    def stop_worker(self, *, kill: bool = False, timeout: float = 20.0) -> None:
        """Stop the consumer: SIGKILL to its whole group (a crash), or SIGTERM (a shutdown)."""
        if self.worker is None:
            return
        _signal_group(self.worker, signal.SIGKILL if kill else signal.SIGTERM)
        try:
            self.worker.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _signal_group(self.worker, signal.SIGKILL)
            self.worker.wait()
        if not kill:  # let forked workers finish putting an interrupted run back, then clear the group
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and _group_alive(self.worker.pid):
                time.sleep(0.1)
        _signal_group(self.worker, signal.SIGKILL)
        self.worker = None

    def stop(self) -> None:
        self.stop_worker()
        if self.server is not None:
            _signal_group(self.server, signal.SIGTERM)
            try:
                self.server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                _signal_group(self.server, signal.SIGKILL)
                self.server.wait()
            self.server = None
        for log in self._logs:
            log.close()

    def log_tail(self, name: str, lines: int = 60) -> str:
        path = self.logs_dir / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def url(self, path: str) -> str:
        return self.base_url + path

    def client(self, key: str | None = KEY_A, timeout: float = 30.0) -> httpx.Client:
        headers = {"x-api-key": key} if key else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout, follow_redirects=False,
                            event_hooks={"response": list(self.response_hooks)})

    def get_run(self, run_id: str, key: str = KEY_A) -> dict:
        with self.client(key) as c:
            r = c.get("/api/tasks/runs", params={"runId": run_id})
        r.raise_for_status()
        return r.json()["runs"][0]

    def wait_for(self, run_ids: Iterable[str], statuses: Iterable[str] = FINAL_STATUSES, *, key: str = KEY_A,
                 timeout: float = 180.0, poll: float = 0.5) -> dict[str, dict]:
        """Poll until every run is in one of `statuses`; the runs as the API shows them."""
        wanted, ids = set(statuses), list(run_ids)
        deadline = time.monotonic() + timeout
        runs: dict[str, dict] = {}
        while time.monotonic() < deadline:
            runs = {rid: self.get_run(rid, key) for rid in ids}
            if all(run["status"] in wanted for run in runs.values()):
                return runs
            time.sleep(poll)
        states = {rid: (r["status"], r["step"], r["progress"], r["error"]) for rid, r in runs.items()}
        raise AssertionError(f"runs did not reach {sorted(wanted)} in {timeout} s: {states}\n"
                             f"--- worker log ---\n{self.log_tail('worker')}")


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


@contextmanager
def running_studio(root: Path, *, worker: bool = True, **env: str) -> Iterator[Studio]:
    """A server (and by default a consumer) with DATA_DIR under `root`, stopped afterwards."""
    data_dir = root / "data"
    logs_dir = root / "logs"
    data_dir.mkdir(parents=True, exist_ok=True)
    logs_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    studio = Studio(data_dir=data_dir, port=port, env=studio_env(data_dir, port, **env), logs_dir=logs_dir)
    try:
        studio.start_server()
        if worker:
            studio.start_worker()
        yield studio
    finally:
        studio.stop()
