"""Micro-benchmark: the Python shard (ShardSplitter + ShardState) against the native one, same run.

The load generator's events for the example catalogs (five meters, group-by,
duplicates, late events) are parsed once, dealt to input partitions in
batches, then split by shard, screened, admitted and windowed by both sides
(rating excluded: it is the same Python code behind both). The window
revisions are checked equal first; each side is then timed from fresh state.

    python -m benchmarks.native_shard --events 500000 --batch 1000
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from benchmarks.load import LoadGenerator, LoadSpec
from benchmarks.native_parse import best_of
from config.meter_catalog import load_meter_catalog
from config.meters import MeterCatalog
from config.pricing_catalog import load_pricing_catalog
from operators._native import ParsedColumns, Revisions
from operators.model import Event, RawMessage, WindowUsage
from operators.native_parse import NativeParser, known_tenants
from operators.native_shard import NativeShardState, NativeSplitter, revision_usages
from operators.shard import ShardState
from operators.sharding import ShardSplitter
from operators.windowing import PartitionKey, WindowConfig

EXAMPLES = Path(__file__).resolve().parent.parent / "config" / "examples"
END_MS = 1_793_491_200_000  # 2026-11-01T00:00:00Z: a fixed clock, so runs compare
NOW_MS = END_MS + 60_000
WINDOW = WindowConfig(size_ms=60_000, grace_ms=10_000, settlement_ms=600_000, idle_timeout_ms=5_000)
# Wall-clock time a batch takes, as the shards see it (deterministic, so both sides agree).
BATCH_S = 0.01

# One input batch: its partition, messages, Python events and native columns.
Batch = tuple[PartitionKey, list[RawMessage], list[Event], ParsedColumns]
Row = tuple[Any, ...]


def python_run(meters: MeterCatalog, batches: list[Batch], shards: int) -> list[WindowUsage]:
    """ShardSplitter + ShardState over ``batches``: every window revision."""
    aggregations = {m.slug: m.aggregation for m in meters.meters}
    partitions = sorted({batch[0] for batch in batches})
    states = {
        str(s): ShardState(WINDOW, aggregations, WINDOW.settlement_ms, "bench", partitions)
        for s in range(shards)
    }
    for state in states.values():
        state.resume(0.0)
    splitter = ShardSplitter(shards)
    out: list[WindowUsage] = []
    now_s = 0.0
    for partition, _, events, columns in batches:
        now_s += BATCH_S
        for key, part in splitter.split(events).items():
            state = states[key]
            screened = state.screen(partition, part.events, part.progress_ms, NOW_MS)
            state.admit(screened.fresh)
            out += state.finish(partition, columns.max_time_ms, now_s)
    for state in states.values():
        out += state.close_all()
    return out


def native_run(meters: MeterCatalog, batches: list[Batch], shards: int) -> list[Revisions]:
    """NativeSplitter + NativeShardState over ``batches``: every emission's revisions."""
    partitions = sorted({batch[0] for batch in batches})
    states = {
        str(s): NativeShardState(WINDOW, meters, WINDOW.settlement_ms, "bench", partitions)
        for s in range(shards)
    }
    for state in states.values():
        state.resume(0.0)
    splitter = NativeSplitter(meters, shards)
    out: list[Revisions] = []
    now_s = 0.0
    for partition, messages, _, columns in batches:
        now_s += BATCH_S
        for key, part in splitter.split(partition, messages, columns).items():
            state = states[key]
            screened = state.screen(part, NOW_MS)
            state.admit(part, screened.fresh)
            out.append(state.finish(partition, part.max_time_ms, now_s))
    for state in states.values():
        out.append(state.close_all())
    return out


def _row(usage: WindowUsage) -> Row:
    return (
        usage.tenant,
        usage.meter,
        usage.groups,
        usage.window_start_ms,
        usage.quantity,
        usage.previous_quantity,
        usage.revision,
        usage.kind,
    )


def main(argv: list[str] | None = None) -> int:
    """Run the comparison and print events per second for each side and their ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=500_000)
    parser.add_argument("--batch", type=int, default=1_000, help="messages per input batch")
    parser.add_argument("--partitions", type=int, default=4, help="input partitions")
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--runs", type=int, default=1, help="timed runs per side (best counts)")
    args = parser.parse_args(argv)

    meters = load_meter_catalog(EXAMPLES / "meters.yaml")
    pricing = load_pricing_catalog(EXAMPLES / "pricing.yaml", meters)
    native_parser = NativeParser(meters, known_tenants(pricing))
    payloads = list(LoadGenerator(LoadSpec(events=args.events, end_ms=END_MS)).payloads())
    # Message i goes to partition i mod P, so each partition's times rise like the load's.
    dealt: list[list[RawMessage]] = [[] for _ in range(args.partitions)]
    for i, data in enumerate(payloads):
        p = i % args.partitions
        dealt[p].append(RawMessage(data, "bench", p, len(dealt[p])))
    batches: list[Batch] = []
    for start in range(0, max(map(len, dealt)), args.batch):
        for p, messages in enumerate(dealt):
            batch = messages[start : start + args.batch]
            if batch:
                parsed = native_parser.parse(batch, NOW_MS)
                columns = native_parser.columns([m.payload for m in batch], NOW_MS)
                batches.append((("bench", p), batch, parsed.events, columns))
    accepted = sum(len(batch[2]) for batch in batches)

    expected = [_row(u) for u in python_run(meters, batches, args.shards)]
    emitted = native_run(meters, batches, args.shards)
    usages = [u for cols in emitted for u in revision_usages(cols, meters, WINDOW.size_ms)]
    if [_row(u) for u in usages] != expected:
        print("native and Python shards disagree on this load: run tests/native")
        return 1

    timings = {
        "python shard": best_of(args.runs, lambda: python_run(meters, batches, args.shards)),
        "native shard": best_of(args.runs, lambda: native_run(meters, batches, args.shards)),
    }
    print(
        f"{accepted} accepted events in {len(batches)} batches of {args.batch}, "
        f"{args.partitions} partitions, {args.shards} shards, {len(expected)} window revisions"
    )
    base = timings["python shard"]
    for name, seconds in timings.items():
        print(f"{name:>14}: {accepted / seconds:>12,.0f} events/s  {base / seconds:6.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
