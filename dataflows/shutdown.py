"""Stopping on SIGINT and SIGTERM: the inputs end, the flow finishes cleanly.

The engine runs the flow in native code and runs Python signal handlers only
between its steps; an exception raised there (KeyboardInterrupt) panics the
engine. So the handlers only set a flag. Every input partition ends at its next
poll as if its input had ended (the engine snapshots its position), the stateful
step and the sinks flush at the end of input, and with recovery the engine takes
a last snapshot. A second signal exits at once, like a crash.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def forced_exit_code(signum: int) -> int:
    """Exit code of a run ended by a second signal: 128 + its number, as shells report it."""
    return 128 + signum


class StopRequest:
    """Whether a stop signal has arrived; read by the input partitions and the stateful step."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.signal_name: str | None = None

    @property
    def requested(self) -> bool:
        """True once a stop was requested."""
        return self._event.is_set()

    def request(self, signal_name: str) -> None:
        """Ask the flow to stop (``signal_name`` says why)."""
        self.signal_name = signal_name
        self._event.set()


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
