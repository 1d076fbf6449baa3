"""ClickHouse sink against a real in-process chDB: what a user would check.

Totals, window rows, deltas and rejection counts, including after the
duplicates a crash-and-replay produces.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from decimal import Context, Decimal
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError, ProgrammingError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from operators._native import EVENT_LOG_COLUMNS
from operators.model import GroupValues, RatedColumns, RatedWindow, Reason, Rejection, WindowKind
from sinks import clickhouse
from sinks.clickhouse import (
    ClickHouseWriter,
    SinkError,
    SupportsInsert,
    UsageTotal,
    connect,
    group_key,
    redact_dsn,
    rejected_counts,
    usage_totals,
    window_rows,
)
from sinks.clickhouse_schema import MIGRATIONS, migrate
from sinks.retry import clickhouse_transient as is_transient

# Tests that open chDB; the pure ones below run without it.
integration = pytest.mark.integration

HOUR_MS = 3_600_000
T0 = 1_700_000_000_000 - 1_700_000_000_000 % HOUR_MS
GPT: GroupValues = (("model", "gpt"),)


def rated(
    revision: int,
    quantity: str,
    amount: str,
    *,
    tenant: str = "acme",
    meter: str = "tokens",
    groups: GroupValues = GPT,
    start_ms: int = T0,
    previous: tuple[str, str] = ("0", "0"),
    emitted_at_ms: int = T0 + HOUR_MS,
) -> RatedWindow:
    """A rated window revision with test defaults."""
    return RatedWindow(
        tenant=tenant,
        meter=meter,
        groups=groups,
        window_start_ms=start_ms,
        window_end_ms=start_ms + HOUR_MS,
        quantity=Decimal(quantity),
        previous_quantity=Decimal(previous[0]),
        amount=Decimal(amount),
        previous_amount=Decimal(previous[1]),
        currency="USD",
        plan_id="pro",
        price_version="v1",
        revision=revision,
        kind=WindowKind.WINDOW if previous == ("0", "0") else WindowKind.ADJUSTMENT,
        emitted_at_ms=emitted_at_ms,
        period_start_ms=start_ms,
        period_quantity=Decimal(quantity),
        period_amount=Decimal(amount),
    )


def as_columns(windows: Sequence[RatedWindow]) -> RatedColumns:
    """The windows as the native engine emits them (one emission: same time and incarnation)."""
    [emitted_at_ms] = {w.emitted_at_ms for w in windows}
    [incarnation] = {w.incarnation for w in windows}
    fields = [
        name
        for name in RatedColumns.__dataclass_fields__
        if name not in _SHARED and name != "amount_changes"
    ]
    columns: dict[str, Any] = {name: [getattr(w, name) for w in windows] for name in fields}
    columns["kind"] = [w.kind.value for w in windows]
    columns["distinct_values"] = [sorted(w.distinct_values) for w in windows]
    for name in _DECIMALS:
        columns[name] = list(map(str, columns[name]))
    return RatedColumns(**columns, emitted_at_ms=emitted_at_ms, incarnation=incarnation)


_SHARED = ("emitted_at_ms", "incarnation")
# Exact texts in the columns, as the core writes them.
_DECIMALS = (
    "quantity",
    "previous_quantity",
    "amount",
    "previous_amount",
    "period_quantity",
    "period_amount",
)


def rejection(offset: int, reason: Reason, *, at_ms: int = T0, payload: bytes = b"{") -> Rejection:
    """A rejection at ``offset`` of partition 0 of the ``usage`` topic."""
    return Rejection(
        reason=reason,
        detail="test",
        payload=payload,
        origin="usage",
        partition=0,
        offset=offset,
        rejected_at_ms=at_ms,
    )


def writer(client: SupportsInsert, database: str, max_attempts: int = 3) -> ClickHouseWriter:
    """A writer that retries without sleeping."""
    return ClickHouseWriter(client, database, max_attempts=max_attempts, backoff_base_s=0)


def stored_rows(client: Client, database: str, table: str) -> int:
    """Physical rows, duplicates included."""
    rows = client.query(f"SELECT count() FROM `{database}`.{table}").result_rows
    return int(rows[0][0])


class FlakyClient:
    """Delegates to a real client after failing the first ``failures`` inserts."""

    def __init__(self, client: Client, failures: int, error: Exception) -> None:
        self.client = client
        self.failures = failures
        self.error = error
        self.calls = 0

    def insert(
        self,
        table: str,
        data: Sequence[Sequence[Any]],
        column_names: Sequence[str],
        database: str,
        *,
        column_oriented: bool = False,
    ) -> object:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return self.client.insert(
            table,
            data,
            column_names=column_names,
            database=database,
            column_oriented=column_oriented,
        )


@integration
def test_migrate_is_idempotent(chdb_dsn: str, ch_database: str) -> None:
    client = connect(chdb_dsn, ch_database)
    try:
        assert migrate(client, ch_database) == [m.version for m in MIGRATIONS]
        assert migrate(client, ch_database) == []
        tables = client.query(
            "SELECT name FROM system.tables WHERE database = {db:String} ORDER BY name",
            parameters={"db": ch_database},
        ).result_rows
        assert [t[0] for t in tables] == [
            "accepted_events",
            "rated_windows",
            "rejected_events",
            "schema_migrations",
            "webhook_deliveries",
            "window_changes",
            "window_contributions",
            "window_usage",
        ]
        assert stored_rows(client, ch_database, "schema_migrations") == len(MIGRATIONS)
    finally:
        client.command(f"DROP DATABASE IF EXISTS `{ch_database}`")
        client.close()


@integration
def test_concurrent_migrations_converge(chdb_dsn: str, ch_database: str) -> None:
    clients = [connect(chdb_dsn, ch_database) for _ in range(3)]
    try:
        with ThreadPoolExecutor(len(clients)) as pool:
            list(pool.map(lambda c: migrate(c, ch_database), clients))
        assert migrate(clients[0], ch_database) == []
        writer(clients[0], ch_database).write_windows([rated(1, "1", "0.01")])
        assert len(window_rows(clients[1], ch_database)) == 1
    finally:
        clients[0].command(f"DROP DATABASE IF EXISTS `{ch_database}`")
        for client in clients:
            client.close()


@integration
def test_same_windows_written_twice_do_not_change_totals(
    ch_client: Client, ch_database: str
) -> None:
    tokens = rated(3, "30", "0.3")
    images = rated(1, "2", "0.08", meter="images", groups=())
    sink = writer(ch_client, ch_database)
    sink.write_windows([tokens, images])
    expected = [
        UsageTotal("acme", "images", Decimal("2"), Decimal("0.08"), "USD"),
        UsageTotal("acme", "tokens", Decimal("30"), Decimal("0.3"), "USD"),
    ]
    assert usage_totals(ch_client, ch_database) == expected

    # A replay re-sends the same rows, in new batches, so they are really stored twice.
    sink.write_windows([images, tokens])
    sink.write_windows([tokens])
    assert stored_rows(ch_client, ch_database, "rated_windows") > 2
    assert usage_totals(ch_client, ch_database) == expected


@integration
def test_identical_batch_resent_is_dropped_on_insert(ch_client: Client, ch_database: str) -> None:
    batch = [rated(3, "30", "0.3"), rated(1, "2", "0.08", meter="images")]
    sink = writer(ch_client, ch_database)
    sink.write_windows(batch)
    sink.write_windows(batch)
    assert stored_rows(ch_client, ch_database, "rated_windows") == 2


@integration
def test_later_revision_supersedes_earlier_in_any_arrival_order(
    ch_client: Client, ch_database: str
) -> None:
    sink = writer(ch_client, ch_database)
    sink.write_windows([rated(5, "12", "0.12", previous=("10", "0.1"))])
    sink.write_windows([rated(3, "10", "0.1")])

    [row] = window_rows(ch_client, ch_database)
    assert (row.revision, row.quantity, row.amount, row.adjustments) == (
        5,
        Decimal("12"),
        Decimal("0.12"),
        1,
    )
    assert (row.group_key, row.groups) == ('{"model":"gpt"}', GPT)
    assert (row.window_start_ms, row.window_end_ms) == (T0, T0 + HOUR_MS)
    assert usage_totals(ch_client, ch_database)[0].quantity == Decimal("12")


@integration
def test_window_changes_deltas_sum_to_total_after_replay(
    ch_client: Client, ch_database: str
) -> None:
    sink = writer(ch_client, ch_database)
    sink.write_windows([rated(2, "5", "0.05"), rated(4, "9", "0.09", previous=("5", "0.05"))])
    # After a crash the replay re-emits revision 4 as its first row for the window.
    sink.write_windows([rated(4, "9", "0.09", emitted_at_ms=T0 + 2 * HOUR_MS)])
    sink.write_windows([rated(7, "14", "0.14", previous=("9", "0.09"))])

    changes = ch_client.query(
        f"""
        SELECT revision, delta_quantity, delta_amount, kind
        FROM `{ch_database}`.window_changes
        ORDER BY revision
        """
    ).result_rows
    assert changes == [
        (2, Decimal("5"), Decimal("0.05"), "window"),
        (4, Decimal("4"), Decimal("0.04"), "window"),
        (7, Decimal("5"), Decimal("0.05"), "adjustment"),
    ]
    [row] = window_rows(ch_client, ch_database)
    assert sum(c[1] for c in changes) == row.quantity == Decimal("14")
    assert sum(c[2] for c in changes) == row.amount == Decimal("0.14")


@integration
def test_rejected_duplicates_counted_once(ch_client: Client, ch_database: str) -> None:
    sink = writer(ch_client, ch_database)
    sink.write_rejections([rejection(1, Reason.MALFORMED_JSON), rejection(2, Reason.TOO_LATE)])
    # Replay: offset 1 again, offset 2 now rejected for another reason, offset 3 new.
    sink.write_rejections(
        [
            rejection(1, Reason.MALFORMED_JSON, at_ms=T0 + 1),
            rejection(2, Reason.UNKNOWN_SUBJECT, at_ms=T0 + 1),
            rejection(3, Reason.MALFORMED_JSON, at_ms=T0 + 1),
        ]
    )
    assert rejected_counts(ch_client, ch_database) == {"malformed_json": 2, "unknown_subject": 1}


@integration
def test_rejected_payload_bytes_stored_as_is(ch_client: Client, ch_database: str) -> None:
    payload = b'\xff\xfe{"not": utf-8}\x00'
    writer(ch_client, ch_database).write_rejections(
        [rejection(1, Reason.MALFORMED_JSON, payload=payload)]
    )
    stored = ch_client.query(
        f"SELECT payload FROM `{ch_database}`.rejected_events",
        query_formats={"String": "bytes"},
    ).result_rows
    assert stored == [(payload,)]


@integration
def test_decimals_round_trip_exactly(ch_client: Client, ch_database: str) -> None:
    big = "12345678901234567890.123456789"
    tiny = "0.000000000000000000001"  # the 21st decimal place of an amount
    writer(ch_client, ch_database).write_windows([rated(1, big, tiny)])

    [row] = window_rows(ch_client, ch_database)
    assert (row.quantity, row.amount) == (Decimal(big), Decimal(tiny))
    [total] = usage_totals(ch_client, ch_database)
    assert (total.quantity, total.amount) == (Decimal(big), Decimal(tiny))


@integration
@pytest.mark.parametrize(
    ("quantity", "amount"),
    [
        ("0.0000000001", "1"),
        ("1", "1.0000000000000000000001"),  # 22 places: one more than the column
        ("123456789012345678901234567890", "1"),
        ("1", "NaN"),
    ],
)
@pytest.mark.parametrize("columnar", [False, True])
def test_decimal_the_column_would_truncate_is_refused(
    ch_client: Client, ch_database: str, quantity: str, amount: str, columnar: bool
) -> None:
    window = rated(1, quantity, amount)
    item = as_columns([window]) if columnar else window
    with pytest.raises(ValueError, match=r"Decimal|decimal places"):
        writer(ch_client, ch_database).write_windows([item])
    assert stored_rows(ch_client, ch_database, "rated_windows") == 0


@integration
def test_rated_columns_store_the_rows_their_windows_store(
    ch_client: Client, ch_database: str
) -> None:
    windows = [
        rated(3, "30", "0.3"),
        rated(2, "12.5", "0.125", previous=("10", "0.1"), start_ms=T0 + HOUR_MS),
        replace(
            rated(1, "2", "0.08", meter="users", groups=()),
            aggregation="unique_count",
            distinct_values=frozenset({"u2", "u1"}),
        ),
        replace(rated(1, "7", "0.7", meter="seats"), aggregation="latest", latest_ms=T0 + 5),
    ]
    sink = writer(ch_client, ch_database)
    table = f"`{ch_database}`.rated_windows"

    def stored() -> list[tuple[Any, ...]]:
        rows = ch_client.query(f"SELECT * FROM {table} ORDER BY meter, window_start").result_rows
        return [tuple(row) for row in rows]

    assert sink.write_windows(windows) == len(windows)
    as_objects = stored()
    ch_client.command(f"TRUNCATE TABLE {table}")
    # One item of columns, and a mix of both kinds of item, store the same rows.
    assert sink.write_windows([as_columns(windows)]) == len(windows)
    assert stored() == as_objects
    ch_client.command(f"TRUNCATE TABLE {table}")
    assert sink.write_windows([windows[0], as_columns(windows[1:])]) == len(windows)
    assert stored() == as_objects
    assert len(as_objects) == len(windows)


def _decimals(places: int, digits: int) -> st.SearchStrategy[Decimal]:
    """Decimals a column with ``places`` decimal places of ``digits`` digits holds,
    padded to its scale or normalized (``1.5E+3``), as arithmetic leaves them."""
    # Exact at every step: the default context's 28 digits would round.
    wide = Context(prec=digits + 4)
    return st.builds(
        lambda n, normal: (
            wide.normalize(wide.scaleb(Decimal(n), -places))
            if normal
            else wide.scaleb(Decimal(n), -places)
        ),
        st.integers(-(10**digits) + 1, 10**digits - 1),
        st.booleans(),
    )


_texts = st.text(max_size=12)
_revisions = st.builds(
    rated,
    st.integers(1, 2**64 - 1),
    _decimals(9, 38).map(str),
    _decimals(21, 76).map(str),
    tenant=_texts,
    meter=_texts,
    groups=st.lists(st.tuples(_texts, _texts), max_size=3, unique_by=lambda g: g[0]).map(
        lambda pairs: tuple(sorted(pairs))
    ),
    start_ms=st.integers(0, 2**40),
    previous=st.tuples(_decimals(9, 38).map(str), _decimals(21, 76).map(str)),
)


@integration
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.tuples(_revisions, st.frozensets(_texts, max_size=3), st.integers(-(2**40), 2**40)),
        min_size=1,
        max_size=6,
    )
)
def test_natively_encoded_rows_are_the_drivers(
    ch_client: Client,
    ch_database: str,
    revisions: list[tuple[RatedWindow, frozenset[str], int]],
) -> None:
    # Decimals at every scale and sign, unicode texts, maps, arrays, 64-bit revisions.
    windows = [replace(w, distinct_values=d, latest_ms=t) for w, d, t in revisions]
    sink = writer(ch_client, ch_database)
    table = f"`{ch_database}`.rated_windows"

    def stored() -> list[tuple[Any, ...]]:
        rows = ch_client.query(f"SELECT * FROM {table} ORDER BY ALL").result_rows
        ch_client.command(f"TRUNCATE TABLE {table}")
        return [tuple(row) for row in rows]

    assert sink.write_windows(windows) == len(windows)  # the driver's path
    by_driver = stored()
    assert sink.write_windows([as_columns(windows)]) == len(windows)  # the native core's
    assert stored() == by_driver


@integration
def test_window_rows_filters_by_tenant(ch_client: Client, ch_database: str) -> None:
    writer(ch_client, ch_database).write_windows(
        [rated(1, "1", "0.01", tenant="acme"), rated(1, "2", "0.02", tenant="globex")]
    )
    assert [r.tenant for r in window_rows(ch_client, ch_database)] == ["acme", "globex"]
    assert [r.quantity for r in window_rows(ch_client, ch_database, "globex")] == [Decimal("2")]


def test_group_key_is_canonical_json() -> None:
    assert group_key(()) == "{}"
    assert group_key((("model", "gpt"), ("region", "eu"))) == '{"model":"gpt","region":"eu"}'


@integration
def test_retry_after_transient_errors_then_success(ch_client: Client, ch_database: str) -> None:
    flaky = FlakyClient(ch_client, failures=2, error=OperationalError("connection reset"))
    writer(flaky, ch_database, max_attempts=3).write_windows([rated(1, "1", "0.01")])
    assert flaky.calls == 3
    assert stored_rows(ch_client, ch_database, "rated_windows") == 1


@integration
def test_every_attempt_is_checked_first_and_a_failed_check_writes_nothing(
    ch_client: Client, ch_database: str
) -> None:
    class LeaseLostError(Exception):
        pass

    checks = 0

    def lease_check() -> None:
        # The lease holds for the first attempt only, as if lost while retrying.
        nonlocal checks
        checks += 1
        if checks > 1:
            raise LeaseLostError

    flaky = FlakyClient(ch_client, failures=1, error=OperationalError("connection reset"))
    sink = writer(flaky, ch_database, max_attempts=3)
    sink.before_attempt = lease_check
    with pytest.raises(LeaseLostError):
        sink.write_windows([rated(1, "1", "0.01")])
    assert (checks, flaky.calls) == (2, 1)
    assert stored_rows(ch_client, ch_database, "rated_windows") == 0


@integration
def test_gives_up_after_max_attempts(ch_client: Client, ch_database: str) -> None:
    busy = DatabaseError("Code: 241. DB::Exception: Memory limit exceeded", code=241)
    flaky = FlakyClient(ch_client, failures=10, error=busy)
    with pytest.raises(SinkError, match="after 3 attempt") as raised:
        writer(flaky, ch_database, max_attempts=3).write_windows([rated(1, "1", "0.01")])
    assert (flaky.calls, raised.value.attempts) == (3, 3)


@integration
def test_non_retryable_error_raised_at_once(chdb_dsn: str, ch_database: str) -> None:
    client = connect(chdb_dsn, ch_database)  # not migrated: the table does not exist
    counting = FlakyClient(client, failures=0, error=OperationalError("unused"))
    try:
        with pytest.raises(SinkError, match="after 1 attempt") as raised:
            writer(counting, ch_database).write_windows([rated(1, "1", "0.01")])
    finally:
        client.close()
    assert counting.calls == 1
    assert isinstance(raised.value.__cause__, DatabaseError)


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (ConnectionResetError(), True),
        (OperationalError("Error executing HTTP request"), True),
        (DatabaseError("Too many parts", code=252), True),
        (DatabaseError("The ClickHouse server returned an error"), True),
        (DatabaseError("Syntax error", code=62), False),
        (DatabaseError("Type mismatch", code=53), False),
        (DatabaseError("Authentication failed", code=516), False),
        (ProgrammingError("The client has been closed"), False),
    ],
)
def test_is_transient(error: Exception, transient: bool) -> None:
    assert is_transient(error) is transient


@pytest.mark.parametrize(
    ("dsn", "redacted"),
    [
        ("https://meter:s3cr%40t@ch.example:8443/usage", "https://meter:***@ch.example:8443/usage"),
        ("http://meter:p@ss@ch:8123", "http://meter:***@ch:8123"),
        ("http://meter@ch:8123/usage", "http://meter@ch:8123/usage"),
        ("chdb:///var/lib/meterwax", "chdb:///var/lib/meterwax"),
    ],
)
def test_redact_dsn_hides_password(dsn: str, redacted: str) -> None:
    assert redact_dsn(dsn) == redacted


def test_unknown_dsn_scheme_is_refused_without_password() -> None:
    with pytest.raises(ValueError, match=r"'postgres'.*chdb://PATH") as raised:
        connect("postgres://meter:hunter2@db:5432/usage", "usage")
    assert "hunter2" not in str(raised.value)


def test_dsn_database_must_match_configured_one() -> None:
    with pytest.raises(ValueError, match=r"'other'.*'usage'") as raised:
        connect("http://meter:hunter2@localhost:8123/other", "usage")
    assert "hunter2" not in str(raised.value)


def test_unreachable_server_error_has_no_password() -> None:
    with pytest.raises(SinkError) as raised:
        connect("http://meter:hunter2@127.0.0.1:9/usage?connect_timeout=1", "usage")
    assert "hunter2" not in str(raised.value)
    assert "meter:***@127.0.0.1:9" in str(raised.value)


@integration
def test_relative_chdb_path_joins_the_same_engine(
    ch_client: Client, ch_database: str, chdb_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine_dir = Path(chdb_dsn.removeprefix("chdb://"))
    monkeypatch.chdir(engine_dir.parent)
    writer(ch_client, ch_database).write_windows([rated(1, "7", "0.07")])

    second = connect(f"chdb://{engine_dir.name}/", ch_database)
    try:
        assert [t.quantity for t in usage_totals(second, ch_database)] == [Decimal("7")]
    finally:
        second.close()


@integration
def test_chdb_group_by_spills_beyond_the_set_bytes(chdb_dsn: str, ch_database: str) -> None:
    # Bounds the end-of-run summary's aggregation inside this process.
    client = connect(chdb_dsn, ch_database, chdb_group_by_spill_bytes=64 * 2**20)
    try:
        setting = client.query("SELECT getSetting('max_bytes_before_external_group_by')")
    finally:
        client.close()
    assert int(setting.result_rows[0][0]) == 64 * 2**20


def test_the_native_event_log_rows_have_the_python_writers_columns() -> None:
    # Both engines insert into accepted_events: one column order, or rows land shifted.
    assert tuple(EVENT_LOG_COLUMNS) == clickhouse._EVENT_COLUMNS
