"""The HTTP API as a client sees it: keys, tenant isolation, errors; on real chDB and Redis."""

from __future__ import annotations

import json
import logging
import stat
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import redis
from clickhouse_connect.driver.client import Client

from api.keys import KeyStore, add_key, generate_key, hash_key
from api.server import ApiServer
from cli.estimate_command import UsageReports
from cli.main import main
from config.clock import FixedClock
from config.meter_catalog import load_meter_catalog
from config.pricing_catalog import load_pricing_catalog
from operators.model import RatedWindow, WindowKind
from sinks.clickhouse import ClickHouseWriter
from sinks.redis_keys import live_index_key, live_usage_key
from tests.dataflows.conftest import METERS_YAML

pytestmark = pytest.mark.integration

NOV_2026_MS = 1_793_491_200_000  # 2026-11-01T00:00:00Z
DEC_2026_MS = 1_796_083_200_000  # 2026-12-01T00:00:00Z
NOW_MS = NOV_2026_MS + (DEC_2026_MS - NOV_2026_MS) // 2

PRICING_YAML = """
plans:
  - id: basic
    currency: USD
    versions:
      - version: v1
        effective_from: "2026-01-01T00:00:00Z"
        fixed_fee: "5"
        prices:
          tokens: { model: per_unit, unit_price: "0.001" }
subscriptions:
  - { tenant: acme, plan: basic }
  - { tenant: globex, plan: basic }
"""


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


@pytest.fixture
def catalog_paths(tmp_path: Path) -> tuple[Path, Path]:
    (tmp_path / "meters.yaml").write_text(METERS_YAML)
    (tmp_path / "pricing.yaml").write_text(PRICING_YAML)
    return tmp_path / "meters.yaml", tmp_path / "pricing.yaml"


@pytest.fixture
def keys_file(tmp_path: Path) -> Path:
    return tmp_path / "api-keys.yaml"


@pytest.fixture
def keys(keys_file: Path) -> dict[str, str]:
    """One key each for acme and globex (and a second one for acme)."""
    found = {tenant: add_key(keys_file, tenant) for tenant in ("acme", "globex")}
    add_key(keys_file, "acme")
    return found


@pytest.fixture
def prefix() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def live(redis_url: str, prefix: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    stale = list(client.scan_iter(match=f"{prefix}:*"))
    if stale:
        client.delete(*stale)
    client.close()


@pytest.fixture
def base_url(
    ch_client: Client,
    ch_database: str,
    catalog_paths: tuple[Path, Path],
    keys: dict[str, str],
    keys_file: Path,
    live: redis.Redis,
    prefix: str,
) -> Iterator[str]:
    """The API on a free port, in a thread, over two tenants' usage in November 2026."""
    ClickHouseWriter(ch_client, ch_database).write_windows(
        [window("acme", "1000", "1"), window("globex", "7000", "7")]
    )
    # acme's live counter is ahead of its closed windows.
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
    meters = load_meter_catalog(catalog_paths[0])
    reports = UsageReports(
        pricing=load_pricing_catalog(catalog_paths[1], meters),
        aggregations={meter.slug: meter.aggregation for meter in meters.meters},
        clickhouse=ch_client,
        database=ch_database,
        redis=live,
        key_prefix=prefix,
    )
    server = ApiServer(("127.0.0.1", 0), reports, KeyStore(keys_file), clock=FixedClock(NOW_MS))
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


def call(
    url: str, key: str | None = None, *, method: str = "GET", authorization: str | None = None
) -> tuple[int, dict[str, Any], dict[str, str]]:
    """(status, JSON body, headers) of one request; error statuses included."""
    request = urllib.request.Request(url, method=method)
    if key is not None:
        request.add_header("Authorization", f"Bearer {key}")
    if authorization is not None:
        request.add_header("Authorization", authorization)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read()), dict(response.headers)
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.loads(error.read()), dict(error.headers)


def test_health_needs_no_key(base_url: str) -> None:
    assert call(f"{base_url}/healthz")[:2] == (200, {"status": "ok"})


@pytest.mark.parametrize("path", ["/v1/usage", "/v1/invoice?period=2026-11"])
def test_no_key_or_a_wrong_key_is_401(base_url: str, path: str) -> None:
    status, body, headers = call(base_url + path)
    assert (status, body["error"]) == (401, "missing_key")
    assert headers["WWW-Authenticate"] == 'Bearer realm="meterwax"'

    assert call(base_url + path, generate_key())[:2] == (
        401,
        {"error": "invalid_key", "message": "the key is not valid"},
    )
    status, body, _ = call(base_url + path, authorization="Basic YWNtZTpwYXNz")
    assert (status, body["error"]) == (401, "bad_authorization")
    assert call(base_url + path, authorization="Bearer ")[0] == 401


def test_a_key_reads_its_own_tenant(base_url: str, keys: dict[str, str]) -> None:
    status, body, headers = call(f"{base_url}/v1/usage?period=2026-11", keys["acme"])

    assert status == 200
    assert headers["Content-Type"] == "application/json; charset=utf-8"
    assert headers["Cache-Control"] == "no-store"
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
    # The default period is the one holding "now"; naming yourself is allowed.
    assert call(f"{base_url}/v1/usage", keys["acme"])[1] == body
    assert call(f"{base_url}/v1/usage?tenant=acme", keys["acme"])[1] == body


def test_a_key_never_reads_another_tenant(base_url: str, keys: dict[str, str]) -> None:
    for path in ("/v1/usage?tenant=globex", "/v1/invoice?period=2026-11&tenant=globex"):
        status, body, _ = call(base_url + path, keys["acme"])
        assert (status, body["error"]) == (403, "forbidden")
        assert "7" not in json.dumps(body)

    # Without a tenant parameter each key gets its own tenant, and only that.
    acme = call(f"{base_url}/v1/usage", keys["acme"])[1]
    globex = call(f"{base_url}/v1/usage", keys["globex"])[1]
    assert (acme["tenant"], acme["total"]) == ("acme", "1.2")
    assert (globex["tenant"], globex["total"]) == ("globex", "7")


def test_invoice_is_the_dry_run_of_the_keys_tenant(base_url: str, keys: dict[str, str]) -> None:
    status, body, _ = call(f"{base_url}/v1/invoice?period=2026-11", keys["globex"])

    assert status == 200
    assert body["tenant"] == "globex"
    assert [(line["kind"], line["amount_rounded"]) for line in body["lines"]] == [
        ("usage", "7.00"),
        ("fixed_fee", "5.00"),
    ]
    assert (body["total"], body["open"], body["dry_run"]) == ("12.00", True, True)


@pytest.mark.parametrize(
    ("path", "error"),
    [
        ("/v1/invoice", "missing_period"),
        ("/v1/invoice?period=2026-13", "bad_period"),
        ("/v1/usage?period=yesterday", "bad_period"),
        ("/v1/usage?period=2026-11&period=2026-10", "bad_query"),
        ("/v1/usage?customer=globex", "bad_query"),
    ],
)
def test_bad_requests_are_400(base_url: str, keys: dict[str, str], path: str, error: str) -> None:
    status, body, _ = call(base_url + path, keys["acme"])

    assert (status, body["error"]) == (400, error)
    assert body["message"]


def test_unknown_path_is_404_and_other_methods_405(base_url: str, keys: dict[str, str]) -> None:
    assert call(f"{base_url}/v1/usages", keys["acme"])[:2] == (
        404,
        {"error": "not_found", "message": "no endpoint /v1/usages"},
    )
    assert call(f"{base_url}/", keys["acme"])[0] == 404
    for method in ("POST", "PUT", "DELETE"):
        status, body, headers = call(f"{base_url}/v1/usage", keys["acme"], method=method)
        assert (status, body["error"], headers["Allow"]) == (405, "method_not_allowed", "GET")
    assert call(f"{base_url}/v1/nothing", keys["acme"], method="POST")[0] == 404


def test_a_key_of_a_tenant_without_a_plan_is_404(base_url: str, keys_file: Path) -> None:
    ghost = add_key(keys_file, "ghost")

    status, body, _ = call(f"{base_url}/v1/usage", ghost)

    # Picked up without a restart; the catalog does not know the tenant.
    assert (status, body["error"]) == (404, "unknown_tenant")


def test_keys_file_holds_hashes_only(keys_file: Path, keys: dict[str, str]) -> None:
    text = keys_file.read_text()

    for key in keys.values():
        assert key.startswith("mwx_")
        # 32 random bytes in URL-safe base64, no padding.
        assert len(key) == 4 + 43
        assert key not in text
        assert key[4:] not in text
        assert hash_key(key) in text
    assert stat.S_IMODE(keys_file.stat().st_mode) == 0o600
    assert len(set(keys.values())) == 2
    store = KeyStore(keys_file)
    assert [store.tenant_for(keys["acme"]), store.tenant_for(keys["globex"])] == ["acme", "globex"]
    assert store.tenant_for(keys["acme"] + "x") is None


def test_requests_are_logged_without_keys_or_queries(
    base_url: str, keys: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="api"):
        call(f"{base_url}/v1/usage?period=2026-11", keys["acme"])
        call(f"{base_url}/v1/usage", keys["acme"] + "x")

    assert "GET /v1/usage 200" in caplog.text
    assert "GET /v1/usage 401" in caplog.text
    assert keys["acme"][4:] not in caplog.text
    assert "period=" not in caplog.text


def test_create_key_prints_it_once_and_stores_its_hash(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, catalog_paths: tuple[Path, Path]
) -> None:
    keys_file = tmp_path / "keys.json"
    pricing = str(catalog_paths[1])

    code = main(
        [
            "api",
            "create-key",
            "--tenant",
            "acme",
            "--keys-file",
            str(keys_file),
            "--pricing",
            pricing,
        ]
    )

    out = capsys.readouterr().out
    assert code == 0
    key = out.splitlines()[-1]
    assert key.startswith("mwx_")
    assert json.loads(keys_file.read_text()) == {"acme": [hash_key(key)]}
    assert KeyStore(keys_file).tenant_for(key) == "acme"

    code = main(
        [
            "api",
            "create-key",
            "--tenant",
            "nobody",
            "--keys-file",
            str(keys_file),
            "--pricing",
            pricing,
        ]
    )
    captured = capsys.readouterr()
    assert (code, captured.out) == (2, "")
    assert "'nobody' has no subscription" in captured.err
    assert json.loads(keys_file.read_text()) == {"acme": [hash_key(key)]}


def test_a_bad_keys_file_is_a_clear_configuration_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    keys_file = tmp_path / "keys.yaml"
    keys_file.write_text(f"acme:\n  - {generate_key()}\n")

    code = main(["api", "serve", "--port", "0", "--keys-file", str(keys_file)])

    err = capsys.readouterr().err
    assert code == 2
    assert f"{keys_file}: acme[0]: not a SHA-256 hex digest" in err
    assert "mwx_" not in err
