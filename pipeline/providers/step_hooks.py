"""What a running step lends its provider: the step's progress bar and the run's cancel check.

`run_video` sets them around each step, so a provider that hears about progress (ComfyUI's `progress`
messages) or waits a long time can report it and stop when the run is cancelled, without the step protocols
growing two arguments every provider would have to pass along.
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


NO_HOOKS = StepHooks(progress=lambda fraction: None, cancelled=lambda: False)
_current: ContextVar[StepHooks] = ContextVar("step_hooks", default=NO_HOOKS)


def current_step() -> StepHooks:
    """The running step's hooks (no-ops outside a run)."""
    return _current.get()


@contextmanager
def lend(hooks: StepHooks) -> Iterator[None]:
    token = _current.set(hooks)
    try:
        yield
    finally:
        _current.reset(token)
