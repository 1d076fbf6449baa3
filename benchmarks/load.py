"""Load generator: CloudEvents of a workload, to a Kafka topic or a JSONL file.

Besides the events it writes the ground truth: what the flow must report for
a meter catalog (the workload's, by default ``config/examples/meters.yaml``),
computed from the original events only (no duplicates, no invalid ones).
Usage is per tenant and meter, summed over windows and group-by rows as
``meterwax run --json`` reports it: for COUNT and SUM that is the total; for
MAX and UNIQUE_COUNT it is the sum of the per-window (and per-group) values.

Late events are shifted back by more than grace + window but stay well inside
the settlement horizon, so every one of them counts (as an adjustment).

    python -m benchmarks.load --events 100000 --file events.jsonl
    python -m benchmarks.load --events 100000 --topic usage-events --brokers 127.0.0.1:9092
    python -m benchmarks.load --workload w1 --events 2000000 --file w1.jsonl
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import json
import random
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from benchmarks.workloads import DEFAULT_WORKLOAD, WORKLOADS
from config.display import decimal_text
from config.display import iso_utc as _iso
from config.durations import parse_duration_ms
from config.errors import ConfigError
from config.meter_catalog import load_meter_catalog
from config.meters import Aggregation, MeterCatalog
from operators.synthetic import tenant_name
from sinks.kafka_producer import (
    ProduceResult,
    format_result,
    open_producer,
    producer_config,
    send,
)
from sinks.kafka_topics import TopicError, ensure_topic

WINDOW_MS = 60_000
TRUTH_AGGREGATIONS = (Aggregation.COUNT, Aggregation.SUM, Aggregation.MAX, Aggregation.UNIQUE_COUNT)
# More than the default grace (30 s) + window (1 m), plus up to LATE_EXTRA_MS more:
# late, but far inside the default settlement horizon (1 h).
LATE_BY_MS = 90_000
LATE_EXTRA_MS = 60_000
SETTLEMENT_MS = 3_600_000
MAX_FUTURE_SKEW_MS = 300_000
# Duplicates copy one of the most recent originals (same tenant, so same partition, later).
DUPLICATE_LOOKBACK = 5_000
_ENDPOINTS = ("/v1/chat", "/v1/embed", "/v1/search", "/v1/files", "/v1/images")
_MODELS = ("gpt-small", "gpt-large", "embed-3", "vision-1")
_REGIONS = ("eu-west-1", "us-east-1", "ap-south-1")


@dataclass(frozen=True, slots=True)
class LoadSpec:
    """What to generate. ``end_ms`` is the nominal time of the last event (0: now)."""

    events: int
    tenants: int = 50
    seed: int = 7
    zipf: float = 1.1
    duplicate_rate: float = 0.02
    late_rate: float = 0.01
    out_of_order_ms: int = 3_000
    invalid_rate: float = 0.005
    pad_bytes: int = 0
    span_ms: int = 3_600_000
    end_ms: int = 0
    source: str = "bench/meterwax"
    late_by_ms: int = LATE_BY_MS
    # Which events: "default" (the example catalog's five meters) or "w1" (three SUMs).
    mix: str = "default"

    def check(self, settlement_ms: int = SETTLEMENT_MS) -> None:
        """Raise ValueError unless every original event will be counted by the default flow."""
        if self.mix not in MIXES:
            raise ValueError(f"mix must be one of {', '.join(MIXES)}, not {self.mix!r}")
        for name in ("duplicate_rate", "late_rate", "invalid_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be a share between 0 and 1")
        if self.events < 0 or self.tenants < 1 or self.zipf < 0 or self.pad_bytes < 0:
            raise ValueError("events, zipf and pad_bytes must be >= 0, tenants >= 1")
        # The watermark can be ahead of a late event by its shift plus the jitter.
        if self.late_by_ms + LATE_EXTRA_MS + self.out_of_order_ms >= settlement_ms:
            raise ValueError(
                "late_by_ms + 60 s + out_of_order_ms must stay inside the settlement horizon "
                f"({settlement_ms} ms), or late events would be rejected as too late"
            )
        if self.out_of_order_ms // 2 >= MAX_FUTURE_SKEW_MS:
            raise ValueError("out_of_order_ms / 2 must be under 5 minutes (max_future_skew)")


class GroundTruth:
    """What the flow must produce for the generated events, metered by ``meters``."""

    def __init__(self, meters: MeterCatalog, window_ms: int = WINDOW_MS) -> None:
        unsupported = [m.slug for m in meters.meters if m.aggregation not in TRUTH_AGGREGATIONS]
        if unsupported:
            raise ValueError(
                f"meter(s) {', '.join(unsupported)}: the ground truth handles COUNT, SUM, MAX "
                "and UNIQUE_COUNT only; benchmark with a catalog without LATEST meters"
            )
        self.meters = meters
        self.window_ms = window_ms
        self.messages = 0
        self.originals = 0
        self.duplicates = 0
        self.invalid = 0
        self.late = 0
        self.min_ms: int | None = None
        self.max_ms: int | None = None
        # (tenant, meter, window start, group values) -> quantity, or the set of distinct values.
        self._windows: dict[tuple[str, str, int, tuple[str, ...]], Any] = {}

    def add(self, tenant: str, event_type: str, data: dict[str, Any], time_ms: int) -> None:
        """Count one original, valid event."""
        self.originals += 1
        self.min_ms = time_ms if self.min_ms is None else min(self.min_ms, time_ms)
        self.max_ms = time_ms if self.max_ms is None else max(self.max_ms, time_ms)
        start = time_ms - time_ms % self.window_ms
        for meter in self.meters.by_event_type.get(event_type, ()):
            group = tuple(str(path.find(data)) for _, path in meter.group_by)
            key = (tenant, meter.slug, start, group)
            found = None if meter.value_path is None else meter.value_path.find(data)
            if meter.aggregation is Aggregation.UNIQUE_COUNT:
                self._windows.setdefault(key, set()).add(str(found))
                continue
            value = Decimal(1) if meter.value_path is None else Decimal(repr(found))
            old = self._windows.get(key)
            if old is None:
                self._windows[key] = value
            elif meter.aggregation is Aggregation.MAX:
                self._windows[key] = max(old, value)
            else:
                self._windows[key] = old + value

    def windows(self) -> dict[tuple[str, str, int], Decimal]:
        """Quantity per (tenant, meter, window start), summed over group-by rows."""
        totals: dict[tuple[str, str, int], Decimal] = {}
        for (tenant, meter, start, _), value in self._windows.items():
            quantity = Decimal(len(value)) if isinstance(value, set) else value
            totals[tenant, meter, start] = totals.get((tenant, meter, start), Decimal(0)) + quantity
        return totals

    def usage(self) -> dict[tuple[str, str], Decimal]:
        """Quantity per (tenant, meter), summed over windows (as the run summary reports it)."""
        totals: dict[tuple[str, str], Decimal] = {}
        for (tenant, meter, _), quantity in self.windows().items():
            totals[tenant, meter] = totals.get((tenant, meter), Decimal(0)) + quantity
        return totals

    def to_json(self, spec: LoadSpec, *, with_windows: bool = False) -> dict[str, Any]:
        """The ground truth as plain data; quantities as exact decimal strings."""
        usage: dict[str, dict[str, str]] = {}
        for (tenant, meter), quantity in sorted(self.usage().items()):
            usage.setdefault(tenant, {})[meter] = decimal_text(quantity, trim=True)
        data: dict[str, Any] = {
            "spec": asdict(spec),
            "messages": self.messages,
            "originals": self.originals,
            "duplicates": self.duplicates,
            "invalid": self.invalid,
            "late": self.late,
            "min_time_ms": self.min_ms,
            "max_time_ms": self.max_ms,
            "window_ms": self.window_ms,
            "aggregations": {m.slug: m.aggregation.value for m in self.meters.meters},
            "usage": usage,
        }
        if with_windows:
            data["windows"] = [
                {
                    "tenant": t,
                    "meter": m,
                    "window_start_ms": w,
                    "quantity": decimal_text(q, trim=True),
                }
                for (t, m, w), q in sorted(self.windows().items())
            ]
        return data


def _zipf_cumulative(tenants: int, s: float) -> list[float]:
    weights = itertools.accumulate(1.0 / (rank**s) for rank in range(1, tenants + 1))
    return list(weights)


class LoadGenerator:
    """The payloads of a ``LoadSpec``; ``truth`` is complete once ``payloads()`` is exhausted."""

    def __init__(
        self, spec: LoadSpec, meters: MeterCatalog | None = None, window_ms: int = WINDOW_MS
    ) -> None:
        spec.check()
        self.spec = spec
        self.truth = GroundTruth(meters or example_meters(), window_ms)
        self.end_ms = spec.end_ms or time.time_ns() // 1_000_000
        # Event 0 is always valid and on time: ``meterwax bench`` watches for it.
        self.first_tenant = ""
        # Ids name the seed: loads with different seeds never share an idempotency key.
        self._id_prefix = f"s{spec.seed}-e"
        self.first_id = f"{self._id_prefix}0"

    def payloads(self) -> Iterator[bytes]:
        """Every message in order: originals, invalid ones in their place, duplicates after."""
        spec, truth = self.spec, self.truth
        rng = random.Random(spec.seed)
        cumulative = _zipf_cumulative(spec.tenants, spec.zipf)
        start_ms = self.end_ms - spec.span_ms
        step = spec.span_ms / max(1, spec.events)
        ooo = spec.out_of_order_ms
        pad = "x" * spec.pad_bytes
        data_of = MIXES[spec.mix]
        recent: list[bytes] = []
        for n in range(spec.events):
            if n > 0 and rng.random() < spec.invalid_rate:
                truth.invalid += 1
                truth.messages += 1
                yield _invalid(n, rng.randrange(4), start_ms)
                continue
            time_ms = start_ms + int(n * step) + (rng.randrange(ooo + 1) - ooo // 2 if ooo else 0)
            if n > 0 and rng.random() < spec.late_rate:
                truth.late += 1
                time_ms -= spec.late_by_ms + rng.randrange(LATE_EXTRA_MS)
            tenant = tenant_name(
                min(spec.tenants - 1, bisect.bisect(cumulative, rng.random() * cumulative[-1]))
            )
            event_type, data = data_of(rng)
            if pad:
                data["pad"] = pad
            payload = orjson.dumps(
                {
                    "specversion": "1.0",
                    "id": f"{self._id_prefix}{n}",
                    "source": spec.source,
                    "type": event_type,
                    "subject": tenant,
                    "time": _iso(time_ms),
                    "datacontenttype": "application/json",
                    "data": data,
                }
            )
            if n == 0:
                self.first_tenant = tenant
            truth.add(tenant, event_type, data, time_ms)
            truth.messages += 1
            yield payload
            if len(recent) < DUPLICATE_LOOKBACK:
                recent.append(payload)
            else:
                recent[n % DUPLICATE_LOOKBACK] = payload
            if rng.random() < spec.duplicate_rate:
                truth.duplicates += 1
                truth.messages += 1
                yield recent[rng.randrange(len(recent))]


def _data(rng: random.Random) -> tuple[str, dict[str, Any]]:
    kind = rng.randrange(10)
    if kind < 5:
        return "api.request", {
            "endpoint": _ENDPOINTS[rng.randrange(len(_ENDPOINTS))],
            "user_id": f"u{rng.randrange(500)}",
        }
    if kind < 8:
        return "llm.completion", {
            "tokens": 1 + rng.randrange(4000),
            "model": _MODELS[rng.randrange(len(_MODELS))],
        }
    if kind < 9:
        return "compute.job", {
            "cpu_seconds": rng.randrange(100_000) / 1000,
            "region": _REGIONS[rng.randrange(len(_REGIONS))],
        }
    return "storage.snapshot", {"gb": rng.randrange(500_000) / 100}


def _w1_data(rng: random.Random) -> tuple[str, dict[str, Any]]:
    # Workload W1: one SUM meter per event type (benchmarks/w1/meters.yaml), no group-by.
    kind = rng.randrange(3)
    if kind == 0:
        return "api.request", {
            "bytes": 200 + rng.randrange(2_000_000),
            "endpoint": _ENDPOINTS[rng.randrange(len(_ENDPOINTS))],
        }
    if kind == 1:
        return "llm.completion", {
            "tokens": 1 + rng.randrange(4000),
            "model": _MODELS[rng.randrange(len(_MODELS))],
        }
    return "compute.job", {
        "cpu_seconds": rng.randrange(100_000) / 1000,
        "region": _REGIONS[rng.randrange(len(_REGIONS))],
    }


MIXES: dict[str, Callable[[random.Random], tuple[str, dict[str, Any]]]] = {
    "default": _data,
    "w1": _w1_data,
}


def example_meters() -> MeterCatalog:
    """The example meter catalog, which meters the "default" mix."""
    return load_meter_catalog(WORKLOADS[DEFAULT_WORKLOAD].meters)


def _invalid(n: int, kind: int, time_ms: int) -> bytes:
    """One of four broken events: each is rejected by the flow, with a reason."""
    if kind == 0:
        return b'{"specversion":"1.0","id":"bad-' + str(n).encode() + b'","source":"bench"'
    if kind == 1:
        return orjson.dumps({"specversion": "1.0", "id": f"bad-{n}", "type": "api.request"})
    if kind == 2:
        return orjson.dumps(
            {
                "specversion": "1.0",
                "id": f"bad-{n}",
                "source": "bench/invalid",
                "type": "llm.completion",
                "subject": "acme",
                "time": _iso(time_ms),
                "data": {"tokens": -5, "model": "gpt-small"},
            }
        )
    return b"\xff\xfe not utf-8"


def paced(payloads: Iterable[bytes], rate: float) -> Iterator[bytes]:
    """``payloads`` at most ``rate`` per second (0: as fast as they come)."""
    if rate <= 0:
        yield from payloads
        return
    started = time.monotonic()
    for count, payload in enumerate(payloads):
        ahead = count / rate - (time.monotonic() - started)
        if ahead > 0.005:
            time.sleep(ahead)
        yield payload


def write_jsonl(payloads: Iterable[bytes], path: Path, rate: float = 0.0) -> int:
    """Write one payload per line to ``path``; how many were written."""
    count = 0
    with path.open("wb") as out:
        for payload in paced(payloads, rate):
            out.write(payload + b"\n")
            count += 1
    return count


def write_kafka(
    payloads: Iterable[bytes],
    brokers: str,
    topic: str,
    *,
    partitions: int = 1,
    rate: float = 0.0,
) -> ProduceResult:
    """Send ``payloads`` to ``topic`` (created with ``partitions`` if missing), keyed by tenant."""
    admin = AdminClient({"bootstrap.servers": brokers})
    actual, _ = ensure_topic(admin, topic, partitions, 1)
    producer = open_producer(producer_config(brokers, {}))
    return send(producer, topic, paced(payloads, rate), actual)


def write_truth(path: Path, truth: dict[str, Any]) -> None:
    """The ground truth as indented JSON."""
    path.write_text(json.dumps(truth, indent=2) + "\n", encoding="utf-8")


def add_spec_arguments(parser: argparse.ArgumentParser) -> None:
    """The generator's options (shared with ``meterwax bench``).

    ``--workload`` picks the defaults; the other options override them.
    """
    d = LoadSpec(events=0)
    parser.add_argument(
        "--workload",
        choices=sorted(WORKLOADS),
        default=DEFAULT_WORKLOAD,
        # argparse expands %-formats in help texts; the summaries say "2% duplicates".
        help="; ".join(f"{w.name}: {w.summary}" for w in WORKLOADS.values()).replace("%", "%%"),
    )
    parser.add_argument("--events", type=int, default=100_000, metavar="N")
    parser.add_argument(
        "--tenants", type=int, metavar="N", help=f"default: the workload's ({d.tenants} for w2)"
    )
    parser.add_argument("--seed", type=int, help=f"default {d.seed}")
    parser.add_argument("--zipf", type=float, help="tenant skew exponent (0: even)")
    parser.add_argument("--duplicate-rate", type=float)
    parser.add_argument("--late-rate", type=float)
    parser.add_argument("--invalid-rate", type=float)
    parser.add_argument("--out-of-order-ms", type=int, help="time jitter spread")
    parser.add_argument("--pad-bytes", type=int, help="adds data.pad")
    parser.add_argument("--span-ms", type=int, help="event times cover this")


_SPEC_OPTIONS = (
    "tenants",
    "seed",
    "zipf",
    "duplicate_rate",
    "late_rate",
    "invalid_rate",
    "out_of_order_ms",
    "pad_bytes",
    "span_ms",
)


def spec_from_args(args: argparse.Namespace, source: str = "bench/meterwax") -> LoadSpec:
    """A ``LoadSpec`` from the options of ``add_spec_arguments``: the workload's, then overrides."""
    workload = WORKLOADS[args.workload]
    spec = LoadSpec(events=args.events, source=source, **workload.load)
    given = {name: getattr(args, name) for name in _SPEC_OPTIONS if getattr(args, name) is not None}
    return replace(spec, **given)


def workload_generator(
    args: argparse.Namespace, spec: LoadSpec, meters_path: Path | None = None
) -> LoadGenerator:
    """The generator of ``spec`` whose truth meters as the catalog (default: the workload's).

    Raises ValueError (a bad spec) or ConfigError (a bad catalog), each with a one-line message.
    """
    workload = WORKLOADS[args.workload]
    meters = load_meter_catalog(meters_path or workload.meters)
    return LoadGenerator(spec, meters, parse_duration_ms(workload.window_size))


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.load``: 0 when everything was written, 1 otherwise."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.load", description=__doc__)
    add_spec_arguments(parser)
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--file", type=Path, help="JSONL output")
    target.add_argument("--topic", help="Kafka topic (created if missing)")
    parser.add_argument("--brokers", default="127.0.0.1:9092")
    parser.add_argument("--partitions", type=int, help="default: the workload's")
    parser.add_argument("--rate", type=float, default=0.0, help="events/s; 0 = unlimited")
    parser.add_argument("--source", default="bench/meterwax", help="CloudEvents source")
    parser.add_argument("--truth", type=Path, help="ground truth JSON (default: beside output)")
    parser.add_argument("--windows", action="store_true", help="per-window truth too")
    args = parser.parse_args(argv)
    try:
        spec = spec_from_args(args, args.source)
        generator = workload_generator(args, spec)
    except (ValueError, ConfigError) as exc:
        parser.error(str(exc))
    if args.file is not None:
        count = write_jsonl(generator.payloads(), args.file, args.rate)
        print(f"wrote {count} messages to {args.file}")
        truth_path = args.truth or args.file.with_suffix(".truth.json")
        failed = 0
    else:
        try:
            result = write_kafka(
                generator.payloads(),
                args.brokers,
                args.topic,
                partitions=args.partitions or WORKLOADS[args.workload].partitions,
                rate=args.rate,
            )
        except (TopicError, KafkaException) as exc:
            print(f"benchmarks.load: {exc}", file=sys.stderr)
            return 1
        print(format_result(result, args.topic))
        truth_path = args.truth or Path(f"{args.topic}.truth.json")
        failed = result.failed
    write_truth(truth_path, generator.truth.to_json(spec, with_windows=args.windows))
    print(f"ground truth in {truth_path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
