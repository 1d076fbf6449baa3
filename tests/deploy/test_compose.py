"""docker-compose stack, image and settings: every name used is defined, every path exists."""

from __future__ import annotations

import importlib.util
import re
import stat
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import pytest

from config.settings import Settings
from tests.deploy.conftest import DEPLOY, REPO, load_deploy_settings, metrics_port, read_yaml

SETTINGS_FILE = DEPLOY / "meterwax.yaml"
IN_CONTAINER_CONFIG = "/etc/meterwax/meterwax.yaml"


def _mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> source (a named volume, or a host path relative to deploy/)."""
    mounts = {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        mounts[target] = source
    return mounts


def _is_bind(source: str) -> bool:
    return source.startswith((".", "/"))


def _make_secrets() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_secrets", DEPLOY / "make_secrets.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def settings() -> Settings:
    return load_deploy_settings(SETTINGS_FILE)


def test_the_stack_has_every_service(compose: dict[str, Any]) -> None:
    assert {
        "kafka",
        "kafka-init",
        "redis",
        "clickhouse",
        "meterwax",
        "meterwax-api",
        "prometheus",
        "alertmanager",
        "grafana",
    } <= set(compose["services"])
    assert compose["services"]["kafka"]["image"].startswith("apache/kafka:")
    assert compose["services"]["clickhouse"]["image"].startswith("clickhouse/clickhouse-server:")


def test_images_are_pinned(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        if "image" in service and "build" not in service:
            image = service["image"]
            assert ":" in image and not image.endswith(":latest"), f"{name}: pin {image}"


def test_named_volumes_and_secrets_are_declared_and_used(compose: dict[str, Any]) -> None:
    declared_volumes = set(compose["volumes"])
    declared_secrets = set(compose["secrets"])
    used_volumes, used_secrets = set(), set()
    for name, service in compose["services"].items():
        for target, source in _mounts(service).items():
            if _is_bind(source):
                assert (DEPLOY / source).exists(), f"{name}: {source} -> {target} does not exist"
            else:
                assert source in declared_volumes, f"{name}: volume {source} is not declared"
                used_volumes.add(source)
        for secret in service.get("secrets", []):
            assert secret in declared_secrets, f"{name}: secret {secret} is not declared"
            used_secrets.add(secret)
        for dependency in service.get("depends_on", []):
            assert dependency in compose["services"], f"{name} depends on {dependency}"
    assert used_volumes == declared_volumes
    assert used_secrets == declared_secrets


def test_secret_files_are_the_ones_make_secrets_creates(compose: dict[str, Any]) -> None:
    names = set(_make_secrets().NAMES)
    assert set(compose["secrets"]) == names
    for name, secret in compose["secrets"].items():
        assert secret["file"] == f"./secrets/{name}"
    assert "/secrets/" in (DEPLOY / ".gitignore").read_text(encoding="utf-8").split()


def test_make_secrets_creates_readable_files_once(tmp_path: Path) -> None:
    module = _make_secrets()
    folder = tmp_path / "secrets"
    created = module.make_secrets(folder)
    assert sorted(path.name for path in created) == sorted(module.NAMES)
    first = {path.name: path.read_text(encoding="utf-8") for path in created}
    for path in created:
        assert re.fullmatch(r"[0-9a-f]{48}\n", first[path.name])
        # Compose mounts file secrets unchanged: the containers' own users must read them.
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert stat.S_IMODE(folder.stat().st_mode) & 0o077 == 0
    assert module.make_secrets(folder) == []
    assert {path.name: path.read_text(encoding="utf-8") for path in created} == first


def test_settings_file_is_valid_meterwax_settings(settings: Settings) -> None:
    assert settings.input.kind == "kafka"
    assert settings.recovery.directory is not None
    assert settings.redis.url is not None


def test_settings_hold_no_credentials(settings: Settings) -> None:
    dsn = urlsplit(settings.clickhouse.dsn.get_secret_value())
    assert dsn.password is None and dsn.username is None
    assert settings.redis.url is not None
    assert urlsplit(settings.redis.url.get_secret_value()).password is None
    assert settings.redis.password_file is not None


def test_settings_name_the_compose_services(settings: Settings, compose: dict[str, Any]) -> None:
    services = compose["services"]
    hosts = [broker.split(":")[0] for broker in settings.kafka.brokers.split(",")]
    assert hosts == ["kafka"]
    assert settings.redis.url is not None
    assert urlsplit(settings.redis.url.get_secret_value()).hostname in services
    assert urlsplit(settings.clickhouse.dsn.get_secret_value()).hostname in services


def test_meterwax_container_gets_what_the_settings_point_at(
    settings: Settings, compose: dict[str, Any]
) -> None:
    service = compose["services"]["meterwax"]
    mounts = _mounts(service)
    assert mounts[IN_CONTAINER_CONFIG] == "./meterwax.yaml"
    assert f"--config {IN_CONTAINER_CONFIG}" in service["command"][-1]
    for catalog in (settings.catalogs.meters, settings.catalogs.pricing):
        assert _is_bind(mounts[str(catalog)]), catalog
    assert settings.recovery.directory is not None
    assert not _is_bind(mounts[str(settings.recovery.directory)]), "recovery needs a volume"
    assert settings.redis.password_file is not None
    secret = settings.redis.password_file
    assert secret.parent == Path("/run/secrets") and secret.name in service["secrets"]
    # The DSN with the password is built from the secret the server is created with.
    assert "clickhouse_password" in service["secrets"]
    assert "clickhouse_password" in compose["services"]["clickhouse"]["secrets"]
    assert "METERWAX_CLICKHOUSE__DSN" in service["command"][-1]
    user = compose["services"]["clickhouse"]["environment"]["CLICKHOUSE_USER"]
    assert f"http://{user}:" in service["command"][-1]


def test_input_topic_is_created_before_the_flow_starts(
    settings: Settings, compose: dict[str, Any]
) -> None:
    init = compose["services"]["kafka-init"]
    topics = [arg.split("=", 1)[1] for arg in init["command"] if arg.startswith("--topic=")]
    assert topics == settings.kafka.topics
    condition = compose["services"]["meterwax"]["depends_on"]["kafka-init"]["condition"]
    assert condition == "service_completed_successfully"


def test_metrics_port_matches_scrape_target_and_healthcheck(
    settings: Settings, compose: dict[str, Any]
) -> None:
    port = metrics_port(settings, SETTINGS_FILE)
    service = compose["services"]["meterwax"]
    assert str(port) in service["expose"]
    assert f"127.0.0.1:{port}/metrics" in " ".join(service["healthcheck"]["test"])
    jobs = read_yaml(DEPLOY / "prometheus" / "prometheus.yml")["scrape_configs"]
    (job,) = (job for job in jobs if job["job_name"] == "meterwax")
    assert job["static_configs"][0]["targets"] == [f"meterwax:{port}"]


def test_prometheus_and_alertmanager_mount_their_configs(compose: dict[str, Any]) -> None:
    prometheus = compose["services"]["prometheus"]
    assert _mounts(prometheus)["/etc/prometheus"] == "./prometheus"
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]
    alertmanager = compose["services"]["alertmanager"]
    assert _mounts(alertmanager)["/etc/alertmanager"] == "./alertmanager"
    assert "--config.file=/etc/alertmanager/alertmanager.yml" in alertmanager["command"]
    targets = read_yaml(DEPLOY / "prometheus" / "prometheus.yml")["alerting"]["alertmanagers"]
    assert targets[0]["static_configs"][0]["targets"] == ["alertmanager:9093"]


def test_dockerfile_builds_the_package_from_files_the_context_keeps(
    settings: Settings, compose: dict[str, Any]
) -> None:
    build = compose["services"]["meterwax"]["build"]
    context = (DEPLOY / build["context"]).resolve()
    assert context == REPO
    dockerfile = (context / build["dockerfile"]).read_text(encoding="utf-8")
    assert re.search(r"^FROM python:3\.11-slim\b", dockerfile, re.MULTILINE)
    allowed = (DEPLOY / "Dockerfile.dockerignore").read_text(encoding="utf-8").split()
    for source in re.findall(r"^COPY (?!--from)(.+?) \S+$", dockerfile, re.MULTILINE):
        for path in source.split():
            assert (REPO / path).exists(), path
            assert f"!{path}" in allowed, f"{path} is excluded from the build context"
    exposed = re.search(r"^EXPOSE (.+)$", dockerfile, re.MULTILINE)
    assert exposed
    assert str(metrics_port(settings, SETTINGS_FILE)) in exposed.group(1).split()
    assert "2101" in exposed.group(1).split()
    # The recovery directory exists in the image, so a new volume takes its owner.
    assert str(settings.recovery.directory) in dockerfile
    assert 'CMD ["meterwax", "run", "--config", "/etc/meterwax/meterwax.yaml"]' in dockerfile


def test_the_api_serves_where_its_port_and_readiness_check_point(
    compose: dict[str, Any],
) -> None:
    api = compose["services"]["meterwax-api"]
    script = api["command"][2]
    assert "exec meterwax api serve --config /etc/meterwax/meterwax.yaml" in script
    assert "--host 0.0.0.0 --port 8080" in script
    assert api["ports"] == ["127.0.0.1:8080:8080"]
    assert "http://127.0.0.1:8080/readyz" in " ".join(api["healthcheck"]["test"])
    keys = script.split("--keys-file ")[1].split()[0]
    assert any(
        volume.startswith("meterwax-api-keys:") and keys.startswith(volume.split(":")[1])
        for volume in api["volumes"]
    )
    assert api["image"] == compose["services"]["meterwax"]["image"]
    # A fresh keys volume takes the owner of the directory the image has.
    dockerfile = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    assert str(Path(keys).parent) in dockerfile
    assert re.search(r"^EXPOSE .*\b8080\b", dockerfile, re.MULTILINE)
