"""A metering scenario with a known answer: events, duplicates, late and broken lines.

The expectation is computed straight from the accepted events, with none of
the flow's code, so flow tests compare against an independent answer.
"""

from __future__ import annotations

import json
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

from config.clock import ShiftedClock

MINUTE = 60_000
BASE_MS = 1_793_489_400_000  # 2026-10-31T23:30:00Z: the price change at 00:00 falls inside
PRICE_CHANGE_MS = 1_793_491_200_000  # 2026-11-01T00:00:00Z
# A "now" for flows over the scenario (2026-11-08T00:00:00Z): after its last event
# (200,000 events end on 2026-11-03), long before any of its live counters expire.
SCENARIO_NOW_MS = PRICE_CHANGE_MS + 7 * 24 * 60 * MINUTE
# The clock of in-process flows over the scenario: it read SCENARIO_NOW_MS when
# the test session started, and runs on.
SCENARIO_CLOCK = ShiftedClock(SCENARIO_NOW_MS - time.time_ns() // 1_000_000)
TENANTS = ("acme", "globex", "umbrella", "initech")
PRICES = {  # (plan, version) -> meter -> unit price, as in tests/dataflows/conftest.py
    "v1": {"tokens": "0.000002", "calls": "0.0001", "users": "0.01", "peak_gb": "0.003"},
    "v2": {"tokens": "0.0000015", "calls": "0.0002", "users": "0.01", "peak_gb": "0.004"},
    "p1": {"tokens": "0.000001", "calls": "0.00005"},
}


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


def _event(n: int, time_ms: int, tenant: str, kind: int) -> dict[str, object]:
    event: dict[str, object] = {
        "specversion": "1.0",
        "id": f"evt-{n}",
        "source": "tests/e2e",
        "subject": tenant,
        "time": _iso(time_ms),
    }
    if kind == 0:
        event |= {"type": "llm.completion", "data": {"tokens": n % 97 + 1, "model": f"m{n % 3}"}}
    elif kind == 1:
        event |= {"type": "api.request", "data": {"user": f"u{n % 7}"}}
    else:
        event |= {"type": "storage.snapshot", "data": {"gb": f"{n % 50}.25"}}
    return event


@dataclass
class Scenario:
    """The input lines and what a correct meter must make of them."""

    lines: list[bytes] = field(default_factory=list)
    accepted: list[dict[str, object]] = field(default_factory=list)
    duplicates: int = 0
    rejected: Counter[str] = field(default_factory=Counter)


def build_scenario(count: int = 1200, *, too_late: bool = True) -> Scenario:
    """Events 1 s apart, with duplicates, late (5 min), too-late (3 h) and broken lines."""
    s = Scenario()
    # Well past the start, so the watermark is established whatever the batching
    # (at 1,200 events: positions 700 and 900).
    too_late_at = (count * 7 // 12, count * 3 // 4) if too_late else ()
    for n in range(count):
        time_ms = BASE_MS + n * 1000
        event = _event(n, time_ms, TENANTS[n % 4], n % 3)
        s.lines.append(json.dumps(event).encode())
        s.accepted.append(event)
        if n % 40 == 39:  # an exact retry of an earlier event
            s.lines.append(json.dumps(s.accepted[n - 30]).encode())
            s.duplicates += 1
        if n % 97 == 96:  # same source and id, different body: still the same event
            again = dict(s.accepted[n - 5])
            again["time"] = _iso(time_ms)
            s.lines.append(json.dumps(again).encode())
            s.duplicates += 1
        if n % 50 == 49 and n > 400:  # late by 5 minutes: an adjustment
            late = _event(100_000 + n, time_ms - 5 * MINUTE, TENANTS[(n + 1) % 4], n % 3)
            s.lines.append(json.dumps(late).encode())
            s.accepted.append(late)
        if n in too_late_at:  # 3 hours late: past the settlement horizon
            s.lines.append(
                json.dumps(_event(200_000 + n, time_ms - 180 * MINUTE, "acme", 0)).encode()
            )
            s.rejected["too_late"] += 1
    s.lines.insert(10, b'{"specversion": "1.0", "id": ')
    s.lines.insert(20, json.dumps({**_event(300_001, BASE_MS, "acme", 0), "type": "x.y"}).encode())
    s.lines.insert(
        30,
        json.dumps({**_event(300_002, BASE_MS, "acme", 0), "time": "2026-11-01T00:00:00"}).encode(),
    )
    s.lines.insert(
        40,
        json.dumps(
            _event(300_003, BASE_MS, "acme", 0) | {"data": {"tokens": -1, "model": "m0"}}
        ).encode(),
    )
    s.rejected.update(["malformed_json", "unknown_event_type", "bad_time", "negative_value"])
    return s


def expected_totals(s: Scenario) -> dict[tuple[str, str], tuple[Decimal, Decimal]]:
    """Per (tenant, meter): quantity and amount, computed straight from the accepted events.

    The quantity is the sum of the window quantities (what the rated windows
    report); the amount prices each billing period's usage as a whole: per-unit
    prices on the period's sum (tokens, calls), distinct users and peak GB.
    Periods are calendar months in UTC; the price change falls on a period
    start, so each (month, version) is one segment.
    """
    windows: dict[tuple[str, str, tuple[str, ...], int], list[Decimal | str]] = defaultdict(list)
    for event in s.accepted:
        data = event["data"]
        assert isinstance(data, dict)
        time_ms = _parse_ms(str(event["time"]))
        start = time_ms - time_ms % MINUTE
        tenant = str(event["subject"])
        if event["type"] == "llm.completion":
            windows[(tenant, "tokens", (str(data["model"]),), start)].append(
                Decimal(data["tokens"])
            )
        elif event["type"] == "api.request":
            windows[(tenant, "calls", (), start)].append(Decimal(1))
            windows[(tenant, "users", (), start)].append(str(data["user"]))
        else:
            windows[(tenant, "peak_gb", (), start)].append(Decimal(str(data["gb"])))
    quantities: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    periods: dict[tuple[str, str, str], list[Decimal | str]] = defaultdict(list)
    for (tenant, meter, _groups, start), values in windows.items():
        if meter == "users":
            quantities[(tenant, meter)] += len(set(values))
        elif meter == "peak_gb":
            quantities[(tenant, meter)] += max(v for v in values if isinstance(v, Decimal))
        else:
            quantities[(tenant, meter)] += sum(
                (v for v in values if isinstance(v, Decimal)), Decimal(0)
            )
        version = "p1" if tenant == "acme" else ("v2" if start >= PRICE_CHANGE_MS else "v1")
        month = "nov" if start >= PRICE_CHANGE_MS else "oct"
        periods[(tenant, meter, f"{month}/{version}")].extend(values)
    amounts: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for (tenant, meter, segment), values in periods.items():
        if meter == "users":
            usage = Decimal(len(set(values)))
        elif meter == "peak_gb":
            usage = max(v for v in values if isinstance(v, Decimal))
        else:
            usage = sum((v for v in values if isinstance(v, Decimal)), Decimal(0))
        price = Decimal(PRICES[segment.split("/")[1]].get(meter, "0"))
        amounts[(tenant, meter)] += usage * price
    return {key: (quantities[key], amounts[key]) for key in quantities}


def _parse_ms(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1000)


OCTOBER_2026_MS = 1_790_812_800_000  # 2026-10-01T00:00:00Z: the period before PRICE_CHANGE_MS


def expected_period_usage(s: Scenario) -> dict[tuple[str, str, int], Decimal]:
    """Per (tenant, meter, period start): the period's usage, as live counters must show it.

    Periods are calendar months in UTC (the test catalog sets no anchor day):
    sums for tokens and calls, distinct users, the peak of peak_gb.
    """
    values: dict[tuple[str, str, int], list[Decimal | str]] = defaultdict(list)
    for event in s.accepted:
        data = event["data"]
        assert isinstance(data, dict)
        time_ms = _parse_ms(str(event["time"]))
        period = PRICE_CHANGE_MS if time_ms >= PRICE_CHANGE_MS else OCTOBER_2026_MS
        tenant = str(event["subject"])
        if event["type"] == "llm.completion":
            values[(tenant, "tokens", period)].append(Decimal(data["tokens"]))
        elif event["type"] == "api.request":
            values[(tenant, "calls", period)].append(Decimal(1))
            values[(tenant, "users", period)].append(str(data["user"]))
        else:
            values[(tenant, "peak_gb", period)].append(Decimal(str(data["gb"])))
    usage: dict[tuple[str, str, int], Decimal] = {}
    for key, found in values.items():
        numbers = [v for v in found if isinstance(v, Decimal)]
        if key[1] == "users":
            usage[key] = Decimal(len(set(found)))
        elif key[1] == "peak_gb":
            usage[key] = max(numbers)
        else:
            usage[key] = sum(numbers, Decimal(0))
    return usage
