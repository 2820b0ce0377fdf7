"""The consumer: RUNS_IN_FLIGHT thread workers, each taking a queue message only once it holds a CPU slot.

There are WORKERS CPU slots. A run gives its slot back while it waits on a remote service
(pipeline/providers/waits.py), so a batch's remote waits overlap while the local work (analysis, render) takes
turns on the cores; with every run local, no more than WORKERS messages are taken, and a second machine's
consumer gets the rest. The stop signal (SIGTERM) sets `shutting_down` at once: the runs in flight stop at their
next check and go back to the queue uncounted; SIGINT lets them finish.
"""

from __future__ import annotations

import logging
import signal
import time

from huey import Huey
from huey.consumer import Consumer, Worker

from pipeline.providers import waits
from pipeline.settings import Settings

log = logging.getLogger("taskqueue.consumer")


class SlotWorker(Worker):
    """A Huey worker thread that takes the next message only while it holds a CPU slot.

    Huey's own loop sleeps after an empty dequeue; here the slot is given back first, so idle workers polling
    the queue never keep a run from its render.
    """

    def loop(self, now: object = None) -> None:
        if not waits.cpu_slots.try_acquire(timeout=1.0):
            return  # the consumer's loop checks its stop flag, then we wait again
        try:
            task = self.huey.dequeue()
        except Exception:
            waits.cpu_slots.release()
            self._logger.exception("Error reading from queue")
            self.sleep()
            return
        if task is None:
            waits.cpu_slots.release()
            self.sleep()
            return
        self.delay = self.default_delay
        try:
            self.huey.execute(task, now)
        except Exception:
            self._logger.exception("Unhandled error during execution of task %s.", task.id)
        finally:
            waits.cpu_slots.release()  # held again after the run's last remote wait


class StudioConsumer(Consumer):
    worker_class = SlotWorker

    def _handle_signal(self, signum: int, frame: object) -> None:
        from taskqueue.tasks import shutting_down

        if signum == signal.SIGTERM:
            # before any render's ffmpeg (same process group, same signal) fails: the failure is the shutdown's
            shutting_down.set()
        super()._handle_signal(signum, frame)


def make_consumer(queue: Huey, settings: Settings) -> StudioConsumer:
    waits.configure_cpu_slots(settings.cpu_slots)
    return StudioConsumer(queue, workers=max(1, settings.runs_in_flight, settings.cpu_slots), worker_type="thread",
                          initial_delay=0.1, max_delay=1.0, backoff=1.15, check_worker_health=True,
                          health_check_interval=5, periodic=True)


def put_back_runs_in_flight(grace_seconds: float) -> list[str]:
    """After a stop: tell the runs still going to stop, and wait (a while) for them to be back in the queue."""
    from taskqueue.tasks import runs_in_flight, shutting_down

    shutting_down.set()
    deadline = time.monotonic() + grace_seconds
    while runs_in_flight and time.monotonic() < deadline:
        time.sleep(0.05)
    left = sorted(runs_in_flight)
    if left:
        log.warning("runs still going at exit (the reaper queues them again): %s", left)
    return left
