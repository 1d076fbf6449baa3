"""Redis crashes mid-stream and comes back on the same port: nothing lost, nothing doubled.

While Redis is down the flow waits, retrying its claims with backoff (and
logging a warning per retry); a claim whose outcome was lost with the
connection is retried with the same token, which Redis then calls a replay of
the same message. Redis runs as production should: append-only file synced on
every write, so the claims survive the crash.

The run tails the topic while the scenario arrives in waves: two before the
crash, two during the outage, two after it, and between those a copy of the
first wave (producers resending after the outage). The dedup horizon is short,
so by then the keyed state has forgotten the first wave and only Redis knows
it: a Redis that lost its claims would count the copy again. The settlement
horizon is long so that waiting cannot turn events into ``too_late``
rejections. The run is then killed before its last snapshot, and a
``--no-tail`` run from the recovery directory finishes the job.

Size: ``METERWAX_FAULT_EVENTS`` scenario events (CI default 60,000; ``full``:
200,000).
"""

from __future__ import annotations

import itertools
import os
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
import redis

from sinks.local_services import RunningService, is_running, start_redis, stop
from tests.dataflows.scenario import SCENARIO_NOW_MS, build_scenario, expected_totals
from tests.faults.conftest import FaultRig, fault_events, produce, scenario_range, without_too_late

pytestmark = pytest.mark.integration

WAVES = 6
OUTAGE_S = 3.0


def crash(service: RunningService) -> None:
    """SIGKILL redis-server (no shutdown, no final write) and reap it."""
    os.kill(service.pid, signal.SIGKILL)
    stop(service.pid)


def waves(lines: Sequence[bytes], count: int) -> list[Sequence[bytes]]:
    """``lines`` cut into ``count`` consecutive chunks of (almost) equal size."""
    bounds = [len(lines) * i // count for i in range(count + 1)]
    return [lines[a:b] for a, b in itertools.pairwise(bounds)]


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[Callable[..., RunningService]]:
    """Start (and restart, on the same port) a persistent redis-server; stopped at teardown."""
    started: list[RunningService] = []

    def start(port: int | None = None) -> RunningService:
        service = start_redis(tmp_path / "redis", port, persistent=True)
        started.append(service)
        return service

    yield start
    for service in started:
        # The crashed one is gone (and reaped): never signal a recycled pid.
        if is_running(service.pid, "redis-server"):
            stop(service.pid)


def test_redis_crash_and_restart_mid_stream_changes_no_total(
    make_rig: Callable[..., FaultRig], own_redis: Callable[..., RunningService]
) -> None:
    scenario = without_too_late(build_scenario(fault_events()))
    service = own_redis()
    url = f"redis://{service.address}/0"
    rig = make_rig(
        partitions=3,
        redis_url_override=url,
        settings={"window": {"settlement_horizon": "30d", "dedup_horizon": "2m"}},
        now_ms=SCENARIO_NOW_MS,
    )
    chunks = waves(scenario.lines, WAVES)
    total = len(scenario.lines)

    run = rig.start("tailing", tail=True)
    rig.wait_committed(run, 0)
    for chunk in chunks[:2]:
        produce(rig.brokers, rig.topic, chunk)
    rig.wait_committed(run, 1)  # claims were made: Redis has state to lose
    crash(service)
    crashed_at = time.monotonic()
    for chunk in chunks[2:4]:
        produce(rig.brokers, rig.topic, chunk)
    time.sleep(max(0.0, crashed_at + OUTAGE_S - time.monotonic()))
    service = own_redis(service.port)
    with redis.Redis.from_url(url) as client:
        assert client.dbsize() > 0, "Redis lost its claims in the crash"
    # After the outage producers resend the first wave: Redis alone knows those
    # events (the keyed state forgot them long ago).
    for chunk in (chunks[4], chunks[0], chunks[5]):
        produce(rig.brokers, rig.topic, chunk)
    total += len(chunks[0])
    # Killed before the end is acknowledged: the last run replays claimed messages.
    rig.wait_committed(run, total * 4 // 5)
    assert run.kill()
    log = run.stderr()

    final = rig.run("final")

    assert "unavailable" in log, log[-3000:]  # the flow noticed the outage and waited
    assert "is back after" in log, log[-3000:]
    assert 0 < final.run["consumed"] < total
    assert final.run["reconciles"] is True
    assert final.totals == expected_totals(scenario)
    code, result = rig.reconcile(*scenario_range(scenario.accepted))
    assert result["windows"] > 0
    assert (code, result["differences"]) == (0, [])
