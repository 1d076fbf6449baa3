"""ClickHouse schema for rated usage: numbered, idempotent migrations.

Correctness does not depend on merges or ``FINAL``. A replay after a crash can
re-emit a window revision; rows with the same sort key collapse in the
ReplacingMergeTree eventually, and every read picks the highest revision of a
window with ``argMax``, so duplicates still in the table never double count.

Several flow incarnations (a flow started without recovery state is a new
one) can contribute to one window. Each keeps its own revisions
(``incarnation`` in the sort key); ``window_contributions`` holds each
incarnation's highest revision and ``window_usage`` combines them with the
meter's aggregation, as operators.contributions does. Rows stored before
migration 6 are incarnation ``''``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from clickhouse_connect.driver.client import Client

_DATABASE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

# Drops a retried insert of an identical block (e.g. after a timeout whose
# outcome was unknown) on single-node servers, as replicated tables do anyway.
_DEDUP_SETTING = "SETTINGS non_replicated_deduplication_window = 1000"


@dataclass(frozen=True, slots=True)
class Migration:
    """One DDL statement; ``{db}`` is replaced by the quoted database name."""

    version: int
    name: str
    sql: str


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "create rated_windows",
        f"""
        CREATE TABLE IF NOT EXISTS {{db}}.rated_windows
        (
            tenant String,
            meter LowCardinality(String),
            group_key String,
            group_values Map(String, String),
            window_start DateTime64(3, 'UTC'),
            window_end DateTime64(3, 'UTC'),
            revision UInt64,
            kind Enum8('window' = 1, 'adjustment' = 2),
            quantity Decimal(38, 9),
            amount Decimal(76, 21),
            previous_quantity Decimal(38, 9),
            previous_amount Decimal(76, 21),
            currency LowCardinality(String),
            plan_id String,
            price_version String,
            emitted_at DateTime64(3, 'UTC')
        )
        ENGINE = ReplacingMergeTree(emitted_at)
        ORDER BY (tenant, meter, group_key, window_start, revision)
        {_DEDUP_SETTING}
        """,
    ),
    Migration(
        2,
        "create window_usage view",
        # Ties on revision (a replay re-emitting it) resolve to the latest
        # emission, the same row the ReplacingMergeTree keeps. Columns inside
        # aggregates are qualified so they cannot resolve to same-named aliases.
        """
        CREATE VIEW IF NOT EXISTS {db}.window_usage AS
        SELECT
            tenant,
            meter,
            group_key,
            window_start,
            argMax(r.group_values, (r.revision, r.emitted_at)) AS group_values,
            argMax(r.window_end, (r.revision, r.emitted_at)) AS window_end,
            max(r.revision) AS revision,
            argMax(r.quantity, (r.revision, r.emitted_at)) AS quantity,
            argMax(r.amount, (r.revision, r.emitted_at)) AS amount,
            argMax(r.currency, (r.revision, r.emitted_at)) AS currency,
            argMax(r.plan_id, (r.revision, r.emitted_at)) AS plan_id,
            argMax(r.price_version, (r.revision, r.emitted_at)) AS price_version,
            uniqExact(r.revision) - 1 AS adjustments
        FROM {db}.rated_windows AS r
        GROUP BY tenant, meter, group_key, window_start
        """,
    ),
    Migration(
        3,
        "create window_changes view",
        # Deltas come from the stored cumulative values, not previous_*: after
        # a replay those refer to what that run emitted, so only read-time
        # deltas over the deduplicated revisions telescope to the total.
        """
        CREATE VIEW IF NOT EXISTS {db}.window_changes AS
        SELECT
            tenant,
            meter,
            group_key,
            window_start,
            window_end,
            revision,
            kind,
            quantity,
            amount,
            quantity - lagInFrame(quantity) OVER revisions AS delta_quantity,
            amount - lagInFrame(amount) OVER revisions AS delta_amount,
            currency,
            emitted_at
        FROM
        (
            SELECT
                tenant,
                meter,
                group_key,
                window_start,
                revision,
                argMax(r.window_end, r.emitted_at) AS window_end,
                argMax(r.kind, r.emitted_at) AS kind,
                argMax(r.quantity, r.emitted_at) AS quantity,
                argMax(r.amount, r.emitted_at) AS amount,
                argMax(r.currency, r.emitted_at) AS currency,
                max(r.emitted_at) AS emitted_at
            FROM {db}.rated_windows AS r
            GROUP BY tenant, meter, group_key, window_start, revision
        )
        WINDOW revisions AS (
            PARTITION BY tenant, meter, group_key, window_start
            ORDER BY revision
            ROWS BETWEEN 1 PRECEDING AND CURRENT ROW
        )
        """,
    ),
    Migration(
        4,
        "create rejected_events",
        f"""
        CREATE TABLE IF NOT EXISTS {{db}}.rejected_events
        (
            origin String,
            `partition` Int32,
            `offset` Int64,
            reason LowCardinality(String),
            detail String,
            payload String,
            event_id String,
            event_source String,
            tenant String,
            rejected_at DateTime64(3, 'UTC')
        )
        ENGINE = ReplacingMergeTree(rejected_at)
        ORDER BY (origin, `partition`, `offset`)
        {_DEDUP_SETTING}
        """,
    ),
    Migration(
        5,
        "create accepted_events",
        # Append-only log of what was metered: one row per event and meter. A replay
        # after a crash appends the same event again; readers keep one row per
        # (tenant, meter, source, id).
        f"""
        CREATE TABLE IF NOT EXISTS {{db}}.accepted_events
        (
            tenant String,
            meter LowCardinality(String),
            aggregation LowCardinality(String),
            group_key String,
            quantity Decimal(38, 9),
            distinct_value String,
            event_time DateTime64(3, 'UTC'),
            source String,
            id String,
            type LowCardinality(String),
            origin String,
            `partition` Int32,
            `offset` Int64,
            ingested_at DateTime64(3, 'UTC')
        )
        ENGINE = MergeTree
        PARTITION BY toYYYYMM(event_time)
        ORDER BY (tenant, meter, event_time, source, id)
        {_DEDUP_SETTING}
        """,
    ),
    Migration(
        6,
        "rated_windows: incarnation and what combining incarnations needs",
        # Rows stored before have no distinct values and, for LATEST, their window
        # start stands in for the latest event time.
        """
        ALTER TABLE {db}.rated_windows
            ADD COLUMN IF NOT EXISTS incarnation String,
            ADD COLUMN IF NOT EXISTS aggregation LowCardinality(String) DEFAULT '',
            ADD COLUMN IF NOT EXISTS latest_ms Int64
                DEFAULT toUnixTimestamp64Milli(window_start),
            ADD COLUMN IF NOT EXISTS distinct_values Array(String) DEFAULT [],
            MODIFY ORDER BY (tenant, meter, group_key, window_start, revision, incarnation)
        """,
    ),
    Migration(
        7,
        "create window_contributions view",
        # One row per window and incarnation: its highest revision (ties to the
        # latest emission, the row the ReplacingMergeTree keeps).
        """
        CREATE VIEW IF NOT EXISTS {db}.window_contributions AS
        SELECT
            tenant,
            meter,
            group_key,
            window_start,
            incarnation,
            argMax(r.group_values, (r.revision, r.emitted_at)) AS group_values,
            argMax(r.window_end, (r.revision, r.emitted_at)) AS window_end,
            max(r.revision) AS revision,
            argMax(r.aggregation, (r.revision, r.emitted_at)) AS aggregation,
            argMax(r.quantity, (r.revision, r.emitted_at)) AS quantity,
            argMax(r.amount, (r.revision, r.emitted_at)) AS amount,
            argMax(r.latest_ms, (r.revision, r.emitted_at)) AS latest_ms,
            argMax(r.distinct_values, (r.revision, r.emitted_at)) AS distinct_values,
            argMax(r.currency, (r.revision, r.emitted_at)) AS currency,
            argMax(r.plan_id, (r.revision, r.emitted_at)) AS plan_id,
            argMax(r.price_version, (r.revision, r.emitted_at)) AS price_version,
            uniqExact(r.revision) - 1 AS adjustments
        FROM {db}.rated_windows AS r
        GROUP BY tenant, meter, group_key, window_start, incarnation
        """,
    ),
    Migration(
        8,
        "window_usage combines incarnations",
        # A window's value: its incarnations' contributions combined with the meter's
        # aggregation; amounts add up (each incarnation charged its own changes).
        # UNIQUE_COUNT never drops below one incarnation's count: rows stored before
        # migration 6 have no distinct values.
        """
        CREATE OR REPLACE VIEW {db}.window_usage AS
        SELECT
            tenant,
            meter,
            group_key,
            window_start,
            any(c.group_values) AS group_values,
            max(c.window_end) AS window_end,
            sum(c.revision) AS revision,
            max(c.aggregation) AS aggregation,
            multiIf(
                aggregation = 'MAX', max(c.quantity),
                aggregation = 'LATEST', argMax(c.quantity, (c.latest_ms, c.quantity)),
                aggregation = 'UNIQUE_COUNT', greatest(
                    toDecimal128(length(groupUniqArrayArray(c.distinct_values)), 9),
                    max(c.quantity)
                ),
                sum(c.quantity)
            ) AS quantity,
            sum(c.amount) AS amount,
            max(c.currency) AS currency,
            max(c.plan_id) AS plan_id,
            max(c.price_version) AS price_version,
            sum(c.adjustments) AS adjustments,
            count() AS incarnations
        FROM {db}.window_contributions AS c
        GROUP BY tenant, meter, group_key, window_start
        """,
    ),
    Migration(
        9,
        "window_changes per incarnation",
        # Each incarnation's revisions telescope to its own contribution.
        """
        CREATE OR REPLACE VIEW {db}.window_changes AS
        SELECT
            tenant,
            meter,
            group_key,
            window_start,
            incarnation,
            window_end,
            revision,
            kind,
            quantity,
            amount,
            quantity - lagInFrame(quantity) OVER revisions AS delta_quantity,
            amount - lagInFrame(amount) OVER revisions AS delta_amount,
            currency,
            emitted_at
        FROM
        (
            SELECT
                tenant,
                meter,
                group_key,
                window_start,
                incarnation,
                revision,
                argMax(r.window_end, r.emitted_at) AS window_end,
                argMax(r.kind, r.emitted_at) AS kind,
                argMax(r.quantity, r.emitted_at) AS quantity,
                argMax(r.amount, r.emitted_at) AS amount,
                argMax(r.currency, r.emitted_at) AS currency,
                max(r.emitted_at) AS emitted_at
            FROM {db}.rated_windows AS r
            GROUP BY tenant, meter, group_key, window_start, incarnation, revision
        )
        WINDOW revisions AS (
            PARTITION BY tenant, meter, group_key, window_start, incarnation
            ORDER BY revision
            ROWS BETWEEN 1 PRECEDING AND CURRENT ROW
        )
        """,
    ),
    Migration(
        10,
        "create webhook_deliveries",
        # One row per delivery attempt (and per redelivery request); the body is
        # kept so that `meterwax webhooks redeliver` can send it again.
        """
        CREATE TABLE IF NOT EXISTS {db}.webhook_deliveries
        (
            msg_id String,
            endpoint LowCardinality(String),
            type LowCardinality(String),
            tenant String,
            attempt UInt32,
            status Enum8('delivered' = 1, 'retrying' = 2, 'failed' = 3, 'redeliver' = 4),
            http_status UInt16,
            error String,
            attempted_at DateTime64(3, 'UTC'),
            next_attempt_at Nullable(DateTime64(3, 'UTC')),
            created_at DateTime64(3, 'UTC'),
            body String
        )
        ENGINE = MergeTree
        ORDER BY (endpoint, msg_id, attempted_at)
        """,
    ),
)


def quote_database(database: str) -> str:
    """Backquote a database name after checking it is a plain identifier.

    Names are interpolated into DDL, so anything unusual is refused rather than
    escaped: a name that needs escaping is a configuration mistake.
    """
    if not _DATABASE_NAME.match(database):
        raise ValueError(
            f"database name {database!r} is not a plain identifier: "
            "use letters, digits and underscores, not starting with a digit"
        )
    return f"`{database}`"


def migrate(client: Client, database: str) -> list[int]:
    """Create ``database`` and apply the migrations not yet recorded there.

    Safe to run repeatedly and from several processes at once: every statement
    is ``IF NOT EXISTS`` and a migration recorded twice collapses in the
    ReplacingMergeTree. Returns the versions applied by this call.
    """
    db = quote_database(database)
    client.command(f"CREATE DATABASE IF NOT EXISTS {db}")
    client.command(
        f"""
        CREATE TABLE IF NOT EXISTS {db}.schema_migrations
        (
            version UInt32,
            name String,
            applied_at DateTime64(3, 'UTC') DEFAULT now64(3)
        )
        ENGINE = ReplacingMergeTree(applied_at)
        ORDER BY version
        """
    )
    applied = {
        row[0] for row in client.query(f"SELECT version FROM {db}.schema_migrations").result_rows
    }
    pending = [m for m in MIGRATIONS if m.version not in applied]
    for migration in pending:
        client.command(migration.sql.format(db=db))
        client.insert(
            "schema_migrations",
            [[migration.version, migration.name]],
            column_names=["version", "name"],
            database=database,
        )
    return [m.version for m in pending]
