"""The ``run`` command's signal handlers: a first SIGINT/SIGTERM stops cleanly, a second exits.

The flow side of a stop is ``dataflows.shutdown.StopRequest``.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from dataflows.shutdown import STOP_SIGNALS, StopRequest, forced_exit_code


@contextmanager
def stop_on_signals(stop: StopRequest) -> Iterator[None]:
    """While inside, SIGINT and SIGTERM request a clean stop; a second one exits at once.

    Must be entered from the main thread (Python runs signal handlers there).
    """

    def handle(signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        code = forced_exit_code(signum)
        if stop.requested:
            print(f"meterwax: {name} again: exiting now (exit code {code})", file=sys.stderr)
            os._exit(code)
        print(
            f"meterwax: {name}: finishing the current batches and stopping "
            "(send it again to exit at once)",
            file=sys.stderr,
        )
        stop.request(name)

    previous = {signum: signal.signal(signum, handle) for signum in STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def report_stop(stop: StopRequest, recovering: bool) -> None:
    """After a run that a signal stopped: say what became of the windows still open."""
    if not stop.requested:
        return
    if recovering:
        outcome = "windows still open are kept in the recovery snapshot; the next run resumes them"
    else:
        outcome = "every open window was closed and written (no recovery to keep them open)"
    print(f"meterwax: stopped on {stop.signal_name}: {outcome}.", file=sys.stderr)
