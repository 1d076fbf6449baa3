"""Two flows for the same outputs: one writer at a time, held by a lease in Redis.

The flows of a test read one topic and share one Redis under one key prefix:
the same outputs (idempotency claims, live counters, and the ClickHouse rows
that follow from them), whatever chDB path each has (chDB allows one process
per path, so every flow here has its own; the lease is keyed by the Redis
prefix, not by the ClickHouse target). The lease TTL is 2 s (15 s where a
flow must start while a crashed holder's lease lives).

* Started at once: one is refused (exit code 2, one line), the other's totals
  are exact.
* A crashed holder's own restart takes its lease over at once; another flow is
  refused until the lease expires, then takes over and its totals are exact.
* A holder paused (SIGSTOP) past its TTL, while its restored copy takes over
  and finishes, cannot write when it wakes: its claims and live counters are
  refused and it exits with the lease-lost line (exit code 3); totals and live
  counters stay exact.

Windows wait for 30 days of event time (grace and settlement), so none closes
before the end of the input: a flow's store ends up with every window of what
it metered, even the windows of a run that another process resumed.

Size: ``METERWAX_FAULT_EVENTS`` scenario events (CI default 6,000).
"""

from __future__ import annotations

import json
import shutil
import signal
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import redis

from operators.idempotency import key_hash
from sinks.redis_keys import lease_key
from sinks.redis_lease import Holder
from tests.dataflows.scenario import (
    SCENARIO_NOW_MS,
    build_scenario,
    expected_period_usage,
    expected_totals,
)
from tests.faults.conftest import FaultRig, MeterwaxProcess, fault_events, produce, without_too_late
from tests.faults.test_crash_restart import live_counters

pytestmark = pytest.mark.integration

CI_EVENTS = 6_000
LEASE_TTL_S = 2.0
CRASHED_LEASE_TTL_S = 15.0
EXIT_TIMEOUT_S = 60.0
REFUSED, STOPPED = 2, 3


def _two_rigs(
    make_rig: Callable[..., FaultRig], lease_ttl_s: float = LEASE_TTL_S
) -> tuple[FaultRig, FaultRig, str]:
    """Two rigs on one topic and one Redis prefix (own chDB and recovery each); the prefix."""
    prefix = f"two-{uuid.uuid4().hex[:12]}"
    shared: dict[str, Any] = {
        "redis": {"key_prefix": prefix},
        "flow": {"lease_ttl": f"{int(lease_ttl_s * 1000)}ms"},
        "window": {"grace": "30d", "settlement_horizon": "30d"},
    }
    first = make_rig(partitions=3, settings=shared, now_ms=SCENARIO_NOW_MS)
    second = make_rig(
        partitions=1,
        settings={**shared, "kafka": {"topics": [first.topic]}},
        now_ms=SCENARIO_NOW_MS,
    )
    return first, second, prefix


def _redis(rig: FaultRig) -> redis.Redis:
    url: str = json.loads(rig.config.read_text())["redis"]["url"]
    return redis.Redis.from_url(url, decode_responses=True)


def _exit_code(process: MeterwaxProcess, timeout_s: float = EXIT_TIMEOUT_S) -> int:
    try:
        return process.popen.wait(timeout=timeout_s)
    except Exception:
        process.kill()
        pytest.fail(f"{process.label}: no exit within {timeout_s} s\n{process.stderr()[-3000:]}")


def _assert_refused(process: MeterwaxProcess) -> None:
    """Exit code 2 and one line that names the holder and says what to do."""
    assert _exit_code(process) == REFUSED, process.stderr()[-3000:]
    lines = process.stderr().strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("meterwax: another flow (instance "), lines
    assert "holds the lease for the outputs under Redis prefix" in lines[0]
    assert "stop it, or wait" in lines[0] and "s for its lease to expire if it crashed" in lines[0]


def _holder(client: redis.Redis, prefix: str) -> Holder | None:
    value = client.get(lease_key(prefix))
    return None if value is None else Holder.parse(value)


def _wait_for(condition: Callable[[], bool], what: str, timeout_s: float = EXIT_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout_s} s: {what}")
        time.sleep(0.05)


def test_two_flows_started_at_once_one_is_refused_and_the_totals_are_exact(
    make_rig: Callable[..., FaultRig],
) -> None:
    scenario = without_too_late(build_scenario(fault_events(CI_EVENTS)))
    a, b, _ = _two_rigs(make_rig)
    produce(a.brokers, a.topic, scenario.lines)

    flows = [(a.start("a", tail=True), a), (b.start("b", tail=True), b)]
    _wait_for(lambda: any(not p.alive() for p, _ in flows), "one of the two flows exits")
    refused = next(p for p, _ in flows if not p.alive())
    _assert_refused(refused)
    winner, rig = next((p, r) for p, r in flows if p is not refused)

    # The winner meters the whole topic alone; a stop and a --no-tail resume close
    # its windows.
    rig.wait_committed(winner, len(scenario.lines))
    winner.popen.send_signal(signal.SIGTERM)
    winner.summary(EXIT_TIMEOUT_S)
    final = rig.run("finish")
    assert final.run["reconciles"] is True
    assert final.totals == expected_totals(scenario)
    assert live_counters(rig) == expected_period_usage(scenario)


def test_a_crashed_holders_restart_takes_over_at_once_another_flow_after_expiry(
    make_rig: Callable[..., FaultRig],
) -> None:
    scenario = without_too_late(build_scenario(fault_events(CI_EVENTS)))
    # Long enough to outlast the start-up of the flow that must be refused.
    a, b, prefix = _two_rigs(make_rig, CRASHED_LEASE_TTL_S)
    client = _redis(a)

    crashed = a.start("a-crashed", tail=True)
    _wait_for(lambda: _holder(client, prefix) is not None, "the first flow takes the lease")
    first = _holder(client, prefix)
    crashed.kill()
    # Its restart (its own recovery directory, the same instance) does not wait.
    restarted = a.start("a-restarted", tail=True)
    _wait_for(
        lambda: (holder := _holder(client, prefix)) is not None and holder.epoch > first.epoch,
        "the restart takes the lease over",
    )
    assert _holder(client, prefix).instance == first.instance  # type: ignore[union-attr]
    restarted.kill()

    # Another flow is refused while the crashed holder's lease lives...
    _assert_refused(b.start("b-early"))
    produce(a.brokers, a.topic, scenario.lines)
    # ...and takes over once it has expired.
    _wait_for(lambda: _holder(client, prefix) is None, "the lease expires", 2 * CRASHED_LEASE_TTL_S)
    summary = b.run("b-takeover")
    assert summary.run["reconciles"] is True
    assert summary.totals == expected_totals(scenario)
    assert live_counters(b) == expected_period_usage(scenario)
    assert _holder(client, prefix) is None  # released on a clean exit


def test_a_paused_holder_that_lost_its_lease_cannot_write_when_it_wakes(
    make_rig: Callable[..., FaultRig],
) -> None:
    scenario = without_too_late(build_scenario(fault_events(CI_EVENTS)))
    a, b, prefix = _two_rigs(make_rig)
    # Claim fields are raw hash bytes: this client does not decode.
    client = redis.Redis.from_url(json.loads(a.config.read_text())["redis"]["url"])
    half = len(scenario.lines) // 2
    produce(a.brokers, a.topic, scenario.lines[:half])

    paused = a.start("a-paused", tail=True)
    a.wait_committed(paused, half)
    paused.popen.send_signal(signal.SIGSTOP)
    try:
        time.sleep(LEASE_TTL_S * 1.5)
        # Its recovery directory is restored elsewhere: the same flow, under a new epoch.
        shutil.copytree(a.recovery_dir, b.recovery_dir)
        produce(a.brokers, a.topic, scenario.lines[half:])
        summary = b.run("b-restored")
        # Events only the woken holder could claim: a fenced one must not.
        late = [dict(scenario.accepted[-1], id=f"zombie-{n}") for n in range(20)]
        produce(a.brokers, a.topic, [json.dumps(event).encode() for event in late])
    finally:
        paused.popen.send_signal(signal.SIGCONT)

    assert _exit_code(paused) == STOPPED, paused.stderr()[-3000:]
    stderr = paused.stderr()
    assert "Traceback" not in stderr and "panicked" not in stderr, stderr[-3000:]
    assert any(line.startswith("meterwax: lease lost: ") for line in stderr.splitlines()), stderr
    assert summary.run["reconciles"] is True
    assert summary.totals == expected_totals(scenario)
    assert live_counters(b) == expected_period_usage(scenario)
    claimed = {
        field
        for bucket in client.scan_iter(match=f"{prefix}:idem-day:*:*", count=1_000)
        for field in client.hkeys(bucket)
    }
    assert claimed  # the flows' own claims
    for event in late:
        assert key_hash(str(event["subject"]), str(event["source"]), event["id"]) not in claimed


def test_a_flow_resumed_after_another_took_over_is_refused(
    make_rig: Callable[..., FaultRig],
) -> None:
    scenario = without_too_late(build_scenario(fault_events(CI_EVENTS)))
    a, b, _ = _two_rigs(make_rig)
    produce(a.brokers, a.topic, scenario.lines)
    assert a.run("a-first").totals == expected_totals(scenario)
    # Another flow (a lost or replaced recovery directory) writes the same outputs...
    b.run("b-after")

    # ...so a's saved state no longer knows its periods' usage: resuming it is refused.
    resumed = a.start("a-resumed")
    assert _exit_code(resumed) == REFUSED, resumed.stderr()[-3000:]
    lines = resumed.stderr().strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("meterwax: another flow (instance "), lines
    assert "resuming it would price billing periods without that flow's usage" in lines[0]
