"""What a running step lends its providers: the step's progress bar and the run's cancel check, in one context.

`run_video` lends them around each step (the cancel check is the worker's run monitor: the owner's cancel, the
deadline, shutdown), so a provider that hears about progress (ComfyUI's `progress` messages) or waits on a remote
job (`waits`: slots, permits, polls) can report it and stop when the run is cancelled, without the step
protocols growing two arguments every provider would have to pass along.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True)
class StepHooks:
    progress: Callable[[float], None]  # fraction 0..1 of the running step (may raise Cancelled)
    cancelled: Callable[[], bool]  # whether the run was cancelled or timed out


def no_progress(fraction: float) -> None:
    """Outside a step nothing shows progress."""


NO_HOOKS = StepHooks(progress=no_progress, cancelled=lambda: False)
_current: ContextVar[StepHooks] = ContextVar("step_hooks", default=NO_HOOKS)


def current_step() -> StepHooks:
    """The running step's hooks (no-ops outside a run)."""
    return _current.get()


def cancel_requested() -> bool:
    """Whether the running run was cancelled, timed out or its worker is stopping (False outside a run)."""
    return _current.get().cancelled()


@contextmanager
def lend(hooks: StepHooks) -> Iterator[None]:
    token = _current.set(hooks)
    try:
        yield
    finally:
        _current.reset(token)
