"""``meterwax run`` stopped by SIGINT or SIGTERM while tailing, then restarted.

A stop signal is a pause, not the end of the input: the run finishes its
batches, flushes its sinks, takes a last snapshot, prints its summary and exits
0, with no panic or traceback; windows still open stay open in the snapshot.
The restart resumes exactly where the stop left off and goes on filling them:
no event lost, none counted twice, none made late by the stop.

The events are in order, one per millisecond of event time, in 1 s windows.
The first half ends in the middle of a window and the signal comes while the
run tails, well within the idle timeout. The settlement horizon equals the
grace period: had the stop closed the open windows (moving the watermark past
their grace), the second half's first events would be rejected as too late.

A second test stops a run mid-stream, busy with a backlog of the fault
tests' scenario (duplicates, late and broken lines): the restart must read on
from exactly where the stop's last snapshot left off.

Size: ``METERWAX_FAULT_EVENTS`` events (CI default 20,000 for the first test,
60,000 for the second; ``full``: 200,000).
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable

import pytest

from tests.dataflows.scenario import (
    Scenario,
    build_scenario,
    expected_totals,
)
from tests.faults.conftest import (
    FaultRig,
    MeterwaxProcess,
    RunSummary,
    fault_events,
    produce,
    scenario_range,
    without_too_late,
)
from tests.faults.test_downtime import in_order_events

pytestmark = pytest.mark.integration

CI_EVENTS = 20_000
MID_STREAM_CI_EVENTS = 60_000
PARTITIONS = 3
WINDOW = {"size": "1s", "grace": "2s", "settlement_horizon": "2s", "idle_timeout": "1m"}
STOP_TIMEOUT_S = 60.0


def _lines(events: list[dict[str, object]]) -> list[bytes]:
    return [json.dumps(event).encode() for event in events]


def _assert_clean_stop(process: MeterwaxProcess, signum: signal.Signals) -> RunSummary:
    """Its summary, once it has exited 0 without a panic or traceback, naming the signal."""
    summary = process.summary(STOP_TIMEOUT_S)  # fails unless it exits 0 with a summary
    stderr = process.stderr()
    assert "panicked" not in stderr and "Traceback" not in stderr, stderr[-3000:]
    assert f"stopped on {signum.name}" in stderr, stderr[-3000:]
    assert summary.run["reconciles"] is True
    return summary


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_stops_a_tailing_run_and_the_restart_resumes_exactly(
    make_rig: Callable[..., FaultRig], signum: signal.Signals
) -> None:
    count = fault_events(CI_EVENTS)
    # Half-way through a window, which the second half goes on filling.
    first_half = count // 2 // 1000 * 1000 + 500
    start_ms = (time.time_ns() // 1_000_000 - 10 * 60_000) // 1000 * 1000
    before = in_order_events(start_ms, 0, first_half)
    after = in_order_events(start_ms, first_half, count - first_half)
    rig = make_rig(partitions=PARTITIONS, settings={"window": WINDOW})

    tailing = rig.start("tailing", tail=True)
    rig.wait_committed(tailing, 0)  # running, consumers assigned
    produce(rig.brokers, rig.topic, _lines(before), lambda i: i % PARTITIONS)
    rig.wait_committed(tailing, first_half)
    tailing.popen.send_signal(signum)
    stopped = _assert_clean_stop(tailing, signum)
    assert stopped.run["consumed"] == first_half

    produce(rig.brokers, rig.topic, _lines(after), lambda i: (first_half + i) % PARTITIONS)
    resumed = rig.run("resumed")

    # It resumed at the stop's last snapshot: nothing read twice, nothing skipped.
    assert resumed.run["consumed"] == len(after)
    assert resumed.run["rejected"] == {}, resumed.run
    assert resumed.run["late_accepted"] == 0, resumed.run
    assert resumed.run["accepted"] == len(after)
    assert resumed.run["reconciles"] is True
    assert resumed.totals == expected_totals(Scenario(accepted=before + after))
    code, result = rig.reconcile(*scenario_range(before + after))
    assert result["windows"] > 0
    assert (code, result["differences"]) == (0, [])


def test_sigterm_mid_stream_then_restart_reads_on_from_the_stop(
    make_rig: Callable[..., FaultRig],
) -> None:
    # As in the crash test, a long settlement horizon keeps this test about the stop.
    scenario = without_too_late(build_scenario(fault_events(MID_STREAM_CI_EVENTS)))
    rig = make_rig(partitions=PARTITIONS, settings={"window": {"settlement_horizon": "30d"}})
    produce(rig.brokers, rig.topic, scenario.lines)
    total = len(scenario.lines)

    tailing = rig.start("tailing", tail=True)
    rig.wait_committed(tailing, total // 10)
    tailing.popen.send_signal(signal.SIGTERM)
    stopped = _assert_clean_stop(tailing, signal.SIGTERM)
    assert stopped.run["consumed"] < total, "the run read the whole topic before its stop"

    resumed = rig.run("resumed")

    assert resumed.run["consumed"] == total - stopped.run["consumed"]
    assert resumed.run["reconciles"] is True
    assert resumed.totals == expected_totals(scenario)
    code, result = rig.reconcile(*scenario_range(scenario.accepted))
    assert (code, result["differences"]) == (0, [])
