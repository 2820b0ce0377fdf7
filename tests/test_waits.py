"""CPU slots and remote waits: a run waiting on a provider holds no slot, and gets one back before new runs."""

from __future__ import annotations

import threading
import time

import pytest

from pipeline.errors import Cancelled
from pipeline.providers import waits
from pipeline.providers.step_hooks import StepHooks, lend, no_progress
from pipeline.providers.waits import CpuSlots, remote_wait, wait_cancellable


def test_a_remote_wait_gives_the_slot_to_another_run_and_takes_it_back(monkeypatch: pytest.MonkeyPatch) -> None:
    slots = CpuSlots(1)
    monkeypatch.setattr(waits, "cpu_slots", slots)
    order: list[str] = []
    back = threading.Event()

    def waiting_run() -> None:
        assert slots.try_acquire(timeout=1)
        with remote_wait("fal", 5):  # the slot is free while this run waits on the provider
            order.append("waiting")
            back.wait(5)
        order.append("back with its slot")
        assert slots.held()
        slots.release()

    first = threading.Thread(target=waiting_run)
    first.start()
    deadline = time.monotonic() + 5
    while not order and time.monotonic() < deadline:
        time.sleep(0.01)
    assert slots.try_acquire(timeout=1)  # a second run gets the slot during the first one's wait
    order.append("second run on the CPU")
    back.set()
    time.sleep(0.2)
    assert order[-1] == "second run on the CPU"  # the first waits for the slot to come back
    slots.release()
    first.join(5)
    assert order == ["waiting", "second run on the CPU", "back with its slot"]


def test_a_run_coming_back_goes_before_a_new_run() -> None:
    slots = CpuSlots(1)
    slots._returning = 1  # noqa: SLF001 - a run is waiting to take its slot back after a remote wait
    assert not slots.try_acquire(timeout=0.2)  # so a new run does not get the free slot
    slots._returning = 0  # noqa: SLF001
    assert slots.try_acquire(timeout=0.2)


def test_in_flight_requests_per_service_are_bounded() -> None:
    inside, most, lock = [0], [0], threading.Lock()

    def call() -> None:
        with remote_wait("bounded-test", 2):
            with lock:
                inside[0] += 1
                most[0] = max(most[0], inside[0])
            time.sleep(0.1)
            with lock:
                inside[0] -= 1

    threads = [threading.Thread(target=call) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert most[0] == 2


def test_a_blocking_request_is_left_behind_when_the_run_is_cancelled() -> None:
    cancel_at = time.monotonic() + 0.3
    with lend(StepHooks(progress=no_progress, cancelled=lambda: time.monotonic() >= cancel_at)):
        start = time.monotonic()
        with pytest.raises(Cancelled):
            wait_cancellable(lambda: time.sleep(30))
        assert time.monotonic() - start < 2
    assert wait_cancellable(lambda: 7) == 7
