"""The worker side: one Huey task renders one run, with progress, heartbeat, cancel, timeout and retries.

The run store is the truth: a task first claims its run (QUEUED -> EXECUTING, atomically), so a
duplicate queue message or a cancelled run is skipped; every outcome ends in one final status.
Many runs share a consumer process (threads, taskqueue/consumer.py); their CPU work takes turns.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from huey import crontab
from huey.api import Task
from huey.exceptions import TaskTimeout

from pipeline.errors import Cancelled, ProviderError, StudioError
from pipeline.models import RunPlan
from pipeline.settings import Settings, get_settings
from taskqueue.background import BackgroundLoop
from taskqueue.housekeeping import tidy
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
# Huey's own task timeout: only a plain `huey_consumer -k process` enforces it; our thread consumer relies on
# the run monitor's deadline, remote requests that are left behind at it (waits.wait_cancellable) and ffmpeg's
# own time-outs.
HARD_TIMEOUT_GRACE_SECONDS = 15
OUTPUT_FILES = {"video": "video.mp4", "poster": "poster.jpg", "image": "image.jpg", "meta": "meta.json"}
# The video goes last: once it is in storage, everything the run made is there.
PUT_ORDER = ("poster", "image", "meta", "video")
FORGET_WORKERS_AFTER_SECONDS = 3600.0  # a killed worker's row goes away after this (health lists live ones)

_stores: dict[tuple[int, str], RunStore] = {}
_storages: dict[tuple[int, str | None, str], Storage] = {}


def process_store(settings: Settings) -> RunStore:
    """One store per process: forked workers must not share the parent's database connections."""
    key = (os.getpid(), settings.sqlalchemy_url)
    if key not in _stores:
        _stores[key] = RunStore.for_settings(settings)
    return _stores[key]


def process_storage(settings: Settings) -> Storage:
    """One storage client per process and place (boto3 clients must not cross a fork either). Keyed by the
    place too, as the store is: keyed by process alone, a second settings' outputs went to the first's folder."""
    key = (os.getpid(), settings.storage_url, str(settings.runs_dir))
    if key not in _storages:
        _storages[key] = make_storage(settings)
    return _storages[key]


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


class RunMonitor(BackgroundLoop):
    """A thread beside the run: heartbeat, the owner's cancel flag, and the per-run deadline."""

    def __init__(self, store: RunStore, run_id: str, worker: str, *, heartbeat_seconds: float,
                 timeout_seconds: float, poll_seconds: float = 0.5):
        super().__init__(f"monitor-{run_id}", min(poll_seconds, heartbeat_seconds))
        self.store, self.run_id, self.worker = store, run_id, worker
        self.heartbeat_seconds = heartbeat_seconds
        self.deadline = time.monotonic() + timeout_seconds
        self.timeout_seconds = timeout_seconds
        self.cancelled = threading.Event()
        self.timed_out = threading.Event()
        self.next_heartbeat = time.monotonic() + heartbeat_seconds
        self.next_cancel_check = 0.0

    def should_stop(self) -> bool:
        if time.monotonic() >= self.deadline:
            self.timed_out.set()
        return self.cancelled.is_set() or self.timed_out.is_set() or shutting_down.is_set()

    def tick(self) -> None:
        now = time.monotonic()
        if now >= self.deadline:
            self.timed_out.set()
        if now >= self.next_cancel_check:
            self.next_cancel_check = now + 1.0
            if self.store.cancel_requested(self.run_id):
                self.cancelled.set()
        if now >= self.next_heartbeat:
            self.next_heartbeat = now + self.heartbeat_seconds
            self.store.heartbeat(self.run_id, self.worker)


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
        lyrics=request.get("lyrics"), aspect_ratio=request.get("aspect_ratio") or "9:16", owner=run.owner,
    )


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


# The runs this process has claimed and not yet ended, with when each began; the workers row shows the oldest.
runs_in_flight: dict[str, float] = {}


def current_run() -> str | None:
    return min(runs_in_flight, key=runs_in_flight.__getitem__, default=None) if runs_in_flight else None


class WorkerHeartbeat(BackgroundLoop):
    """A thread in each worker process: its row in the `workers` table, refreshed even while idle."""

    def __init__(self, store: RunStore, interval: float):
        super().__init__("worker-heartbeat", interval)
        self.store = store
        self.name, self.pid, self.started_at = worker_name(), os.getpid(), time.time()
        self._lock = threading.Lock()

    def start(self) -> WorkerHeartbeat:
        self.beat()
        super().start()
        return self

    def beat(self) -> None:
        # In turn: a beat that read the run before it ended must not land after the one that says it ended
        with self._lock:
            self.store.worker_beat(self.name, socket.gethostname(), self.pid, self.started_at, current_run())

    tick = beat

    def stop(self) -> None:
        super().stop()
        self.store.worker_gone(self.name)


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


_heartbeat_lock = threading.Lock()


@huey.on_startup(name="worker_heartbeat")
def start_worker_heartbeat() -> None:
    with _heartbeat_lock:  # every worker thread runs the start-up hooks; one heartbeat per process
        if os.getpid() not in _heartbeats:
            settings = get_settings()
            _heartbeats[os.getpid()] = WorkerHeartbeat(process_store(settings), settings.heartbeat_seconds).start()


@huey.on_shutdown(name="worker_heartbeat")
def stop_worker_heartbeat() -> None:
    with _heartbeat_lock:
        heartbeat = _heartbeats.pop(os.getpid(), None) if not runs_in_flight else None
    if heartbeat is not None:
        heartbeat.stop()


_webhook_threads: dict[int, object] = {}
_webhook_lock = threading.Lock()


@huey.on_startup(name="webhooks")
def start_webhooks() -> None:
    """The consumer also sends webhooks from the store's rows (taskqueue/webhooks.py)."""
    from taskqueue.webhooks import WebhookThread

    with _webhook_lock:  # every worker thread runs the start-up hooks; one sender per process
        if os.getpid() not in _webhook_threads:
            settings = get_settings()
            _webhook_threads[os.getpid()] = WebhookThread(settings, process_store(settings)).start()


@huey.on_shutdown(name="webhooks")
def stop_webhooks() -> None:
    with _webhook_lock:
        thread = _webhook_threads.pop(os.getpid(), None)
    if thread is not None:
        thread.stop()  # type: ignore[attr-defined]


# Set when the consumer's stop signal (SIGTERM) arrives (taskqueue/consumer.py). The signal goes to the whole
# process group, so a run's ffmpeg may die of it first: a step that fails after this is a shutdown, and the run
# goes back to the queue instead of ending FAILED. Runs waiting on a provider see it at their next check.
shutting_down = threading.Event()


def _unless_shutting_down() -> None:
    """In a failure handler: a failure after the stop signal came is the shutdown's, not the run's."""
    if shutting_down.is_set():
        raise KeyboardInterrupt


def execute_run(run_id: str, settings: Settings, store: RunStore, *, enqueue=enqueue_run) -> str:
    """Claim the next run (by turns across accounts; often the message's own) and render it; returns the status
    it ended in ("skipped" when no run could start)."""
    worker = worker_name()
    try:
        _unless_shutting_down()  # between two tasks Huey's handler raises nothing; take no new run then
        # The message is a turn, not a particular run: it runs the oldest run of the account whose turn it is
        claimed = store.claim_next(worker)
        if claimed is None:
            wait = store.next_ready_in()
            if wait is not None:  # came before a retry's delay ran out (another machine's clock): it is that turn
                enqueue(run_id, delay=wait + 0.05)
            log.info("no queued run can start now (%s is not queued any more); skipping this message", run_id)
            return "skipped"
        run_id = claimed  # an interruption below puts back the run actually claimed
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


@dataclass(frozen=True)
class Outcome:
    """How a failed attempt ends: a final status (or QUEUED for a retry), its stage and message."""

    status: str
    stage: str | None
    message: str


def classify_failure(exc: Exception, stage: str | None, *, attempts: int, timed_out: bool,
                     settings: Settings) -> Outcome:
    """The one place that decides what an exception means for the run (Huey's execute path does it this way)."""
    if isinstance(exc, (Cancelled, TaskTimeout)):
        stage = getattr(exc, "stage", None) or stage
        if timed_out or isinstance(exc, TaskTimeout):
            return Outcome(TIMED_OUT, stage, f"The run took longer than {settings.run_timeout_seconds} s "
                           "(RUN_TIMEOUT_SECONDS) and was stopped")
        return Outcome(CANCELED, stage, "Cancelled by its owner")
    if isinstance(exc, ProviderError) and exc.transient and attempts <= settings.task_retries:
        return Outcome(QUEUED, exc.stage or stage, exc.message)
    if isinstance(exc, StudioError):
        return Outcome(FAILED, exc.stage or stage, exc.message)
    stage = stage or "start"
    # a full disk or a read-only output folder: say so, not "internal error"
    reason = DISK_ERRORS.get(exc.errno or 0) if isinstance(exc, OSError) else None
    if reason is None:
        log.error("run failed unexpectedly during %s", stage, exc_info=exc)
        reason = f"Internal error during {stage} ({type(exc).__name__}); see the worker log"
    return Outcome(FAILED, stage, reason)


def _execute_claimed(run_id: str, worker: str, settings: Settings, store: RunStore,
                     enqueue: Callable[..., None]) -> str:
    runs_in_flight[run_id] = time.monotonic()
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
        store.finish(run_id, {**result.output, "files": files}, progress.close())
        return COMPLETED
    except Exception as exc:
        _unless_shutting_down()
        outcome = classify_failure(exc, progress.step, attempts=run.attempts, timed_out=monitor.timed_out.is_set(),
                                   settings=settings)
        if outcome.status == QUEUED:
            log.warning("run %s: transient failure in %s (%s); retrying", run_id, outcome.stage, outcome.message)
            store.requeue(run_id, error={"stage": outcome.stage, "message": f"{outcome.message} (retrying)"},
                          delay=settings.retry_delay_seconds)
            enqueue(run_id, delay=settings.retry_delay_seconds)
        else:
            store.fail(run_id, outcome.status, outcome.stage, outcome.message, progress.close())
        return outcome.status
    finally:
        runs_in_flight.pop(run_id, None)
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
    try:
        tidy(settings, store, process_storage(settings))  # cache caps, output retention, old idempotency keys
    except Exception:
        log.exception("housekeeping failed; trying again next minute")


def cancel_run(store: RunStore, run_id: str, owner: str | None) -> Run | None:
    """The owner's cancel: a queued run stops at once (and its message is revoked); a running one soon."""
    run = store.request_cancel(run_id, owner)
    if run is not None and run.status == CANCELED:
        try:
            revoke_queued(run_id)
        except Exception:
            log.exception("could not revoke the queue message of %s (its claim will skip it)", run_id)
    return run
