"""Several flow incarnations in one ClickHouse: window_usage combines them; old rows migrate."""

from __future__ import annotations

import random
import uuid
from dataclasses import replace
from decimal import Decimal

import pytest
from clickhouse_connect.driver.client import Client

from config.meters import Aggregation
from operators.aggregation import ACCUMULATORS
from operators.contributions import combine, contribution_of
from operators.model import RatedWindow
from operators.period_rating import PeriodRef
from sinks.clickhouse import connect, window_rows
from sinks.clickhouse_schema import MIGRATIONS, migrate
from sinks.clickhouse_seeds import others_stored, stored_periods
from tests.sinks.test_clickhouse import HOUR_MS, T0, rated, writer

pytestmark = pytest.mark.integration

USERS = ["u1", "u2", "u3", "1", "1.0"]


def _revisions(
    aggregation: Aggregation, tenant: str, incarnation: str, events: list[tuple[Decimal, str, int]]
) -> tuple[list[RatedWindow], Decimal]:
    """Every revision one incarnation writes as its events arrive; its last amount."""
    acc = ACCUMULATORS[aggregation]()
    rows, amount = [], Decimal(0)
    for revision, (value, user, time_ms) in enumerate(events, start=1):
        acc.fold(user if aggregation is Aggregation.UNIQUE_COUNT else value, time_ms)
        amount += Decimal("0.25")
        part = contribution_of(acc)
        rows.append(
            replace(
                rated(revision, f"{acc.quantity()}", f"{amount}", tenant=tenant, meter="m"),
                incarnation=incarnation,
                aggregation=aggregation.value,
                latest_ms=part.latest_ms,
                distinct_values=part.distinct_values,
            )
        )
    return rows, amount


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("aggregation", list(Aggregation))
def test_window_usage_combines_any_split_across_incarnations(
    ch_client: Client, ch_database: str, aggregation: Aggregation, seed: int
) -> None:
    rng = random.Random(seed)
    events = [
        (Decimal(rng.randrange(0, 5000)) / 100, rng.choice(USERS), rng.randrange(0, 50))
        for _ in range(rng.randrange(2, 25))
    ]
    split: dict[str, list[tuple[Decimal, str, int]]] = {}
    for event in events:
        split.setdefault(rng.choice(["", "a", "b", "c"]), []).append(event)
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    rows, parts, amount = [], [], Decimal(0)
    for incarnation, members in split.items():
        written, charged = _revisions(aggregation, tenant, incarnation, members)
        rows += written
        parts.append(contribution_of(_folded(aggregation, members)))
        amount += charged
    rng.shuffle(rows)
    writer(ch_client, ch_database).write_windows(rows)

    [window] = window_rows(ch_client, ch_database, tenant)

    assert window.quantity == combine(aggregation, parts).quantity
    assert window.quantity == contribution_of(_folded(aggregation, events)).quantity
    assert window.amount == amount
    assert window.revision == len(events)


def _folded(aggregation: Aggregation, events: list[tuple[Decimal, str, int]]) -> object:
    acc = ACCUMULATORS[aggregation]()
    for value, user, time_ms in events:
        acc.fold(user if aggregation is Aggregation.UNIQUE_COUNT else value, time_ms)
    return acc


_OLD_COLUMNS = [
    "tenant", "meter", "group_key", "group_values", "window_start", "window_end", "revision",
    "kind", "quantity", "amount", "previous_quantity", "previous_amount", "currency", "plan_id",
    "price_version", "emitted_at",
]  # fmt: skip


def test_migration_keeps_rows_stored_before_as_one_incarnation(
    chdb_dsn: str, ch_database: str
) -> None:
    client = connect(chdb_dsn, ch_database)
    db = f"`{ch_database}`"
    try:
        # The schema as it was before incarnations, with rows in it.
        client.command(f"CREATE DATABASE {db}")
        for migration in MIGRATIONS[:5]:
            client.command(migration.sql.format(db=db))
        client.command(
            f"CREATE TABLE {db}.schema_migrations (version UInt32, name String, "
            "applied_at DateTime64(3, 'UTC') DEFAULT now64(3)) "
            "ENGINE = ReplacingMergeTree(applied_at) ORDER BY version"
        )
        client.insert(
            "schema_migrations",
            [[m.version, m.name] for m in MIGRATIONS[:5]],
            column_names=["version", "name"],
            database=ch_database,
        )
        old = [
            [
                "acme", "tokens", '{"model":"gpt"}', {"model": "gpt"}, T0, T0 + HOUR_MS,
                revision, "window", Decimal(quantity), Decimal(amount), Decimal(0), Decimal(0),
                "USD", "pro", "v1", T0 + HOUR_MS + revision,
            ]
            for revision, quantity, amount in [(1, "10", "1"), (2, "25", "2.5")]
        ]  # fmt: skip
        client.insert("rated_windows", old, column_names=_OLD_COLUMNS, database=ch_database)

        assert migrate(client, ch_database) == [m.version for m in MIGRATIONS[5:]]

        [window] = window_rows(client, ch_database, "acme")
        assert (window.quantity, window.amount, window.revision) == (25, Decimal("2.5"), 2)
        incarnations = client.query(
            f"SELECT DISTINCT incarnation FROM {db}.rated_windows"
        ).result_rows
        assert incarnations == [("",)]

        # A new incarnation's contribution to the same window adds to the old one.
        new = replace(rated(3, "5", "0.5", meter="tokens"), incarnation="fresh", aggregation="SUM")
        writer(client, ch_database).write_windows([new])
        [window] = window_rows(client, ch_database, "acme")
        assert (window.quantity, window.amount, window.revision) == (30, Decimal("3.0"), 5)
    finally:
        client.command(f"DROP DATABASE IF EXISTS {db}")


def test_seed_reads_other_incarnations_period_usage(ch_client: Client, ch_database: str) -> None:
    period = PeriodRef("acme", "tokens", T0, T0 + 30 * 24 * HOUR_MS)
    sum_rows = [
        replace(rated(2, "40", "4", start_ms=T0), incarnation="a", aggregation="SUM"),
        replace(rated(1, "30", "3", start_ms=T0), incarnation="a", aggregation="SUM"),
        replace(rated(1, "7", "0.7", start_ms=T0 + HOUR_MS), incarnation="b", aggregation="SUM"),
        # The reading flow's own rows and another period's are left out.
        replace(rated(1, "1000", "100", start_ms=T0), incarnation="me", aggregation="SUM"),
        replace(rated(1, "9", "9", start_ms=period.end_ms), incarnation="a", aggregation="SUM"),
    ]
    writer(ch_client, ch_database).write_windows(sum_rows)

    stored = stored_periods(
        ch_client,
        ch_database,
        incarnation="me",
        periods=[period],
        aggregations={"tokens": Aggregation.SUM},
    )

    [(key, part)] = stored.items()
    assert key == ("acme", "tokens", T0, "v1")
    assert (part.quantity, part.amount) == (Decimal(47), Decimal("4.7"))


def test_only_another_incarnations_rows_make_seeding_necessary(
    ch_client: Client, ch_database: str
) -> None:
    assert not others_stored(ch_client, ch_database, "me")
    writer(ch_client, ch_database).write_windows(
        [replace(rated(1, "5", "0.5", start_ms=T0), incarnation="me", aggregation="SUM")]
    )
    assert not others_stored(ch_client, ch_database, "me")  # our own rows seed nothing
    assert others_stored(ch_client, ch_database, "someone-else")
