"""The worker side: one Huey task renders one run, with progress, heartbeat, cancel, timeout and retries.

The run store is the truth: a task first claims its run (QUEUED -> EXECUTING, atomically), so a
duplicate queue message or a cancelled run is skipped; every outcome ends in one final status.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import signal
import socket
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from huey import crontab
from huey.api import Task
from huey.exceptions import TaskTimeout

from pipeline.errors import Cancelled, ProviderError, StudioError
from pipeline.models import RunPlan
from pipeline.settings import Settings, get_settings
from taskqueue.huey_app import enqueue_all, huey
from taskqueue.storage import Storage, make_storage
from taskqueue.store import (
    CANCELED,
    COMPLETED,
    FAILED,
    QUEUED,
    TIMED_OUT,
    ReapResult,
    Run,
    RunStore,
)
from taskqueue.workdirs import clean_work_dirs

log = logging.getLogger("taskqueue.tasks")

DISK_ERRORS = {
    errno.ENOSPC: "The disk is full (No space left on device); free space where DATA_DIR is",
    errno.EDQUOT: "The disk quota is used up; free space where DATA_DIR is",
    errno.EROFS: "The output folder is on a read-only file system; DATA_DIR must be writable",
    errno.EACCES: "The output folder is not writable (permission denied); DATA_DIR must be writable",
    errno.EFBIG: "A file grew past the size the system allows (File too large)",
}
HARD_TIMEOUT_GRACE_SECONDS = 15  # Huey's own timeout, a backstop for a step that never polls should_cancel
OUTPUT_FILES = {"video": "video.mp4", "poster": "poster.jpg", "image": "image.jpg", "meta": "meta.json"}
# The video goes last: once it is in storage, everything the run made is there.
PUT_ORDER = ("poster", "image", "meta", "video")
FORGET_WORKERS_AFTER_SECONDS = 3600.0  # a killed worker's row goes away after this (health lists live ones)

_stores: dict[tuple[int, str], RunStore] = {}
_storages: dict[int, Storage] = {}


def process_store(settings: Settings) -> RunStore:
    """One store per process: forked workers must not share the parent's database connections."""
    key = (os.getpid(), settings.sqlalchemy_url)
    if key not in _stores:
        _stores[key] = RunStore(settings.sqlalchemy_url)
    return _stores[key]


def process_storage(settings: Settings) -> Storage:
    """One storage client per process (boto3 clients must not cross a fork either)."""
    if os.getpid() not in _storages:
        _storages[os.getpid()] = make_storage(settings)
    return _storages[os.getpid()]


def publish_outputs(storage: Storage, run_id: str, out_dir: Path) -> dict[str, str]:
    """Put the run's files into storage, video last; the {kind: file name} that were there."""
    files = {kind: OUTPUT_FILES[kind] for kind in PUT_ORDER if (out_dir / OUTPUT_FILES[kind]).is_file()}
    try:
        for name in files.values():
            storage.put(run_id, name, out_dir / name)
    except Exception as exc:
        log.exception("run %s: could not store its files", run_id)
        raise ProviderError(f"Could not store the run's files ({type(exc).__name__}); check STORAGE_URL "
                            "and the storage's credentials", transient=True, stage="storage") from exc
    stored = storage.local_path(run_id, OUTPUT_FILES["video"])
    if stored is None or stored.resolve() != (out_dir / OUTPUT_FILES["video"]).resolve():
        shutil.rmtree(out_dir, ignore_errors=True)  # stored elsewhere (bucket or shared mount): no second copy
    return files


def _render_task(run_id: str, delay: float | None = None) -> Task:
    """The queue message for one run; it carries the run id as its task id (for revoke)."""
    options: dict = {"id": run_id, "timeout": get_settings().run_timeout_seconds + HARD_TIMEOUT_GRACE_SECONDS}
    if delay:
        options["delay"] = delay
    return render_run.s(run_id, **options)


def enqueue_run(run_id: str, *, delay: float | None = None) -> None:
    """Put one run on the queue (a retry, a reaped run)."""
    huey.enqueue(_render_task(run_id, delay))


def enqueue_runs(run_ids: Sequence[str]) -> None:
    """Put a request's runs on the queue in one write, all or none."""
    enqueue_all(huey, [_render_task(run_id) for run_id in run_ids])


def revoke_queued(run_id: str) -> None:
    """Drop a cancelled run's pending queue message (the claim would skip it anyway)."""
    huey.revoke_by_id(run_id, revoke_once=True)


class ProgressWriter:
    """The pipeline's progress callback: writes step changes at once, percent at most every `interval`."""

    def __init__(self, store: RunStore, run_id: str, interval: float):
        self.store, self.run_id, self.interval = store, run_id, interval
        self.timeline: list[dict] = []
        self.step: str | None = None
        self.last_write = 0.0
        self.writes = 0

    def __call__(self, step: str, percent: float) -> None:
        now = time.monotonic()
        if step != self.step:
            self._close_open(time.time())
            if step != "done":
                self.timeline.append({"step": step, "started_at": time.time(), "finished_at": None})
            self.step = step
        elif now - self.last_write < self.interval:
            return
        self.last_write = now
        self.writes += 1
        self.store.progress(self.run_id, step, percent, self.timeline)

    def _close_open(self, at: float) -> None:
        if self.timeline and self.timeline[-1]["finished_at"] is None:
            self.timeline[-1]["finished_at"] = at

    def close(self) -> list[dict]:
        self._close_open(time.time())
        return self.timeline


class RunMonitor:
    """A thread beside the run: heartbeat, the owner's cancel flag, and the per-run deadline."""

    def __init__(self, store: RunStore, run_id: str, worker: str, *, heartbeat_seconds: float,
                 timeout_seconds: float, poll_seconds: float = 0.5):
        self.store, self.run_id, self.worker = store, run_id, worker
        self.heartbeat_seconds = heartbeat_seconds
        self.poll_seconds = min(poll_seconds, heartbeat_seconds)
        self.deadline = time.monotonic() + timeout_seconds
        self.timeout_seconds = timeout_seconds
        self.cancelled = threading.Event()
        self.timed_out = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"monitor-{run_id}", daemon=True)

    def start(self) -> RunMonitor:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def should_stop(self) -> bool:
        if time.monotonic() >= self.deadline:
            self.timed_out.set()
        return self.cancelled.is_set() or self.timed_out.is_set()

    def _loop(self) -> None:
        next_heartbeat = time.monotonic() + self.heartbeat_seconds
        next_cancel_check = 0.0
        while not self._stop.wait(self.poll_seconds):
            now = time.monotonic()
            if now >= self.deadline:
                self.timed_out.set()
            try:
                if now >= next_cancel_check:
                    next_cancel_check = now + 1.0
                    if self.store.cancel_requested(self.run_id):
                        self.cancelled.set()
                if now >= next_heartbeat:
                    next_heartbeat = now + self.heartbeat_seconds
                    self.store.heartbeat(self.run_id, self.worker)
            except Exception:  # a database hiccup must not kill the monitor; the next beat retries
                log.exception("monitor of %s could not reach the run store", self.run_id)


def build_plan(run: Run, settings: Settings) -> RunPlan:
    """The pipeline's plan from the stored request (the artist is looked up again: it may have changed)."""
    from pipeline.artists import find_artist
    from taskqueue.trigger import sync_artist

    request = run.request
    try:
        artist = sync_artist(find_artist(settings, run.artist_account_id), settings)
    except StudioError as exc:
        exc.stage = exc.stage or "artist"
        raise
    return RunPlan(
        run_id=run.id, artist=artist, template_id=run.template,
        caption_length=request.get("caption_length") or "none", lipsync=bool(request.get("lipsync")),
        upscale=bool(request.get("upscale")), songs=list(request.get("songs") or []),
        images=list(request.get("images") or []), seed=run.seed, out_dir=settings.runs_dir / run.id,
        lyrics=request.get("lyrics"), aspect_ratio=request.get("aspect_ratio") or "9:16",
    )


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


current_run: dict[int, str] = {}  # pid -> the run this worker process is rendering (for its heartbeat)


class WorkerHeartbeat:
    """A thread in each worker process: its row in the `workers` table, refreshed even while idle."""

    def __init__(self, store: RunStore, interval: float):
        self.store, self.interval = store, interval
        self.name, self.pid, self.started_at = worker_name(), os.getpid(), time.time()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="worker-heartbeat", daemon=True)

    def start(self) -> WorkerHeartbeat:
        self.beat()
        self._thread.start()
        return self

    def beat(self) -> None:
        # In turn: a beat that read the run before it ended must not land after the one that says it ended
        with self._lock:
            self.store.worker_beat(self.name, socket.gethostname(), self.pid, self.started_at,
                                   current_run.get(self.pid))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.store.worker_gone(self.name)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.beat()
            except Exception:  # the database may be back by the next beat
                log.exception("worker heartbeat could not reach the run store")


_heartbeats: dict[int, WorkerHeartbeat] = {}


def _announce_current_run() -> None:
    """This worker's row shows the run it took or finished now, not a heartbeat later (GET /api/health)."""
    heartbeat = _heartbeats.get(os.getpid())
    if heartbeat is None:
        return
    try:
        heartbeat.beat()
    except Exception:  # only the health view is late; the next beat corrects it
        log.exception("worker heartbeat could not reach the run store")


@huey.on_startup(name="worker_heartbeat")
def start_worker_heartbeat() -> None:
    settings = get_settings()
    _heartbeats[os.getpid()] = WorkerHeartbeat(process_store(settings), settings.heartbeat_seconds).start()


@huey.on_shutdown(name="worker_heartbeat")
def stop_worker_heartbeat() -> None:
    heartbeat = _heartbeats.pop(os.getpid(), None)
    if heartbeat is not None:
        heartbeat.stop()


# Set in a worker process when the consumer's stop signal (SIGTERM) arrives. The signal goes to the whole
# process group, so the run's ffmpeg may die of it before Python raises KeyboardInterrupt: a step that fails
# after this is a shutdown, and the run goes back to the queue instead of ending FAILED.
shutting_down = threading.Event()


@huey.on_startup(name="notice_shutdown")
def notice_shutdown() -> None:
    if threading.current_thread() is not threading.main_thread():
        return  # thread workers: the signals are the consumer's
    huey_handler = signal.getsignal(signal.SIGTERM)  # raises KeyboardInterrupt while a task runs

    def on_stop(signum: int, frame: object) -> None:
        shutting_down.set()
        if callable(huey_handler):
            huey_handler(signum, frame)

    signal.signal(signal.SIGTERM, on_stop)


def _unless_shutting_down() -> None:
    """In a failure handler: a failure after the stop signal came is the shutdown's, not the run's."""
    if shutting_down.is_set():
        raise KeyboardInterrupt


def execute_run(run_id: str, settings: Settings, store: RunStore, *, enqueue=enqueue_run) -> str:
    """Claim and render one run; returns the status it ended in ("skipped" when it was not queued)."""
    worker = worker_name()
    try:
        _unless_shutting_down()  # between two tasks Huey's handler raises nothing; take no new run then
        if not store.claim(run_id, worker):
            log.info("run %s is not queued any more; skipping this queue message", run_id)
            return "skipped"
        return _execute_claimed(run_id, worker, settings, store, enqueue)
    except KeyboardInterrupt:
        # The consumer is stopping: the run goes back to the queue for the next start, not counted as a try.
        # Caught here, around the claim too: a stop that landed between the claim and the render used to leave
        # the run EXECUTING until the reaper re-queued it as a second attempt.
        log.warning("run %s interrupted by shutdown; queued again", run_id)
        store.requeue(run_id, count_attempt=False, worker=worker)
        try:
            enqueue(run_id)  # a run still QUEUED (the claim never landed) lost its message too
        except Exception:
            log.exception("could not queue %s again; the next worker start recovers it", run_id)
        raise


def _execute_claimed(run_id: str, worker: str, settings: Settings, store: RunStore,
                     enqueue: Callable[..., None]) -> str:
    current_run[os.getpid()] = run_id
    _announce_current_run()
    run = store.get(run_id)
    assert run is not None
    progress = ProgressWriter(store, run_id, settings.progress_interval_seconds)
    monitor = RunMonitor(store, run_id, worker, heartbeat_seconds=settings.heartbeat_seconds,
                         timeout_seconds=settings.run_timeout_seconds).start()
    log.info("run %s: attempt %d on %s", run_id, run.attempts, worker)
    try:
        plan = build_plan(run, settings)
        from pipeline.run_video import run_video

        result = run_video(plan, settings, progress=progress, should_cancel=monitor.should_stop)
        files = publish_outputs(process_storage(settings), run_id, Path(plan.out_dir or settings.runs_dir / run_id))
        output = {**result.output, "files": files}
        store.finish(run_id, output, progress.close())
        return COMPLETED
    except (Cancelled, TaskTimeout) as exc:
        _unless_shutting_down()
        stage = getattr(exc, "stage", None) or progress.step
        if monitor.timed_out.is_set() or isinstance(exc, TaskTimeout):
            store.fail(run_id, TIMED_OUT, stage, f"The run took longer than {settings.run_timeout_seconds} s "
                       "(RUN_TIMEOUT_SECONDS) and was stopped", progress.close())
            return TIMED_OUT
        store.fail(run_id, CANCELED, stage, "Cancelled by its owner", progress.close())
        return CANCELED
    except ProviderError as exc:
        _unless_shutting_down()
        stage = exc.stage or progress.step
        if exc.transient and run.attempts <= settings.task_retries:
            log.warning("run %s: transient failure in %s (%s); retrying", run_id, stage, exc.message)
            store.requeue(run_id, error={"stage": stage, "message": f"{exc.message} (retrying)"})
            enqueue(run_id, delay=settings.retry_delay_seconds)
            return QUEUED
        store.fail(run_id, FAILED, stage, exc.message, progress.close())
        return FAILED
    except StudioError as exc:
        _unless_shutting_down()
        store.fail(run_id, FAILED, exc.stage or progress.step, exc.message, progress.close())
        return FAILED
    except OSError as exc:
        _unless_shutting_down()
        # a full disk or a read-only output folder: say so, not "internal error"
        stage = progress.step or "start"
        reason = DISK_ERRORS.get(exc.errno or 0)
        if reason is None:
            log.exception("run %s failed unexpectedly", run_id)
            reason = f"Internal error during {stage} ({type(exc).__name__}); see the worker log"
        store.fail(run_id, FAILED, stage, reason, progress.close())
        return FAILED
    except Exception as exc:
        _unless_shutting_down()
        log.exception("run %s failed unexpectedly", run_id)
        stage = progress.step or "start"
        store.fail(run_id, FAILED, stage, f"Internal error during {stage} ({type(exc).__name__}); "
                   "see the worker log", progress.close())
        return FAILED
    finally:
        current_run.pop(os.getpid(), None)
        monitor.stop()
        _announce_current_run()


@huey.task(name="render_run")
def render_run(run_id: str) -> str:
    settings = get_settings()
    return execute_run(run_id, settings, process_store(settings))


def reap(settings: Settings, store: RunStore, enqueue=enqueue_run) -> ReapResult:
    """Runs whose worker died: queued again (within CRASH_RETRIES) or CRASHED; never left EXECUTING."""
    result = store.reap_stale(settings.crash_after_seconds, settings.crash_retries)
    store.forget_workers(FORGET_WORKERS_AFTER_SECONDS)
    for run_id in result.requeued:
        try:
            enqueue(run_id)
        except Exception:
            log.exception("could not queue %s again after its worker died", run_id)
    if result.crashed or result.requeued:
        log.warning("reaper: crashed %s, queued again %s", result.crashed, result.requeued)
    clean_work_dirs(settings.runs_dir, store)  # after the reap: a crashed run's folder is no one's now
    return result


def recover_queue(store: RunStore, enqueue=enqueue_run) -> list[str]:
    """Queue messages for QUEUED runs that have none (e.g. a Redis queue without persistence restarted)."""
    waiting = {task.id for task in huey.pending()} | {task.id for task in huey.scheduled()}
    missing = [run_id for run_id in store.ids_with_status(QUEUED) if run_id not in waiting]
    for run_id in missing:
        enqueue(run_id)
    if missing:
        log.warning("queued again %d run(s) whose queue message was missing", len(missing))
    return missing


@huey.periodic_task(crontab(minute="*"), name="reap_runs")
def reap_runs() -> None:
    settings = get_settings()
    store = process_store(settings)
    reap(settings, store)
    recover_queue(store)


def cancel_run(store: RunStore, run_id: str, owner: str | None) -> Run | None:
    """The owner's cancel: a queued run stops at once (and its message is revoked); a running one soon."""
    run = store.request_cancel(run_id, owner)
    if run is not None and run.status == CANCELED:
        try:
            revoke_queued(run_id)
        except Exception:
            log.exception("could not revoke the queue message of %s (its claim will skip it)", run_id)
    return run
