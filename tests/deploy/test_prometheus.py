"""Alert rules and Prometheus configuration: valid, tested, documented, on real metric names."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from dataflows.metrics import metric_names
from tests.deploy.conftest import (
    DEPLOY,
    RUNBOOK_URL,
    RUNBOOKS,
    metric_tokens,
    promtool,
    read_yaml,
)

PROMETHEUS = DEPLOY / "prometheus"


def test_rules_pass_promtool_check() -> None:
    result = promtool("check", "rules", "alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_rules_pass_their_unit_tests() -> None:
    result = promtool("test", "rules", "alerts_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_prometheus_config_is_valid_and_loads_the_rules() -> None:
    result = promtool("check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "alerts.yml" in result.stdout


def test_kubernetes_prometheus_config_is_valid(tmp_path: Path) -> None:
    result = promtool("check", "config", "prometheus-kubernetes.yml")
    if "kubernetes_sd_configs not found" in result.stdout + result.stderr:
        # Debian builds promtool without Kubernetes discovery: check everything else
        # (relabelling, rule files) with the discovery block swapped for a static target.
        config = read_yaml(PROMETHEUS / "prometheus-kubernetes.yml")
        for job in config["scrape_configs"]:
            if job.pop("kubernetes_sd_configs", None) is not None:
                job["static_configs"] = [{"targets": ["meterwax-0:9464"]}]
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
        shutil.copy(PROMETHEUS / "alerts.yml", tmp_path / "alerts.yml")
        result = promtool("check", "config", "prometheus.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("config", ["prometheus.yml", "prometheus-kubernetes.yml"])
def test_scrape_job_is_the_one_the_rules_select(config: str, alert_rules: list[Any]) -> None:
    jobs = {job["job_name"] for job in read_yaml(PROMETHEUS / config)["scrape_configs"]}
    assert "meterwax" in jobs
    for rule in alert_rules:
        for selector in re.findall(r"\{([^}]*)\}", rule["expr"]):
            if "__name__" not in selector:
                assert 'job="meterwax"' in selector, (rule["alert"], selector)


def test_every_alert_is_actionable(alert_rules: list[dict[str, Any]]) -> None:
    names = [rule["alert"] for rule in alert_rules]
    assert len(names) == len(set(names)), "alert names must be unique"
    for rule in alert_rules:
        name = rule["alert"]
        assert rule["labels"]["severity"] in {"page", "ticket"}, name
        assert re.fullmatch(r"\d+[smh]", rule.get("for", "")), f"{name}: needs a for: duration"
        annotations = rule["annotations"]
        assert annotations.get("summary"), name
        assert annotations.get("description"), name
        url = annotations.get("runbook_url", "")
        assert url.startswith(RUNBOOK_URL), f"{name}: runbook_url {url!r}"
        page = url.removeprefix(RUNBOOK_URL).split("#")[0]
        assert (RUNBOOKS / page).is_file(), f"{name}: runbook {page} does not exist"


def test_the_alerts_the_brief_asks_for_exist(alert_rules: list[dict[str, Any]]) -> None:
    assert {rule["alert"] for rule in alert_rules} == {
        "MeterwaxDown",
        "IngestSuccessLow",
        "DuplicateRateHigh",
        "LateEventRateHigh",
        "TooLateEvents",
        "SinkFailures",
        "SinkStalled",
        "WatermarkLagHigh",
        "ConsumerBacklogHigh",
        "ConsumerBacklogGrowing",
        "EndToEndLatencyHigh",
    }


def test_alerts_use_only_metrics_meterwax_exports(alert_rules: list[dict[str, Any]]) -> None:
    exported = metric_names()
    for rule in alert_rules:
        unknown = metric_tokens(rule["expr"]) - exported
        assert not unknown, f"{rule['alert']} uses metrics meterwax does not export: {unknown}"


def test_every_alert_has_a_firing_and_a_silent_unit_test(
    alert_rules: list[dict[str, Any]], alert_tests: list[dict[str, Any]]
) -> None:
    for rule in alert_rules:
        cases = [case for case in alert_tests if case["alertname"] == rule["alert"]]
        assert any(case["exp_alerts"] for case in cases), f"{rule['alert']}: no firing test"
        assert any(not case["exp_alerts"] for case in cases), f"{rule['alert']}: no silent test"
    known = {rule["alert"] for rule in alert_rules}
    assert {case["alertname"] for case in alert_tests} <= known


def test_firing_tests_expect_the_rules_severity(
    alert_rules: list[dict[str, Any]], alert_tests: list[dict[str, Any]]
) -> None:
    severity = {rule["alert"]: rule["labels"]["severity"] for rule in alert_rules}
    for case in alert_tests:
        for alert in case["exp_alerts"]:
            assert alert["exp_labels"]["severity"] == severity[case["alertname"]]


def test_runbook_index_lists_every_alert_with_its_severity_and_page(
    alert_rules: list[dict[str, Any]],
) -> None:
    index = (RUNBOOKS / "README.md").read_text(encoding="utf-8")
    row = r"^\| (\w+) \| (page|ticket) \| \[[\w-]+\]\(([\w-]+\.md)\) \|$"
    rows = {
        alert: (severity, page) for alert, severity, page in re.findall(row, index, re.MULTILINE)
    }
    for rule in alert_rules:
        page = rule["annotations"]["runbook_url"].removeprefix(RUNBOOK_URL)
        assert rows.get(rule["alert"]) == (rule["labels"]["severity"], page), rule["alert"]


def test_every_runbook_page_is_in_the_index() -> None:
    index = (RUNBOOKS / "README.md").read_text(encoding="utf-8")
    for page in RUNBOOKS.glob("*.md"):
        if page.name != "README.md":
            assert f"]({page.name})" in index, page.name


def test_runbooks_name_only_exported_metrics() -> None:
    exported = metric_names()
    for page in RUNBOOKS.glob("*.md"):
        for token in metric_tokens(page.read_text(encoding="utf-8")):
            # Prose may name a histogram by its family name.
            assert token in exported or f"{token}_bucket" in exported, (page.name, token)


def test_alertmanager_routes_every_severity_to_a_defined_receiver(
    alert_rules: list[dict[str, Any]],
) -> None:
    config = read_yaml(DEPLOY / "alertmanager" / "alertmanager.yml")
    receivers = {receiver["name"] for receiver in config["receivers"]}
    route = config["route"]
    assert route["receiver"] in receivers
    routed = {}
    for child in route.get("routes", []):
        assert child["receiver"] in receivers
        for matcher in child["matchers"]:
            if matcher.startswith("severity="):
                routed[matcher.split("=", 1)[1].strip('"')] = child["receiver"]
    assert routed.get("page") == "page"
    # Tickets fall through to the default receiver.
    assert route["receiver"] == "ticket"
    names = {rule["alert"] for rule in alert_rules}
    for rule in config["inhibit_rules"]:
        for matcher in rule["source_matchers"] + rule["target_matchers"]:
            alerts = re.fullmatch(r'alertname=~?"([^"]+)"', matcher)
            assert alerts, matcher
            assert set(alerts.group(1).split("|")) <= names, matcher
