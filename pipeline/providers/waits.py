"""While a run waits on a remote service it holds no CPU slot, and each service has a bound on jobs in flight.

A consumer runs many runs at once (threads); the CPU slots bound how many do local work (render, analysis) at a
time. A run takes its slot before it is dequeued, gives it back around every remote job, and takes it again
after. Outside a consumer (the CLI, tests) nothing is bounded and nothing waits.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from pipeline.errors import Cancelled
from pipeline.providers.step_hooks import cancel_requested

T = TypeVar("T")
WAIT_STEP_SECONDS = 0.2  # how often a run waiting for a slot or a permit looks at its cancel flag


def check_cancel() -> None:
    """Raise Cancelled when the running run was cancelled, timed out or the worker is stopping."""
    if cancel_requested():
        raise Cancelled("The run was cancelled")


def _acquire(lock: threading.Semaphore) -> None:
    """Take `lock`, looking at the run's cancel flag while waiting."""
    while not lock.acquire(timeout=WAIT_STEP_SECONDS):
        check_cancel()


class CpuSlots:
    """Slots for local CPU work shared by a process's runs; a thread holds at most one.

    A run coming back from a remote wait goes before a new run: finishing what was started frees its memory
    and gets its video out first (and idle workers polling the queue cannot starve it).
    """

    def __init__(self, count: int = 0):
        self.count = count
        self._free = count
        self._returning = 0  # runs waiting to take a slot again after a remote wait
        self._cond = threading.Condition()
        self._held = threading.local()

    def held(self) -> bool:
        return bool(getattr(self._held, "value", False))

    def try_acquire(self, timeout: float) -> bool:
        """Take a slot for a new run (True), or give up after `timeout` seconds."""
        if self.count > 0:
            with self._cond:
                if not self._cond.wait_for(lambda: self._free > 0 and not self._returning, timeout):
                    return False
                self._free -= 1
        self._held.value = True
        return True

    def release(self) -> None:
        if self.held():
            self._held.value = False
            if self.count > 0:
                with self._cond:
                    self._free += 1
                    self._cond.notify_all()

    def _take_back(self) -> None:
        with self._cond:
            self._returning += 1
            try:
                while not self._cond.wait_for(lambda: self._free > 0, WAIT_STEP_SECONDS):
                    check_cancel()
                self._free -= 1
            finally:
                self._returning -= 1
        self._held.value = True

    @contextmanager
    def released(self) -> Iterator[None]:
        """Give this thread's slot back for the block (a remote wait), and take one again after."""
        if not self.held():
            yield
            return
        self.release()
        try:
            yield
        finally:
            if self.count > 0:
                self._take_back()
            else:
                self._held.value = True


cpu_slots = CpuSlots()  # unbounded until a consumer sets its count (configure_cpu_slots)
_permits: dict[str, threading.BoundedSemaphore] = {}
_permits_lock = threading.Lock()


def configure_cpu_slots(count: int) -> CpuSlots:
    """The consumer's CPU slots (once, before its workers start)."""
    global cpu_slots
    cpu_slots = CpuSlots(count)
    return cpu_slots


def _service_permits(service: str, limit: int) -> threading.BoundedSemaphore:
    key = f"{service}:{limit}"  # a changed limit (tests, reloaded settings) gets its own bound
    with _permits_lock:
        if key not in _permits:
            _permits[key] = threading.BoundedSemaphore(max(1, limit))
        return _permits[key]


@contextmanager
def remote_wait(service: str, max_in_flight: int) -> Iterator[None]:
    """Around one remote job: no CPU slot held while it waits, at most `max_in_flight` jobs of `service` at once."""
    check_cancel()
    permits = _service_permits(service, max_in_flight)
    with cpu_slots.released():
        _acquire(permits)
        try:
            yield
        finally:
            permits.release()


def sleep_unless_cancelled(seconds: float) -> None:
    """A poll interval that ends early (Cancelled) when the run is cancelled."""
    end = time.monotonic() + seconds
    while True:
        check_cancel()
        left = end - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(left, WAIT_STEP_SECONDS))


def wait_cancellable(call: Callable[[], T]) -> T:
    """Run one blocking request in a helper thread, so the run's cancel or deadline is not stuck behind it.

    An abandoned request ends on its own time-out; nothing reads its answer.
    """
    box: dict[str, Any] = {}
    finished = threading.Event()

    def target() -> None:
        try:
            box["value"] = call()
        except BaseException as exc:  # handed to the waiting thread as it is
            box["error"] = exc
        finally:
            finished.set()

    threading.Thread(target=target, name="remote-request", daemon=True).start()
    while not finished.wait(WAIT_STEP_SECONDS):
        check_cancel()
    if "error" in box:
        raise box["error"]
    return box["value"]
