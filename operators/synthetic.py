"""Deterministic synthetic CloudEvents for the example meters.

Event ``n`` of a partition is a pure function of (seed, partition, n), so a
resumed generator re-creates exactly what it would have produced, and a
duplicate is a byte-for-byte copy of an earlier event. Its id names all three
(``s{seed}-p{partition}-{n}``): generators with different seeds never share an
idempotency key, while the same seed reproduces the same ids. Times advance evenly
across ``span`` with a few seconds of out-of-order jitter; a fraction of events
are duplicated, late (beyond the grace period) or invalid.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

_MASK = (1 << 64) - 1
_ENDPOINTS = ("/v1/chat", "/v1/embed", "/v1/search", "/v1/files", "/v1/images")
_MODELS = ("gpt-small", "gpt-large", "embed-3", "vision-1")
_REGIONS = ("eu-west-1", "us-east-1", "ap-south-1")
_NAMED_TENANTS = ("acme", "globex", "initech", "umbrella")


def _mix(x: int) -> int:
    """splitmix64 finaliser: a fast, well-spread 64-bit hash of ``x``."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


def _iso(ms: int) -> str:
    seconds, millis = divmod(ms, 1000)
    days, rest = divmod(seconds, 86_400)
    hour, rest = divmod(rest, 3600)
    minute, second = divmod(rest, 60)
    year, month, day = _civil_from_days(days)
    return f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}.{millis:03d}Z"


def _civil_from_days(days: int) -> tuple[int, int, int]:
    # Howard Hinnant's days-to-civil algorithm: exact for the proleptic Gregorian calendar.
    days += 719_468
    era = days // 146_097
    doe = days - era * 146_097
    yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    return yoe + era * 400 + (month <= 2), month, day


@dataclass(frozen=True, slots=True)
class SyntheticSpec:
    """What to generate. ``start_ms`` is the event time of the first event."""

    events: int
    tenants: int
    seed: int
    start_ms: int
    span_ms: int
    partitions: int = 1
    duplicate_rate: float = 0.0
    late_rate: float = 0.0
    late_by_ms: int = 120_000
    invalid_rate: float = 0.0

    def events_in(self, partition: int) -> int:
        """How many original events ``partition`` produces."""
        base, extra = divmod(self.events, self.partitions)
        return base + (1 if partition < extra else 0)


def tenant_name(index: int) -> str:
    """Tenant ``index``: the four named example tenants first, then numbered ones."""
    return _NAMED_TENANTS[index] if index < len(_NAMED_TENANTS) else f"tenant-{index:06d}"


class SyntheticPartition:
    """The event sequence of one partition; positions map to payload bytes."""

    def __init__(self, spec: SyntheticSpec, partition: int) -> None:
        self.spec = spec
        self.partition = partition
        self.count = spec.events_in(partition)
        self._salt = _mix(spec.seed * 1_000_003 + partition)
        self._id_prefix = f"s{spec.seed}-p{partition}-"
        self._step_ms = spec.span_ms / max(1, self.count)
        self._dup_cut = int(spec.duplicate_rate * (1 << 64))
        self._late_cut = int(spec.late_rate * (1 << 64))
        self._invalid_cut = int(spec.invalid_rate * (1 << 64))

    def payloads(self, n: int) -> list[bytes]:
        """Payloads at position ``n``: the event, then maybe a copy of an earlier one."""
        out = [self.event(n)]
        h = _mix(self._salt ^ (n * 0x632BE59BD9B4E019))
        if n > 0 and h < self._dup_cut:
            out.append(self.event(n - 1 - (h >> 40) % min(n, 5_000)))
        return out

    def event(self, n: int) -> bytes:
        """Event ``n`` of this partition as CloudEvents JSON bytes."""
        h = _mix(self._salt + n)
        h2 = _mix(h)
        if h2 < self._invalid_cut:
            return self._invalid(n, h)
        spec = self.spec
        time_ms = spec.start_ms + int(n * self._step_ms) + (h % 3000) - 1500
        if _mix(h2) < self._late_cut:
            time_ms -= spec.late_by_ms + (h >> 20) % 60_000
        tenant = tenant_name(_zipf_index(h >> 8, spec.tenants))
        kind = (h >> 4) % 10
        data: dict[str, str | int | float]
        if kind < 5:
            event_type, data = (
                "api.request",
                {
                    "endpoint": _ENDPOINTS[(h >> 12) % len(_ENDPOINTS)],
                    "user_id": f"u{(h >> 16) % 500}",
                },
            )
        elif kind < 8:
            event_type, data = (
                "llm.completion",
                {
                    "tokens": 1 + (h >> 12) % 4000,
                    "model": _MODELS[(h >> 24) % len(_MODELS)],
                },
            )
        elif kind < 9:
            event_type, data = (
                "compute.job",
                {
                    "cpu_seconds": ((h >> 12) % 100_000) / 1000,
                    "region": _REGIONS[(h >> 28) % len(_REGIONS)],
                },
            )
        else:
            event_type, data = "storage.snapshot", {"gb": ((h >> 12) % 500_000) / 100}
        return orjson.dumps(
            {
                "specversion": "1.0",
                "id": f"{self._id_prefix}{n}",
                "source": "synthetic/meterwax",
                "type": event_type,
                "subject": tenant,
                "time": _iso(time_ms),
                "datacontenttype": "application/json",
                "data": data,
            }
        )

    def _invalid(self, n: int, h: int) -> bytes:
        broken = (
            b'{"specversion":"1.0","id":"' + str(n).encode() + b'","source":"synthetic"',
            orjson.dumps({"specversion": "1.0", "id": f"bad-{n}", "type": "api.request"}),
            orjson.dumps(
                {
                    "specversion": "1.0",
                    "id": f"{self._id_prefix}{n}",
                    "source": "synthetic/meterwax",
                    "type": "llm.completion",
                    "subject": "acme",
                    "time": _iso(self.spec.start_ms),
                    "data": {"tokens": -5, "model": "gpt-small"},
                }
            ),
            b"\xff\xfe not utf-8",
        )
        return broken[h % len(broken)]


def _zipf_index(h: int, n: int) -> int:
    """A skewed pick in [0, n): low indexes (big tenants) come up far more often."""
    u = (h & 0xFFFFFFFF) / 0x100000000
    return min(n - 1, int(n ** (u**1.6)) - 1) if n > 1 else 0
