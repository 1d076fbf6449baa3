"""The workloads ``meterwax bench`` and ``benchmarks.load`` can generate, by name.

A workload is a generator setting (the ``LoadSpec`` fields that differ from
its defaults), the catalogs that meter its events, the window the flow uses
and the topic's partitions. Plain data: ``benchmarks.load`` builds from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "config" / "examples"
W1 = Path(__file__).resolve().parent / "w1"


@dataclass(frozen=True, slots=True)
class Workload:
    """Events, catalogs and flow settings of one named benchmark workload."""

    name: str
    summary: str
    meters: Path
    pricing: Path
    window_size: str
    grace: str
    partitions: int
    load: Mapping[str, Any] = field(default_factory=dict)


WORKLOADS: dict[str, Workload] = {
    "w1": Workload(
        name="w1",
        summary="10k Zipf-skewed tenants, three SUM meters, no group-by, 2% duplicates, "
        "60 s windows, 10 s grace, ~245-byte events, 4 partitions",
        meters=W1 / "meters.yaml",
        pricing=W1 / "pricing.yaml",
        window_size="60s",
        grace="10s",
        partitions=4,
        load={
            "mix": "w1",
            "tenants": 10_000,
            "duplicate_rate": 0.02,
            "late_rate": 0.0,
            "invalid_rate": 0.0,
            # With 2M events' ids, ~245 bytes per event on average.
            "pad_bytes": 6,
        },
    ),
    "w2": Workload(
        name="w2",
        summary="the generator's default mix: 5 meters (COUNT, SUM, MAX, UNIQUE_COUNT), "
        "group-by, 50 Zipf tenants, 2% duplicates, 1% late, 0.5% invalid, 3 partitions",
        meters=EXAMPLES / "meters.yaml",
        pricing=EXAMPLES / "pricing.yaml",
        window_size="60s",
        grace="30s",
        partitions=3,
    ),
}
DEFAULT_WORKLOAD = "w2"
