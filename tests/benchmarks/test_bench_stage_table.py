"""The bench report's time per stage: what the flow thread spent, and what overlapped it."""

from __future__ import annotations

from cli.bench_command import stage_table


def test_writes_in_their_own_threads_are_marked_and_left_out_of_the_rest() -> None:
    stages = {
        "parse": {"seconds": 2.0, "batches": 10},
        "rate": {"seconds": 3.0, "batches": 10},
        "write_live_usage": {"seconds": 1.0, "batches": 5},
        "write_clickhouse_events": {"seconds": 4.0, "batches": 2},
    }
    rows = {row["stage"]: row for row in stage_table(stages, 10.0, 1_000_000)}
    assert set(rows) == {
        "parse",
        "rate",
        "write_live_usage",
        "write_clickhouse_events (own thread)",
        "other (engine, shard split, routing, input wait)",
    }
    # 10 s of processing: 6 in the flow thread's stages, 4 left; the insert overlapped.
    rest = rows["other (engine, shard split, routing, input wait)"]
    assert rest["seconds"] == 4.0 and rest["share"] == 0.4
    assert rows["write_clickhouse_events (own thread)"]["us_per_event"] == 4.0
