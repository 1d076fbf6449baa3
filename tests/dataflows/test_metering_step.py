"""The metering step as the metrics endpoint's thread sees it."""

from __future__ import annotations

import threading
from pathlib import Path

from benchmarks.load import LoadGenerator, LoadSpec
from config.meter_catalog import load_meter_catalog
from config.pricing_catalog import load_pricing_catalog
from dataflows.metering_step import NativeMeteringLogic, StepContext
from dataflows.stats import RunStats
from operators.model import RawMessage
from operators.native_parse import NativeParser, known_tenants
from operators.native_shard import NativeShardState, NativeSplitter
from operators.windowing import NO_WATERMARK, WindowConfig

EXAMPLES = Path(__file__).resolve().parents[2] / "config" / "examples"
END_MS = 1_793_491_200_000  # 2026-11-01T00:00:00Z: the load's event times end here
NOW_MS = END_MS + 60_000
WINDOW = WindowConfig(size_ms=60_000, grace_ms=10_000, settlement_ms=600_000, idle_timeout_ms=0)
PARTITION = ("usage", 0)


def test_the_watermark_is_readable_while_the_native_state_works() -> None:
    # The native core works with the GIL released and its state borrowed: a scrape
    # that read the state then failed with "Already mutably borrowed".
    meters = load_meter_catalog(EXAMPLES / "meters.yaml")
    pricing = load_pricing_catalog(EXAMPLES / "pricing.yaml", meters)
    parser = NativeParser(meters, known_tenants(pricing))
    state = NativeShardState(WINDOW, meters, WINDOW.settlement_ms, "t", [PARTITION])
    context = StepContext(
        new_state=lambda: state,
        reconfigure=lambda _: None,
        pricing=pricing,
        stats=RunStats(),
        snapshots=False,
        event_log=False,
    )
    logic = NativeMeteringLogic(context, None)
    splitter = NativeSplitter(meters, 1)
    payloads = list(LoadGenerator(LoadSpec(events=20_000, end_ms=END_MS)).payloads())
    messages = [RawMessage(p, PARTITION[0], PARTITION[1], i) for i, p in enumerate(payloads)]
    errors: list[Exception] = []
    done = threading.Event()

    def scrape() -> None:
        while not done.is_set():
            try:
                logic.watermark_ms()
            except RuntimeError as exc:
                errors.append(exc)

    scraper = threading.Thread(target=scrape)
    scraper.start()
    try:
        for start in range(0, len(messages), 500):
            batch = messages[start : start + 500]
            columns = parser.columns([m.payload for m in batch], NOW_MS)
            for part in splitter.split(PARTITION, batch, columns).values():
                logic.on_batch([part])
    finally:
        done.set()
        scraper.join()

    assert errors == []
    assert state.watermark != NO_WATERMARK
    assert logic.watermark_ms() == state.watermark
