"""`python -m tests.start_together DIR N MODULE ARGS`: `python -m MODULE ARGS` once N such processes are ready.

The heavy imports happen before the meeting, so processes a test starts "together" really reach their start-up
(the run store's migration) in the same few milliseconds instead of wherever their imports left them.
"""

from __future__ import annotations

import os
import runpy
import sys
import time
from pathlib import Path

MEETING_TIMEOUT_SECONDS = 120.0


def main() -> None:
    folder, count, module, *args = sys.argv[1:]
    import uvicorn.main  # noqa: F401

    import api.app  # noqa: F401 - imported before the meeting, see the docstring
    import taskqueue.store  # noqa: F401

    ready = Path(folder)
    (ready / f"{os.getpid()}.ready").touch()
    deadline = time.monotonic() + MEETING_TIMEOUT_SECONDS
    while len(list(ready.glob("*.ready"))) < int(count):
        if time.monotonic() > deadline:
            sys.exit(f"start_together: fewer than {count} processes came in {MEETING_TIMEOUT_SECONDS} s")
        time.sleep(0.002)
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
