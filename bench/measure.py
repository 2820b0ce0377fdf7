"""Measuring helpers for the benchmark: alternating repeats, medians, process-tree memory, the machine."""

from __future__ import annotations

import os
import platform
import statistics
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path


def alternate(contenders: dict[str, Callable[[int], float]], repeats: int) -> dict[str, list[float]]:
    """Run every contender once per round, in turn (A B A B ...), so drifting load hits them alike.

    Each contender gets the round number and returns the seconds it measured (its own timing, not ours,
    so a contender may leave out work that is not part of the comparison).
    """
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for round_no in range(repeats):
        # The order flips every round, so neither always runs right after the other.
        names = list(contenders) if round_no % 2 == 0 else list(reversed(contenders))
        for name in names:
            times[name].append(contenders[name](round_no))
    return times


def median(values: Iterable[float]) -> float:
    data = list(values)
    return statistics.median(data) if data else float("nan")


def percentile(values: Iterable[float], pct: float) -> float:
    """Nearest-rank percentile (p99 of 400 samples is the 396th smallest)."""
    data = sorted(values)
    if not data:
        return float("nan")
    rank = max(1, min(len(data), int(-(-pct * len(data) // 100))))
    return data[rank - 1]


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


# --- memory of process trees, read from /proc (Linux) -------------------------------------------------------------


def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        # the command name may hold spaces and parentheses; the fields after its last ')' are fixed
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        kids.setdefault(ppid, []).append(int(entry.name))
    return kids


def tree_pids(roots: Iterable[int]) -> set[int]:
    """The roots and all their descendants alive now."""
    kids = _children_map()
    seen: set[int] = set()
    todo = [r for r in roots if Path(f"/proc/{r}").exists()]
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        todo.extend(kids.get(pid, []))
    return seen


def rss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


@dataclass
class MemorySampler:
    """Samples the summed resident memory of process trees in a thread; `peak` is the largest sum seen."""

    roots: Callable[[], list[int]]
    interval: float = 0.1
    peak: int = 0
    samples: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    def sample(self) -> int:
        total = sum(rss_bytes(pid) for pid in tree_pids(self.roots()))
        self.peak = max(self.peak, total)
        self.samples += 1
        return total

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    @contextmanager
    def running(self) -> Iterator[MemorySampler]:
        thread = threading.Thread(target=self._loop, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            thread.join()


# --- the machine -----------------------------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def machine_line() -> str:
    return (f"{datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}; {os.cpu_count()} CPUs ({cpu_model()}); "
            f"Python {platform.python_version()}; {platform.system()} {platform.release()}")
