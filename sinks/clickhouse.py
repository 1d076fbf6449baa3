"""ClickHouse sink: client factory, retrying batch writer and read-side queries.

The same code runs against a server (``http(s)://user:pass@host:8123/db``) and
against in-process chDB (``chdb:///abs/path``) for local runs and tests.
"""

from __future__ import annotations

import fcntl
import functools
import json
import logging
import os
import re
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Context, Decimal, DecimalException, Inexact, InvalidOperation, Rounded
from itertools import repeat
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qsl, unquote, urlsplit, urlunsplit

import clickhouse_connect
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import (
    ClickHouseError,
)

from config.redaction import redact_url, url_secrets
from operators._native import EVENT_LOG_COLUMNS, RATED_WINDOW_COLUMNS, encode_rated_windows
from operators.model import Event, GroupValues, RatedColumns, RatedWindow, Rejection
from sinks.clickhouse_schema import quote_database
from sinks.retry import RetryPolicy, clickhouse_transient

log = logging.getLogger(__name__)

_ACCEPTED_DSNS = "chdb://PATH, http://[user[:password]@]host[:port][/db] or https://..."
# Connection parameters that belong in the URL itself, not in its query.
_URL_PARTS_IN_QUERY = frozenset({"user", "user_name", "username", "password", "host", "port"})
_DATABASE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
# chDB data directories this process opened: chDB holds their lock itself.
_OPENED_HERE: set[Path] = set()
# Beside a chDB directory's data: where the run holding it serves the HTTP API.
_API_MARKER = "meterwax-api-url"


# Instants go to the DateTime64(3) columns as epoch milliseconds: the driver
# writes integers as ticks as they are (exact, and no per-row datetime objects).
# (precision, scale) of the quantity and amount columns. Amounts keep full
# precision: 9 fractional digits of quantity times 12 of a unit price.
_QUANTITY = (38, 9)
_AMOUNT = (76, 21)
_DECIMAL_PRECISION = 76
# Per column type: a context that traps any value quantizing to its scale would
# round or overflow, and that scale's step.
_FITS = {
    (precision, scale): (
        Context(prec=precision, traps=[Inexact, Rounded, InvalidOperation]),
        Decimal(1).scaleb(-scale),
    )
    for precision, scale in (_QUANTITY, _AMOUNT)
}
# Wide enough that quantizing any value below the magnitude limit cannot round.
_WIDE = Context(prec=2 * _DECIMAL_PRECISION)

_WINDOW_COLUMNS = (
    "tenant",
    "meter",
    "group_key",
    "group_values",
    "window_start",
    "window_end",
    "revision",
    "kind",
    "quantity",
    "amount",
    "previous_quantity",
    "previous_amount",
    "currency",
    "plan_id",
    "price_version",
    "emitted_at",
    "incarnation",
    "aggregation",
    "latest_ms",
    "distinct_values",
)

_EVENT_COLUMNS = (
    "tenant",
    "meter",
    "aggregation",
    "group_key",
    "quantity",
    "distinct_value",
    "event_time",
    "source",
    "id",
    "type",
    "origin",
    "partition",
    "offset",
    "ingested_at",
)

_REJECTION_COLUMNS = (
    "origin",
    "partition",
    "offset",
    "reason",
    "detail",
    "payload",
    "event_id",
    "event_source",
    "tenant",
    "rejected_at",
)


class DsnError(ValueError):
    """A ClickHouse DSN that cannot work as written, or a chDB directory another process holds.

    The message names the problem and the fix, never the password.
    """


class SinkError(RuntimeError):
    """A write that did not succeed; the message never contains credentials."""

    def __init__(self, message: str, *, attempts: int) -> None:
        super().__init__(message)
        self.attempts = attempts


def check_dsn(dsn: str, database: str) -> None:
    """Raise DsnError for a DSN that cannot work as written, before anything connects."""
    quote_database(database)
    scheme = dsn.partition("://")[0].lower() if "://" in dsn else ""
    if scheme in ("http", "https"):
        _check_server_dsn(dsn, database)
    elif scheme != "chdb":
        raise DsnError(
            f"unsupported ClickHouse DSN scheme {scheme or '(none)'!r} in "
            f"{redact_dsn(dsn, dsn)!r}; expected {_ACCEPTED_DSNS}"
        )


def connect(dsn: str, database: str, *, chdb_group_by_spill_bytes: int = 0) -> Client:
    """Open a client for ``chdb://PATH`` or ``http(s)://`` DSNs.

    With chDB, the client's GROUP BY queries spill to disk beyond
    ``chdb_group_by_spill_bytes`` (0: never), bounding this process's memory.

    The client has no default database: every statement here names
    ``database`` explicitly, so the client works before ``migrate`` creates it.
    A database in the URL path must match ``database``. Raises DsnError for a
    DSN that cannot work or a chDB directory another process holds, SinkError
    when the server cannot be reached.
    """
    check_dsn(dsn, database)
    if dsn.partition("://")[0].lower() == "chdb":
        return _chdb_client(dsn[len("chdb://") :], chdb_group_by_spill_bytes)
    return _http_client(dsn, database)


def redact_dsn(text: str, dsn: str = "") -> str:
    """``text`` with passwords masked, also those of ``dsn`` when it is malformed."""
    return redact_url(text, url_secrets(dsn) if dsn else ())


def _chdb_client(location: str, group_by_spill_bytes: int) -> Client:
    """One engine per process: clients on the same path share it, another path fails."""
    if not location or "?" in location:
        raise DsnError(
            "chdb DSN needs a data directory and no options, e.g. chdb://data/chdb; "
            f"got {location!r}"
        )
    path = Path(location).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    if path not in _OPENED_HERE:
        _check_not_held(path)
    settings = {"max_bytes_before_external_group_by": group_by_spill_bytes}
    client = clickhouse_connect.get_client(interface="chdb", path=str(path), settings=settings)
    _OPENED_HERE.add(path)
    return client


def _check_not_held(path: Path) -> None:
    """Fail in one line when another process has the chDB directory open.

    The engine locks ``status`` in its data directory; opening a held one fails
    deep inside the engine, which also writes its own error to stderr.
    """
    try:
        fd = os.open(path / "status", os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        raise DsnError(
            f"chDB data at {path} is in use by another process (a `meterwax run`, or a "
            "report still running); chDB lets one process open a directory at a time: "
            f"{_api_hint(path)}, wait for that run to finish or stop it, or use a ClickHouse "
            "server (http://...) to read while a run writes"
        ) from None
    finally:
        os.close(fd)


def _api_hint(path: Path) -> str:
    try:
        url = (path / _API_MARKER).read_text(encoding="utf-8").strip()
    except OSError:
        url = ""
    if url:
        return (
            f"that run serves the API at {url}: read there (GET /v1/estimate, "
            "/v1/invoice?period=YYYY-MM, /v1/usage with a read key)"
        )
    return (
        "start the run with --api-port N to read through its HTTP API while it runs "
        "(GET /v1/estimate, /v1/invoice, /v1/usage)"
    )


def advertise_api(dsn: str, url: str | None) -> None:
    """Note beside chDB data (``dsn``) where this process serves the API; None clears it.

    A report that finds the directory held names the URL. Nothing for a server DSN.
    """
    if dsn.partition("://")[0].lower() != "chdb":
        return
    marker = Path(dsn[len("chdb://") :]).expanduser().resolve() / _API_MARKER
    if url is None:
        marker.unlink(missing_ok=True)
    else:
        marker.write_text(url + "\n", encoding="utf-8")


def _check_server_dsn(dsn: str, database: str) -> None:
    """Refuse a server DSN that would fail, or be misread, once connecting."""
    shown = redact_dsn(dsn, dsn)
    parts = urlsplit(dsn)
    encode = "percent-encode '/', '?', '#', '@' and spaces in the password (e.g. '/' as %2F)"
    if parts.fragment or "@" in parts.path or "@" in parts.query or any(c.isspace() for c in dsn):
        raise DsnError(f"DSN {shown!r} is not a valid URL; {encode}")
    try:
        port = parts.port
    except ValueError:
        raise DsnError(
            f"DSN {shown!r} has a port that is not a number from 1 to 65535; "
            f"fix the port, and {encode}"
        ) from None
    if not parts.hostname or port == 0:
        raise DsnError(f"DSN {shown!r} has no host (or port 0); expected {_ACCEPTED_DSNS}")
    in_query = sorted(_URL_PARTS_IN_QUERY.intersection(k for k, _ in parse_qsl(parts.query)))
    if in_query:
        raise DsnError(
            f"DSN {shown!r} sets {', '.join(in_query)} in its query; write them in the URL "
            "itself: http://user:password@host:port/database"
        )
    url_database = unquote(parts.path.strip("/"))
    if url_database and url_database != database:
        if not _DATABASE_NAME.match(url_database):
            raise DsnError(f"DSN {shown!r} has a path that is not a database name; {encode}")
        raise DsnError(
            f"DSN {shown!r} names database {url_database!r} "
            f"but the configured database is {database!r}; make them agree"
        )


def _http_client(dsn: str, database: str) -> Client:
    parts = urlsplit(dsn)
    try:
        return clickhouse_connect.get_client(dsn=urlunsplit(parts._replace(path="")))
    except (ClickHouseError, OSError) as exc:
        raise SinkError(
            f"cannot connect to ClickHouse at {redact_dsn(dsn, dsn)}: {_describe(exc)}",
            attempts=1,
        ) from exc


def _describe(exc: BaseException) -> str:
    """Error type, ClickHouse code and first message line, with URL passwords removed."""
    code = getattr(exc, "code", None)
    label = type(exc).__name__ if code is None else f"{type(exc).__name__} code {code}"
    lines = str(exc).strip().splitlines()
    return redact_dsn(f"{label}: {lines[0]}" if lines else label)


class SupportsInsert(Protocol):
    """The part of a clickhouse-connect ``Client`` the writer uses."""

    def insert(
        self,
        table: str,
        data: Sequence[Sequence[Any]],
        column_names: Sequence[str],
        database: str,
        *,
        column_oriented: bool = False,
    ) -> object:
        """Insert ``data`` (rows, or columns if ``column_oriented``) into ``database.table``."""

    def raw_insert(
        self, table: str, column_names: Sequence[str], insert_block: bytes, *, fmt: str
    ) -> object:
        """Insert rows already encoded in ``fmt`` into ``table`` (``database.table``)."""


class ClickHouseWriter:
    """Batched, retrying inserts of rated windows and rejections.

    One insert per call. Rows are idempotent by sort key and reads take the
    highest revision, so re-sending a batch after an unknown outcome is safe.
    """

    def __init__(
        self,
        client: SupportsInsert,
        database: str,
        *,
        max_attempts: int = 5,
        backoff_base_s: float = 0.5,
        backoff_cap_s: float = 15.0,
        on_failure: Callable[[], None] | None = None,
    ) -> None:
        quote_database(database)
        self._client = client
        self._database = database
        self._retry = RetryPolicy(backoff_base_s, backoff_cap_s, max_attempts)
        # Told of every failed attempt (a metric), while the write keeps retrying.
        self.on_failure = on_failure or _ignore
        # Called before every attempt (the output lease's check); may block or end the process.
        self.before_attempt: Callable[[], None] = _ignore

    def write_windows(self, items: Sequence[RatedWindow | RatedColumns]) -> int:
        """Insert window revisions; raises ValueError for a decimal the column would truncate.

        Column-oriented: the native engine's ``RatedColumns`` go in as they are,
        RatedWindow objects (the Python engine's) are turned into columns first.
        """
        rows = [_window_row(w) for w in items if isinstance(w, RatedWindow)]
        if not rows:
            encoded = self._window_rows([w for w in items if isinstance(w, RatedColumns)])
            if encoded is not None:
                return encoded
        columns: list[list[Any]] = [list(c) for c in zip(*rows, strict=True)] or [
            [] for _ in _WINDOW_COLUMNS
        ]
        for batch in items:
            if isinstance(batch, RatedColumns):
                for column, values in zip(columns, _window_columns(batch), strict=True):
                    column.extend(values)
        return self._insert("rated_windows", _WINDOW_COLUMNS, columns, column_oriented=True)

    def _window_rows(self, batches: Sequence[RatedColumns]) -> int | None:
        """``batches`` encoded by the native core and inserted as RowBinary: the rows
        written, or None if a decimal needs the driver's path (which refuses it)."""
        blocks = []
        for batch in batches:
            block = encode_rated_windows(_window_columns(batch, native=True))
            if block is None:
                return None
            blocks.append(block)
        return self._insert_row_binary("rated_windows", RATED_WINDOW_COLUMNS, blocks)

    def write_events(
        self,
        batches: Sequence[tuple[Sequence[Event], int]],
        aggregations: Mapping[str, str],
    ) -> int:
        """Append accepted events to the event log, one row per event and meter.

        ``batches`` pairs events with the time (epoch ms) they were accepted.
        """
        rows: list[list[Any]] = []
        for events, ingested_at_ms in batches:
            for event in events:
                rows.extend(_event_rows(event, aggregations, ingested_at_ms))
        return self._insert("accepted_events", _EVENT_COLUMNS, rows)

    def write_event_rows(self, blocks: Sequence[tuple[bytes, int]]) -> int:
        """Append event log rows the native core encoded: (RowBinary, rows) pairs.

        The same rows as ``write_events`` writes, in the core's column order.
        """
        return self._insert_row_binary("accepted_events", EVENT_LOG_COLUMNS, blocks)

    def _insert_row_binary(
        self, table: str, columns: Sequence[str], blocks: Sequence[tuple[bytes, int]]
    ) -> int:
        """Insert rows the native core encoded, (RowBinary, rows) pairs; the rows written."""
        rows = sum(count for _, count in blocks)
        if not rows:
            return 0
        data = b"".join(block for block, _ in blocks)
        qualified = f"{quote_database(self._database)}.{table}"

        def insert() -> object:
            return self._client.raw_insert(qualified, columns, data, fmt="RowBinary")

        return self._attempt(table, rows, insert)

    def write_rejections(self, rows: Sequence[Rejection]) -> int:
        """Insert rejected events with their original payload bytes."""
        return self._insert(
            "rejected_events", _REJECTION_COLUMNS, [_rejection_row(r) for r in rows]
        )

    def _insert(
        self,
        table: str,
        columns: Sequence[str],
        data: list[list[Any]],
        *,
        column_oriented: bool = False,
    ) -> int:
        """Insert ``data`` (rows, or columns if ``column_oriented``); the number of rows written."""
        rows = len(data[0]) if column_oriented else len(data)
        if not rows:
            return 0
        client, database = self._client, self._database

        def insert() -> object:
            return client.insert(
                table,
                data,
                column_names=columns,
                database=database,
                column_oriented=column_oriented,
            )

        return self._attempt(table, rows, insert)

    def _attempt(self, table: str, rows: int, send: Callable[[], object]) -> int:
        """``send`` ``rows`` rows to ``table``, retrying; the number of rows written."""
        attempts = 0

        def failed(exc: BaseException, failures: int) -> None:
            nonlocal attempts
            attempts = failures
            self.on_failure()

        def retrying(exc: BaseException, failures: int, delay: float) -> None:
            log.warning(
                "insert into %s.%s failed (attempt %d/%d), retrying in %.2fs: %s",
                self._database,
                table,
                failures,
                self._retry.attempts,
                delay,
                _describe(exc),
            )

        def insert() -> int:
            self.before_attempt()
            send()
            return rows

        try:
            return self._retry.run(
                insert,
                errors=(ClickHouseError, OSError),
                transient=clickhouse_transient,
                on_failure=failed,
                on_retry=retrying,
            )
        except (ClickHouseError, OSError) as exc:
            raise SinkError(
                f"insert of {rows} rows into {self._database}.{table} failed "
                f"after {attempts} attempt(s): {_describe(exc)}",
                attempts=attempts,
            ) from exc


def _ignore() -> None:
    return None


@functools.lru_cache(maxsize=65_536)
def group_key(groups: GroupValues) -> str:
    """Canonical JSON of the group values, keys sorted: ``{"model":"gpt"}``, ``{}`` if none."""
    return json.dumps(dict(groups), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _exact(value: Decimal, column: tuple[int, int], field: str) -> Decimal:
    """Refuse a value the column cannot hold exactly: the driver truncates silently."""
    precision, scale = column
    _, digits, exponent = value.as_tuple()
    # Fast path: few enough fractional and integer digits as written.
    if (
        isinstance(exponent, int)
        and exponent >= -scale
        and len(digits) + exponent <= precision - scale
    ):
        return value
    limit = Decimal(10) ** (precision - scale)
    if not value.is_finite() or abs(value) >= limit:
        raise ValueError(f"{field}={value} does not fit Decimal({precision}, {scale})")
    if value.quantize(Decimal(1).scaleb(-scale), context=_WIDE) != value:
        raise ValueError(f"{field}={value} has more than {scale} decimal places")
    return value


def _window_row(w: RatedWindow) -> list[Any]:
    return [
        w.tenant,
        w.meter,
        group_key(w.groups),
        dict(w.groups),
        w.window_start_ms,
        w.window_end_ms,
        w.revision,
        w.kind.value,
        _exact(w.quantity, _QUANTITY, "quantity"),
        _exact(w.amount, _AMOUNT, "amount"),
        _exact(w.previous_quantity, _QUANTITY, "previous_quantity"),
        _exact(w.previous_amount, _AMOUNT, "previous_amount"),
        w.currency,
        w.plan_id,
        w.price_version,
        w.emitted_at_ms,
        w.incarnation,
        w.aggregation,
        w.latest_ms,
        sorted(w.distinct_values),
    ]


def _exact_column(values: list[Decimal], column: tuple[int, int], field: str) -> list[Decimal]:
    """``_exact`` over a whole column, in one pass of C calls unless a value is refused."""
    fits, step = _FITS[column]
    try:
        # Quantizing to the column's scale traps rounding (too many decimal places)
        # and a coefficient longer than its precision (too large); NaN passes it.
        deque(map(fits.quantize, values, repeat(step)), maxlen=0)
        if all(map(Decimal.is_finite, values)):
            return values
    except DecimalException:
        pass
    return [_exact(value, column, field) for value in values]


def _window_columns(batch: RatedColumns, *, native: bool = False) -> list[list[Any]]:
    """The batch's columns in _WINDOW_COLUMNS order.

    ``native``: as ``encode_rated_windows`` takes them, group values as (name,
    value) pairs and decimals unchecked (the core encodes only exact ones).
    """
    rows = len(batch)

    def exact(values: list[str], column: tuple[int, int], field: str) -> list[Decimal] | list[str]:
        # The core encodes the texts; the driver's path checks Decimals.
        return values if native else _exact_column(list(map(Decimal, values)), column, field)

    return [
        batch.tenant,
        batch.meter,
        [group_key(groups) for groups in batch.groups],
        list(batch.groups) if native else [dict(groups) for groups in batch.groups],
        batch.window_start_ms,
        batch.window_end_ms,
        batch.revision,
        batch.kind,
        exact(batch.quantity, _QUANTITY, "quantity"),
        exact(batch.amount, _AMOUNT, "amount"),
        exact(batch.previous_quantity, _QUANTITY, "previous_quantity"),
        exact(batch.previous_amount, _AMOUNT, "previous_amount"),
        batch.currency,
        batch.plan_id,
        batch.price_version,
        [batch.emitted_at_ms] * rows,
        [batch.incarnation] * rows,
        batch.aggregation,
        batch.latest_ms,
        batch.distinct_values,
    ]


_ONE = Decimal(1)
_ZERO = Decimal(0)


def _event_rows(
    event: Event, aggregations: Mapping[str, str], ingested_at_ms: int
) -> list[list[Any]]:
    message = event.message
    time = event.time_ms
    rows = []
    for meter, value, groups in event.measures:
        if isinstance(value, str):
            quantity, distinct = _ZERO, value
        else:
            quantity, distinct = (_ONE if value is None else value), ""
        rows.append(
            [
                event.tenant,
                meter,
                aggregations[meter],
                group_key(groups),
                quantity,
                distinct,
                time,
                event.source,
                event.id,
                event.type,
                message.origin,
                message.partition,
                message.offset,
                ingested_at_ms,
            ]
        )
    return rows


def _rejection_row(r: Rejection) -> list[Any]:
    return [
        r.origin,
        r.partition,
        r.offset,
        r.reason.value,
        r.detail,
        r.payload,
        r.event_id,
        r.event_source,
        r.tenant,
        r.rejected_at_ms,
    ]


@dataclass(frozen=True, slots=True)
class UsageTotal:
    """Latest-revision usage of one tenant and meter, summed over its windows."""

    tenant: str
    meter: str
    quantity: Decimal
    amount: Decimal
    currency: str


@dataclass(frozen=True, slots=True)
class WindowRow:
    """One window's value (its incarnations combined), as ``window_usage`` reports it."""

    tenant: str
    meter: str
    group_key: str
    groups: GroupValues
    window_start_ms: int
    window_end_ms: int
    revision: int
    adjustments: int
    quantity: Decimal
    amount: Decimal
    currency: str
    plan_id: str
    price_version: str


def usage_totals(client: Client, database: str) -> list[UsageTotal]:
    """Sum of each window's latest revision per tenant and meter (and currency).

    Amounts in different currencies are never added: a meter billed in two
    currencies yields one row per currency.
    """
    db = quote_database(database)
    result = client.query(
        f"""
        SELECT tenant, meter, sum(quantity), sum(amount), currency
        FROM {db}.window_usage
        GROUP BY tenant, meter, currency
        ORDER BY tenant, meter, currency
        """
    )
    return [UsageTotal(*row) for row in result.result_rows]


def rejected_counts(client: Client, database: str) -> dict[str, int]:
    """Rejections by reason, each input position (origin, partition, offset) counted once.

    A replay may reject the same message for a different reason (``too_late``
    depends on the watermark); the latest rejection wins, as in the table.
    """
    db = quote_database(database)
    result = client.query(
        f"""
        SELECT reason, count()
        FROM
        (
            SELECT argMax(reason, rejected_at) AS reason
            FROM {db}.rejected_events
            GROUP BY origin, `partition`, `offset`
        )
        GROUP BY reason
        ORDER BY reason
        """
    )
    return {str(row[0]): int(row[1]) for row in result.result_rows}


def window_rows(client: Client, database: str, tenant: str | None = None) -> list[WindowRow]:
    """``window_usage`` rows, optionally for one tenant, in sort-key order."""
    db = quote_database(database)
    result = client.query(
        f"""
        SELECT
            tenant, meter, group_key, group_values,
            toUnixTimestamp64Milli(window_start), toUnixTimestamp64Milli(window_end),
            revision, adjustments, quantity, amount, currency, plan_id, price_version
        FROM {db}.window_usage
        WHERE {{tenant:Nullable(String)}} IS NULL OR tenant = {{tenant:Nullable(String)}}
        ORDER BY tenant, meter, group_key, window_start
        """,
        parameters={"tenant": tenant},
    )
    return [_window_row_from(row) for row in result.result_rows]


def _window_row_from(row: Sequence[Any]) -> WindowRow:
    return WindowRow(
        tenant=row[0],
        meter=row[1],
        group_key=row[2],
        groups=tuple(sorted(row[3].items())),
        window_start_ms=row[4],
        window_end_ms=row[5],
        revision=row[6],
        adjustments=row[7],
        quantity=row[8],
        amount=row[9],
        currency=row[10],
        plan_id=row[11],
        price_version=row[12],
    )
