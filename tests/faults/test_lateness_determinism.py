"""The same topic gives the same verdicts and totals however it is read (issue 12, item 4).

One topic with deliberately skewed partitions is metered with 1 worker,
2 workers, 2 processes, and by tailing runs killed with SIGKILL and
restarted from recovery. Partition 0 lags ten days behind the others;
every partition mixes in events that are late (20 minutes behind its own
front: adjustments) and too late (95 minutes behind, beyond the 1 h
settlement horizon), and partitions 1 and 2 also carry events from partition
0's days (too late for them, though not for the lagging watermark). A short
idle timeout lets the watermark move with the wall clock whenever the
input pauses. Accepted, late and too-late counts, duplicates, and the
ClickHouse totals and billing periods must be the same in every run, and
equal to what the definition gives: each event judged against the latest
event time of its own partition up to it.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from sinks.local_services import free_port
from tests.dataflows.scenario import BASE_MS, SCENARIO_NOW_MS, Scenario, expected_totals
from tests.faults.conftest import (
    SNAPSHOT_INTERVAL_S,
    FaultRig,
    RunSummary,
    event_ms,
    iso,
    produce,
)

pytestmark = pytest.mark.integration

MINUTE = 60_000
DAY = 24 * 60 * MINUTE
SIZE, GRACE, SETTLEMENT = MINUTE, 30_000, 60 * MINUTE  # the defaults
PARTITIONS = 3
FRONT_EVENTS = 2_000  # per partition ahead
LAGGING_EVENTS = 1_000  # in partition 0, ten days behind
TENANTS = ("acme", "globex", "umbrella", "initech")
SETTINGS: dict[str, Any] = {
    "input": {"batch_size": 100},
    "window": {"idle_timeout": "1s"},
}
WAVES = 3


def cloud_event(event_id: str, time_ms: int, n: int) -> dict[str, object]:
    """One event of each kind in turn: tokens (SUM), calls and users, peak GB (MAX)."""
    event: dict[str, object] = {
        "specversion": "1.0",
        "id": event_id,
        "source": "tests/lateness",
        "subject": TENANTS[n % len(TENANTS)],
        "time": iso(time_ms),
    }
    kind = n % 3
    if kind == 0:
        return event | {"type": "llm.completion", "data": {"tokens": n % 97 + 1, "model": "m1"}}
    if kind == 1:
        return event | {"type": "api.request", "data": {"user": f"u{n % 7}"}}
    return event | {"type": "storage.snapshot", "data": {"gb": f"{n % 50}.25"}}


def partition_events(p: int) -> list[dict[str, object]]:
    """Partition ``p``'s events in order: a steady front with old events mixed in."""
    lagging = p == 0
    start = BASE_MS - 10 * DAY if lagging else BASE_MS
    step = 6_000 if lagging else 3_500
    events = []
    for i in range(LAGGING_EVENTS if lagging else FRONT_EVENTS):
        front = start + i * step
        if i % 40 == 7:
            time_ms = front - 20 * MINUTE  # late: an adjustment
        elif i % 40 == 23:
            time_ms = front - 95 * MINUTE  # too late once the front is 95 min on
        elif not lagging and i % 50 == 31:
            time_ms = BASE_MS - 10 * DAY + i * 3_000  # among partition 0's days
        else:
            time_ms = front
        events.append(cloud_event(f"p{p}-{i}", time_ms, i + p))
    return events


def build_topic() -> tuple[list[bytes], list[int], Scenario, Counter[str]]:
    """Lines, their partitions, the expected accepted events, and the expected verdict counts.

    Lines are in production order: each partition in its own order, the
    partitions interleaved evenly, so every wave of the crash run has a share
    of each.
    """
    by_partition = [partition_events(p) for p in range(PARTITIONS)]
    produced: list[tuple[float, bytes, int]] = []
    scenario = Scenario()
    verdicts: Counter[str] = Counter()
    for p, events in enumerate(by_partition):
        latest = None
        for i, event in enumerate(events):
            time_ms = event_ms(event)
            latest = time_ms if latest is None else max(latest, time_ms)
            end = time_ms - time_ms % SIZE + SIZE
            if end + SETTLEMENT <= latest:
                verdicts["too_late"] += 1
            else:
                verdicts["late" if end + GRACE <= latest else "on_time"] += 1
                scenario.accepted.append(event)
            copies = 2 if i % 100 == 99 else 1  # an exact retry, right behind it
            for _ in range(copies):
                produced.append((i / len(events), json.dumps(event).encode(), p))
            scenario.duplicates += copies - 1
    produced.sort(key=lambda item: item[0])  # stable: each partition keeps its order
    lines = [line for _, line, _ in produced]
    return lines, [p for _, _, p in produced], scenario, verdicts


def outcome(summaries: list[RunSummary]) -> dict[str, Any]:
    """What must not depend on how the topic was read: counts over processes, stored figures."""
    runs = [s.run for s in summaries]
    return {
        "accepted": sum(r["accepted"] for r in runs),
        "late": sum(r["late_accepted"] for r in runs),
        "too_late": sum(r["rejected"].get("too_late", 0) for r in runs),
        "duplicates": sum(r["duplicates"] for r in runs),
        **stored_outcome(summaries[0]),
    }


def stored_outcome(summary: RunSummary) -> dict[str, Any]:
    """ClickHouse totals and billing periods (every window's latest revision)."""
    return {
        "totals": summary.totals,
        "periods": summary.data["billing_periods"]["stored"],
        "stored_rejections": summary.data["rejected_stored"],
    }


def test_one_worker_two_workers_two_processes_and_crashes_agree(
    make_rig: Callable[..., FaultRig], fault_rng: random.Random
) -> None:
    lines, partition_of, scenario, verdicts = build_topic()
    shared = make_rig(partitions=PARTITIONS, settings=SETTINGS, now_ms=SCENARIO_NOW_MS)
    topic = shared.topic

    def rig(**extra: Any) -> FaultRig:
        settings = {**SETTINGS, "kafka": {"topics": [topic]}, **extra}
        return make_rig(partitions=1, settings=settings, now_ms=SCENARIO_NOW_MS)

    expected = {
        "accepted": verdicts["on_time"] + verdicts["late"],
        "late": verdicts["late"],
        "too_late": verdicts["too_late"],
        "duplicates": scenario.duplicates,
    }
    assert verdicts["late"] > 0 and 0 < verdicts["too_late"] < verdicts["on_time"]

    # The crash runs tail the topic while it arrives in waves, so they are killed
    # at random points of the input, with waits long enough for idle advance.
    crash_rig = rig()
    bounds = [len(lines) * w // WAVES for w in range(WAVES + 1)]
    timeline = []
    for w in range(WAVES):
        wave = range(bounds[w], bounds[w + 1])
        produce(
            shared.brokers,
            topic,
            [lines[k] for k in wave],
            lambda k, first=bounds[w]: partition_of[first + k],
        )
        process = crash_rig.start(f"crash-{w}", tail=True)
        reached = crash_rig.wait_committed(process, fault_rng.randint(bounds[w] + 1, bounds[w + 1]))
        delay = fault_rng.uniform(0.0, SNAPSHOT_INTERVAL_S)
        time.sleep(delay)
        assert process.kill(), f"crash-{w} exited on its own: {process.stderr()[-3000:]}"
        timeline.append(f"wave {w}: killed {delay:.2f}s after commit {reached}")
    crashed = crash_rig.run("crash-final")

    one = rig().run("one-worker", "--workers", "1")
    two = rig().run("two-workers", "--workers", "2")
    cluster_rig = rig(recovery={"directory": None})
    addresses = f"127.0.0.1:{free_port()},127.0.0.1:{free_port()}"
    processes = [
        cluster_rig.start(f"process-{pid}", "--process-id", str(pid), "--addresses", addresses)
        for pid in (0, 1)
    ]
    cluster = [process.summary() for process in processes]

    results = {"one": outcome([one]), "two": outcome([two]), "cluster": outcome(cluster)}
    for label, result in results.items():
        counts = {key: result[key] for key in expected}
        assert counts == expected, label
        assert result["totals"] == expected_totals(scenario), label
    assert results["two"] == results["one"]
    assert results["cluster"] == results["one"]
    # Across crashes only the stored figures add up (replays repeat run counts).
    assert stored_outcome(crashed) == stored_outcome(one), timeline
    assert crashed.data["rejected_stored"] == {"too_late": verdicts["too_late"]}, timeline
