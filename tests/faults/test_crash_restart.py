"""``meterwax run`` killed with SIGKILL at random moments and restarted from recovery.

A crash replays the input from the last snapshot: state exactly once, output
at least once. Window rows are revisions (the highest wins) and a replayed
message carries its first claim's Redis token, so the totals must come out
exact: no event lost, none counted twice.

Size: ``METERWAX_FAULT_EVENTS`` scenario events (``full``: 200,000). The CI
default, 100,000, leaves each run killed mid-stream enough input to still be
busy when its kill comes, and keeps the test under a minute. Events are
produced keyed by tenant to a 3-partition topic. Kill moments come from a
seeded RNG (``METERWAX_FAULT_SEED``, printed by every run).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from decimal import Decimal

import pytest
import redis
import yaml

from sinks.redis_keys import live_index_key, live_usage_key
from tests.dataflows.scenario import (
    SCENARIO_NOW_MS,
    build_scenario,
    expected_period_usage,
    expected_totals,
)
from tests.faults.conftest import (
    SNAPSHOT_INTERVAL_S,
    FaultRig,
    fault_events,
    produce,
    scenario_range,
    without_too_late,
)

pytestmark = pytest.mark.integration

MID_STREAM_KILLS = 3
CI_EVENTS = 100_000


def live_counters(rig: FaultRig) -> dict[tuple[str, str, int], Decimal]:
    """Every live usage counter the rig's runs wrote to Redis."""
    settings = yaml.safe_load(rig.config.read_text())
    prefix = settings["redis"]["key_prefix"]
    client = redis.Redis.from_url(settings["redis"]["url"], decode_responses=True)
    counters: dict[tuple[str, str, int], Decimal] = {}
    for tenant in ("acme", "globex", "umbrella", "initech"):
        for member in client.smembers(live_index_key(prefix, tenant)):
            meter, start = member.rsplit(":", 1)
            fields = client.hgetall(live_usage_key(prefix, tenant, meter, int(start)))
            counters[(tenant, meter, int(start))] = Decimal(fields["quantity"])
    return counters


def test_uninterrupted_run_counts_every_event(make_rig: Callable[..., FaultRig]) -> None:
    """The control: the crash test's scenario with the default 1 h settlement, no fault.

    A partition whose consumer delivers its first batch after another
    partition has already moved the watermark past the settlement horizon
    must still have its events counted (a lagging partition holds the
    watermark), not rejected as too late. (The scenario's 3-hours-late events
    are left out: with partitions read at different speeds, whether they are
    too late depends on the slowest partition's progress.)
    """
    scenario = without_too_late(build_scenario(fault_events()))
    rig = make_rig(partitions=3, now_ms=SCENARIO_NOW_MS)
    produce(rig.brokers, rig.topic, scenario.lines)

    summary = rig.run("uninterrupted")

    assert summary.run["reconciles"] is True
    assert summary.run["consumed"] == len(scenario.lines)
    assert summary.run["accepted"] == len(scenario.accepted), summary.run["rejected"]
    assert summary.totals == expected_totals(scenario)


def test_sigkill_at_random_moments_then_restart_counts_every_event_once(
    make_rig: Callable[..., FaultRig], fault_rng: random.Random
) -> None:
    # A long settlement horizon keeps this test about crashes: the startup
    # watermark race (see the test above) cannot reject events here.
    scenario = without_too_late(build_scenario(fault_events(CI_EVENTS)))
    rig = make_rig(
        partitions=3, settings={"window": {"settlement_horizon": "30d"}}, now_ms=SCENARIO_NOW_MS
    )
    produce(rig.brokers, rig.topic, scenario.lines)
    total = len(scenario.lines)
    timeline: list[str] = []

    # First a crash during start-up: migrations, consumers, maybe no snapshot yet.
    process = rig.start("kill-0")
    delay = fault_rng.uniform(0.2, 3.0)
    time.sleep(delay)
    killed = process.kill()
    timeline.append(f"kill-0 after {delay:.2f}s (alive: {killed}), committed {rig.committed()}")

    # Then crashes mid-stream: each run commits progress past its resume point
    # and past a random share of the topic, then dies at a random moment of its
    # snapshot cycle (rows written but not yet acknowledged are replayed).
    for i, share in enumerate(
        sorted(fault_rng.uniform(0.05, 0.45) for _ in range(MID_STREAM_KILLS))
    ):
        label = f"kill-{i + 1}"
        resumed = rig.committed() or 0
        process = rig.start(label)
        reached = rig.wait_committed(process, max(resumed + 1, int(share * total)))
        delay = fault_rng.uniform(0.0, SNAPSHOT_INTERVAL_S)
        time.sleep(delay)
        assert process.kill(), (
            f"{label} reached the end of the topic before its kill: the input is too small "
            f"for this machine's speed (timeline: {timeline})"
        )
        timeline.append(
            f"{label}: resumed at {resumed}, killed {delay:.2f}s after commit {reached}"
        )

    resumed = rig.committed() or 0
    final = rig.run("final")
    timeline.append(f"final: resumed at {resumed}, consumed {final.run['consumed']}")
    print("\n".join(timeline))

    assert final.run["reconciles"] is True, (final.run, timeline)
    # It resumed from the last committed snapshot instead of reading the topic again.
    assert final.run["consumed"] == total - resumed, timeline
    assert final.totals == expected_totals(scenario), timeline
    code, result = rig.reconcile(*scenario_range(scenario.accepted))
    assert result["windows"] > 0
    assert (code, result["differences"]) == (0, []), timeline
    # The live counters in Redis agree too: absolute values rewritten by every replay.
    assert live_counters(rig) == expected_period_usage(scenario), timeline
