"""Stop signals: the first asks the flow to stop, a second exits at once with 128 + signal."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

import pytest

from cli.signals import stop_on_signals
from dataflows.shutdown import StopRequest

# Signals itself twice inside stop_on_signals; prints what the first one did.
TWICE = textwrap.dedent(
    """
    import os, signal, sys, time
    from cli.signals import stop_on_signals
    from dataflows.shutdown import StopRequest

    stop = StopRequest()
    with stop_on_signals(stop):
        os.kill(os.getpid(), signal.{name})
        print(f"requested={{stop.requested}} by={{stop.signal_name}}", flush=True)
        os.kill(os.getpid(), signal.{name})
        time.sleep(30)
    print("not forced out", flush=True)
    """
)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_first_signal_requests_a_stop_and_a_second_exits_with_128_plus_its_number(
    signum: signal.Signals,
) -> None:
    completed = subprocess.run(
        [sys.executable, "-c", TWICE.format(name=signum.name)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )

    assert completed.stdout == f"requested=True by={signum.name}\n", completed.stderr
    assert completed.returncode == 128 + signum
    assert f"meterwax: {signum.name} again: exiting now" in completed.stderr
    assert "Traceback" not in completed.stderr


def test_handlers_are_restored_on_leaving() -> None:
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    stop = StopRequest()

    with stop_on_signals(stop):
        assert signal.getsignal(signal.SIGTERM) is not before[signal.SIGTERM]
        signal.raise_signal(signal.SIGTERM)
        assert stop.requested

    assert {s: signal.getsignal(s) for s in before} == before
