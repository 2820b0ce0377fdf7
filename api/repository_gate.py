"""Artist repository fetches off the web server's common thread pool: a few threads of their own, one fetch per
artist at a time, and a bounded wait (then 503), so a slow git server stalls only its own artist's creates."""

from __future__ import annotations

import anyio

from pipeline.models import Artist
from pipeline.repository import RepositoryUnavailable
from pipeline.settings import Settings
from taskqueue.trigger import sync_artist

REPOSITORY_THREADS = 4  # fetches of different artists at once in one server; more wait (without a thread)


class RepositoryGate:
    """Requests for one artist queue on its lock and every fetch on the gate's threads, all while holding no
    thread; a request that cannot start its fetch within REPOSITORY_LOCK_WAIT_SECONDS gets 503.

    The artist's file lock (taskqueue.trigger.sync_artist) still keeps other processes and the workers out.
    """

    def __init__(self, threads: int = REPOSITORY_THREADS):
        self._slots = anyio.Semaphore(threads)
        self._threads = anyio.CapacityLimiter(threads)
        self._locks: dict[str, anyio.Lock] = {}  # one per artist with a repository: a handful

    async def sync(self, artist: Artist, settings: Settings) -> Artist:
        if not artist.repository:
            return artist
        lock = self._locks.setdefault(artist.account_id, anyio.Lock())
        with anyio.move_on_after(settings.repository_lock_wait_seconds) as waited:
            await lock.acquire()
        if waited.cancelled_caught:
            raise RepositoryUnavailable("The artist's repository is being fetched by another request; "
                                        "try again shortly")
        try:
            with anyio.move_on_after(settings.repository_lock_wait_seconds) as waited:
                await self._slots.acquire()
            if waited.cancelled_caught:
                raise RepositoryUnavailable("Other artists' repositories are being fetched; try again shortly")
            try:
                return await anyio.to_thread.run_sync(sync_artist, artist, settings, limiter=self._threads)
            finally:
                self._slots.release()
        finally:
            lock.release()
