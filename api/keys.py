"""API keys: scoped, shown once when created, stored only as SHA-256 hashes.

A key is ``mwx_`` followed by 32 random bytes in URL-safe base64 (no padding).
The keys file (YAML, or JSON when its name ends in ``.json``) lists one record
per key::

    keys:
      - id: 3f9c2a7d1b04           # public: what `list` shows and `revoke` takes
        tenant: acme               # null: an ingest key for every subject
        scopes: [ingest, read]
        sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
        created: "2026-11-16T00:00:00Z"

Keys carry 256 bits of entropy, so one unsalted hash per key is enough: nothing
in the file lets anyone recover or guess a key. A read key always has a tenant
(the only tenant it reads); an ingest key with a tenant may send events of that
subject only.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import secrets
import stat
import tempfile
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml

from config.errors import ConfigError

log = logging.getLogger(__name__)

KEY_PREFIX = "mwx_"
_KEY_BYTES = 32
_HASH = re.compile(r"[0-9a-f]{64}")
_ID = re.compile(r"[0-9a-f]{12}")
_HEADER = (
    "# meterwax API keys: one record per key, SHA-256 (hex) of the key, never the key.\n"
    "# Manage them with `meterwax api keys create|list|revoke`.\n"
)


class Scope(StrEnum):
    """What a key may do: send events, or read its tenant's usage, estimates and invoices."""

    INGEST = "ingest"
    READ = "read"


@dataclass(frozen=True, slots=True)
class ApiKey:
    """One stored key (its hash, never the key itself)."""

    id: str
    tenant: str | None
    scopes: frozenset[Scope]
    sha256: str
    created: str

    def allows(self, scope: Scope) -> bool:
        """Whether the key carries ``scope``."""
        return scope in self.scopes


def generate_key() -> str:
    """A new key: ``mwx_`` + 32 random bytes, URL-safe base64."""
    return KEY_PREFIX + secrets.token_urlsafe(_KEY_BYTES)


def hash_key(key: str) -> str:
    """The hex SHA-256 digest of ``key`` (UTF-8), as the keys file stores it."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def load_keys(path: Path) -> list[ApiKey]:
    """The keys of the keys file; ConfigError naming the field and the fix."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: no keys file; create a key with `meterwax api keys create --tenant T "
            f"--scope read --keys-file {path}`"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the keys file ({exc.strerror})") from None
    # Whoever can write the file can add a key of any tenant.
    if path.stat().st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise ConfigError(
            f"{path}: the keys file is writable by other users, who could add keys; "
            f"run `chmod go-w {path}`"
        )
    try:
        document = yaml.safe_load(text) if text.strip() else {"keys": []}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML or JSON ({exc}); fix the syntax") from None
    return _validated(path, document)


def _validated(path: Path, document: object) -> list[ApiKey]:
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ConfigError(
            f"{path}: (top level): must be `keys:` followed by a list of key records; "
            "recreate keys with `meterwax api keys create`"
        )
    problems: list[str] = []
    keys: list[ApiKey] = []
    seen: set[str] = set()
    for index, record in enumerate(document["keys"]):
        where = f"{path}: keys[{index}]"
        try:
            key = _record(record)
        except ValueError as exc:
            problems.append(f"{where}: {exc}")
            continue
        if key.sha256 in seen or key.id in {k.id for k in keys}:
            problems.append(f"{where}: the same id or hash is listed twice; remove one")
            continue
        seen.add(key.sha256)
        keys.append(key)
    if problems:
        raise ConfigError("\n".join(problems))
    return keys


def _record(record: object) -> ApiKey:
    if not isinstance(record, dict):
        raise ValueError("must be a mapping with id, tenant, scopes, sha256 and created")
    key_id, tenant, scopes = record.get("id"), record.get("tenant"), record.get("scopes")
    digest, created = record.get("sha256"), record.get("created", "")
    if not isinstance(key_id, str) or not _ID.fullmatch(key_id):
        raise ValueError("id: must be 12 hex characters")
    if tenant is not None and (not isinstance(tenant, str) or not tenant):
        raise ValueError("tenant: must be a non-empty string, or null for every subject")
    if not isinstance(digest, str) or not _HASH.fullmatch(digest):
        raise ValueError(
            "sha256: not a SHA-256 hex digest (64 characters 0-9a-f); "
            "store hashes only, made by `meterwax api keys create`"
        )
    if not isinstance(scopes, list) or not scopes:
        raise ValueError("scopes: must be a non-empty list of ingest, read")
    try:
        parsed = frozenset(Scope(scope) for scope in scopes)
    except ValueError:
        raise ValueError(f"scopes: {scopes!r}: each must be one of ingest, read") from None
    if Scope.READ in parsed and tenant is None:
        raise ValueError("tenant: a read key needs a tenant (it reads that tenant only)")
    return ApiKey(key_id, tenant, parsed, digest, str(created))


def create_key(
    path: Path, tenant: str | None, scopes: Iterable[Scope], created: str
) -> tuple[ApiKey, str]:
    """Create a key, store its record in the keys file and return (record, key).

    The file is created if missing (readable by its owner only) and replaced
    atomically; concurrent calls are serialised by a lock file beside it.
    """
    scope_set = frozenset(scopes)
    if not scope_set:
        raise ValueError("a key needs at least one scope")
    if Scope.READ in scope_set and not tenant:
        raise ValueError("a read key needs a tenant")
    key = generate_key()
    with _locked(path):
        keys = load_keys(path) if path.exists() else []
        taken = {k.id for k in keys}
        key_id = secrets.token_hex(6)
        while key_id in taken:
            key_id = secrets.token_hex(6)
        record = ApiKey(key_id, tenant, scope_set, hash_key(key), created)
        _write(path, [*keys, record])
    return record, key


def revoke_key(path: Path, key_id: str) -> ApiKey | None:
    """Remove the key ``key_id`` from the keys file; the removed record, or None if absent."""
    with _locked(path):
        keys = load_keys(path)
        kept = [k for k in keys if k.id != key_id]
        if len(kept) == len(keys):
            return None
        _write(path, kept)
    return next(k for k in keys if k.id == key_id)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    lock_path = path.with_name(path.name + ".lock")
    with lock_path.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _document(keys: Sequence[ApiKey]) -> dict[str, Any]:
    return {
        "keys": [
            {
                "id": k.id,
                "tenant": k.tenant,
                "scopes": sorted(scope.value for scope in k.scopes),
                "sha256": k.sha256,
                "created": k.created,
            }
            for k in keys
        ]
    }


def _write(path: Path, keys: Sequence[ApiKey]) -> None:
    document = _document(keys)
    if path.suffix.lower() == ".json":
        text = json.dumps(document, indent=2) + "\n"
    else:
        text = _HEADER + yaml.safe_dump(document, sort_keys=False, default_flow_style=False)
    # mkstemp creates the file with mode 0600; os.replace swaps it in atomically.
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


class KeyStore:
    """Resolves presented keys to their records; reloads the keys file when it changes.

    A new key works, and a revoked one stops working, without a restart. A keys
    file that turns invalid while serving is logged and the previous keys stay
    in force.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp = self._file_stamp()
        self._by_hash = self._index(load_keys(path))

    def lookup(self, key: str) -> ApiKey | None:
        """The record of ``key``, or None when it is not (or no longer) a key."""
        # A dict lookup on the SHA-256 of the presented key: its timing tells
        # nothing about any stored key's bytes.
        return self._current().get(hash_key(key))

    def _current(self) -> dict[str, ApiKey]:
        stamp = self._file_stamp()
        if stamp != self._stamp:
            with self._lock:
                if stamp != self._stamp:
                    try:
                        self._by_hash = self._index(load_keys(self.path))
                    except ConfigError as exc:
                        log.warning("keeping the previous API keys: %s", exc)
                    self._stamp = stamp
        return self._by_hash

    def _file_stamp(self) -> tuple[int, int, int] | None:
        try:
            info = self.path.stat()
        except OSError:
            return None
        return info.st_mtime_ns, info.st_size, info.st_ino

    @staticmethod
    def _index(keys: Iterable[ApiKey]) -> dict[str, ApiKey]:
        return {k.sha256: k for k in keys}
