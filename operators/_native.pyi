"""Type stubs of the native core (native/, Rust + PyO3), built by maturin into this package."""

from typing import Any

from typing_extensions import Buffer

class Parser:
    """operators/parse.py's rules, compiled once; ``parse_batch`` runs without the GIL."""

    def __init__(
        self,
        meters: list[
            tuple[
                str,
                str,
                bool,
                tuple[str, list[str | int]] | None,
                list[tuple[str, list[str | int]]],
            ]
        ],
        known_tenants: list[str] | None,
        max_event_bytes: int,
        max_future_skew_ms: int,
    ) -> None: ...
    @property
    def event_types(self) -> list[str]: ...
    def parse_batch(self, payloads: bytes, ends: Buffer, now_ms: int) -> ParsedColumns: ...

class ParsedColumns:
    """Columns of native-endian integers (bytes) and texts as (start, end) spans of ``text``."""

    index: bytes
    time_ms: bytes
    tenant: bytes
    tenants: list[str]
    event_type: bytes
    key_hash: bytes
    source: bytes
    id: bytes
    text: bytes
    measure_event: bytes
    meter: bytes
    units: bytes
    nanos: bytes
    distinct: bytes
    groups: bytes
    rejections: list[tuple[int, str, str, str, str, str]]
    max_time_ms: int | None

def idempotency_hash(key: str) -> bytes: ...

RATED_WINDOW_COLUMNS: list[str]

def encode_rated_windows(columns: list[list[Any]]) -> tuple[bytes, int] | None: ...

class ShardBatch:
    """One shard's part of a parsed batch, as columns; pickles as bytes."""

    def __len__(self) -> int: ...
    @property
    def partition(self) -> tuple[str, int]: ...
    @property
    def max_time_ms(self) -> int | None: ...
    def event(self, row: int) -> tuple[str, str, str, int, int, bytes]: ...
    def arrivals(self, rows: list[int]) -> list[int]: ...
    def to_bytes(self) -> bytes: ...
    @classmethod
    def from_bytes(cls, data: bytes) -> ShardBatch: ...

def split_batch(
    columns: ParsedColumns,
    group_counts: list[int],
    payloads: bytes,
    ends: Buffer,
    offsets: Buffer,
    arrivals: Buffer,
    origin: str,
    partition: int,
    shards: int,
) -> list[ShardBatch]: ...

class Revisions:
    """Window revisions as columns of native-endian integers; texts index ``strings``."""

    strings: list[str]
    tenant: bytes
    meter: bytes
    group_end: bytes
    group_name: bytes
    group_value: bytes
    window_start: bytes
    quantity: list[str]
    previous: list[str]
    revision: bytes
    kind: bytes
    latest_ms: bytes
    distinct_end: bytes
    distinct: bytes
    amount: list[str | None]
    def __len__(self) -> int: ...

class NativeShard:
    """operators/shard.py's dedup keys and windows; screen, admit and finish run without the GIL."""

    def __init__(
        self,
        meters: list[tuple[str, str, list[str]]],
        size_ms: int,
        grace_ms: int,
        settlement_ms: int,
        idle_timeout_ms: int,
        dedup_horizon_ms: int,
        expected_partitions: list[tuple[str, int]],
    ) -> None: ...
    def reconfigure(
        self,
        meters: list[tuple[str, str, list[str]]],
        size_ms: int,
        grace_ms: int,
        settlement_ms: int,
        idle_timeout_ms: int,
        dedup_horizon_ms: int,
        expected_partitions: list[tuple[str, int]],
    ) -> None: ...
    @property
    def size_ms(self) -> int: ...
    @property
    def aggregations(self) -> dict[str, str]: ...
    @property
    def watermark(self) -> int: ...
    def tenants(self) -> list[str]: ...
    def slowest_progress(self) -> int: ...
    def dedup_len(self) -> int: ...
    def resume(self, now_s: float) -> None: ...
    def screen(self, batch: ShardBatch) -> tuple[bytes, bytes, bytes, int, int]: ...
    def admit(self, batch: ShardBatch, rows: bytes) -> None: ...
    def claim_records(self, batch: ShardBatch, rows: bytes, instance: str) -> bytes: ...
    def event_log(
        self, batch: ShardBatch, rows: bytes, event_types: list[str], ingested_at_ms: int
    ) -> tuple[bytes, int]: ...
    def live_partials(
        self, batch: ShardBatch, rows: bytes
    ) -> list[tuple[str, int, int, str, int, list[str]]]: ...
    def finish(
        self, partition: tuple[str, int] | None, max_time_ms: int | None, now_s: float
    ) -> Revisions: ...
    def close_all(self) -> Revisions: ...
    def set_amounts(self, amounts: list[str]) -> None: ...
    def next_wakeup(self, now_s: float) -> float | None: ...
    def snapshot(self) -> bytes: ...
    @staticmethod
    def restore(data: bytes) -> NativeShard: ...

EVENT_LOG_COLUMNS: list[str]

class NativeLedger:
    """operators/period_rating.py's PeriodLedger; prices a NativeShard's last emission."""

    def __init__(self, aggregations: list[tuple[str, str]]) -> None: ...
    def __len__(self) -> int: ...
    def set_aggregations(self, aggregations: list[tuple[str, str]]) -> None: ...
    def add_pricer(
        self,
        kind: str | None,
        numbers: list[str | None],
        tiers: list[tuple[str | None, str, str]],
        round_down: bool,
        free_allowance: str,
        kept: str | None,
        maximum: str | None,
        zero_fee: str | None,
    ) -> int | None: ...
    def quote(self, pricer: int, quantity: str) -> str | None: ...
    def clear_spans(self) -> None: ...
    def pricer_count(self) -> int: ...
    def add_span(
        self,
        tenant: str,
        from_ms: int,
        before_ms: int,
        period_start_ms: int,
        period_end_ms: int,
        version: str,
        plan_id: str,
        currency: str,
        pricers: list[tuple[str, int]],
    ) -> None: ...
    def rate(
        self, shard: NativeShard
    ) -> (
        tuple[
            list[str],
            list[str],
            list[str],
            list[str],
            list[str],
            list[str],
            list[str],
            list[int],
            list[tuple[str, str, str]] | None,
        ]
        | list[tuple[str, int]]
        | None
    ): ...
    def rated_periods(self) -> list[tuple[str, str, int, str, str, str, str, str]]: ...
    def seed(
        self,
        tenant: str,
        meter: str,
        start_ms: int,
        version: str,
        end_ms: int,
        quantity: str,
        amount: str,
        latest_ms: int,
        distinct: list[str],
    ) -> bool: ...
    def expire(self, before_ms: int) -> int: ...
    def tenants(self) -> set[str]: ...
    def entries(self) -> list[tuple[str, str, int, str, int, str, str, int, list[str]]]: ...
    def snapshot(self) -> bytes: ...
    @staticmethod
    def restore(data: bytes) -> NativeLedger: ...
