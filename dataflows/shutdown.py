"""Stopping on SIGINT and SIGTERM: the inputs end, the flow finishes cleanly.

The engine runs the flow in native code and runs Python signal handlers only
between its steps; an exception raised there (KeyboardInterrupt) panics the
engine. So the handlers only set a flag. Every input partition ends at its next
poll as if its input had ended (the engine snapshots its position), the stateful
step and the sinks flush at the end of input, and with recovery the engine takes
a last snapshot. A second signal exits at once, like a crash (the handlers
themselves are ``cli.signals``).
"""

from __future__ import annotations

import signal
import threading

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
