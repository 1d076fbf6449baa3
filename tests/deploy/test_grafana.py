"""Grafana dashboards and provisioning: generated, consistent, on real metric names."""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

from dataflows.metrics import metric_names
from tests.deploy.conftest import DEPLOY, metric_tokens, read_yaml

GRAFANA = DEPLOY / "grafana"
DATASOURCE_UID = "${datasource}"


def _builder() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "build_dashboards", GRAFANA / "build_dashboards.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in board["panels"]:
        yield panel
        yield from panel.get("panels", [])  # collapsed rows hold their panels


def _queries(board: dict[str, Any]) -> Iterator[str]:
    for panel in _panels(board):
        for target in panel.get("targets", []):
            yield target["expr"]


def _whitespace(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def test_committed_dashboards_are_what_the_builder_makes() -> None:
    built = _builder().build()
    committed = {path.name for path in (GRAFANA / "dashboards").glob("*.json")}
    assert committed == set(built), "run: python deploy/grafana/build_dashboards.py"
    for name, text in built.items():
        on_disk = (GRAFANA / "dashboards" / name).read_text(encoding="utf-8")
        assert on_disk == text, f"{name} is stale: run python deploy/grafana/build_dashboards.py"


def test_the_three_dashboards_exist_with_unique_uids(dashboards: dict[str, Any]) -> None:
    assert set(dashboards) == {
        "meterwax-executive.json",
        "meterwax-oncall.json",
        "meterwax-debug.json",
    }
    uids = [board["uid"] for board in dashboards.values()]
    assert len(set(uids)) == len(uids)
    for uid in uids:
        # Grafana's limit; the uid is what links and bookmarks use.
        assert re.fullmatch(r"[a-zA-Z0-9_-]{1,40}", uid), uid
    titles = [board["title"] for board in dashboards.values()]
    assert len(set(titles)) == len(titles)


def test_dashboards_pick_prometheus_through_the_datasource_variable(
    dashboards: dict[str, Any],
) -> None:
    for name, board in dashboards.items():
        assert 38 <= board["schemaVersion"] <= 40, name
        variables = {var["name"]: var for var in board["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource", name
        assert variables["datasource"]["query"] == "prometheus", name
        for panel in _panels(board):
            if panel["type"] == "row":
                continue
            where = f"{name}: panel {panel['title']!r}"
            assert panel["datasource"] == {"type": "prometheus", "uid": DATASOURCE_UID}, where
            assert panel["targets"], f"{where} has no query"
            for target in panel["targets"]:
                assert target["datasource"]["uid"] == DATASOURCE_UID, where
                assert target["expr"].strip(), where


def test_panel_ids_are_unique_and_panels_fit_the_grid(dashboards: dict[str, Any]) -> None:
    for name, board in dashboards.items():
        ids = [panel["id"] for panel in _panels(board)]
        assert len(set(ids)) == len(ids), name
        for panel in _panels(board):
            grid = panel["gridPos"]
            assert grid["x"] + grid["w"] <= 24, (name, panel["title"])


def test_dashboards_use_only_metrics_meterwax_exports(dashboards: dict[str, Any]) -> None:
    exported = metric_names()
    for name, board in dashboards.items():
        for expr in _queries(board):
            unknown = metric_tokens(expr) - exported
            assert not unknown, f"{name}: {expr} uses {unknown}"


def test_no_query_splits_by_tenant(dashboards: dict[str, Any]) -> None:
    # Metrics never carry a tenant label (unbounded cardinality): per-tenant views
    # belong to ClickHouse.
    for board in dashboards.values():
        for expr in _queries(board):
            assert "tenant" not in expr and "subject" not in expr, expr


@pytest.mark.parametrize(
    ("board", "wanted"),
    [
        (
            "meterwax-executive.json",
            [
                "meterwax_events_accepted_total",
                "meterwax_rated_amount_total",
                "meterwax_events_rejected_total",
                "meterwax_quota_events_total",
                "meterwax_duplicates_total",
            ],
        ),
        (
            "meterwax-oncall.json",
            [
                "up{",
                "meterwax_watermark_lag_seconds",
                "meterwax_consumer_lag_messages",
                "meterwax_sink_failures_total",
                "meterwax_last_sink_flush_timestamp_seconds",
                "histogram_quantile(0.5, sum by (le, stage) (rate(meterwax_event_latency",
                "histogram_quantile(0.99, sum by (le, stage) (rate(meterwax_event_latency",
            ],
        ),
        (
            "meterwax-debug.json",
            [
                "meterwax_meter_batch_seconds_bucket",
                "sum by (le, operation) (rate(meterwax_redis_seconds_bucket",
                "sum by (le, sink) (rate(meterwax_sink_batch_seconds_bucket",
                "sum by (reason)",
                "sum by (layer)",
                "sum by (kind) (rate(meterwax_windows_emitted_total",
                "process_resident_memory_bytes",
                "process_cpu_seconds_total",
            ],
        ),
    ],
)
def test_each_dashboard_shows_what_its_audience_needs(
    dashboards: dict[str, Any], board: str, wanted: list[str]
) -> None:
    queries = "\n".join(_queries(dashboards[board]))
    for fragment in wanted:
        assert fragment in queries, f"{board} lacks {fragment}"


def test_net_amount_counts_a_currency_without_credits(dashboards: dict[str, Any]) -> None:
    exprs = [e for e in _queries(dashboards["meterwax-executive.json"]) if "sign=" in e]
    assert exprs
    for expr in exprs:
        assert 'sign="charge"' in expr and 'sign="credit"' in expr
        assert " or " in expr, "a missing credit series must count as 0, not drop the currency"


def test_oncall_slis_are_the_alert_expressions_and_thresholds(
    dashboards: dict[str, Any], alert_rules: list[dict[str, Any]]
) -> None:
    alerts = {rule["alert"]: _whitespace(rule["expr"]) for rule in alert_rules}
    slis = _builder().SLIS
    assert slis, "the on-call dashboard must chart the alerting SLIs"
    panels = {panel["title"]: panel for panel in _panels(dashboards["meterwax-oncall.json"])}
    for alert, (title, expr, threshold, _unit) in slis.items():
        assert f"{_whitespace(expr)} > {threshold}" in alerts[alert], alert
        panel = panels[title]
        assert panel["targets"][0]["expr"] == expr
        steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
        assert steps[-1]["value"] == threshold, title
        assert panel["fieldConfig"]["defaults"]["custom"]["thresholdsStyle"]["mode"] == "line"


def test_provisioning_points_at_the_dashboards_compose_mounts(compose: dict[str, Any]) -> None:
    providers = read_yaml(GRAFANA / "provisioning" / "dashboards" / "meterwax.yml")["providers"]
    grafana = compose["services"]["grafana"]
    mounts = dict(volume.split(":")[:2] for volume in grafana["volumes"])
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    assert [provider["options"]["path"] for provider in providers] == [
        mounts["./grafana/dashboards"]
    ]
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    folder, _, board = home.rpartition("/")
    assert folder == mounts["./grafana/dashboards"]
    assert (GRAFANA / "dashboards" / board).is_file()


def test_provisioned_datasource_is_the_compose_prometheus(compose: dict[str, Any]) -> None:
    sources = read_yaml(GRAFANA / "provisioning" / "datasources" / "prometheus.yml")
    (source,) = sources["datasources"]
    assert source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"
    assert "prometheus" in compose["services"]
    scrape = read_yaml(DEPLOY / "prometheus" / "prometheus.yml")["global"]["scrape_interval"]
    assert source["jsonData"]["timeInterval"] == scrape
