"""Benchmark parts that need the real studio processes: a batch through the queue, API latency, render memory."""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.contenders import DEMO_ARTIST, TEMPLATE
from bench.measure import MemorySampler, percentile, tree_pids
from pipeline.settings import PROJECT_ROOT
from tests.servers import KEY_A, Studio, running_studio, studio_env

MB = 1024 * 1024


def create_body(batch: int) -> dict:
    return {"artist_account_id": DEMO_ARTIST, "template": TEMPLATE, "caption_length": "short", "batch": batch}


@dataclass(frozen=True)
class BatchResult:
    workers: int
    videos: int
    seconds: float
    peak_bytes: int
    completed: int
    analysis_entries: int
    distinct_songs: int
    clip_step_seconds: list[float]

    @property
    def per_minute(self) -> float:
        return 60.0 * self.videos / self.seconds


def _wait_consumer_ready(studio: Studio, workers: int, timeout: float = 60.0) -> None:
    """The consumer has forked its workers (and so finished importing) when its tree holds workers + 1 processes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if studio.worker is not None and len(tree_pids([studio.worker.pid])) >= workers + 1:
            time.sleep(1.0)
            return
        time.sleep(0.2)
    raise RuntimeError(f"the consumer did not start its workers:\n{studio.log_tail('worker')}")


def run_batch(root: Path, *, workers: int, videos: int, env: dict[str, str] | None = None) -> BatchResult:
    """`videos` default videos through the real queue (server + consumer with `workers` workers), timed from
    the POST to the last run's final state; peak memory is the summed RSS of both process trees."""
    with running_studio(root, worker=False, WORKERS=str(workers), RATE_LIMIT_PER_MINUTE="0", **(env or {})) as studio:
        studio.start_worker()
        _wait_consumer_ready(studio, workers)
        sampler = MemorySampler(lambda: [p.pid for p in (studio.server, studio.worker) if p is not None])
        with sampler.running(), studio.client(KEY_A) as client:
            start = time.perf_counter()
            answer = client.post("/api/content/create", json=create_body(videos))
            answer.raise_for_status()
            run_ids = answer.json()["runIds"]
            runs = studio.wait_for(run_ids, timeout=60.0 + 120.0 * videos, poll=0.25)
            seconds = time.perf_counter() - start
        analysis_dir = studio.data_dir / "cache" / "analysis"
        outputs = [r.get("output") or {} for r in runs.values()]
        songs = {o.get("audio", {}).get("songSlug") for o in outputs if o}
        return BatchResult(
            workers=workers, videos=videos, seconds=seconds, peak_bytes=sampler.peak,
            completed=sum(r["status"] == "COMPLETED" for r in runs.values()),
            analysis_entries=len(list(analysis_dir.glob("*.json"))) if analysis_dir.is_dir() else 0,
            distinct_songs=len(songs - {None}),
            clip_step_seconds=[float(o.get("timings", {}).get("clip", 0.0)) for o in outputs if o],
        )


def single_render_peak(root: Path, env: dict[str, str] | None = None) -> tuple[int, float]:
    """Peak summed RSS (bytes) of one `python -m pipeline render` (Python + ffmpeg), and its seconds."""
    data = root / "data"
    data.mkdir(parents=True, exist_ok=True)
    run_env = studio_env(data, 0, **(env or {}))
    args = [sys.executable, "-m", "pipeline", "render", "--artist", DEMO_ARTIST, "--template", TEMPLATE,
            "--caption-length", "short", "--seed", "11", "--quiet", "--out", str(root / "out")]
    start = time.perf_counter()
    proc = subprocess.Popen(args, cwd=PROJECT_ROOT, env=run_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    sampler = MemorySampler(lambda: [proc.pid], interval=0.05)
    with sampler.running():
        out, err = proc.communicate(timeout=600)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"pipeline render failed: {err.decode(errors='replace')[-2000:]}")
    json.loads(out)
    return sampler.peak, seconds


# --- API latency ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Latency:
    batch: int
    requests: int
    errors: int
    p50: float
    p99: float
    seconds: float

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds


def _hammer(base_url: str, body: dict, clients: int, per_client: int) -> tuple[list[float], int, float]:
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    payload = json.dumps(body).encode()
    headers = {"x-api-key": KEY_A, "content-type": "application/json"}

    def client_loop(_: int) -> None:
        with httpx.Client(base_url=base_url, headers=headers, timeout=30) as client:
            for _ in range(per_client):
                t = time.perf_counter()
                r = client.post("/api/content/create", content=payload)
                took = time.perf_counter() - t
                with lock:
                    latencies.append(took)
                    if r.status_code != 202:
                        errors[0] += 1

    # The load generator's own full collections (70-100 ms in this process) stalled all 20 clients at once
    # and were counted as server latency; timeit switches the collector off while timing for the same reason.
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            list(pool.map(client_loop, range(clients)))
        return latencies, errors[0], time.perf_counter() - start
    finally:
        gc.enable()


def api_latency(root: Path, *, batches: list[int], clients: int, per_client: int,
                log: Callable[[str], None] = print) -> list[Latency]:
    """POST /api/content/create from `clients` concurrent clients; no consumer runs, so nothing renders."""
    results = []
    with running_studio(root, worker=False, RATE_LIMIT_PER_MINUTE="0") as studio:
        _hammer(studio.base_url, create_body(1), clients, 2)  # warm-up: connections, first imports, SQLite pages
        for batch in batches:
            latencies, errors, seconds = _hammer(studio.base_url, create_body(batch), clients, per_client)
            results.append(Latency(batch=batch, requests=len(latencies), errors=errors, p50=percentile(latencies, 50),
                                   p99=percentile(latencies, 99), seconds=seconds))
            log(f"  api batch {batch}: p50 {results[-1].p50 * 1000:.1f} ms, p99 {results[-1].p99 * 1000:.1f} ms")
    return results
