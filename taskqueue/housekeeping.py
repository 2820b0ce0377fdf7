"""The disk's upkeep, run by the worker's periodic task: caches and repository clones kept under their caps (least
recently used first), finished runs' files deleted after OUTPUT_RETENTION_DAYS (the run then says EXPIRED), old
idempotency keys gone."""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.settings import Settings
from taskqueue.storage import Storage
from taskqueue.store import RunStore

log = logging.getLogger("taskqueue.housekeeping")

# A file used this recently is never evicted, whatever the cap: a run may be reading it right now (a download, an
# upload a queued run names). Files in use are touched on every use (pipeline/fetch.py, analyse_audio).
MIN_AGE_SECONDS = 3600.0
DAY = 24 * 3600.0


@dataclass
class Tidied:
    evicted: dict[str, int] = field(default_factory=dict)  # cache folder -> files removed
    expired_runs: list[str] = field(default_factory=list)
    idempotency_keys: int = 0


def cache_files(folder: Path) -> list[tuple[float, int, Path]]:
    """(last use, size, path) of every file under `folder`, least recently used first."""
    found = []
    for root, _dirs, names in os.walk(folder):
        for name in names:
            path = Path(root, name)
            try:
                stat = path.lstat()
            except OSError:
                continue  # removed while we looked
            found.append((max(stat.st_mtime, stat.st_atime), stat.st_size, path))
    return sorted(found)


def evict_lru(folder: Path, max_bytes: int, *, now: float | None = None,
              min_age: float = MIN_AGE_SECONDS) -> list[Path]:
    """Remove the least recently used files until `folder` holds at most `max_bytes`; the paths removed."""
    if not folder.is_dir():
        return []
    now = time.time() if now is None else now
    files = cache_files(folder)
    total = sum(size for _, size, _ in files)
    removed: list[Path] = []
    for used, size, path in files:
        if total <= max_bytes:
            break
        if now - used < min_age:
            break  # everything after this is newer still
        try:
            path.unlink()
        except OSError:
            continue
        total -= size
        removed.append(path)
    _remove_empty_folders(folder)
    return removed


def _remove_empty_folders(folder: Path) -> None:
    for root, dirs, files in os.walk(folder, topdown=False):
        if not dirs and not files and Path(root) != folder:
            try:
                os.rmdir(root)
            except OSError:
                continue  # something arrived meanwhile


def evict_workspaces(folder: Path, max_bytes: int, *, now: float | None = None,
                     min_age: float = MIN_AGE_SECONDS) -> list[str]:
    """Remove whole repository clones, least recently synced first (their lock file's time), until `folder`
    holds at most `max_bytes`; a clone being synced (its lock held) is skipped. The next run clones it again."""
    if not folder.is_dir():
        return []
    now = time.time() if now is None else now
    clones = []
    for clone in folder.iterdir():
        if clone.is_dir() and not clone.name.endswith(".cloning"):
            lock = folder / f"{clone.name}.lock"
            used = lock.stat().st_mtime if lock.exists() else clone.stat().st_mtime
            clones.append((used, sum(size for _, size, _ in cache_files(clone)), clone))
    total = sum(size for _, size, _ in clones)
    removed: list[str] = []
    for used, size, clone in sorted(clones):
        if total <= max_bytes or now - used < min_age:
            break
        with open(folder / f"{clone.name}.lock", "a") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # being fetched right now
            shutil.rmtree(clone, ignore_errors=True)
        total -= size
        removed.append(clone.name)
    return removed


def expire_outputs(settings: Settings, store: RunStore, storage: Storage, *, now: float | None = None) -> list[str]:
    """Delete the files of runs finished more than OUTPUT_RETENTION_DAYS ago; each such run becomes EXPIRED."""
    if settings.output_retention_days <= 0:
        return []
    now = time.time() if now is None else now
    expired = []
    for run_id in store.completed_before(now - settings.output_retention_days * DAY):
        try:
            storage.delete(run_id)  # first the files, then the status: a crash between leaves it to the next pass
        except Exception:
            log.exception("could not delete the files of %s; trying again next time", run_id)
            continue
        if store.expire(run_id, f"The run's files were deleted after {settings.output_retention_days:g} days "
                                "(OUTPUT_RETENTION_DAYS)"):
            expired.append(run_id)
    return expired


def tidy(settings: Settings, store: RunStore, storage: Storage, *, now: float | None = None) -> Tidied:
    """One pass of everything above."""
    done = Tidied()
    for folder, cap in settings.cache_caps.items():
        if folder.name == "workspaces":
            removed: list = evict_workspaces(folder, cap, now=now)
        else:
            removed = evict_lru(folder, cap, now=now)
        if removed:
            done.evicted[str(folder.relative_to(settings.data_dir))] = len(removed)
    done.expired_runs = expire_outputs(settings, store, storage, now=now)
    done.idempotency_keys = store.expire_idempotency(settings.idempotency_ttl_seconds)
    if done.evicted or done.expired_runs or done.idempotency_keys:
        log.info("housekeeping: evicted %s, expired runs %s, forgot %d idempotency keys", done.evicted,
                 done.expired_runs, done.idempotency_keys)
    return done
