"""Webhook messages as plain data: payloads, stable ids, signatures and retry delays.

Payloads follow Standard Webhooks: ``{"type", "timestamp", "data"}``, signed
with HMAC-SHA256 over ``{id}.{timestamp}.{body}``. A message's id is derived
from what it announces, so a replay after a crash sends the same id and
receivers deduplicate on it. Decimals travel as exact strings.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from config.webhooks import secret_key
from operators.live_usage import LiveCounter, QuotaEvent


@dataclass(frozen=True, slots=True)
class WebhookMessage:
    """One announcement, the same for every endpoint that subscribes to it."""

    msg_id: str
    type: str
    tenant: str
    at_ms: int
    body: str


def message(
    event_type: str, key: str, tenant: str, at_ms: int, data: Mapping[str, Any]
) -> WebhookMessage:
    """A message of ``event_type`` whose id is derived from ``key`` (what it announces)."""
    digest = hashlib.sha256(f"{event_type}|{key}".encode()).hexdigest()[:32]
    stamp = datetime.fromtimestamp(at_ms / 1000, UTC).isoformat(timespec="milliseconds")
    body = json.dumps(
        {"type": event_type, "timestamp": stamp.replace("+00:00", "Z"), "data": dict(data)},
        sort_keys=True,
        separators=(",", ":"),
    )
    return WebhookMessage(f"msg_{digest}", event_type, tenant, at_ms, body)


def quota_event_data(event: QuotaEvent) -> dict[str, Any]:
    """A quota event as JSON-ready data: the Kafka record and the webhook's ``data``."""
    return {
        "event_id": event.event_id,
        "tenant": event.tenant,
        "meter": event.meter,
        "kind": event.kind,
        "level": _exact(event.level),
        "percent": None if event.percent is None else _exact(event.percent),
        "quantity": _exact(event.quantity),
        "period_start_ms": event.period_start_ms,
        "period_end_ms": event.period_end_ms,
        "at_ms": event.at_ms,
    }


def quota_message(event: QuotaEvent) -> WebhookMessage:
    """``quota.threshold``, ``quota.soft_limit`` or ``quota.hard_limit``."""
    data = quota_event_data(event)
    return message(f"quota.{event.kind}", event.event_id, event.tenant, event.at_ms, data)


def spend_message(
    counter: LiveCounter, threshold: Decimal, amount: Decimal, at_ms: int
) -> WebhookMessage:
    """``spend.threshold``: the tenant's ``amount`` in the period reached ``threshold``."""
    tenant, start = counter.tenant, counter.period_start_ms
    # One amount, one id: 100, 100.0 and 1E+2 in the settings are the same threshold.
    threshold_text = _exact(threshold.normalize())
    data = {
        "tenant": tenant,
        "threshold": threshold_text,
        "amount": _exact(amount),
        "currency": counter.currency,
        "period_start_ms": start,
        "period_end_ms": counter.period_end_ms,
        "at_ms": at_ms,
    }
    return message("spend.threshold", f"{tenant}|{start}|{threshold_text}", tenant, at_ms, data)


def period_closed_message(counters: Sequence[LiveCounter], at_ms: int) -> WebhookMessage:
    """``period.closed``: one tenant's final usage of a period, per meter."""
    first = counters[0]
    data = {
        "tenant": first.tenant,
        "period_start_ms": first.period_start_ms,
        "period_end_ms": first.period_end_ms,
        "currency": first.currency,
        "amount": _exact(sum((c.amount for c in counters), Decimal(0))),
        "meters": [
            {"meter": c.meter, "quantity": _exact(c.quantity), "amount": _exact(c.amount)}
            for c in sorted(counters, key=lambda c: c.meter)
        ],
        "at_ms": at_ms,
    }
    key = f"{first.tenant}|{first.period_start_ms}"
    return message("period.closed", key, first.tenant, at_ms, data)


def spend_crossings(
    amount: Decimal, thresholds: Sequence[Decimal], announced: set[Decimal]
) -> list[Decimal]:
    """The thresholds ``amount`` has reached that were not announced yet, lowest first."""
    return [t for t in sorted(thresholds) if amount >= t and t not in announced]


def signature(secret: str, msg_id: str, timestamp_s: int, body: str) -> str:
    """The ``webhook-signature`` header: ``v1,`` and base64 HMAC-SHA256 of ``id.timestamp.body``."""
    signed = f"{msg_id}.{timestamp_s}.{body}".encode()
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers(secret: str, msg_id: str, timestamp_s: int, body: str) -> dict[str, str]:
    """The Standard Webhooks headers of one attempt."""
    return {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp_s),
        "webhook-signature": signature(secret, msg_id, timestamp_s, body),
    }


def backoff_ms(attempts: int, initial_ms: int, max_ms: int, rng: random.Random) -> int:
    """The wait after the ``attempts``-th failure: doubling, capped, with jitter (50-100%).

    Jitter spreads the retries of many deliveries to one receiver that comes back.
    """
    delay = min(initial_ms * 2 ** min(attempts - 1, 40), max_ms)
    return int(delay * (0.5 + rng.random() / 2))


def _exact(value: Decimal) -> str:
    return format(value, "f")
