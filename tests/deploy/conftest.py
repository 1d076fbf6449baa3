"""Fixtures for the offline checks of deploy/: parsed files and the tools that validate them.

Nothing here starts a container or talks to a cluster: the files are parsed,
cross-checked against each other and against meterwax's own settings and
metric names, and validated by the real tools where they run offline
(promtool; ``kubectl kustomize`` when kubectl is installed).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from config.settings import Settings, load_settings

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
RUNBOOKS = REPO / "docs" / "runbooks"
RUNBOOK_URL = "https://github.com/meterwax/meterwax/blob/main/docs/runbooks/"
METRIC_TOKEN = re.compile(r"\bmeterwax_[a-z_]+")


def read_yaml(path: Path) -> Any:
    """One YAML document."""
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def read_yaml_all(path: Path) -> list[Any]:
    """Every document of a YAML file (empty ones dropped)."""
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def metric_tokens(text: str) -> set[str]:
    """Every ``meterwax_*`` name in a PromQL expression or a page."""
    return set(METRIC_TOKEN.findall(text))


def promtool(*args: str, cwd: Path = DEPLOY / "prometheus") -> subprocess.CompletedProcess[str]:
    """Run promtool; the suite installs it (Debian package ``prometheus``), so it must exist."""
    binary = shutil.which("promtool")
    assert binary, (
        "promtool not found: install the Debian package `prometheus` "
        "(scripts/test.sh does it); these checks must not be skipped"
    )
    return subprocess.run(
        [binary, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


def load_deploy_settings(path: Path) -> Settings:
    """Load a settings file of deploy/ as ``meterwax run --config`` would.

    The ``metrics`` section is new: if this checkout's Settings has no such
    section yet, it is checked on its own and left out of the rest.
    """
    data = read_yaml(path)
    if "metrics" not in Settings.model_fields:
        metrics = data.pop("metrics", {})
        assert set(metrics) <= {"port", "host"}, metrics
        assert isinstance(metrics.get("port"), int)
        with tempfile.TemporaryDirectory() as folder:
            stripped = Path(folder) / path.name
            stripped.write_text(yaml.safe_dump(data), encoding="utf-8")
            return load_settings(stripped)
    return load_settings(path)


def metrics_port(settings: Settings, path: Path) -> int:
    """``metrics.port`` of a settings file (read from the file while Settings lacks it)."""
    if "metrics" in Settings.model_fields:
        port = settings.metrics.port
    else:
        port = read_yaml(path)["metrics"]["port"]
    assert isinstance(port, int)
    return port


@pytest.fixture(autouse=True)
def _no_meterwax_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings files are checked as written, whatever METERWAX_* the shell exports."""
    for name in list(os.environ):
        if name.startswith("METERWAX_"):
            monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def alert_rules() -> list[dict[str, Any]]:
    """Every alerting rule of deploy/prometheus/alerts.yml."""
    groups = read_yaml(DEPLOY / "prometheus" / "alerts.yml")["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


@pytest.fixture(scope="session")
def alert_tests() -> list[dict[str, Any]]:
    """Every ``alert_rule_test`` case of deploy/prometheus/alerts_test.yml."""
    suite = read_yaml(DEPLOY / "prometheus" / "alerts_test.yml")
    return [case for test in suite["tests"] for case in test["alert_rule_test"]]


@pytest.fixture(scope="session")
def dashboards() -> dict[str, dict[str, Any]]:
    """The committed dashboards by file name."""
    folder = DEPLOY / "grafana" / "dashboards"
    return {
        path.name: json.loads(path.read_text(encoding="utf-8"))
        for path in sorted(folder.glob("*.json"))
    }


@pytest.fixture(scope="session")
def compose() -> dict[str, Any]:
    """deploy/docker-compose.yml."""
    return read_yaml(DEPLOY / "docker-compose.yml")


@pytest.fixture(scope="session")
def kustomization() -> dict[str, Any]:
    """deploy/kubernetes/kustomization.yaml."""
    return read_yaml(DEPLOY / "kubernetes" / "kustomization.yaml")


@pytest.fixture(scope="session")
def k8s_objects(kustomization: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """The objects the kustomization lists, by (kind, name)."""
    objects = {}
    for resource in kustomization["resources"]:
        for doc in read_yaml_all(DEPLOY / "kubernetes" / resource):
            objects[(doc["kind"], doc["metadata"]["name"])] = doc
    return objects
