"""Downtime does not make events late: the quiet-time clock restarts with the flow.

The watermark follows event time; only while the input is quiet for
``idle_timeout`` does it advance with the wall clock. Time the flow is down is
not quiet time: events produced meanwhile, continuing the same event-time
line, must be on time when the flow comes back, however long it was down.

Run A tails the topic and is killed right after its snapshot covers the first
half of the events; the second half is produced while it is down, and the
flow stays down for longer than window + grace + idle timeout. Run B resumes
from the recovery directory and must accept every event as on time. If
downtime counted as quiet time, the watermark would have moved past the
windows of the second half's first events.

Size: ``METERWAX_FAULT_EVENTS`` events (CI default 60,000; ``full``: 200,000),
one per millisecond of event time, in order, spread over 3 partitions.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest

from tests.dataflows.scenario import TENANTS, Scenario, expected_totals
from tests.faults.conftest import FaultRig, fault_events, iso, produce, scenario_range

pytestmark = pytest.mark.integration

PARTITIONS = 3
WINDOW = {"size": "1s", "grace": "2s", "idle_timeout": "1s", "settlement_horizon": "1h"}
# Longer than window + grace + idle timeout (4 s).
DOWNTIME_S = 6.0


def in_order_events(start_ms: int, first: int, count: int) -> list[dict[str, object]]:
    """``count`` token events one millisecond apart, numbered from ``first``.

    Only the SUM meter: its total does not depend on the window size, so
    ``expected_totals`` (which assumes one-minute windows) still applies.
    """
    return [
        {
            "specversion": "1.0",
            "id": f"fresh-{n}",
            "source": "tests/faults",
            "type": "llm.completion",
            "subject": TENANTS[n % len(TENANTS)],
            "time": iso(start_ms + n),
            "data": {"tokens": n % 97 + 1, "model": f"m{n % 3}"},
        }
        for n in range(first, first + count)
    ]


def _lines(events: list[dict[str, object]]) -> list[bytes]:
    return [json.dumps(event).encode() for event in events]


def test_events_produced_while_the_flow_is_down_are_not_late(
    make_rig: Callable[..., FaultRig],
) -> None:
    count = fault_events()
    # The first half ends 1 ms before a whole second, so the second half's first
    # window ends 1 s later and closes at +3 s: downtime counted as quiet time
    # (6 s) would make it late, a kill up to 2 s after the last batch would not.
    first_half = count // 2 // 1000 * 1000
    start_ms = (time.time_ns() // 1_000_000 - 10 * 60_000) // 1000 * 1000
    before = in_order_events(start_ms, 0, first_half)
    after = in_order_events(start_ms, first_half, count - first_half)
    rig = make_rig(partitions=PARTITIONS, settings={"window": WINDOW})

    run_a = rig.start("tailing", tail=True)
    rig.wait_committed(run_a, 0)  # running, consumers assigned: no backlog race
    produce(rig.brokers, rig.topic, _lines(before), lambda i: i % PARTITIONS)
    rig.wait_committed(run_a, first_half)
    assert run_a.kill()
    down_since = time.monotonic()
    produce(rig.brokers, rig.topic, _lines(after), lambda i: (first_half + i) % PARTITIONS)
    time.sleep(max(0.0, down_since + DOWNTIME_S - time.monotonic()))

    summary = rig.run("after-downtime")

    assert summary.run["consumed"] == len(after)  # resumed after the first half
    assert summary.run["late_accepted"] == 0, summary.run
    assert summary.run["rejected"] == {}, summary.run
    assert summary.run["accepted"] == len(after)
    assert summary.run["reconciles"] is True
    assert summary.totals == expected_totals(Scenario(accepted=before + after))
    code, result = rig.reconcile(*scenario_range(before + after))
    assert (code, result["differences"]) == (0, [])
