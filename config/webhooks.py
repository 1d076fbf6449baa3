"""Webhook endpoints and what they hear: the ``webhooks:`` settings section.

Secrets follow Standard Webhooks (``whsec_`` then base64 of 24 to 64 bytes);
they are validated at start-up and remembered by config/redaction.py, so no
message shows them.
"""

from __future__ import annotations

import base64
import binascii
from decimal import Decimal
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, model_validator

from config.durations import parse_duration_ms
from config.errors import ConfigError
from config.redaction import redact_url, remember

# Every event type a webhook can carry (the payload reference is in the README).
EVENT_TYPES = (
    "quota.threshold",
    "quota.soft_limit",
    "quota.hard_limit",
    "spend.threshold",
    "period.closed",
)
SECRET_PREFIX = "whsec_"
# Standard Webhooks asks receivers to keep retrying senders' messages for at least a day.
MIN_RETRY_MS = 86_400_000
_NAME = r"^[A-Za-z0-9_.\-]{1,64}$"

DurationMs = Annotated[int, BeforeValidator(parse_duration_ms), Field(ge=0)]


def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_<base64>`` secret; ValueError (without the secret) if malformed."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError(f"the secret must start with {SECRET_PREFIX!r} (Standard Webhooks)")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except binascii.Error:
        raise ValueError(f"the secret after {SECRET_PREFIX!r} must be valid base64") from None
    if not 24 <= len(key) <= 64:
        raise ValueError(
            f"the secret must hold 24 to 64 bytes of base64 after {SECRET_PREFIX!r}; "
            "make one with: python -c \"import base64,os;print('whsec_'+"
            'base64.b64encode(os.urandom(32)).decode())"'
        )
    return key


def _amounts(value: object) -> object:
    # Amounts are exact: numbers written in YAML become their decimal text.
    if isinstance(value, list):
        return [str(item) if isinstance(item, int | float) else item for item in value]
    return value


Amounts = Annotated[list[Decimal], BeforeValidator(_amounts)]


class WebhookEndpoint(BaseModel):
    """One receiver: where to POST, how to sign, which events and tenants."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=_NAME)
    url: str
    secret: SecretStr | None = None
    # A mounted secret (e.g. Kubernetes), read at start-up instead of ``secret``.
    secret_file: Path | None = None
    events: list[str] = Field(default_factory=lambda: list(EVENT_TYPES), min_length=1)
    # None: every tenant.
    tenants: list[str] | None = None

    @model_validator(mode="after")
    def _check(self) -> WebhookEndpoint:
        # Remembered first, so that no message below (a URL quoting it) can show it.
        if self.secret is not None:
            remember([self.secret.get_secret_value()])
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                f"url {redact_url(self.url)!r} is not an http(s) URL; "
                "write it as https://host[:port]/path"
            )
        try:
            port = parts.port
        except ValueError:
            port = 0
        if port == 0:
            # Caught here: at delivery time it failed every attempt of every endpoint.
            raise ValueError(f"url {redact_url(self.url)!r} needs a port from 1 to 65535 (or none)")
        if parts.username is not None or parts.password is not None:
            # Not sent as credentials: receivers authenticate deliveries by their signature.
            raise ValueError(
                f"url {redact_url(self.url)!r} must not hold user:password@; receivers check "
                "the webhook-signature header instead"
            )
        unknown = sorted(set(self.events) - set(EVENT_TYPES))
        if unknown:
            raise ValueError(
                f"unknown event type(s) {', '.join(unknown)}; choose from {', '.join(EVENT_TYPES)}"
            )
        if (self.secret is None) == (self.secret_file is None):
            raise ValueError("set exactly one of secret and secret_file")
        if self.secret is not None:
            secret_key(self.secret.get_secret_value())
        return self

    def secret_value(self) -> str:
        """The ``whsec_`` secret, read from ``secret_file`` when set (never log it)."""
        if self.secret is not None:
            return self.secret.get_secret_value()
        assert self.secret_file is not None
        try:
            secret = self.secret_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(
                f"webhooks.endpoints.{self.name}.secret_file: cannot read {self.secret_file} "
                f"({exc.strerror}); check the path and permissions"
            ) from None
        remember([secret])
        try:
            secret_key(secret)
        except ValueError as exc:
            raise ConfigError(
                f"webhooks.endpoints.{self.name}.secret_file {self.secret_file}: {exc}"
            ) from None
        return secret

    def wants(self, event_type: str, tenant: str | None) -> bool:
        """Whether this endpoint subscribes to ``event_type`` for ``tenant``."""
        if event_type not in self.events:
            return False
        return self.tenants is None or tenant is None or tenant in self.tenants


class SpendThresholds(BaseModel):
    """Spend amounts (in the plan's currency) whose crossing in a period is announced."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Plan id -> amounts; a tenant listed in ``tenants`` uses its own amounts instead.
    plans: dict[str, Amounts] = Field(default_factory=dict)
    tenants: dict[str, Amounts] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> SpendThresholds:
        for where, table in (("plans", self.plans), ("tenants", self.tenants)):
            for name, amounts in table.items():
                if any(not amount.is_finite() or amount <= 0 for amount in amounts):
                    raise ValueError(f"{where}.{name}: amounts must be positive numbers")
        return self

    def for_tenant(self, tenant: str, plan: str | None) -> list[Decimal]:
        """The thresholds that apply to ``tenant`` (on ``plan``), lowest first."""
        if tenant in self.tenants:
            return sorted(self.tenants[tenant])
        return sorted(self.plans.get(plan or "", []))


class WebhookSettings(BaseModel):
    """Signed webhooks: endpoints, spend thresholds, and how long deliveries are retried."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    endpoints: list[WebhookEndpoint] = Field(default_factory=list)
    spend_thresholds: SpendThresholds = SpendThresholds()
    # A delivery is retried with exponential backoff and jitter for this long.
    retry_for: DurationMs = parse_duration_ms("26h")
    # Backoff starts here and doubles up to ``max_backoff``.
    initial_backoff: DurationMs = parse_duration_ms("5s")
    max_backoff: DurationMs = parse_duration_ms("1h")
    timeout: DurationMs = parse_duration_ms("10s")
    # Deliver from a thread of `meterwax run`; false: run `meterwax webhooks deliver`.
    dispatch_in_run: bool = True
    # period.closed is sent once the period ended this long ago (its usage is final).
    period_closed_after: DurationMs = parse_duration_ms("1h")

    @model_validator(mode="after")
    def _check(self) -> WebhookSettings:
        if self.retry_for < MIN_RETRY_MS:
            raise ValueError("retry_for must be at least 24h (deliveries are retried for a day)")
        if not 100 <= self.initial_backoff <= self.max_backoff:
            raise ValueError("need 100ms <= initial_backoff <= max_backoff")
        if self.timeout < 100:
            raise ValueError("timeout must be at least 100ms")
        names = [endpoint.name for endpoint in self.endpoints]
        doubled = sorted({name for name in names if names.count(name) > 1})
        if doubled:
            raise ValueError(f"endpoint names must be unique; repeated: {', '.join(doubled)}")
        return self

    def secrets(self) -> list[str]:
        """The inline endpoint secrets (file secrets are remembered when read)."""
        return [e.secret.get_secret_value() for e in self.endpoints if e.secret is not None]
