"""Work folders left by killed workers (`.<run id>.work-<pid>` beside the outputs): found and removed.

A worker SIGKILLed mid-render cannot clean up after itself, so the reaper (and each worker start) does.
"""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

from taskqueue.store import EXECUTING, RunStore

log = logging.getLogger("taskqueue.workdirs")

WORK_DIR = re.compile(r"^\.(?P<run_id>run_[A-Za-z0-9_-]+)\.work-(?P<pid>\d+)$")


def is_live(run_status: str | None, run_worker: str | None, pid: str) -> bool:
    """A work folder is in use only while its run is EXECUTING in the process that made it."""
    return run_status == EXECUTING and bool(run_worker) and run_worker.rsplit(":", 1)[-1] == pid  # type: ignore[union-attr]


def stale_work_dirs(runs_dir: Path, store: RunStore) -> list[Path]:
    if not runs_dir.is_dir():
        return []
    stale = []
    for path in runs_dir.iterdir():
        match = WORK_DIR.match(path.name)
        if match is None or not path.is_dir():
            continue
        run = store.get(match["run_id"])
        if not is_live(run.status if run else None, run.worker if run else None, match["pid"]):
            stale.append(path)
    return stale


def clean_work_dirs(runs_dir: Path, store: RunStore) -> list[Path]:
    """Remove the work folders no live run uses; the ones removed."""
    removed = []
    for path in stale_work_dirs(runs_dir, store):
        shutil.rmtree(path, ignore_errors=True)
        if not path.exists():
            removed.append(path)
    if removed:
        log.warning("removed %d work folder(s) left by stopped workers: %s", len(removed),
                    ", ".join(p.name for p in removed))
    return removed
