"""A duplicate storm: every event sent three more times, as new messages, read by a fresh flow.

Producers that retry after timeouts send the same events again at new
offsets. A flow started afresh (a new recovery directory: a new flow
instance, no keyed state) reads the topic from offset 0, originals included:
Redis must recognise everything the first run counted, so not one total moves.

The settlement horizon is long, so a copy read long after its window closed is
screened as a duplicate, not rejected as ``too_late`` (the flow checks lateness
first), and the dedup horizon is short, so the keyed state forgets the
originals as the watermark moves on and the durable Redis layer does the work.

Size: ``METERWAX_FAULT_EVENTS`` scenario events (CI default 60,000: the fresh
run reads four times as many messages; ``full``: 200,000).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.dataflows.scenario import SCENARIO_NOW_MS, build_scenario, expected_totals
from tests.faults.conftest import FaultRig, fault_events, produce, scenario_range, without_too_late

pytestmark = pytest.mark.integration

COPIES = 3


def test_three_more_copies_of_every_event_change_no_total(
    make_rig: Callable[..., FaultRig],
) -> None:
    scenario = without_too_late(build_scenario(fault_events()))
    rig = make_rig(
        partitions=3,
        settings={"window": {"settlement_horizon": "30d", "dedup_horizon": "2m"}},
        now_ms=SCENARIO_NOW_MS,
    )
    produce(rig.brokers, rig.topic, scenario.lines)
    first = rig.run("first")
    accepted, duplicates = len(scenario.accepted), scenario.duplicates
    rejected = sum(scenario.rejected.values())
    assert first.run["reconciles"] is True
    assert (first.run["accepted"], first.run["duplicates"]) == (accepted, duplicates)
    assert first.totals == expected_totals(scenario)

    for _ in range(COPIES):
        produce(rig.brokers, rig.topic, scenario.lines)
    fresh = rig.run("fresh", "--recovery-dir", str(rig.workdir / "fresh-recovery"))

    lines = len(scenario.lines)
    assert fresh.run["consumed"] == (1 + COPIES) * lines
    assert fresh.run["accepted"] == 0
    # Of the originals: the first run's accepted events (another flow instance's
    # Redis claims) plus the scenario's own duplicates. Of each copy: every
    # line that is an event at all, accepted or duplicate the first time.
    assert fresh.run["duplicates"] == accepted + duplicates + COPIES * (accepted + duplicates)
    assert fresh.run["rejected"] == {
        reason: (1 + COPIES) * count for reason, count in scenario.rejected.items()
    }
    assert sum(fresh.run["rejected"].values()) == (1 + COPIES) * rejected
    assert fresh.run["windows"] == fresh.run["adjustments"] == 0
    assert fresh.run["reconciles"] is True
    assert fresh.totals == first.totals == expected_totals(scenario)
    code, result = rig.reconcile(*scenario_range(scenario.accepted))
    assert result["windows"] > 0
    assert (code, result["differences"]) == (0, [])
