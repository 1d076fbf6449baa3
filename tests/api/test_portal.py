"""The customer usage page: tokens, its JSON, and the page itself in headless chromium.

On real chDB and Redis, at a fixed injected clock (mid-November 2026).
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import redis
import uvicorn
from clickhouse_connect.driver.client import Client
from selenium import webdriver
from selenium.webdriver.support.ui import WebDriverWait
from starlette.applications import Starlette

from api.app import build_app
from api.context import ApiContext
from api.keys import KeyStore, Scope, create_key
from api.portal_tokens import issue, verify
from cli.main import main
from config.clock import FixedClock
from config.meter_catalog import load_meter_catalog
from config.pricing_catalog import load_pricing_catalog
from operators.model import RatedWindow, WindowKind
from reports.usage import UsageReports, build_estimate, estimate_json
from sinks.clickhouse import ClickHouseWriter
from sinks.local_services import free_port
from sinks.redis_keys import live_index_key, live_usage_key
from tests.dataflows.conftest import METERS_YAML

OCT_2026_MS = 1_790_812_800_000
NOV_2026_MS = 1_793_491_200_000
DEC_2026_MS = 1_796_083_200_000
NOW_MS = NOV_2026_MS + (DEC_2026_MS - NOV_2026_MS) // 2
DAY_MS = 86_400_000
SECRET = b"portal-signing-secret-for-the-tests-0123456789"
ARTIFACTS = Path(__file__).parents[2] / "test-artifacts"

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
        quotas:
          tokens: { soft_limit: "20000", hard_limit: "30000", thresholds: [80] }
subscriptions:
  - { tenant: acme, plan: basic }
  - { tenant: globex, plan: basic }
"""


def test_tokens_name_their_tenant_until_they_expire() -> None:
    token = issue(SECRET, "acme", NOW_MS + 60_000)
    assert verify(SECRET, token, NOW_MS) == "acme"
    assert verify(SECRET, token, NOW_MS + 60_000) is None  # expired
    assert verify(b"another-secret-another-secret-another", token, NOW_MS) is None
    # Another tenant or a later expiry written into the token breaks its signature.
    forged = token.replace(token.split(".")[0], issue(SECRET, "globex", 1).split(".")[0])
    assert verify(SECRET, forged, NOW_MS) is None
    later = token.replace(f".{NOW_MS + 60_000}.", f".{NOW_MS + 120_000}.")
    assert verify(SECRET, later, NOW_MS) is None
    for junk in ("", "mwp_", "mwp_a.b.c", "mwp_YWNtZQ.1.%%%", "mwx_abc"):
        assert verify(SECRET, junk, NOW_MS) is None
    # Tokens are for a page view: one valid for more than a day is refused.
    assert verify(SECRET, issue(SECRET, "acme", NOW_MS + 2 * DAY_MS), NOW_MS) is None


def test_portal_token_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    secret_file = tmp_path / "portal-secret"
    secret_file.write_text(SECRET.decode() + "\n")
    command = ["api", "portal-token", "--tenant", "acme", "--portal-secret-file", str(secret_file)]
    assert main([*command, "--ttl", "15m"], clock=FixedClock(NOW_MS)) == 0
    token = capsys.readouterr().out.strip()
    assert verify(SECRET, token, NOW_MS + 14 * 60_000) == "acme"
    assert verify(SECRET, token, NOW_MS + 15 * 60_000) is None
    assert main([*command, "--ttl", "2d"]) == 2
    assert "--ttl" in capsys.readouterr().err
    secret_file.write_text("short")
    assert main(command) == 2
    err = capsys.readouterr().err
    assert "at least 32 bytes" in err and "short" not in err.replace("too short", "")


def _window(tenant: str, start_ms: int, quantity: str, amount: str) -> RatedWindow:
    return RatedWindow(
        tenant=tenant,
        meter="tokens",
        groups=(),
        window_start_ms=start_ms,
        window_end_ms=start_ms + 60_000,
        quantity=Decimal(quantity),
        previous_quantity=Decimal(0),
        amount=Decimal(amount),
        previous_amount=Decimal(0),
        currency="USD",
        plan_id="basic",
        price_version="v1",
        revision=1,
        kind=WindowKind.WINDOW,
        emitted_at_ms=start_ms + 120_000,
        period_start_ms=start_ms - start_ms % DAY_MS,
        period_quantity=Decimal(quantity),
        period_amount=Decimal(amount),
    )


@pytest.fixture
def keys_file(tmp_path: Path) -> Path:
    return tmp_path / "api-keys.yaml"


@pytest.fixture
def reports(
    ch_client: Client, ch_database: str, redis_url: str, tmp_path: Path
) -> Iterator[UsageReports]:
    """acme and globex in October and November 2026; acme's live counter ahead of its windows."""
    ClickHouseWriter(ch_client, ch_database).write_windows(
        [
            _window("acme", OCT_2026_MS + DAY_MS, "3000", "3"),
            _window("acme", NOV_2026_MS + 2 * DAY_MS, "4000", "4"),
            _window("acme", NOV_2026_MS + 9 * DAY_MS, "6000", "6"),
            _window("globex", NOV_2026_MS + 3 * DAY_MS, "77000", "77"),
        ]
    )
    prefix = f"portal-{uuid.uuid4().hex[:8]}"
    live = redis.Redis.from_url(redis_url)
    live.hset(
        live_usage_key(prefix, "acme", "tokens", NOV_2026_MS),
        mapping={
            "quantity": "10500",
            "amount": "10.5",
            "currency": "USD",
            "period_start_ms": NOV_2026_MS,
            "period_end_ms": DEC_2026_MS,
            "updated_ms": NOW_MS,
        },
    )
    live.sadd(live_index_key(prefix, "acme"), f"tokens:{NOV_2026_MS}")
    (tmp_path / "meters.yaml").write_text(METERS_YAML)
    (tmp_path / "pricing.yaml").write_text(PRICING_YAML)
    meters = load_meter_catalog(tmp_path / "meters.yaml")
    yield UsageReports(
        pricing=load_pricing_catalog(tmp_path / "pricing.yaml", meters),
        aggregations={meter.slug: meter.aggregation for meter in meters.meters},
        clickhouse=ch_client,
        database=ch_database,
        redis=live,
        key_prefix=prefix,
    )
    live.close()


def _app(reports: UsageReports, keys_file: Path) -> Starlette:
    """The API application, as `meterwax api serve` builds it, with the page mounted."""
    _key(keys_file, "nobody-yet")
    context = ApiContext(
        reports=reports,
        keys=KeyStore(keys_file),
        clock=FixedClock(NOW_MS),
        flow_window_ms=60_000,
        portal_secret=SECRET,
    )
    return build_app(context)


def _key(keys_file: Path, tenant: str, *scopes: Scope) -> str:
    return create_key(keys_file, tenant, scopes or (Scope.READ,), "2026-11-01T00:00:00Z")[1]


def _get(url: str, authorization: str | None = None) -> tuple[int, dict[str, str], str]:
    """(status, headers, body) of one GET; error statuses included."""
    request = urllib.request.Request(url)
    if authorization is not None:
        request.add_header("Authorization", authorization)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, dict(error.headers), error.read().decode()


@pytest.mark.integration
def test_the_data_is_the_api_s_and_only_the_token_s_tenant(
    served: str, reports: UsageReports, keys_file: Path
) -> None:
    acme = issue(SECRET, "acme", NOW_MS + 60_000)
    status, headers, text = _get(f"{served}/portal/data", f"Bearer {acme}")
    assert status == 200
    assert headers["cache-control"] == "no-store"
    body = json.loads(text)
    assert body["usage"] == estimate_json(build_estimate(reports, "acme", None, NOW_MS))
    assert body["usage"]["meters"][0]["final"] == "10"
    assert body["usage"]["meters"][0]["provisional"] == "0.5"
    assert body["limits"]["tokens"]["hard_limit"] == "30000"
    assert body["daily_spend"] == [
        {"day": "2026-11-03T00:00:00Z", "cumulative": "4"},
        {"day": "2026-11-10T00:00:00Z", "cumulative": "10"},
    ]
    assert [(i["period"]["start"], i["total"]) for i in body["invoices"]] == [
        ("2026-10-01T00:00:00Z", "8.00"),
        ("2026-09-01T00:00:00Z", "5.00"),
        ("2026-08-01T00:00:00Z", "5.00"),
    ]
    assert "globex" not in text and "77" not in text
    # A read key works too; the tenant is the key's.
    key = _key(keys_file, "globex")
    globex = json.loads(_get(f"{served}/portal/data", f"Bearer {key}")[2])
    assert globex["usage"]["tenant"] == "globex"
    # A key that may only send events does not open the page.
    ingest_only = _key(keys_file, "globex", Scope.INGEST)
    assert _get(f"{served}/portal/data", f"Bearer {ingest_only}")[0] == 401

    for authorization in (None, "Bearer ", f"Bearer {acme[:-2]}", "Basic YWNtZTpwYXNz"):
        status, headers, text = _get(f"{served}/portal/data", authorization)
        assert status == 401 and "acme" not in text
        assert headers["www-authenticate"] == 'Bearer realm="meterwax"'
    expired = issue(SECRET, "acme", NOW_MS)
    assert json.loads(_get(f"{served}/portal/data", f"Bearer {expired}")[2]) == {
        "error": "invalid_token",
        "message": "the token is not valid or has expired",
    }
    status, headers, _ = _get(f"{served}/portal")
    assert status == 200 and "frame-ancestors 'self'" in headers["content-security-policy"]


@pytest.fixture
def served(reports: UsageReports, keys_file: Path) -> Iterator[str]:
    """The page on a free port of 127.0.0.1 (uvicorn in a thread)."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(_app(reports, keys_file), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def browser() -> Iterator[Any]:
    """Headless Debian chromium driven by Selenium (skipped where chromium is missing)."""
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or driver is None:
        missing = "chromium and chromium-driver are not installed (scripts/test.sh installs them)"
        if os.environ.get("CI"):
            pytest.fail(missing)
        pytest.skip(missing)
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1100,1250"):
        options.add_argument(flag)
    service = webdriver.ChromeService(executable_path=driver)
    session = webdriver.Chrome(options=options, service=service)
    yield session
    session.quit()


def _wait(browser: Any, element_id: str) -> Any:
    def shown(driver: Any) -> Any:
        element = driver.find_element("id", element_id)
        return element if element.is_displayed() else False

    return WebDriverWait(browser, 20).until(shown)


@pytest.mark.integration
def test_the_page_in_chromium(served: str, browser: Any, reports: UsageReports) -> None:
    api = estimate_json(build_estimate(reports, "acme", None, NOW_MS))
    browser.get(f"{served}/portal#token={issue(SECRET, 'acme', NOW_MS + 60_000)}")
    _wait(browser, "content")
    # The numbers on the page are the API's, exactly.
    assert browser.find_element("id", "total").text == f"{api['total']} USD"
    assert browser.find_element("id", "projection").text == f"{api['projection']} USD"
    for meter in api["meters"]:
        for field in ("final", "provisional", "total", "projection"):
            cell = browser.find_element(
                "css selector", f'td[data-meter="{meter["meter"]}"][data-field="{field}"]'
            )
            assert cell.text == meter[field]
    limits = browser.find_element("css selector", 'td[data-field="limits"]').text
    assert limits == "soft 20000; hard 30000; alerts at 80%"
    assert browser.find_element("css selector", "#chart svg[role=img]").get_attribute("aria-label")
    # The token left the address bar; another tenant's data is nowhere on the page.
    assert "token=" not in browser.current_url
    text = browser.find_element("tag name", "body").text
    assert "globex" not in text and "77" not in text
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "portal.png"))
    assert (ARTIFACTS / "portal.png").stat().st_size > 10_000

    browser.get(f"{served}/portal#token={issue(SECRET, 'acme', NOW_MS)}")  # expired
    error = _wait(browser, "error")
    assert error.get_attribute("role") == "alert"
    assert "not valid or has expired" in error.text
    assert not browser.find_element("id", "content").is_displayed()
    # The form asks for a token, labelled, and works from the keyboard.
    field = browser.find_element("css selector", "label[for=token]")
    assert field.text == "Access token"
    box = browser.find_element("id", "token")
    box.send_keys(issue(SECRET, "acme", NOW_MS + 60_000))
    box.submit()
    _wait(browser, "content")
    assert browser.find_element("id", "tenant").text == "acme"
