"""POST /v1/events on the real broker: what is accepted is produced exactly, keyed by subject;
what is refused is not produced; events sent over HTTP end up rated in ClickHouse."""

from __future__ import annotations

import json
from decimal import Decimal

import httpx
import orjson
import pytest
from clickhouse_connect.driver.client import Client
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from cli.main import main
from config.clock import FixedClock
from config.display import iso_utc
from config.settings import Settings
from sinks.clickhouse import usage_totals
from tests.api.conftest import NOV_2026_MS, NOW_MS, Keys, bearer

pytestmark = pytest.mark.integration

BATCH = {"Content-Type": "application/cloudevents-batch+json"}
SINGLE = {"Content-Type": "application/cloudevents+json"}
NOV_15_MS = NOV_2026_MS + 14 * 86_400_000


def event(
    n: int, subject: str = "acme", tokens: object = 100, **extra: object
) -> dict[str, object]:
    """An llm.completion event on 2026-11-15 (a day before the API's "now"), n * 10 s in."""
    return {
        "specversion": "1.0",
        "id": f"e{n}",
        "source": "tests/api",
        "type": "llm.completion",
        "subject": subject,
        "time": iso_utc(NOV_15_MS + n * 10_000),
        "data": {"tokens": tokens, "model": "m1", "region": "eu"},
        **extra,
    }


def read_topic(brokers: str, topic: str, partitions: int = 2) -> list[tuple[bytes, bytes]]:
    """(key, value) of every message of ``topic``, read to its end."""
    consumer = Consumer(
        {"bootstrap.servers": brokers, "group.id": "tests", "enable.partition.eof": True}
    )
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    out: list[tuple[bytes, bytes]] = []
    ended = 0
    while ended < partitions:
        for message in consumer.consume(500, 1.0):
            if message.error():
                ended += 1
            else:
                out.append((message.key(), message.value()))
    consumer.close()
    return out


def post(api: httpx.Client, key: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return api.post("/v1/events", content=body, headers={**headers, **bearer(key)})


def test_a_batch_answers_each_events_outcome_and_produces_the_accepted_exactly(
    api: httpx.Client, keys: Keys, kafka_brokers: str, topic: str
) -> None:
    # Pretty-printed, with a number no float holds: the bytes must reach Kafka as sent.
    exact = json.dumps(event(1, tokens=0), indent=1).replace('"tokens": 0', '"tokens": 1.10')
    body = (
        "[\n"
        + ",\n".join(
            [
                exact,
                json.dumps(event(2, subject="globex")),
                json.dumps(event(3, tokens=-5)),
                '"not an event"',
                json.dumps(event(4, type="nosuch.type")),
                json.dumps(event(5, subject="initech")),
            ]
        )
        + "\n]"
    ).encode()

    response = post(api, keys.platform_ingest, body, BATCH)

    assert response.status_code == 202
    assert response.json() == {
        "accepted": 2,
        "rejected": 4,
        "failed": 0,
        "events": [
            {"index": 0, "status": "accepted"},
            {"index": 1, "status": "accepted"},
            {
                "index": 2,
                "status": "rejected",
                "reason": "negative_value",
                "detail": response.json()["events"][2]["detail"],
            },
            {
                "index": 3,
                "status": "rejected",
                "reason": "not_an_object",
                "detail": "expected a JSON object, got string",
            },
            {
                "index": 4,
                "status": "rejected",
                "reason": "unknown_event_type",
                "detail": "type 'nosuch.type' matches no meter",
            },
            {
                "index": 5,
                "status": "rejected",
                "reason": "unknown_subject",
                "detail": "subject 'initech' has no subscription or default plan",
            },
        ],
    }
    produced = sorted(read_topic(kafka_brokers, topic))
    assert produced == sorted(
        [(b"acme", exact.encode()), (b"globex", json.dumps(event(2, subject="globex")).encode())]
    )


def test_a_single_event(api: httpx.Client, keys: Keys, kafka_brokers: str, topic: str) -> None:
    payload = orjson.dumps(event(7))

    response = post(api, keys.acme_ingest, payload, SINGLE)

    assert (response.status_code, response.json()["events"]) == (
        202,
        [{"index": 0, "status": "accepted"}],
    )
    broken = post(api, keys.acme_ingest, b"{not json", SINGLE).json()
    assert broken["events"][0]["reason"] == "malformed_json"
    assert read_topic(kafka_brokers, topic) == [(b"acme", payload)]


def test_a_tenant_key_sends_its_own_subject_only_and_a_refused_request_produces_nothing(
    api: httpx.Client, keys: Keys, kafka_brokers: str, topic: str
) -> None:
    body = orjson.dumps([event(1), event(2, subject="globex"), event(3)])

    response = post(api, keys.acme_ingest, body, BATCH)

    assert response.status_code == 403
    assert response.json()["type"] == "/problems/forbidden_subject"
    assert response.json()["field"] == "[1].subject"
    assert post(api, keys.globex_ingest, orjson.dumps([event(4)]), BATCH).status_code == 403
    assert read_topic(kafka_brokers, topic) == []


@pytest.mark.parametrize(
    ("headers", "body", "status", "code", "field"),
    [
        (
            {"Content-Type": "application/json"},
            b"[]",
            415,
            "unsupported_media_type",
            "Content-Type",
        ),
        ({}, b"[]", 415, "unsupported_media_type", "Content-Type"),
        (BATCH, b'{"specversion": "1.0"}', 400, "bad_batch", "body"),
        (BATCH, b"[1, 2", 400, "bad_batch", "body"),
        (BATCH, b"[]", 400, "bad_batch", "body"),
        (
            BATCH,
            b"[" + b",".join([orjson.dumps(event(1))] * 3000) + b"]",
            413,
            "body_too_large",
            "body",
        ),
    ],
)
def test_refused_requests_name_the_field_and_produce_nothing(
    api: httpx.Client,
    keys: Keys,
    kafka_brokers: str,
    topic: str,
    headers: dict[str, str],
    body: bytes,
    status: int,
    code: str,
    field: str,
) -> None:
    response = post(api, keys.platform_ingest, body, headers)

    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    assert (response.json()["type"], response.json()["field"]) == (f"/problems/{code}", field)
    assert read_topic(kafka_brokers, topic) == []


def test_ingest_needs_an_ingest_key(api: httpx.Client, keys: Keys) -> None:
    body = orjson.dumps([event(1)])
    assert api.post("/v1/events", content=body, headers=BATCH).status_code == 401
    refused = post(api, keys.acme, body, BATCH)
    assert (refused.status_code, refused.json()["type"]) == (403, "/problems/missing_scope")


def test_events_posted_over_http_are_rated_in_clickhouse_with_exact_totals(
    api: httpx.Client,
    keys: Keys,
    settings: Settings,
    ch_client: Client,
    ch_database: str,
    kafka_brokers: str,
    topic: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    acme = [event(n, tokens=f"{n}.25") for n in range(300)]
    globex = [event(1000 + n, subject="globex", tokens=n) for n in range(200)]
    for start in range(0, 300, 100):
        response = post(api, keys.acme_ingest, orjson.dumps(acme[start : start + 100]), BATCH)
        assert response.json()["accepted"] == 100
    assert post(api, keys.platform_ingest, orjson.dumps(globex), BATCH).json()["accepted"] == 200
    # Sent again: the flow drops them as duplicates (source + id).
    assert post(api, keys.acme_ingest, orjson.dumps(acme[:50]), BATCH).json()["accepted"] == 50

    code = main(
        [
            *("run", "--input", "kafka", "--topic", topic, "--brokers", kafka_brokers),
            *("--no-tail", "--dsn", settings.clickhouse.dsn.get_secret_value()),
            *("--database", ch_database, "--no-progress", "--json"),
            *(
                "--meters",
                str(settings.catalogs.meters),
                "--pricing",
                str(settings.catalogs.pricing),
            ),
        ],
        clock=FixedClock(NOW_MS),
    )

    run = json.loads(capsys.readouterr().out)["run"]
    assert code == 0
    assert (run["consumed"], run["accepted"], run["duplicates"]) == (550, 500, 50)
    acme_tokens = sum(Decimal(f"{n}.25") for n in range(300))
    globex_tokens = Decimal(sum(range(200)))
    totals = {
        (t.tenant, t.meter): (t.quantity, t.amount) for t in usage_totals(ch_client, ch_database)
    }
    assert totals[("acme", "tokens")][0] == acme_tokens
    assert totals[("globex", "tokens")][0] == globex_tokens
    # 0.001 USD per token, exact.
    assert totals[("acme", "tokens")][1] == acme_tokens * Decimal("0.001")
    usage = api.get(
        "/v1/usage",
        params={"from": "2026-11-15T00:00:00Z", "to": "2026-11-16T00:00:00Z", "window_size": "day"},
        headers=bearer(keys.acme),
    ).json()
    [total] = usage["totals"]
    assert (total["meter"], total["currency"]) == ("tokens", "USD")
    assert (Decimal(total["quantity"]), Decimal(total["amount"])) == totals[("acme", "tokens")]
