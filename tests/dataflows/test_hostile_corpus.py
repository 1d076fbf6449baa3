"""The hostile corpus mixed into the scenario, through the real flow (broker, Redis, chDB).

One run (module fixture) and several checks on it: the flow keeps going, every
hostile event is dead-lettered and stored with exactly its reason, the weird
but valid ones are metered and stored verbatim, and the scenario's totals are
untouched apart from what those valid ones add.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import orjson
import pytest
from clickhouse_connect.driver.client import Client
from confluent_kafka.admin import AdminClient

from config.meters import MeterCatalog
from config.pricing import PricingCatalog
from config.settings import load_settings
from dataflows.stats import RunStats
from operators.model import Reason
from reports.reconciliation import check
from sinks.clickhouse import connect, rejected_counts, window_rows
from sinks.clickhouse_schema import migrate, quote_database
from sinks.kafka_topics import ensure_topic
from tests.dataflows.conftest import METERS_YAML, PRICING_YAML
from tests.dataflows.hostile_corpus import (
    ACCEPTED_TOKENS,
    CONTROL_GROUP,
    EMOJI_GROUP,
    EVENT_MS,
    QUOTES_GROUP,
    SOURCE,
    SQL_GROUP,
    SQL_SUBJECT,
    Hostile,
    build_corpus,
)
from tests.dataflows.scenario import (
    BASE_MS,
    MINUTE,
    PRICE_CHANGE_MS,
    PRICES,
    SCENARIO_CLOCK,
    Scenario,
    build_scenario,
    expected_totals,
)
from tests.dataflows.test_kafka_flow import Rig, produce, read_topic

pytestmark = pytest.mark.integration

DAY = 86_400_000


@dataclass(repr=False)  # a failing assertion would print every line of the run
class HostileRun:
    """The finished run and what it left in Kafka and ClickHouse."""

    rig: Rig
    scenario: Scenario
    corpus: list[Hostile]
    lines: list[bytes]
    stats: RunStats
    letters: dict[bytes, list[str]]  # payload -> reasons in the dead-letter topic
    stored: dict[bytes, list[str]]  # payload -> reasons in rejected_events


def mix(lines: list[bytes], corpus: list[Hostile]) -> list[bytes]:
    """The corpus spread over the second half of ``lines``.

    The first half lets every partition's watermark move first, so the
    too-late entry is judged against a settled past, as in production.
    """
    half = len(lines) // 2
    step = max(1, (len(lines) - half) // (len(corpus) + 1))
    mixed = lines[:half]
    rest = lines[half:]
    for i, entry in enumerate(corpus):
        mixed.extend(rest[i * step : (i + 1) * step])
        mixed.append(entry.payload)
    mixed.extend(rest[len(corpus) * step :])
    return mixed


def new_topic(brokers: str, partitions: int, prefix: str) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:12]}"
    ensure_topic(AdminClient({"bootstrap.servers": brokers}), name, partitions, 1)
    return name


def dead_letters(brokers: str, topic: str) -> dict[bytes, list[str]]:
    """Reasons per original payload; copies of one input position count once."""
    seen: dict[tuple[bytes, bytes, bytes], tuple[bytes, str]] = {}
    for value, headers in read_topic(brokers, topic):
        position = (
            headers["meterwax.origin"],
            headers["meterwax.partition"],
            headers["meterwax.offset"],
        )
        # An empty original comes back as a null value.
        seen[position] = (value or b"", headers["meterwax.reason"].decode())
    out: dict[bytes, list[str]] = {}
    for payload, reason in seen.values():
        out.setdefault(payload, []).append(reason)
    return out


def stored_rejections(client: Client, database: str) -> dict[bytes, list[str]]:
    """Reasons per payload in ``rejected_events``, latest per input position (as reports read)."""
    # hex(): the payload column holds raw bytes, which need not be UTF-8.
    result = client.query(
        f"""
        SELECT hex(argMax(payload, rejected_at)), argMax(reason, rejected_at)
        FROM {quote_database(database)}.rejected_events
        GROUP BY origin, `partition`, `offset`
        """
    )
    out: dict[bytes, list[str]] = {}
    for payload_hex, reason in result.result_rows:
        out.setdefault(bytes.fromhex(payload_hex), []).append(reason)
    return out


@pytest.fixture(scope="module")
def hostile_run(
    kafka_brokers: str,
    catalogs: tuple[MeterCatalog, PricingCatalog],
    chdb_dsn: str,
    redis_url: str,
) -> Iterator[HostileRun]:
    database = f"test_{uuid.uuid4().hex}"
    client = connect(chdb_dsn, database)
    migrate(client, database)
    rig = Rig(
        brokers=kafka_brokers,
        # One partition: whether the too_late entry is too late must not race other partitions.
        topic=new_topic(kafka_brokers, 1, "hostile"),
        dead_letter_topic=new_topic(kafka_brokers, 1, "dead-letters"),
        catalogs=catalogs,
        dsn=chdb_dsn,
        database=database,
        redis_url=redis_url,
        key_prefix=f"test-{database}",
        client=client,
    )
    scenario = build_scenario()
    # The clock the flow parses against (Rig runs flows at SCENARIO_CLOCK).
    corpus = build_corpus(SCENARIO_CLOCK.now_ms())
    lines = mix(scenario.lines, corpus)
    produce(rig.brokers, rig.topic, lines)

    stats = rig.run()  # returns only when the whole topic was read: the flow did not stop

    yield HostileRun(
        rig,
        scenario,
        corpus,
        lines,
        stats,
        dead_letters(rig.brokers, rig.dead_letter_topic),
        stored_rejections(client, database),
    )
    client.command(f"DROP DATABASE IF EXISTS {quote_database(database)}")
    client.close()


def rejected_entries(run: HostileRun) -> list[Hostile]:
    return [e for e in run.corpus if e.reason is not None]


def accepted_entries(run: HostileRun) -> list[Hostile]:
    return [e for e in run.corpus if e.reason is None]


def misclassified(run: HostileRun, found: dict[bytes, list[str]]) -> list[str]:
    """Entries whose reasons in ``found`` are not exactly their expected one (or none)."""
    wrong = []
    for entry in run.corpus:
        expected = [] if entry.reason is None else [entry.reason.value]
        got = found.get(entry.payload, [])
        if got != expected:
            wrong.append(
                f"{entry.name}: expected {expected or 'accepted'}, got {got or 'accepted'}"
            )
    return wrong


def test_every_message_is_accounted_for(hostile_run: HostileRun) -> None:
    run, stats = hostile_run, hostile_run.stats
    expected_rejected = run.scenario.rejected + Counter(
        e.reason.value for e in rejected_entries(run) if e.reason is not None
    )

    assert stats.consumed == stats.accepted + stats.duplicates + stats.rejected_total
    assert {
        "consumed": stats.consumed,
        "accepted": stats.accepted,
        "duplicates": stats.duplicates,
        "rejected": dict(stats.rejected),
    } == {
        "consumed": len(run.lines),
        "accepted": len(run.scenario.accepted) + len(accepted_entries(run)),
        "duplicates": run.scenario.duplicates,
        "rejected": dict(expected_rejected),
    }


def test_every_hostile_event_is_dead_lettered_with_exactly_its_reason(
    hostile_run: HostileRun,
) -> None:
    wrong = misclassified(hostile_run, hostile_run.letters)
    assert not wrong, "\n".join(wrong)
    # Nothing else: the scenario's own rejections and the corpus's, each once.
    scenario_letters = sum(hostile_run.scenario.rejected.values())
    assert sum(map(len, hostile_run.letters.values())) == scenario_letters + len(
        rejected_entries(hostile_run)
    )


def test_oversize_payloads_are_dead_lettered_whole(hostile_run: HostileRun) -> None:
    """Under the topic's 900 kB cut, the original bytes travel untouched."""
    oversize = [e for e in hostile_run.corpus if e.name.startswith("oversize-payload")]
    assert oversize
    for entry in oversize:
        assert len(entry.payload) > 65_536
        assert hostile_run.letters.get(entry.payload) == [Reason.TOO_LARGE.value]


def test_rejected_events_table_holds_the_same_reasons(hostile_run: HostileRun) -> None:
    run = hostile_run
    wrong = misclassified(run, run.stored)
    assert not wrong, "\n".join(wrong)
    assert rejected_counts(run.rig.client, run.rig.database) == dict(run.stats.rejected)


def accepted_log(run: HostileRun) -> dict[str, tuple[str, str, Decimal]]:
    """id -> (tenant, group_key, quantity) of the corpus's events in ``accepted_events``."""
    result = run.rig.client.query(
        f"""
        SELECT id, tenant, group_key, quantity
        FROM {quote_database(run.rig.database)}.accepted_events
        WHERE source = {{source:String}} AND meter = 'tokens'
        LIMIT 1 BY tenant, meter, source, id
        """,
        parameters={"source": SOURCE},
    )
    return {row[0]: (row[1], row[2], Decimal(row[3])) for row in result.result_rows}


def test_weird_valid_events_are_logged_exactly_as_sent(hostile_run: HostileRun) -> None:
    expected = {}
    for entry in accepted_entries(hostile_run):
        # Read straight from the bytes sent (orjson: the standard library stops
        # short of the 1000-level entries), with none of the parser's code.
        doc = orjson.loads(entry.payload)
        model = doc["data"].get("model", "")
        tenant, tokens = ACCEPTED_TOKENS[entry.name]
        group_key = json.dumps({"model": str(model)}, separators=(",", ":"), ensure_ascii=False)
        expected[doc["id"]] = (tenant, group_key, tokens)

    logged = accepted_log(hostile_run)
    # Ids first, so a misclassified entry is named rather than buried in a dict diff.
    assert sorted(logged.keys() - expected.keys()) == [], "metered, but should be rejected"
    assert sorted(expected.keys() - logged.keys()) == [], "valid, but not metered"
    assert logged == expected


def test_sql_and_odd_strings_are_stored_verbatim_and_the_tables_survive(
    hostile_run: HostileRun,
) -> None:
    client, database = hostile_run.rig.client, hostile_run.rig.database
    for table in ("rated_windows", "rejected_events", "accepted_events"):
        assert client.command(f"EXISTS TABLE {quote_database(database)}.{table}") == 1
    window_start = EVENT_MS - EVENT_MS % MINUTE

    [sql_tenant] = window_rows(client, database, tenant=SQL_SUBJECT)
    assert (sql_tenant.tenant, sql_tenant.groups) == (SQL_SUBJECT, (("model", "m0"),))
    assert (sql_tenant.window_start_ms, sql_tenant.quantity) == (window_start, Decimal(13))

    globex = {
        dict(row.groups)["model"]: row.quantity
        for row in window_rows(client, database, tenant="globex")
        if row.meter == "tokens" and row.window_start_ms == window_start
    }
    for model, tokens in (
        (SQL_GROUP, 14),
        (QUOTES_GROUP, 15),
        (CONTROL_GROUP, 16),
        ("3", 17),
        ("", 18),
        (EMOJI_GROUP, 12),
    ):
        assert globex.get(model) == Decimal(tokens), model


def test_totals_are_the_scenario_plus_the_weird_valid_events(hostile_run: HostileRun) -> None:
    expected = expected_totals(hostile_run.scenario)
    window_start = EVENT_MS - EVENT_MS % MINUTE
    for entry in accepted_entries(hostile_run):
        tenant, tokens = ACCEPTED_TOKENS[entry.name]
        version = "p1" if tenant == "acme" else ("v2" if window_start >= PRICE_CHANGE_MS else "v1")
        quantity, amount = expected.get((tenant, "tokens"), (Decimal(0), Decimal(0)))
        price = Decimal(PRICES[version]["tokens"])
        expected[(tenant, "tokens")] = (quantity + tokens, amount + tokens * price)

    assert hostile_run.rig.totals() == expected


def test_reconcile_finds_no_difference(hostile_run: HostileRun, tmp_path: Path) -> None:
    (tmp_path / "meters.yaml").write_text(METERS_YAML)
    (tmp_path / "pricing.yaml").write_text(PRICING_YAML)
    settings = load_settings(
        overrides={
            "clickhouse": {"dsn": hostile_run.rig.dsn, "database": hostile_run.rig.database},
            "catalogs": {
                "meters": str(tmp_path / "meters.yaml"),
                "pricing": str(tmp_path / "pricing.yaml"),
            },
        }
    )

    compared, differences = check(settings, BASE_MS - DAY, BASE_MS + DAY, None)

    assert compared > 100
    assert differences == []
