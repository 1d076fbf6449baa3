"""Micro-benchmark: the Python parser (operators/parse.py) against the native core, same run.

The load generator's events for the example catalogs (with its share of
invalid ones and duplicates) are parsed in batches by both; the results are
checked equal first, then each side is timed over the same batches.

    python -m benchmarks.native_parse --events 200000 --batch 1000
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks.load import LoadGenerator, LoadSpec
from config.meter_catalog import load_meter_catalog
from config.pricing_catalog import load_pricing_catalog
from operators.model import RawMessage
from operators.native_parse import NativeParser, known_tenants
from operators.parse import BatchParser, ParserConfig

EXAMPLES = Path(__file__).resolve().parent.parent / "config" / "examples"
END_MS = 1_793_491_200_000  # 2026-11-01T00:00:00Z: a fixed clock, so runs compare
NOW_MS = END_MS + 60_000


def best_of(runs: int, work: Callable[[], object]) -> float:
    """The fastest of ``runs`` timings of ``work``, in seconds (least disturbed by neighbours)."""
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - start)
    return best


def main(argv: list[str] | None = None) -> int:
    """Run the comparison and print events per second for each side and their ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=1_000, help="messages per parse call")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per side (best counts)")
    args = parser.parse_args(argv)

    meters = load_meter_catalog(EXAMPLES / "meters.yaml")
    pricing = load_pricing_catalog(EXAMPLES / "pricing.yaml", meters)
    python = BatchParser(ParserConfig(meters=meters, known_tenant=pricing.knows))
    native = NativeParser(meters, known_tenants(pricing))
    payloads = list(LoadGenerator(LoadSpec(events=args.events, end_ms=END_MS)).payloads())
    messages = [RawMessage(p, "bench", 0, offset) for offset, p in enumerate(payloads)]
    batches = [messages[i : i + args.batch] for i in range(0, len(messages), args.batch)]
    raw_batches = [[m.payload for m in batch] for batch in batches]

    for batch in batches:
        expected, got = python.parse(batch, NOW_MS), native.parse(batch, NOW_MS)
        # Malformed-JSON details name a position in each reader's own words: compare reasons.
        verdicts = [[(r.offset, r.reason) for r in p.rejections] for p in (expected, got)]
        if got.events != expected.events or verdicts[0] != verdicts[1]:
            print("native and Python parsers disagree on this load: run tests/native")
            return 1

    timings = {
        "python parse": best_of(args.runs, lambda: [python.parse(b, NOW_MS) for b in batches]),
        "native columns": best_of(
            args.runs, lambda: [native.columns(b, NOW_MS) for b in raw_batches]
        ),
        "native + Python events": best_of(
            args.runs, lambda: [native.parse(b, NOW_MS) for b in batches]
        ),
    }
    count = len(messages)
    print(f"{count} messages ({sum(map(len, payloads))} bytes), batches of {args.batch}")
    base = timings["python parse"]
    for name, seconds in timings.items():
        print(f"{name:>24}: {count / seconds:>12,.0f} events/s  {base / seconds:6.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
