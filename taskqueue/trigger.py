"""`trigger()`: the one way into the queue for the UI, the API and the CLI.

It checks the request against the template, the artist and the artist's files, writes one run per
video and queues each; it answers with the seed page's response.
"""

from __future__ import annotations

import fcntl
import logging
import os
import secrets
import time
from collections.abc import Callable

from pipeline.artists import Missing, Viewer, check_readiness, find_artist, find_song, sync_repository
from pipeline.errors import BadInput, StudioError
from pipeline.fetch import check_url, limits_from_settings
from pipeline.models import Artist
from pipeline.repository import RepositoryUnavailable
from pipeline.request import CreateContentRequest
from pipeline.settings import Settings
from pipeline.songs import split_song_specs
from pipeline.templates import load_template
from taskqueue.store import FAILED, NewRun, QuotaExceeded, RunStore

log = logging.getLogger("taskqueue.trigger")

EnqueueMany = Callable[[list[str]], None]  # queues the runs, all or none (taskqueue.tasks.enqueue_runs)


class NotReady(BadInput):
    """The artist lacks required files; the answer lists each with its fix."""

    def __init__(self, missing: list[Missing]):
        names = ", ".join(m.file for m in missing)
        fixes = " ".join(m.fix for m in missing)
        super().__init__(f"The artist is missing required files: {names}. {fixes}", field=["artist_account_id"])
        self.missing = missing

    def to_dict(self) -> dict:
        return {**super().to_dict(),
                "ready": False, "missing": [m.to_dict() for m in self.missing]}


class QueueUnavailable(StudioError):
    """No run of the request could be queued."""

    status_code = 503


class TooManyActiveRuns(StudioError):
    """The batch would take the account past MAX_ACTIVE_RUNS_PER_ACCOUNT; nothing was created."""

    status_code = 429

    def __init__(self, exceeded: QuotaExceeded, adding: int, retry_after: int):
        super().__init__(f"This account has {exceeded.active} runs queued or running and may have at most "
                         f"{exceeded.limit} (MAX_ACTIVE_RUNS_PER_ACCOUNT); a batch of {adding} would pass that. "
                         f"Nothing was created; try again when some have finished.", field=["batch"])
        self.retry_after = retry_after
        self.headers = {"Retry-After": str(retry_after)}


def sync_artist(artist: Artist, settings: Settings) -> Artist:
    """The artist's repository, cloned or updated under a lock so parallel runs do not race on it."""
    if not artist.repository:
        return artist
    lock_dir = settings.data_dir / "workspaces"
    lock_dir.mkdir(parents=True, exist_ok=True)
    with open(lock_dir / f"{artist.account_id}.lock", "w") as lock:
        _lock_within(lock.fileno(), settings.repository_lock_wait_seconds)
        os.utime(lock.fileno())  # when the clone was last used: housekeeping evicts the least recently used
        return sync_repository(artist, settings)


def _lock_within(fd: int, seconds: float) -> None:
    """The artist's lock, waiting at most `seconds`: a slow fetch of one artist holds only its own requests
    (and each of those only this long), never a thread or a lock that every other create needs."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise RepositoryUnavailable("The artist's repository is being fetched by another request; "
                                            "try again shortly") from None
            time.sleep(0.05)


def check_request(request: CreateContentRequest, settings: Settings, viewer: Viewer | None = None, *,
                  synced: Artist | None = None) -> Artist:
    """Everything that can be said about a request before it is queued; raises the user's error. With `viewer`,
    an artist that account may not use is not found.

    `synced`: the request's artist with its repository already fetched (the API does that off its common pool)."""
    if request.template is not None:
        load_template(request.template)
    if request.webhook_url:  # checked like every user-given URL: http(s), no private address unless allowed
        check_url(request.webhook_url, limits_from_settings(settings), "webhook_url")
    artist = synced or sync_artist(find_artist(settings, request.artist_account_id, viewer), settings)
    slugs, urls = split_song_specs(request.songs)
    for slug in slugs:
        find_song(artist, slug)
    required = [m for m in check_readiness(artist, has_song_urls=bool(urls), has_images=bool(request.images))
                if m.severity == "required"]
    if required:
        raise NotReady(required)
    return artist


def retry_after_for(store: RunStore) -> int:
    """When a run of the account may have finished: the typical run's length here (30 s before any has run)."""
    durations = sorted(store.recent_durations(limit=10))
    return max(1, round(durations[len(durations) // 2])) if durations else 30


def webhook_target(request: CreateContentRequest, settings: Settings) -> str | None:
    """Where the request's webhooks go: its own `webhook_url`, else the installation's WEBHOOK_URL."""
    return request.webhook_url or settings.webhook_url or None


def trigger(request: CreateContentRequest, owner: str, *, settings: Settings, store: RunStore,
            enqueue: EnqueueMany, viewer: Viewer | None = None, synced: Artist | None = None) -> dict:
    """Check the request, write `batch` runs (each with its own seed), queue them, answer as the seed page does."""
    return queue_runs(request, check_request(request, settings, viewer, synced=synced), owner, store=store,
                      enqueue=enqueue, webhook_url=webhook_target(request, settings),
                      max_active=settings.max_active_runs_per_account)


def queue_runs(request: CreateContentRequest, artist: Artist, owner: str, *, store: RunStore,
               enqueue: EnqueueMany, webhook_url: str | None = None, max_active: int | None = None) -> dict:
    """The second half of `trigger`, for a request `check_request` has passed (it gave `artist`); TooManyActiveRuns
    when the batch would take `owner` past `max_active` queued and running runs."""
    stored_request = request.model_dump(mode="json")
    stored_request["artist_account_id"] = artist.account_id
    new_runs = [
        NewRun(artist_account_id=artist.account_id, artist_slug=artist.slug, template=request.template,
               request=stored_request, seed=secrets.randbelow(2**31))
        for _ in range(request.batch)
    ]
    try:
        created = store.create_batch(owner, new_runs, webhook_url=webhook_url, max_active=max_active)
    except QuotaExceeded as exc:
        raise TooManyActiveRuns(exc, len(new_runs), retry_after_for(store)) from None
    run_ids = [run.id for run in created]
    try:
        enqueue(run_ids)
    except Exception as exc:
        # One write queues the whole batch, so it is all or none: the runs are marked, the caller told
        log.exception("could not queue %s runs", len(run_ids))
        for run_id in run_ids:
            store.fail(run_id, FAILED, "queue", f"Could not queue the run: {type(exc).__name__}")
        raise QueueUnavailable("The queue is not available; no run was started. Is the worker's queue "
                               "reachable?") from exc
    response: dict = {
        "runIds": run_ids,
        "status": "triggered",
        "artist_account_id": artist.account_id,
        "template": request.template,
        "lipsync": request.lipsync,
    }
    if request.unknown_fields:
        response["warnings"] = request.warnings()
    return response
