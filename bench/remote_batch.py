"""A batch of remote runs against the schema-enforcing fakes with realistic latency: batch 10 against batch 1.

    .venv/bin/python -m bench.remote_batch [--image 6 --video 20 --batch 10]

A real server and consumer with `make run`'s defaults (WORKERS=0: a CPU slot per core, RUNS_IN_FLIGHT=30), fal
image + video. The target (issue 20): batch wall <= 1.2 x (one run's remote wait + the ten runs' local work spread
over the cores). Local work is the consumer's CPU time with its ffmpeg children's (from /proc), not the steps'
wall time: one render already keeps both cores busy, so ten renders' wall times summed and halved would promise a
machine twice as fast as this one.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import httpx

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.fake_remote import FAL_KEY, FakeRemote  # noqa: E402
from tests.servers import KEY_A, Studio, running_studio  # noqa: E402

DEMO = "1873859c-dd37-4e9a-9bac-80d3558527a9"
REMOTE_STEPS = ("image", "video")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of the process and of its children it has waited for (the ffmpeg runs)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(v) for v in fields[11:15]) / os.sysconf("SC_CLK_TCK")  # utime, stime, cutime, cstime


def batch(studio: Studio, size: int) -> tuple[float, list[dict], dict]:
    start, started_at = time.monotonic(), time.time()
    r = httpx.post(studio.url("/api/content/create"), headers={"x-api-key": KEY_A}, timeout=30,
                   json={"artist_account_id": DEMO, "batch": size})
    r.raise_for_status()
    runs = studio.wait_for(r.json()["runIds"], timeout=1800, poll=0.25)
    wall = time.monotonic() - start
    bad = [run["status"] for run in runs.values() if run["status"] != "COMPLETED"]
    if bad:
        raise SystemExit(f"runs did not complete: {bad}\n{studio.log_tail('worker')}")
    return wall, [run["output"] for run in runs.values()], phases(list(runs.values()), started_at)


def phases(runs: list[dict], t0: float) -> dict[str, float]:
    """When, after the request, the batch's steps began and ended (from the runs' timelines)."""
    def at(step: str, key: str, pick) -> float:  # noqa: ANN001 - min or max
        times = [datetime.fromisoformat(t[key]).timestamp() for run in runs for t in run["timeline"]
                 if t["step"] == step and t[key]]
        return round(pick(times) - t0, 1) if times else -1.0

    return {"first_image_start_s": at("image", "startedAt", min),
            "last_image_start_s": at("image", "startedAt", max),
            "last_video_end_s": at("video", "finishedAt", max),
            "first_render_start_s": at("render", "startedAt", min),
            "last_render_end_s": at("render", "finishedAt", max)}


def split(outputs: list[dict]) -> tuple[float, float]:
    """(remote seconds, local seconds) summed over the runs, from each run's step timings."""
    remote = sum(out["timings"].get(step, 0.0) for out in outputs for step in REMOTE_STEPS)
    local = sum(v for out in outputs for k, v in out["timings"].items() if k not in REMOTE_STEPS)
    return remote, local


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--image", type=float, default=6.0, help="fake image model latency, s")
    parser.add_argument("--video", type=float, default=20.0, help="fake image-to-video latency, s")
    parser.add_argument("--batch", type=int, default=10)
    args = parser.parse_args(argv)
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="bench-remote-") as tmp, FakeRemote(Path(tmp) / "fake") as fake:
        fake.latency.update({"image": args.image, "video": args.video})
        env = {"IMAGE_PROVIDER": "fal", "VIDEO_PROVIDER": "fal", "FAL_KEY": FAL_KEY,
               "FAL_BASE_URL": fake.fal_base_url, "PROVIDER_POLL_SECONDS": "1",
               "WORKERS": "0"}  # make run's default (the test studio pins 1)
        with running_studio(Path(tmp) / "studio", **env) as studio:
            pid = studio.worker.pid
            cpu_before = cpu_seconds(pid)
            one_wall, one, _ = batch(studio, 1)
            cpu_one = cpu_seconds(pid) - cpu_before
            many_wall, many, many_phases = batch(studio, args.batch)
            cpu_many = cpu_seconds(pid) - cpu_before - cpu_one
        one_remote, one_local = split(one)
        _, many_local = split(many)
        target = 1.2 * (one_remote + cpu_many / cores)
        report = {
            "cores": cores, "latency": {"image": args.image, "video": args.video},
            "batch1_wall_s": round(one_wall, 1), "batch1_remote_wait_s": round(one_remote, 1),
            "batch1_local_steps_wall_s": round(one_local, 1), "batch1_cpu_s": round(cpu_one, 1),
            f"batch{args.batch}_wall_s": round(many_wall, 1),
            f"batch{args.batch}_local_steps_wall_s_total": round(many_local, 1),
            f"batch{args.batch}_cpu_s": round(cpu_many, 1),
            "target_s": round(target, 1), "met": many_wall <= target,
            f"target_from_batch1_cpu_x{args.batch}_s": round(1.2 * (one_remote + args.batch * cpu_one / cores), 1),
            "vs_batch1": round(many_wall / one_wall, 2), "fal_jobs_in_flight_max": fake.max_in_flight(),
            f"batch{args.batch}_phases": many_phases, "load_average_1min": round(os.getloadavg()[0], 1),
        }
    print(json.dumps(report, indent=2))
    return 0 if report["met"] else 1


if __name__ == "__main__":
    sys.exit(main())
