"""`python -m taskqueue serve` (what `make run` starts): key on first start, the seed's example makes a video
at the default size, and Ctrl-C stops the server and the worker."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from pipeline.ffmpeg import probe
from pipeline.settings import PROJECT_ROOT
from tests.servers import free_port, studio_env

pytestmark = pytest.mark.slow


def children_of(pid: int) -> set[int]:
    """Every live descendant of `pid` (from /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents[int(entry.name)] = int(fields[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


class Output:
    """Drains a process's output in a thread (a full pipe would block its children) and keeps it."""

    def __init__(self, proc: subprocess.Popen):
        self.text = ""
        self._thread = threading.Thread(target=self._drain, args=(proc,), daemon=True)
        self._thread.start()

    def _drain(self, proc: subprocess.Popen) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.text += line

    def wait_for(self, marker: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while marker not in self.text and time.monotonic() < deadline:
            time.sleep(0.1)
        assert marker in self.text, self.text
        return self.text


def start_serve(env: dict[str, str]) -> tuple[subprocess.Popen, Output]:
    proc = subprocess.Popen([sys.executable, "-m", "taskqueue", "serve"], cwd=PROJECT_ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return proc, Output(proc)


def test_serve_prints_a_working_key_and_curl_and_stops_cleanly(tmp_path: Path) -> None:
    port = free_port()
    env = studio_env(tmp_path / "data", port)
    del env["API_KEYS"]  # only the key `serve` makes
    proc, output = start_serve(env)
    try:
        out = output.wait_for("Then poll", 60)
        key = re.search(r"API key:\s+(\S+)", out)[1]  # type: ignore[index]
        assert f"http://127.0.0.1:{port}/" in out and (tmp_path / "data" / "api-key.txt").read_text().strip() == key
        curl = next(line.strip() for line in out.splitlines() if line.strip().startswith("curl -sS -X POST"))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # the server starts beside the printout
            try:
                if httpx.get(f"http://127.0.0.1:{port}/api/accounts/id", headers={"x-api-key": key}).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        answer = json.loads(subprocess.run(curl, shell=True, capture_output=True, text=True, check=True).stdout)
        (run_id,) = answer["runIds"]
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            run = httpx.get(f"http://127.0.0.1:{port}/api/tasks/runs", params={"runId": run_id},
                            headers={"x-api-key": key}).json()["runs"][0]
            if run["isFinal"]:
                break
            time.sleep(1)
        assert run["status"] == "COMPLETED", run
        video = tmp_path / "seed.mp4"
        video.write_bytes(httpx.get(run["output"]["video"]["url"], timeout=60).content)
        info = probe(video)
        assert (info.width, info.height, info.video_codec, info.audio_codec) == (720, 1280, "h264", "aac")
        assert info.duration == pytest.approx(run["output"]["audio"]["durationSeconds"], abs=0.15)
        assert run["output"]["captionText"]

        descendants = children_of(proc.pid)
        assert len(descendants) >= 2  # uvicorn and the consumer (its workers are threads: taskqueue/consumer.py)
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        assert time.monotonic() - started < 25
        time.sleep(0.5)
        assert not [pid for pid in descendants if alive(pid)]
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{port}/api/accounts/id", timeout=2)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    # a second start prints the same key (kept in DATA_DIR, stored hashed in the run store)
    again, again_output = start_serve(env)
    try:
        assert f"API key:  {key}" in again_output.wait_for("Then poll", 60)
        again.send_signal(signal.SIGINT)
        assert again.wait(timeout=30) == 0
    finally:
        if again.poll() is None:
            again.kill()
            again.wait()
