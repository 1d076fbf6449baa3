"""Type stubs of the native core (native/, Rust + PyO3), built by maturin into this package."""

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
