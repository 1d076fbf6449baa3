"""Workloads of ``benchmarks.load``: presets, overrides, a truth that follows the catalog."""

from __future__ import annotations

import argparse
import statistics
from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import orjson
import pytest

from benchmarks.load import (
    LoadGenerator,
    LoadSpec,
    add_spec_arguments,
    spec_from_args,
    workload_generator,
)
from benchmarks.workloads import WORKLOADS
from config.meter_catalog import load_meter_catalog
from config.pricing_catalog import load_pricing_catalog

END_MS = 1_893_456_000_000  # 2030-01-01T00:00:00Z


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_spec_arguments(parser)
    return parser.parse_args(list(argv))


def test_w1_preset_with_an_override() -> None:
    spec = spec_from_args(_args("--workload", "w1", "--events", "500", "--tenants", "300"))
    assert (spec.events, spec.tenants, spec.mix) == (500, 300, "w1")
    assert (spec.duplicate_rate, spec.late_rate, spec.invalid_rate) == (0.02, 0.0, 0.0)
    default = spec_from_args(_args("--events", "5"))
    assert default == LoadSpec(events=5)


def test_w1_events_are_about_245_bytes_and_each_feeds_one_sum_meter() -> None:
    w1 = WORKLOADS["w1"]
    meters = load_meter_catalog(w1.meters)
    load_pricing_catalog(w1.pricing, meters)  # prices every meter for every tenant
    assert {m.aggregation.value for m in meters.meters} == {"SUM"}
    assert all(not m.group_by for m in meters.meters)
    spec = spec_from_args(_args("--workload", "w1", "--events", "20000"))
    generator = LoadGenerator(replace_end(spec), meters)
    payloads = list(generator.payloads())
    # Ids of a 2M-event run are ~4 bytes longer than these.
    assert 236 <= statistics.mean(len(p) for p in payloads) <= 246
    expected: dict[tuple[str, str], Decimal] = {}
    seen: set[bytes] = set()
    for payload in payloads:
        if payload in seen:  # a duplicate counts once
            continue
        seen.add(payload)
        event = orjson.loads(payload)
        [meter] = meters.by_event_type[event["type"]]
        assert meter.value_path is not None
        value = Decimal(repr(meter.value_path.find(event["data"])))
        key = (event["subject"], meter.slug)
        expected[key] = expected.get(key, Decimal(0)) + value
    assert generator.truth.usage() == expected
    assert generator.truth.duplicates == len(payloads) - len(seen) > 0


def test_truth_follows_a_given_catalog_with_group_by(tmp_path: Path) -> None:
    catalog = tmp_path / "meters.yaml"
    catalog.write_text(
        "meters:\n"
        "  - {slug: peak_tokens, event_type: llm.completion, aggregation: MAX,"
        " value_property: $.tokens, group_by: {model: $.model}}\n"
    )
    args = _args("--events", "3000", "--tenants", "1", "--invalid-rate", "0")
    generator = workload_generator(args, replace_end(spec_from_args(args)), catalog)
    peaks: dict[tuple[int, str], int] = {}
    for payload in generator.payloads():
        event = orjson.loads(payload)
        if event["type"] == "llm.completion":
            key = (_window_of(event["time"]), event["data"]["model"])
            peaks[key] = max(peaks.get(key, 0), event["data"]["tokens"])
    # MAX per window and model, summed over both: the flow's window rows add up so.
    assert generator.truth.usage() == {("acme", "peak_tokens"): sum(peaks.values())}


def test_truth_refuses_a_latest_meter(tmp_path: Path) -> None:
    catalog = tmp_path / "meters.yaml"
    catalog.write_text(
        "meters:\n"
        "  - {slug: last_gb, event_type: storage.snapshot, aggregation: LATEST,"
        " value_property: $.gb}\n"
    )
    args = _args("--events", "10")
    with pytest.raises(ValueError, match="last_gb: the ground truth handles COUNT, SUM"):
        workload_generator(args, spec_from_args(args), catalog)


def replace_end(spec: LoadSpec) -> LoadSpec:
    """``spec`` ending at a fixed instant: no test depends on today's date."""
    return replace(spec, end_ms=END_MS)


def _window_of(iso: str) -> int:
    ms = int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)
    return ms - ms % 60_000
