"""API keys: shown once when created, stored only as SHA-256 hashes, each tied to one tenant.

A key is ``mwx_`` followed by 32 random bytes in URL-safe base64 (no padding).
The keys file (YAML, or JSON when its name ends in ``.json``) maps each tenant
to the hex SHA-256 digests of its keys::

    acme:
      - 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08

Keys carry 256 bits of entropy, so one unsalted hash per key is enough: nothing
in the file lets anyone recover or guess a key. A presented key is checked
against every stored hash with ``hmac.compare_digest``, and the lookup does
not stop at the first match, so timing says nothing about which hash matched.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import tempfile
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path

import yaml

from config.errors import ConfigError

log = logging.getLogger(__name__)

KEY_PREFIX = "mwx_"
_KEY_BYTES = 32
_HASH = re.compile(r"[0-9a-f]{64}")
_HEADER = (
    "# meterwax API keys: tenant -> SHA-256 (hex) of each of its keys.\n"
    "# Keys themselves are never stored; add one with `meterwax api create-key`.\n"
)


def generate_key() -> str:
    """A new key: ``mwx_`` + 32 random bytes, URL-safe base64."""
    return KEY_PREFIX + secrets.token_urlsafe(_KEY_BYTES)


def hash_key(key: str) -> str:
    """The hex SHA-256 digest of ``key`` (UTF-8), as the keys file stores it."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def load_key_hashes(path: Path) -> dict[str, list[str]]:
    """Tenant -> key hashes from the keys file; ConfigError naming the field and the fix."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: no keys file; create it with `meterwax api create-key --tenant T "
            f"--keys-file {path}`"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the keys file ({exc.strerror})") from None
    try:
        document = yaml.safe_load(text) if text.strip() else {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML or JSON ({exc}); fix the syntax") from None
    return _validated(path, document)


def _validated(path: Path, document: object) -> dict[str, list[str]]:
    if not isinstance(document, dict):
        raise ConfigError(f"{path}: (top level): must map each tenant to a list of key hashes")
    problems = []
    owners: dict[str, str] = {}
    hashes: dict[str, list[str]] = {}
    for tenant, listed in document.items():
        if not isinstance(tenant, str) or not tenant:
            problems.append(f"{path}: {tenant!r}: a tenant must be a non-empty string")
            continue
        if not isinstance(listed, list):
            problems.append(f"{path}: {tenant}: must be a list of key hashes")
            continue
        for index, digest in enumerate(listed):
            where = f"{path}: {tenant}[{index}]"
            if not isinstance(digest, str) or not _HASH.fullmatch(digest):
                problems.append(
                    f"{where}: not a SHA-256 hex digest (64 characters 0-9a-f); "
                    "store hashes only, made by `meterwax api create-key`"
                )
            elif digest in owners:
                problems.append(
                    f"{where}: the same hash is listed for {owners[digest]!r}; "
                    "a key belongs to one tenant, remove one of them"
                )
            else:
                owners[digest] = tenant
                hashes.setdefault(tenant, []).append(digest)
    if problems:
        raise ConfigError("\n".join(problems))
    return hashes


def add_key(path: Path, tenant: str) -> str:
    """Create a key for ``tenant``, store its hash in the keys file and return the key.

    The file is created if missing (readable by its owner only) and replaced
    atomically; concurrent calls are serialised by a lock file beside it.
    """
    if not tenant:
        raise ValueError("tenant must not be empty")
    key = generate_key()
    with _locked(path):
        hashes = load_key_hashes(path) if path.exists() else {}
        hashes.setdefault(tenant, []).append(hash_key(key))
        _write(path, hashes)
    return key


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    lock_path = path.with_name(path.name + ".lock")
    with lock_path.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _write(path: Path, hashes: Mapping[str, list[str]]) -> None:
    if path.suffix.lower() == ".json":
        text = json.dumps(hashes, indent=2, sort_keys=True) + "\n"
    else:
        text = _HEADER + yaml.safe_dump(dict(hashes), sort_keys=True, default_flow_style=False)
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
    """Resolves presented keys to tenants; reloads the keys file when it changes.

    A new key works without a restart. A keys file that turns invalid while
    serving is logged and the previous keys stay in force.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp = self._file_stamp()
        self._pairs = self._flatten(load_key_hashes(path))

    def tenant_for(self, key: str) -> str | None:
        """The tenant ``key`` belongs to, or None; constant time in which hash matches."""
        presented = hash_key(key).encode()
        found = None
        for tenant, digest in self._current():
            # No early exit: every stored hash is compared, whatever matched before.
            if hmac.compare_digest(presented, digest):
                found = tenant
        return found

    def _current(self) -> tuple[tuple[str, bytes], ...]:
        stamp = self._file_stamp()
        if stamp != self._stamp:
            with self._lock:
                if stamp != self._stamp:
                    try:
                        self._pairs = self._flatten(load_key_hashes(self.path))
                    except ConfigError as exc:
                        log.warning("keeping the previous API keys: %s", exc)
                    self._stamp = stamp
        return self._pairs

    def _file_stamp(self) -> tuple[int, int, int] | None:
        try:
            info = self.path.stat()
        except OSError:
            return None
        return info.st_mtime_ns, info.st_size, info.st_ino

    @staticmethod
    def _flatten(hashes: Mapping[str, list[str]]) -> tuple[tuple[str, bytes], ...]:
        return tuple((tenant, digest.encode()) for tenant, ds in hashes.items() for digest in ds)
