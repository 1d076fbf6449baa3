"""Batch sources: one partition per batch, exact resume positions, deterministic generator."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from benchmarks.load import LoadGenerator, LoadSpec
from dataflows.sources import JsonlFileSource, SyntheticSource
from operators.model import RawMessage
from operators.synthetic import SyntheticPartition, SyntheticSpec


def _drain(part: object) -> list[RawMessage]:
    out: list[RawMessage] = []
    try:
        while True:
            for batch in part.next_batch():  # type: ignore[attr-defined]
                out.extend(batch)
    except StopIteration:
        return out


def test_jsonl_offsets_are_line_numbers_and_blank_lines_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "e.jsonl"
    path.write_bytes(b'{"a":1}\n\n{"a":2}\r\n{"a":3}')
    part = JsonlFileSource([path], batch_size=2).build_part("in", str(path), None)
    messages = _drain(part)
    assert [(m.payload, m.offset) for m in messages] == [
        (b'{"a":1}', 1),
        (b'{"a":2}', 3),
        (b'{"a":3}', 4),
    ]
    assert {m.origin for m in messages} == {str(path)}


def test_jsonl_resume_continues_after_the_snapshot(tmp_path: Path) -> None:
    path = tmp_path / "e.jsonl"
    path.write_bytes(b"".join(b'{"n":%d}\n' % n for n in range(10)))
    source = JsonlFileSource([path], batch_size=3)
    first = source.build_part("in", str(path), None)
    head = first.next_batch()[0]
    state = first.snapshot()
    rest = _drain(source.build_part("in", str(path), state))
    assert [m.offset for m in head + rest] == list(range(1, 11))


def test_generator_is_deterministic_and_resumable() -> None:
    spec = SyntheticSpec(
        events=500,
        tenants=20,
        seed=3,
        start_ms=1_793_491_200_000,
        span_ms=600_000,
        partitions=2,
        duplicate_rate=0.1,
    )
    source = SyntheticSource(spec, batch_size=64)
    whole = _drain(source.build_part("in", "1", None))
    part = source.build_part("in", "1", None)
    head = part.next_batch()[0] + part.next_batch()[0]
    resumed = _drain(source.build_part("in", "1", part.snapshot()))
    # The same messages at the same positions; only their arrival times differ.
    assert [m[:4] for m in head + resumed] == [m[:4] for m in whole]
    assert all(m.arrived_ms > spec.start_ms for m in whole)
    assert len({m.offset for m in whole}) == len(whole)
    assert all(m.partition == 1 for m in whole)


def test_generator_duplicates_are_byte_copies_of_earlier_events() -> None:
    spec = SyntheticSpec(
        events=2000,
        tenants=5,
        seed=1,
        start_ms=1_793_491_200_000,
        span_ms=600_000,
        duplicate_rate=0.05,
    )
    partition = SyntheticPartition(spec, 0)
    seen: dict[str, bytes] = {}
    copies = 0
    for n in range(partition.count):
        for payload in partition.payloads(n):
            event_id = orjson.loads(payload)["id"]
            if event_id in seen:
                assert seen[event_id] == payload
                copies += 1
            seen[event_id] = payload
    assert copies == pytest.approx(100, rel=0.4)


def _generator_ids(seed: int) -> list[str]:
    spec = SyntheticSpec(
        events=3000,
        tenants=20,
        seed=seed,
        start_ms=1_793_491_200_000,
        span_ms=600_000,
        partitions=3,
        duplicate_rate=0.02,
    )
    ids = []
    for p in range(spec.partitions):
        events = SyntheticPartition(spec, p)
        ids += [orjson.loads(e)["id"] for n in range(events.count) for e in events.payloads(n)]
    return ids


def test_generator_ids_depend_on_the_seed() -> None:
    seven, eleven = _generator_ids(7), _generator_ids(11)
    # A second producer with another seed must not lose events as duplicates.
    assert not set(seven) & set(eleven)
    assert _generator_ids(7) == seven


def _load_ids(seed: int) -> set[str]:
    """Ids of the valid events ``benchmarks.load`` generates (its broken ones are rejected)."""
    spec = LoadSpec(events=2000, seed=seed, end_ms=1_793_491_200_000, invalid_rate=0.0)
    return {str(orjson.loads(p)["id"]) for p in LoadGenerator(spec).payloads()}


def test_load_generator_ids_depend_on_the_seed() -> None:
    seven = _load_ids(7)
    assert len(seven) == 2000
    assert not seven & _load_ids(11)
    assert _load_ids(7) == seven
