"""``meterwax api keys create|list|revoke``: scoped keys, shown once, stored hashed; the tenant
must be in the catalog."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
import yaml

from api.keys import KeyStore, Scope, create_key, hash_key
from cli.main import main
from config.clock import FixedClock
from tests.api.conftest import NOW_MS

CLOCK = FixedClock(NOW_MS)


@pytest.fixture
def pricing(tmp_path: Path) -> Path:
    path = tmp_path / "pricing.yaml"
    path.write_text(
        """
default_plan: basic
plans:
  - id: basic
    currency: USD
    versions:
      - { version: v1, effective_from: "2026-01-01T00:00:00Z", prices: {} }
subscriptions:
  - { tenant: acme, plan: basic }
"""
    )
    return path


def keys_cli(*argv: str) -> int:
    return main(["api", "keys", *argv], clock=CLOCK)


def test_create_prints_the_key_once_and_stores_its_hash_with_scopes(
    tmp_path: Path, pricing: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keys_file = tmp_path / "keys.yaml"

    code = keys_cli(
        "create", "--tenant", "acme", "--scope", "ingest", "--scope", "read",
        "--keys-file", str(keys_file), "--pricing", str(pricing),
    )  # fmt: skip

    out = capsys.readouterr().out
    key = out.splitlines()[-1]
    assert code == 0
    assert key.startswith("mwx_") and len(key) == 4 + 43
    text = keys_file.read_text()
    assert key not in text and key[4:] not in text
    [record] = yaml.safe_load(text)["keys"]
    assert record["sha256"] == hash_key(key)
    assert (record["tenant"], record["scopes"], record["created"]) == (
        "acme",
        ["ingest", "read"],
        "2026-11-16T00:00:00Z",
    )
    assert stat.S_IMODE(keys_file.stat().st_mode) == 0o600
    found = KeyStore(keys_file).lookup(key)
    assert found is not None and found.scopes == {Scope.INGEST, Scope.READ}


def test_the_tenant_must_be_in_the_catalog(
    tmp_path: Path, pricing: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keys_file = tmp_path / "keys.yaml"
    flags = ("--keys-file", str(keys_file), "--pricing", str(pricing))

    # Only the default plan covers "nosuch": a typo as likely as a new tenant.
    assert keys_cli("create", "--tenant", "nosuch", *flags) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "--tenant: 'nosuch' has no subscription" in captured.err
    assert "--allow-default-plan" in captured.err
    assert not keys_file.exists()

    assert keys_cli("create", "--tenant", "nosuch", "--allow-default-plan", *flags) == 0
    assert yaml.safe_load(keys_file.read_text())["keys"][0]["tenant"] == "nosuch"


def test_a_tenant_unknown_to_a_catalog_without_default_plan_is_refused(
    tmp_path: Path, pricing: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pricing.write_text(pricing.read_text().replace("default_plan: basic\n", ""))
    keys_file = tmp_path / "keys.yaml"

    code = keys_cli(
        "create", "--tenant", "nosuch", "--allow-default-plan",
        "--keys-file", str(keys_file), "--pricing", str(pricing),
    )  # fmt: skip

    assert code == 2
    assert "'nosuch' has no subscription in the pricing catalog" in capsys.readouterr().err


def test_list_and_revoke(tmp_path: Path, pricing: Path, capsys: pytest.CaptureFixture[str]) -> None:
    keys_file = tmp_path / "keys.json"
    flags = ("--keys-file", str(keys_file), "--pricing", str(pricing))
    keys_cli("create", "--tenant", "acme", *flags)
    reader = capsys.readouterr().out.splitlines()[-1]
    keys_cli("create", "--all-tenants", "--scope", "ingest", *flags)
    gateway = capsys.readouterr().out.splitlines()[-1]

    assert keys_cli("list", "--keys-file", str(keys_file), "--json") == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(k["tenant"], k["scopes"]) for k in listed] == [("acme", ["read"]), (None, ["ingest"])]
    assert reader not in json.dumps(listed) and hash_key(reader) not in json.dumps(listed)

    store = KeyStore(keys_file)
    assert store.lookup(reader) is not None
    assert keys_cli("revoke", listed[0]["id"], "--keys-file", str(keys_file)) == 0
    # The running API's store picks the revocation up without a restart.
    assert store.lookup(reader) is None
    assert store.lookup(gateway) is not None
    assert keys_cli("revoke", listed[0]["id"], "--keys-file", str(keys_file)) == 2
    assert "no key" in capsys.readouterr().err


def test_a_read_key_needs_a_tenant(
    tmp_path: Path, pricing: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = keys_cli(
        "create", "--all-tenants", "--scope", "read",
        "--keys-file", str(tmp_path / "keys.yaml"), "--pricing", str(pricing),
    )  # fmt: skip

    assert code == 2
    assert "--scope: a read key reads one tenant" in capsys.readouterr().err


def test_a_bad_keys_file_is_one_clear_line_per_problem(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    keys_file = tmp_path / "keys.yaml"
    keys_file.write_text(
        "keys:\n  - {id: 0123456789ab, tenant: acme, scopes: [read], sha256: mwx_secretkey}\n"
    )

    code = main(["api", "serve", "--port", "0", "--keys-file", str(keys_file)])

    err = capsys.readouterr().err
    assert code == 2
    assert f"{keys_file}: keys[0]: sha256: not a SHA-256 hex digest" in err
    assert "mwx_secretkey" not in err
    assert "Traceback" not in err


def test_a_keys_file_others_can_write_is_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    keys_file = tmp_path / "keys.yaml"
    create_key(keys_file, "acme", [Scope.READ], "2026-11-16T00:00:00Z")
    assert keys_file.stat().st_mode & 0o777 == 0o600
    keys_file.chmod(0o666)

    code = main(["api", "serve", "--port", "0", "--keys-file", str(keys_file)])

    err = capsys.readouterr().err
    assert code == 2
    assert f"{keys_file}: the keys file is writable by other users" in err
    assert f"chmod go-w {keys_file}" in err
    assert "Traceback" not in err
