"""Kubernetes manifests: cross-references, settings and catalogs, and the pod scripts themselves."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from config.meter_catalog import load_meter_catalog
from config.pricing_catalog import load_pricing_catalog
from config.settings import Settings
from tests.deploy.conftest import (
    DEPLOY,
    load_deploy_settings,
    metrics_port,
    read_yaml,
    read_yaml_all,
)

K8S = DEPLOY / "kubernetes"
CONFIG_MAP = "meterwax-config"
SECRET = "meterwax-secrets"

Objects = dict[tuple[str, str], dict[str, Any]]


def _statefulset(objects: Objects) -> dict[str, Any]:
    (sts,) = (doc for (kind, _), doc in objects.items() if kind == "StatefulSet")
    return sts


def _api(objects: Objects) -> dict[str, Any]:
    return objects[("Deployment", "meterwax-api")]


def _container(sts: dict[str, Any], name: str) -> dict[str, Any]:
    spec = sts["spec"]["template"]["spec"]
    (container,) = (c for c in spec["containers"] + spec["initContainers"] if c["name"] == name)
    return container


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {item["name"]: item.get("value", item.get("valueFrom")) for item in container["env"]}


def _script(container: dict[str, Any]) -> str:
    assert container["args"][:2] == ["/bin/sh", "-c"], container["name"]
    script = container["args"][2]
    assert isinstance(script, str)
    return script


def _settings_path() -> Path:
    return K8S / "config" / "meterwax.yaml"


def _generated_files(kustomization: dict[str, Any]) -> dict[str, Path]:
    (generator,) = (g for g in kustomization["configMapGenerator"] if g["name"] == CONFIG_MAP)
    return {Path(file).name: K8S / file for file in generator["files"]}


def test_every_resource_parses_and_lives_in_the_namespace(
    kustomization: dict[str, Any], k8s_objects: Objects
) -> None:
    namespace = kustomization["namespace"]
    assert ("Namespace", namespace) in k8s_objects
    kinds = {kind for kind, _ in k8s_objects}
    assert {"Namespace", "Service", "StatefulSet", "PodDisruptionBudget"} <= kinds
    for path in K8S.rglob("*.yaml"):
        assert read_yaml_all(path), f"{path} is empty or not YAML"
    example = read_yaml(K8S / "secret.example.yaml")
    assert example["metadata"]["namespace"] == namespace


def test_the_example_secret_is_never_applied(kustomization: dict[str, Any]) -> None:
    assert "secret.example.yaml" not in kustomization["resources"]
    assert not kustomization.get("secretGenerator")


def test_statefulset_runs_a_cluster_behind_the_headless_service(k8s_objects: Objects) -> None:
    sts = _statefulset(k8s_objects)
    headless = k8s_objects[("Service", sts["spec"]["serviceName"])]
    assert headless["spec"]["clusterIP"] == "None"
    # The processes must resolve each other before any of them is Ready.
    assert headless["spec"]["publishNotReadyAddresses"] is True
    assert sts["spec"]["podManagementPolicy"] == "Parallel"
    assert sts["spec"]["updateStrategy"]["type"] == "OnDelete"
    labels = sts["spec"]["template"]["metadata"]["labels"]
    assert sts["spec"]["selector"]["matchLabels"].items() <= labels.items()
    api_labels = _api(k8s_objects)["spec"]["template"]["metadata"]["labels"]
    for (kind, _name), doc in k8s_objects.items():
        if kind == "Service":
            selector = doc["spec"]["selector"].items()
            assert selector <= labels.items() or selector <= api_labels.items(), _name
    pdb = k8s_objects[("PodDisruptionBudget", "meterwax")]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["spec"]["maxUnavailable"] == 1


def test_replica_count_is_the_one_the_scripts_use(k8s_objects: Objects) -> None:
    sts = _statefulset(k8s_objects)
    replicas = sts["spec"]["replicas"]
    assert replicas > 1
    for name in ("meterwax", "recovery-partition"):
        assert _env(_container(sts, name))["METERWAX_REPLICAS"] == str(replicas), name
    assert _env(_container(sts, "meterwax"))["HEADLESS_SERVICE"] == sts["spec"]["serviceName"]


def test_ports_agree_with_settings_services_and_probes(k8s_objects: Objects) -> None:
    sts = _statefulset(k8s_objects)
    container = _container(sts, "meterwax")
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    env = _env(container)
    settings = load_deploy_settings(_settings_path())
    assert ports["metrics"] == int(env["METRICS_PORT"]) == metrics_port(settings, _settings_path())
    assert ports["cluster"] == int(env["CLUSTER_PORT"]) == 2101
    assert container["readinessProbe"]["httpGet"]["port"] == "metrics"
    headless = k8s_objects[("Service", sts["spec"]["serviceName"])]
    assert [(p["port"], p["targetPort"]) for p in headless["spec"]["ports"]] == [
        (ports["cluster"], "cluster")
    ]
    metrics = k8s_objects[("Service", "meterwax-metrics")]
    assert [(p["name"], p["port"], p["targetPort"]) for p in metrics["spec"]["ports"]] == [
        ("metrics", ports["metrics"], "metrics")
    ]


def test_volumes_mounts_config_map_and_secret_keys_line_up(
    kustomization: dict[str, Any], k8s_objects: Objects
) -> None:
    sts = _statefulset(k8s_objects)
    spec = sts["spec"]["template"]["spec"]
    volumes = {volume["name"]: volume for volume in spec["volumes"]}
    claims = {claim["metadata"]["name"] for claim in sts["spec"]["volumeClaimTemplates"]}
    for container in spec["containers"] + spec["initContainers"]:
        for mount in container["volumeMounts"]:
            assert mount["name"] in volumes or mount["name"] in claims, mount["name"]
    assert volumes["config"]["configMap"]["name"] == CONFIG_MAP
    generated = _generated_files(kustomization)
    for item in volumes["config"]["configMap"]["items"]:
        assert item["key"] in generated, item["key"]
        assert generated[item["key"]].is_file()
    example = read_yaml(K8S / "secret.example.yaml")
    assert example["metadata"]["name"] == SECRET
    keys = set(example["stringData"])
    assert volumes["secrets"]["secret"]["secretName"] == SECRET
    used = {item["key"] for item in volumes["secrets"]["secret"]["items"]}
    api_spec = _api(k8s_objects)["spec"]["template"]["spec"]
    (api_secrets,) = (v for v in api_spec["volumes"] if "secret" in v)
    assert api_secrets["secret"]["secretName"] == SECRET
    used |= {item["key"] for item in api_secrets["secret"]["items"]}
    for container in (_container(sts, "meterwax"), *api_spec["containers"]):
        for value in _env(container).values():
            if isinstance(value, dict) and "secretKeyRef" in value:
                assert value["secretKeyRef"]["name"] == SECRET
                used.add(value["secretKeyRef"]["key"])
    assert used == keys


def _mounted_files(sts: dict[str, Any], kustomization: dict[str, Any]) -> dict[str, Path | None]:
    """Container path -> local file for every ConfigMap and Secret file the pod sees."""
    spec = sts["spec"]["template"]["spec"]
    container = _container(sts, "meterwax")
    mounts = {mount["name"]: mount["mountPath"] for mount in container["volumeMounts"]}
    generated = _generated_files(kustomization)
    files: dict[str, Path | None] = {}
    for volume in spec["volumes"]:
        if "configMap" in volume:
            for item in volume["configMap"]["items"]:
                files[f"{mounts[volume['name']]}/{item['path']}"] = generated[item["key"]]
        if "secret" in volume:
            for item in volume["secret"]["items"]:
                files[f"{mounts[volume['name']]}/{item['path']}"] = None
    return files


def test_settings_point_at_what_the_pod_mounts(
    kustomization: dict[str, Any], k8s_objects: Objects
) -> None:
    sts = _statefulset(k8s_objects)
    files = _mounted_files(sts, kustomization)
    settings = load_deploy_settings(_settings_path())
    container = _container(sts, "meterwax")
    config_arg = _script(container).rsplit("--config ", 1)[1].split()[0]
    assert files[config_arg] == _settings_path()
    for path in (settings.catalogs.meters, settings.catalogs.pricing, settings.redis.password_file):
        assert str(path) in files, path
    for key, path in settings.kafka.secret_files.items():
        assert str(path) in files, key
    mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
    claims = {claim["metadata"]["name"] for claim in sts["spec"]["volumeClaimTemplates"]}
    assert mounts[str(settings.recovery.directory)] in claims
    init = _container(sts, "recovery-partition")
    assert _env(init)["RECOVERY_DIR"] == str(settings.recovery.directory)
    assert {m["mountPath"]: m["name"] for m in init["volumeMounts"]}[
        str(settings.recovery.directory)
    ] in claims


def test_settings_of_a_cluster_with_separate_volumes_fix_the_instance_id() -> None:
    settings = load_deploy_settings(_settings_path())
    # Without it every pod would invent its own id in its own volume, and a replay
    # read by another process would count as a duplicate of itself.
    assert settings.flow.instance_id
    assert settings.flow.shards >= 3
    dsn = settings.clickhouse.dsn.get_secret_value()
    assert "@" not in dsn, "credentials belong in the Secret"


def test_config_map_catalogs_load_and_agree(kustomization: dict[str, Any]) -> None:
    generated = _generated_files(kustomization)
    meters = load_meter_catalog(generated["meters.yaml"])
    load_pricing_catalog(generated["pricing.yaml"], meters)


def _run_script(
    script: str, env: dict[str, str], bin_dir: Path | None = None
) -> subprocess.CompletedProcess[str]:
    # The image's Python (with bytewax) first on PATH, as in the container.
    dirs = [str(Path(sys.executable).parent), "/usr/bin", "/bin"]
    if bin_dir is not None:
        dirs.insert(0, str(bin_dir))
    path = os.pathsep.join(dirs)
    return subprocess.run(
        ["/bin/sh", "-c", script],
        env={"PATH": path, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_each_pod_gets_its_own_recovery_partition_once(
    tmp_path: Path, k8s_objects: Objects
) -> None:
    sts = _statefulset(k8s_objects)
    script = _script(_container(sts, "recovery-partition"))
    replicas = sts["spec"]["replicas"]
    held = []
    for ordinal in range(replicas):
        volume = tmp_path / f"recovery-{ordinal}"
        volume.mkdir()
        env = {
            "HOSTNAME": f"meterwax-{ordinal}",
            "METERWAX_REPLICAS": str(replicas),
            "RECOVERY_DIR": str(volume),
            "TMPDIR": str(tmp_path),
        }
        first = _run_script(script, env)
        assert first.returncode == 0, first.stderr
        assert sorted(p.name for p in volume.iterdir()) == [f"part-{ordinal}.sqlite3"]
        content = (volume / f"part-{ordinal}.sqlite3").read_bytes()
        again = _run_script(script, env)
        assert again.returncode == 0, again.stderr
        assert "keeping" in again.stdout
        assert (volume / f"part-{ordinal}.sqlite3").read_bytes() == content
        held.append(f"part-{ordinal}.sqlite3")
    # Together the pods hold every partition of the set, each exactly once.
    assert len(set(held)) == replicas


def test_recovery_partition_refuses_a_pod_outside_the_count(
    tmp_path: Path, k8s_objects: Objects
) -> None:
    script = _script(_container(_statefulset(k8s_objects), "recovery-partition"))
    for hostname, replicas in (("meterwax-3", "3"), ("meterwax", "3")):
        env = {
            "HOSTNAME": hostname,
            "METERWAX_REPLICAS": replicas,
            "RECOVERY_DIR": str(tmp_path),
            "TMPDIR": str(tmp_path),
        }
        result = _run_script(script, env)
        assert result.returncode == 1, hostname
        assert "recovery-partition:" in result.stderr
        assert not list(tmp_path.glob("part-*"))


def test_pod_entrypoint_derives_process_id_addresses_and_metrics_port(
    tmp_path: Path, k8s_objects: Objects, monkeypatch: pytest.MonkeyPatch
) -> None:
    sts = _statefulset(k8s_objects)
    container = _container(sts, "meterwax")
    env = {k: v for k, v in _env(container).items() if isinstance(v, str)}
    replicas = sts["spec"]["replicas"]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    captured = tmp_path / "exec.json"
    # Stands in for the meterwax CLI: records what the script exec'd it with.
    fake = bin_dir / "meterwax"
    record = "{'argv': sys.argv[1:], 'env': dict(os.environ)}"
    fake.write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys\n"
        f"json.dump({record}, open({str(captured)!r}, 'w'))\n",
        encoding="utf-8",
    )
    fake.chmod(0o755)
    ordinal = replicas - 1
    result = _run_script(
        _script(container),
        {**env, "HOSTNAME": f"meterwax-{ordinal}", "POD_NAMESPACE": "billing"},
        bin_dir,
    )
    assert result.returncode == 0, result.stderr
    run = json.loads(captured.read_text(encoding="utf-8"))
    assert run["argv"] == ["run", "--config", "/etc/meterwax/meterwax.yaml"]
    derived = {k: v for k, v in run["env"].items() if k.startswith("METERWAX_")}
    expected_addresses = [
        f"meterwax-{i}.{sts['spec']['serviceName']}.billing.svc:{env['CLUSTER_PORT']}"
        for i in range(replicas)
    ]
    assert json.loads(derived["METERWAX_FLOW__ADDRESSES"]) == expected_addresses
    assert derived["METERWAX_FLOW__PROCESS_ID"] == str(ordinal)

    # meterwax itself reads these over the ConfigMap's settings.
    for name in ("METERWAX_FLOW__ADDRESSES", "METERWAX_FLOW__PROCESS_ID", "METERWAX_METRICS__PORT"):
        monkeypatch.setenv(name, derived[name])
    if "metrics" not in Settings.model_fields:
        monkeypatch.delenv("METERWAX_METRICS__PORT")
    settings = load_deploy_settings(_settings_path())
    assert settings.flow.process_id == ordinal
    assert settings.flow.addresses == expected_addresses
    # Served on metrics.port + process id: the pod's declared metrics port, on every pod.
    served = int(derived["METERWAX_METRICS__PORT"]) + ordinal
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert served == ports["metrics"]
    if "metrics" in Settings.model_fields:
        assert settings.metrics.port + ordinal == ports["metrics"]


def test_pod_entrypoint_refuses_a_hostname_without_ordinal(
    tmp_path: Path, k8s_objects: Objects
) -> None:
    container = _container(_statefulset(k8s_objects), "meterwax")
    env = {k: v for k, v in _env(container).items() if isinstance(v, str)}
    result = _run_script(_script(container), {**env, "HOSTNAME": "meterwax", "POD_NAMESPACE": "x"})
    assert result.returncode == 1
    assert "no pod ordinal" in result.stderr


def test_prometheus_kubernetes_job_keeps_the_metrics_service(
    kustomization: dict[str, Any], k8s_objects: Objects
) -> None:
    config = read_yaml(DEPLOY / "prometheus" / "prometheus-kubernetes.yml")
    (job,) = (job for job in config["scrape_configs"] if job["job_name"] == "meterwax")
    (sd,) = job["kubernetes_sd_configs"]
    assert sd["role"] == "endpoints"
    assert sd["namespaces"]["names"] == [kustomization["namespace"]]
    keep = next(rule for rule in job["relabel_configs"] if rule.get("action") == "keep")
    service, port = keep["regex"].split(";")
    metrics = k8s_objects[("Service", service)]
    assert [p["name"] for p in metrics["spec"]["ports"]] == [port]


def test_settings_load_like_meterwax_run_would(monkeypatch: pytest.MonkeyPatch) -> None:
    # With the variables the pod sets, the ConfigMap's settings are a valid cluster member.
    monkeypatch.setenv("METERWAX_FLOW__PROCESS_ID", "0")
    monkeypatch.setenv("METERWAX_FLOW__ADDRESSES", '["a:2101", "b:2101", "c:2101"]')
    monkeypatch.setenv("METERWAX_CLICKHOUSE__DSN", "https://u:p@clickhouse.example.internal:8443")
    settings = load_deploy_settings(_settings_path())
    assert settings.flow.is_primary
    assert settings.clickhouse.dsn.get_secret_value().startswith("https://u:p@")


def test_kustomize_builds_the_manifests(kustomization: dict[str, Any]) -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed (optional: the other checks cover the files)")
    result = subprocess.run(
        [kubectl, "kustomize", str(K8S)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    docs = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    config_maps = [d["metadata"]["name"] for d in docs if d["kind"] == "ConfigMap"]
    assert len(config_maps) == 1 and config_maps[0].startswith(f"{CONFIG_MAP}-")
    (sts,) = (d for d in docs if d["kind"] == "StatefulSet")
    volumes = sts["spec"]["template"]["spec"]["volumes"]
    assert {"name": config_maps[0]}.items() <= next(
        v["configMap"] for v in volumes if "configMap" in v
    ).items()
    image = kustomization["images"][0]
    for container in sts["spec"]["template"]["spec"]["containers"]:
        assert container["image"] == f"{image['newName']}:{image['newTag']}"
    for doc in docs:
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == kustomization["namespace"], doc["kind"]


def test_the_api_deployment_is_probed_served_and_configured(
    kustomization: dict[str, Any], k8s_objects: Objects
) -> None:
    deployment = _api(k8s_objects)
    spec = deployment["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    args = container["args"]
    assert args[:3] == ["meterwax", "api", "serve"]
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports["http"] == int(args[args.index("--port") + 1])
    assert args[args.index("--host") + 1] == "0.0.0.0"
    # Ready only while ClickHouse, Redis and Kafka answer; alive while it serves.
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    service = k8s_objects[("Service", "meterwax-api")]
    assert [(p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [(80, "http")]
    assert (
        service["spec"]["selector"].items()
        <= deployment["spec"]["template"]["metadata"]["labels"].items()
    )
    # The keys file and the settings the args name are files the pod mounts.
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    files = {
        f"{mounts[name]}/{item['path']}"
        for name, volume in volumes.items()
        for item in (volume.get("secret") or volume.get("configMap") or {}).get("items", [])
    }
    assert args[args.index("--keys-file") + 1] in files
    assert args[args.index("--config") + 1] in files
    assert (
        volumes["config"]["configMap"]["items"]
        == _statefulset(k8s_objects)["spec"]["template"]["spec"]["volumes"][0]["configMap"]["items"]
    )
    assert {"api-deployment.yaml", "service-api.yaml"} <= set(kustomization["resources"])
    # The example Secret's keys file is one `meterwax api serve` loads.
    example = read_yaml(K8S / "secret.example.yaml")
    assert yaml.safe_load(example["stringData"]["api-keys"]) == {"keys": []}
