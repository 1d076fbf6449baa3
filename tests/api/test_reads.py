"""The read endpoints as a client sees them: keys, tenant isolation, problems; on real chDB
and Redis, through a real uvicorn server."""

from __future__ import annotations

import logging
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
import redis
from clickhouse_connect.driver.client import Client

from api.keys import Scope, create_key, generate_key
from operators.model import RatedWindow, WindowKind
from reports.usage import UsageReports
from sinks.clickhouse import ClickHouseWriter
from sinks.redis_keys import live_index_key, live_usage_key
from tests.api.conftest import DEC_2026_MS, NOV_2026_MS, NOW_MS, Keys, bearer

pytestmark = pytest.mark.integration

READ_PATHS = ("/v1/usage", "/v1/estimate", "/v1/invoice?period=2026-11")


def window(tenant: str, quantity: str, amount: str) -> RatedWindow:
    return RatedWindow(
        tenant=tenant,
        meter="tokens",
        groups=(),
        window_start_ms=NOV_2026_MS + 3_600_000,
        window_end_ms=NOV_2026_MS + 3_660_000,
        quantity=Decimal(quantity),
        previous_quantity=Decimal(0),
        amount=Decimal(amount),
        previous_amount=Decimal(0),
        currency="USD",
        plan_id="basic",
        price_version="v1",
        revision=1,
        kind=WindowKind.WINDOW,
        emitted_at_ms=NOV_2026_MS + 3_700_000,
        period_start_ms=NOV_2026_MS,
        period_quantity=Decimal(quantity),
        period_amount=Decimal(amount),
    )


@pytest.fixture(autouse=True)
def _usage(ch_client: Client, ch_database: str, live: redis.Redis, prefix: str) -> None:
    """Two tenants' usage in November 2026; acme's live counter is ahead of its windows."""
    ClickHouseWriter(ch_client, ch_database).write_windows(
        [window("acme", "1000", "1"), window("globex", "7000", "7")]
    )
    live.hset(
        live_usage_key(prefix, "acme", "tokens", NOV_2026_MS),
        mapping={
            "quantity": "1200",
            "amount": "1.2",
            "currency": "USD",
            "period_start_ms": NOV_2026_MS,
            "period_end_ms": DEC_2026_MS,
            "updated_ms": NOW_MS,
        },
    )
    live.sadd(live_index_key(prefix, "acme"), f"tokens:{NOV_2026_MS}")


def test_liveness_and_readiness_need_no_key(api: httpx.Client) -> None:
    assert api.get("/healthz").json() == {"status": "ok"}
    ready = api.get("/readyz")
    assert (ready.status_code, ready.json()) == (
        200,
        {"status": "ready", "checks": {"clickhouse": "ok", "redis": "ok", "kafka": "ok"}},
    )


def test_readiness_fails_while_redis_is_down(
    api: httpx.Client, reports: UsageReports, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A Redis client on a port nothing listens on: what a Redis outage looks like.
    down = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=1)
    monkeypatch.setattr(reports, "redis", down)

    ready = api.get("/readyz")

    assert ready.status_code == 503
    assert ready.json()["checks"] == {"clickhouse": "ok", "redis": "unavailable", "kafka": "ok"}
    assert api.get("/healthz").status_code == 200


@pytest.mark.parametrize("path", READ_PATHS)
def test_no_key_or_a_wrong_key_is_401(api: httpx.Client, path: str) -> None:
    response = api.get(path)
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"] == 'Bearer realm="meterwax"'
    assert response.json() == {
        "type": "/problems/missing_key",
        "title": "missing key",
        "status": 401,
        "detail": "send Authorization: Bearer <key>",
        "field": "Authorization",
    }
    assert api.get(path, headers=bearer(generate_key())).json()["type"] == "/problems/invalid_key"
    basic = api.get(path, headers={"Authorization": "Basic YWNtZTpwYXNz"})
    assert basic.json()["type"] == "/problems/bad_authorization"
    assert api.get(path, headers={"Authorization": "Bearer"}).status_code == 401


@pytest.mark.parametrize("path", READ_PATHS)
def test_an_ingest_key_cannot_read(api: httpx.Client, keys: Keys, path: str) -> None:
    for key in (keys.acme_ingest, keys.platform_ingest):
        response = api.get(path, headers=bearer(key))
        assert (response.status_code, response.json()["type"]) == (403, "/problems/missing_scope")


@pytest.mark.parametrize("path", READ_PATHS)
def test_a_key_never_reads_another_tenant(api: httpx.Client, keys: Keys, path: str) -> None:
    joiner = "&" if "?" in path else "?"
    response = api.get(f"{path}{joiner}tenant=globex", headers=bearer(keys.acme))
    assert (response.status_code, response.json()["field"]) == (403, "tenant")
    assert "7000" not in response.text
    # Naming yourself is allowed; without a tenant parameter each key reads its own.
    mine = api.get(f"{path}{joiner}tenant=acme", headers=bearer(keys.acme))
    assert (mine.status_code, mine.json()["tenant"]) == (200, "acme")
    assert api.get(path, headers=bearer(keys.globex)).json()["tenant"] == "globex"
    assert "7000" not in api.get(path, headers=bearer(keys.acme)).text


def test_estimate_of_the_keys_tenant(api: httpx.Client, keys: Keys) -> None:
    response = api.get("/v1/estimate?period=2026-11", headers=bearer(keys.acme))

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert (body["tenant"], body["as_of"], body["elapsed_fraction"]) == (
        "acme",
        "2026-11-16T00:00:00Z",
        "0.500000",
    )
    assert body["meters"] == [
        {
            "meter": "tokens",
            "usage": "1200",
            "final": "1",
            "provisional": "0.2",
            "total": "1.2",
            "projection": "2.4",
            "currency": "USD",
            "live": "current",
            "priced_from": "windows",
        }
    ]
    # The default period is the one holding "now".
    assert api.get("/v1/estimate", headers=bearer(keys.acme)).json() == body


def test_invoice_is_the_dry_run_of_the_keys_tenant(api: httpx.Client, keys: Keys) -> None:
    body = api.get("/v1/invoice?period=2026-11", headers=bearer(keys.globex)).json()

    assert body["tenant"] == "globex"
    assert [(line["kind"], line["amount_rounded"]) for line in body["lines"]] == [
        ("usage", "7.00"),
        ("fixed_fee", "5.00"),
    ]
    assert (body["total"], body["open"], body["dry_run"]) == ("12.00", True, True)


@pytest.mark.parametrize(
    ("path", "code", "field"),
    [
        ("/v1/invoice", "missing_period", "period"),
        ("/v1/invoice?period=2026-13", "bad_period", "period"),
        ("/v1/estimate?period=yesterday", "bad_period", "period"),
        ("/v1/estimate?period=2026-11&period=2026-10", "bad_query", "period"),
        ("/v1/estimate?customer=globex", "bad_query", "customer"),
        ("/v1/usage?window_size=week", "bad_window_size", "window_size"),
        ("/v1/usage?window_time_zone=Mars/Olympus", "bad_query", "window_time_zone"),
        ("/v1/usage?from=yesterday", "bad_time", "from"),
        ("/v1/usage?from=2026-11-02T00:00:00Z&to=2026-11-01T00:00:00Z", "bad_query", "to"),
        ("/v1/usage?filter=model", "bad_filter", "filter"),
        ("/v1/usage?window_size=minute&from=2026-01-01T00:00:00Z", "bad_query", "window_size"),
    ],
)
def test_bad_requests_are_400_naming_the_field(
    api: httpx.Client, keys: Keys, path: str, code: str, field: str
) -> None:
    response = api.get(path, headers=bearer(keys.acme))

    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert (body["type"], body["status"], body["field"]) == (f"/problems/{code}", 400, field)
    assert body["detail"]


def test_unknown_path_is_404_and_other_methods_405(api: httpx.Client, keys: Keys) -> None:
    missing = api.get("/v1/usages", headers=bearer(keys.acme))
    assert (missing.status_code, missing.json()["detail"]) == (404, "no endpoint /v1/usages")
    assert missing.json()["field"] == "path"
    assert missing.headers["content-type"] == "application/problem+json"
    for method in ("POST", "PUT", "DELETE"):
        response = api.request(method, "/v1/estimate", headers=bearer(keys.acme))
        assert (response.status_code, response.json()["type"], response.json()["field"]) == (
            405,
            "/problems/method_not_allowed",
            "method",
        )
        assert "GET" in response.headers["allow"]


def test_a_read_key_of_a_tenant_without_a_plan_is_404(api: httpx.Client, keys_file: Path) -> None:
    ghost = create_key(keys_file, "ghost", [Scope.READ], "2026-11-16T00:00:00Z")[1]

    response = api.get("/v1/estimate", headers=bearer(ghost))

    # Picked up without a restart; the catalog does not know the tenant.
    assert (response.status_code, response.json()["type"]) == (404, "/problems/unknown_tenant")
    assert response.json()["field"] == "Authorization"


def test_requests_are_logged_without_keys_or_queries(
    api: httpx.Client, keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="api"):
        api.get("/v1/estimate?period=2026-11", headers=bearer(keys.acme))
        api.get("/v1/estimate", headers=bearer(keys.acme + "x"))

    assert "GET /v1/estimate 200" in caplog.text
    assert "GET /v1/estimate 401" in caplog.text
    assert keys.acme[4:] not in caplog.text
    assert "period=" not in caplog.text


def test_the_openapi_document_is_served(api: httpx.Client) -> None:
    document = api.get("/openapi.json").json()

    assert document["openapi"].startswith("3.")
    assert set(document["paths"]) >= {
        "/v1/events",
        "/v1/usage",
        "/v1/estimate",
        "/v1/invoice",
        "/healthz",
        "/readyz",
    }
