"""One background-loop thread for the reaper, the run monitor and the worker heartbeat."""

from __future__ import annotations

import logging
import threading

log = logging.getLogger("taskqueue.background")


class BackgroundLoop:
    """A daemon thread that calls `tick()` every `interval` seconds until stopped.

    A failing tick (the database away for a moment) is logged and the next one tries again: the loop never dies.
    """

    def __init__(self, name: str, interval: float):
        self.name, self.interval = name, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def tick(self) -> None:
        raise NotImplementedError

    def start(self) -> BackgroundLoop:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.tick()
            except Exception:
                log.exception("%s failed; trying again in %s s", self.name, self.interval)
