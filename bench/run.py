"""The performance benchmark: us against the limit (one bare ffmpeg command), against the peers (MoviePy), a batch
through the real queue, API latency, and how cost grows with clip and song length.

    make bench                         # = .venv/bin/python bench/run.py
    .venv/bin/python bench/run.py --quick            # a smoke run: one repeat, small batch
    .venv/bin/python bench/run.py --parts limit,peers --repeats 5

Every figure is a ratio against a baseline measured in the same run, contenders alternating round by round
(medians), so a busy machine slows both sides alike. Results go to docs/PERFORMANCE.md with the command,
the machine and its load.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):  # run as a script (`python bench/run.py`): the project root must be importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.contenders import (  # noqa: E402
    Prepared,
    moviepy_available,
    prepare,
    run_bare,
    run_moviepy,
    run_ours,
)
from bench.measure import alternate, load_average, machine_line, median  # noqa: E402
from pipeline.analyse_audio import analyse_audio  # noqa: E402
from pipeline.choose_clip import choose_clip  # noqa: E402
from pipeline.encoder import HARDWARE, why_not  # noqa: E402
from pipeline.ffmpeg import ffmpeg_exe  # noqa: E402
from pipeline.settings import DEMO_ARTIST_DIR, PROJECT_ROOT, Settings  # noqa: E402

PARTS = ("limit", "peers", "batch", "api", "growth")
REPORT = PROJECT_ROOT / "docs" / "PERFORMANCE.md"
BEGIN, END = "<!-- bench:begin (written by bench/run.py) -->", "<!-- bench:end -->"
ANALYSED_SECONDS = 0.1  # a clip step longer than this decoded and analysed its song (a cache hit takes ~0.01 s)
SEED = 11  # the same song, clip, movement and caption in every repeat


@dataclass
class Row:
    part: str
    figure: str
    value: str
    ratio: str = ""
    target: str = ""
    ok: bool | None = None


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, *args, **kw) -> None:
        row = Row(*args, **kw)
        self.rows.append(row)
        mark = {True: "ok", False: "MISSED", None: ""}[row.ok]
        print(f"  {row.figure}: {row.value} {row.ratio} {row.target} {mark}".rstrip(), flush=True)


def log(text: str) -> None:
    print(text, flush=True)


# --- the comparison the smoke test also runs ------------------------------------------------------------------


@dataclass(frozen=True)
class Comparison:
    ours: list[float]
    bare: list[float]
    floor: list[float]
    moviepy: list[float]
    prepared: Prepared
    prepare_seconds: float

    @property
    def ratio(self) -> float:
        return median(self.ours) / median(self.bare)

    @property
    def floor_ratio(self) -> float:
        return median(self.ours) / median(self.floor) if self.floor else float("nan")

    @property
    def peers_ratio(self) -> float:
        return median(self.moviepy) / median(self.ours) if self.moviepy else float("nan")


def timed_ours(settings: Settings, *, upscale: bool = False, lyrics: str | None = None) -> Callable[[int], float]:
    """A contender for `alternate`: our whole pipeline once, its seconds; the run's files are removed."""
    def one(_: int) -> float:
        seconds, result = run_ours(settings, seed=SEED, upscale=upscale, lyrics=lyrics)
        shutil.rmtree(result.video_path.parent, ignore_errors=True)
        return seconds
    return one


def compare_bare_and_ours(settings: Settings, work: Path, *, repeats: int, upscale: bool = False,
                          with_moviepy: bool = False, with_floor: bool = False, lyrics: str | None = None,
                          ) -> Comparison:
    """Our whole pipeline vs one bare ffmpeg command (and MoviePy), alternating, on the same prepared inputs.

    The preparing run is also the warm-up (song analysis cached, files in the page cache); it is not counted.
    """
    prepared, prepare_seconds = prepare(settings, work / "prepared", seed=SEED, upscale=upscale, lyrics=lyrics)
    out = work / "out"
    out.mkdir(parents=True, exist_ok=True)

    contenders = {"ours": timed_ours(settings, upscale=upscale, lyrics=lyrics),
                  "bare": lambda i: run_bare(prepared, out / f"bare-{i}.mp4", settings.ffmpeg_binary)}
    if with_floor:
        contenders["floor"] = lambda i: run_bare(prepared, out / f"floor-{i}.mp4", settings.ffmpeg_binary,
                                                 camera=False)
    if with_moviepy:
        contenders["moviepy"] = lambda i: run_moviepy(prepared, out / f"moviepy-{i}.mp4")
    times = alternate(contenders, repeats)
    return Comparison(ours=times["ours"], bare=times["bare"], floor=times.get("floor", []),
                      moviepy=times.get("moviepy", []), prepared=prepared,
                      prepare_seconds=prepare_seconds)


def _s(values: list[float]) -> str:
    return f"{median(values):.2f} s (median of {len(values)}: {', '.join(f'{v:.2f}' for v in values)})"


# --- the parts ------------------------------------------------------------------------------------------------


def part_encoder(report: Report, work: Path, repeats: int) -> None:
    """A GPU's encoder against x264, our whole pipeline both times; only where one works on this machine."""
    base = Settings(_env_file=None, data_dir=work / "data", video_encoder="libx264")
    for name in HARDWARE:
        reason = why_not(name, base.ffmpeg_binary)
        if reason is not None:
            report.add("limit", f"{name}: not usable here", reason[:120], ratio="auto keeps libx264")
            continue
        log(f"limit: {name} vs libx264, whole pipeline")
        gpu = base.model_copy(update={"video_encoder": name})
        run_ours(gpu, seed=SEED)  # warm-up (song analysis cached)

        times = alternate({name: timed_ours(gpu), "libx264": timed_ours(base)}, repeats)
        ratio = median(times[name]) / median(times["libx264"])
        report.add("limit", f"ours with {name}, 720x1280 15 s", _s(times[name]))
        report.add("limit", "ours with libx264, the same", _s(times["libx264"]))
        report.add("limit", f"{name} / libx264", f"{ratio:.3f}", target="< 1 (auto uses it)", ok=ratio < 1)


def part_limit_and_peers(report: Report, work: Path, parts: set[str], repeats: int, quick: bool) -> None:
    # x264 like the bare command and MoviePy; a GPU's encoder is measured on its own (part_encoder)
    settings = Settings(_env_file=None, data_dir=work / "data", video_encoder="libx264")
    peers = "peers" in parts
    why_not = moviepy_available() if peers else None
    if peers and why_not:
        report.notes.append(f"MoviePy could not run, so the peers' comparison was skipped: {why_not}")
        log(f"  MoviePy unavailable: {why_not}")
        peers = False
    log("limit: 720x1280 (ours / bare" + (" / moviepy" if peers else "") + ")")
    c = compare_bare_and_ours(settings, work / "720", repeats=repeats, with_moviepy=peers,
                              with_floor="limit" in parts)
    if "limit" in parts:
        report.add("limit", "ours, whole pipeline, 720x1280 15 s", _s(c.ours))
        report.add("limit", "bare ffmpeg, same output, 720x1280", _s(c.bare))
        report.add("limit", "ours / bare (720x1280)", f"{c.ratio:.3f}", target="<= 1.25", ok=c.ratio <= 1.25)
        report.add("limit", "bare ffmpeg without the camera (the encode floor), 720x1280", _s(c.floor))
        report.add("limit", "ours / floor (720x1280)", f"{c.floor_ratio:.3f}",
                   ratio="what our camera, styled image and poster add to encoding alone")
    if peers:
        report.add("peers", "MoviePy 2.x, same video (karaoke lyrics, cuts), 720x1280", _s(c.moviepy))
        report.add("peers", "MoviePy / ours (720x1280)", f"{c.peers_ratio:.2f}x", target=">= 8x",
                   ok=c.peers_ratio >= 8)
    if peers and not quick:  # the same video without the lyrics (the edit's cuts stay): what the lyrics cost
        log("peers: 720x1280 without lyrics (ours / bare / moviepy)")
        n = compare_bare_and_ours(settings, work / "720-no-lyrics", repeats=repeats, with_moviepy=True,
                                  lyrics="none")
        report.add("peers", "ours, lyrics none (cuts on), 720x1280", _s(n.ours))
        report.add("peers", "ours / bare, lyrics none (720x1280)", f"{n.ratio:.3f}", target="<= 1.25",
                   ok=n.ratio <= 1.25)
        report.add("peers", "MoviePy / ours, lyrics none (720x1280)", f"{n.peers_ratio:.2f}x", target=">= 8x",
                   ok=n.peers_ratio >= 8)
    if "limit" in parts and not quick:
        log("limit: upscale 1440x2560 (ours / bare)")
        u = compare_bare_and_ours(settings, work / "1440", repeats=max(1, repeats - 1), upscale=True)
        report.add("limit", "ours, whole pipeline, upscale 1440x2560", _s(u.ours))
        report.add("limit", "bare ffmpeg, same output, 1440x2560", _s(u.bare))
        report.add("limit", "ours / bare (1440x2560)", f"{u.ratio:.3f}", target="<= 1.25", ok=u.ratio <= 1.25)
    if "limit" in parts:
        part_encoder(report, work / "encoder", repeats)


def part_batch(report: Report, work: Path, quick: bool) -> None:
    from bench.system import run_batch, single_render_peak

    videos = 3 if quick else 10
    env = {"CLIP_SECONDS": "5"} if quick else {}
    log(f"batch: {videos} videos through the queue, 1 then 2 workers")
    results = {}
    for workers in (1, 2):
        r = run_batch(work / f"batch-{workers}", workers=workers, videos=videos, env=env)
        results[workers] = r
        report.add("batch", f"{videos} videos, {workers} worker(s): wall", f"{r.seconds:.1f} s",
                   ratio=f"{r.per_minute:.2f} videos/min", target=f"{r.completed}/{videos} COMPLETED",
                   ok=r.completed == videos)
        report.add("batch", f"{workers} worker(s): peak RSS, server + consumer trees", f"{r.peak_bytes / 2**20:.0f} MB")
        # a run that analysed its song spends ~0.3 s or more in the clip step; one that read the cache, ~0.01 s
        analysed = sum(s > ANALYSED_SECONDS for s in r.clip_step_seconds)
        report.add("batch", f"{workers} worker(s): runs that analysed a song / distinct songs",
                   f"{analysed} / {r.distinct_songs}", ratio=f"{r.analysis_entries} cache entries; clip step s: "
                   + ", ".join(f"{s:.2f}" for s in r.clip_step_seconds),
                   target="one analysis per song", ok=analysed <= r.distinct_songs)
    speedup = results[1].seconds / results[2].seconds
    report.add("batch", "2 workers vs 1: speed-up", f"{speedup:.2f}x", target="> 1", ok=speedup > 1.0)
    peak, seconds = single_render_peak(work / "single", env)
    report.add("batch", "one 720x1280 render: peak RSS (python + ffmpeg)", f"{peak / 2**20:.0f} MB",
               ratio=f"{seconds:.1f} s incl. start-up", target="< 600 MB", ok=peak < 600 * 2**20)


def part_api(report: Report, work: Path, quick: bool) -> None:
    from bench.system import api_latency

    clients, per_client = 20, (4 if quick else 20)
    log(f"api: POST /api/content/create, {clients} concurrent clients x {per_client} requests, no consumer")
    for lat in api_latency(work / "api", batches=[1, 30], clients=clients, per_client=per_client, log=log):
        target = "< 100 ms" if lat.batch == 30 else ""
        report.add("api", f"batch {lat.batch}: p50 / p99 ({lat.requests} requests, {lat.errors} errors)",
                   f"{lat.p50 * 1000:.1f} / {lat.p99 * 1000:.1f} ms", ratio=f"{lat.per_second:.0f} req/s",
                   target=f"p99 {target}" if target else "",
                   ok=(lat.p99 < 0.1 and lat.errors == 0) if lat.batch == 30 else lat.errors == 0)


def make_long_song(path: Path, seconds: float, ffmpeg: str | None = None) -> Path:
    """A song of `seconds`: the demo song looped (real music, with sections that repeat), as MP3."""
    source = next(DEMO_ARTIST_DIR.glob("songs/*/*.mp3"))
    subprocess.run([ffmpeg_exe(ffmpeg), "-hide_banner", "-nostdin", "-y", "-v", "error", "-stream_loop", "-1",
                    "-i", str(source), "-t", f"{seconds:g}", "-c:a", "libmp3lame", "-b:a", "128k", str(path)],
                   check=True, timeout=300)
    return path


def part_growth(report: Report, work: Path, repeats: int, quick: bool) -> None:
    import random

    lengths = [5, 15] if quick else [5, 15, 30, 60]
    log(f"growth: whole pipeline at clip lengths {lengths} s")
    by_length = {}
    for length in lengths:
        settings = Settings(_env_file=None, data_dir=work / "growth-data", clip_seconds=float(length))
        run_ours(settings, seed=SEED)  # warm-up (and the analysis cache)

        by_length[length] = median(alternate({"ours": timed_ours(settings)}, max(1, repeats - 1))["ours"])
        report.add("growth", f"clip {length} s: whole pipeline", f"{by_length[length]:.2f} s",
                   ratio=f"{by_length[length] / length:.3f} s per clip second")
    base = 15 if lengths[-1] > 15 else lengths[0]  # from 15 s up: a 5 s clip carries the fixed start-up cost
    growth = (by_length[lengths[-1]] / lengths[-1]) / (by_length[base] / base)
    report.add("growth", f"per-second cost, {lengths[-1]} s vs {base} s", f"{growth:.2f}",
               target="<= 1.1 (linear)", ok=growth <= 1.1)

    minutes = [1, 3] if quick else [1, 3, 10]
    log(f"growth: hook search (decode + analysis + clip choice, no cache) on {minutes} minute songs")
    per_min = {}
    for m in minutes:
        song = make_long_song(work / f"song-{m}min.mp3", m * 60)

        def search(_: int, song: Path = song) -> float:
            start = time.perf_counter()
            analysis = analyse_audio(song, cache_dir=None)
            choose_clip(analysis, [], clip_seconds=15.0, rng=random.Random(SEED), prefer_lyrics=False)
            return time.perf_counter() - start

        took = median(alternate({"search": search}, repeats)["search"])
        per_min[m] = took / m
        report.add("growth", f"hook search, {m} min song", f"{took:.2f} s", ratio=f"{per_min[m]:.3f} s per minute")
    growth = per_min[minutes[-1]] / per_min[minutes[0]]
    report.add("growth", f"hook search per-minute cost, {minutes[-1]} min vs 1 min", f"{growth:.2f}",
               target="<= 1.1 (linear)", ok=growth <= 1.1)


# --- output -----------------------------------------------------------------------------------------------------


def table(rows: list[Row]) -> str:
    lines = ["| part | figure | value | ratio / detail | target | |", "|---|---|---|---|---|---|"]
    for r in rows:
        mark = {True: "ok", False: "**missed**", None: ""}[r.ok]
        lines.append(f"| {r.part} | {r.figure} | {r.value} | {r.ratio} | {r.target} | {mark} |")
    return "\n".join(lines)


def write_report(report: Report, command: str, load_before: str, load_after: str, seconds: float) -> None:
    block = "\n".join([
        BEGIN,
        "## Latest run",
        "",
        f"- command: `{command}`",
        f"- machine: {machine_line()}",
        f"- load average (1/5/15 min) before: {load_before}; after: {load_after}",
        f"- the benchmark took {seconds / 60:.1f} min",
        "",
        table(report.rows),
        "",
        *[f"- {note}" for note in report.notes],
        END,
    ])
    text = REPORT.read_text(encoding="utf-8") if REPORT.exists() else "# Performance\n\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + block + rest.split(END, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/run.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, of: {', '.join(PARTS)}")
    parser.add_argument("--repeats", type=int, default=3, help="rounds of each alternating comparison")
    parser.add_argument("--quick", action="store_true", help="a smoke run: one repeat, small batch, short songs")
    parser.add_argument("--no-report", action="store_true", help="print only; leave docs/PERFORMANCE.md alone")
    args = parser.parse_args(argv)
    parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    unknown = parts - set(PARTS)
    if unknown:
        parser.error(f"unknown parts: {', '.join(sorted(unknown))}")
    repeats = 1 if args.quick else max(1, args.repeats)
    command = shlex.join([".venv/bin/python", "bench/run.py", *(argv if argv is not None else sys.argv[1:])])
    load_before = load_average()
    log(f"{machine_line()}; load {load_before}")
    report = Report()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="studio-bench-") as tmp:
        work = Path(tmp)
        if parts & {"limit", "peers"}:
            part_limit_and_peers(report, work, parts, repeats, args.quick)
        if "batch" in parts:
            part_batch(report, work, args.quick)
        if "api" in parts:
            part_api(report, work, args.quick)
        if "growth" in parts:
            part_growth(report, work, repeats, args.quick)
    seconds = time.perf_counter() - start
    load_after = load_average()
    print("\n" + table(report.rows))
    for note in report.notes:
        print(f"- {note}")
    print(f"\nload before {load_before}, after {load_after}; {seconds / 60:.1f} min; {os.cpu_count()} CPUs")
    if not args.no_report:
        write_report(report, command, load_before, load_after, seconds)
        print(f"written to {REPORT.relative_to(PROJECT_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
