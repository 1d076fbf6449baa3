"""Short-lived portal tokens: a tenant and an expiry, signed with HMAC-SHA256.

A platform issues one per page view (``meterwax api portal-token``) and hands
it to its customer's browser, which never sees a long-lived key. Format:
``mwp_{base64url(tenant)}.{expiry epoch ms}.{base64url(HMAC(secret, "v1.tenant.expiry"))}``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from pathlib import Path

from config.errors import ConfigError
from config.redaction import remember

PREFIX = "mwp_"
# Tokens live at most this long: they are for one page view, not for keeping.
MAX_TTL_MS = 24 * 3_600_000
MIN_SECRET_BYTES = 32


def read_secret(path: Path, name: str = "--portal-secret-file") -> bytes:
    """The signing secret in ``path`` (32+ bytes; ConfigError naming ``name`` and the fix)."""
    try:
        secret = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"{name}: cannot read {path} ({exc.strerror}); check the path") from None
    remember([secret])
    if len(secret.encode()) < MIN_SECRET_BYTES:
        raise ConfigError(
            f"{name} {path}: the secret must be at least {MIN_SECRET_BYTES} "
            'bytes; make one with: python -c "import secrets;print(secrets.token_urlsafe(48))"'
        )
    return secret.encode()


def issue(secret: bytes, tenant: str, expires_ms: int) -> str:
    """A token letting its holder read ``tenant``'s usage page until ``expires_ms``."""
    name = _b64(tenant.encode())
    return f"{PREFIX}{name}.{expires_ms}.{_b64(_mac(secret, name, expires_ms))}"


def verify(secret: bytes, token: str, now_ms: int) -> str | None:
    """The tenant ``token`` is for, or None when it is malformed, forged or expired."""
    if not token.startswith(PREFIX):
        return None
    name, _, rest = token[len(PREFIX) :].partition(".")
    expiry, _, mac = rest.partition(".")
    if not expiry.isdigit() or len(expiry) > 16:
        return None
    expires_ms = int(expiry)
    try:
        presented = base64.urlsafe_b64decode(mac + "=" * (-len(mac) % 4))
        tenant = base64.urlsafe_b64decode(name + "=" * (-len(name) % 4)).decode()
    except (binascii.Error, ValueError):
        return None
    if not hmac.compare_digest(presented, _mac(secret, name, expires_ms)):
        return None
    if expires_ms <= now_ms or expires_ms > now_ms + MAX_TTL_MS:
        return None
    return tenant


def _mac(secret: bytes, name: str, expires_ms: int) -> bytes:
    return hmac.new(secret, f"v1.{name}.{expires_ms}".encode(), hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")
