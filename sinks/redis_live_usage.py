"""Live usage counters in Redis: the key layout (shared with the writer) and the read side.

The flow updates one hash per tenant, meter and billing period as events are
accepted, so estimates see usage before its windows close. Key layout (a
public contract, like the idempotency keys)::

    {prefix}:usage:{len(tenant)}:{tenant}:{meter}:{period_start_ms}
        quantity         exact decimal string: the period's usage so far
        amount           exact decimal string, full precision: its cost so far
                         (before invoice-level rules: minimums, fixed fee, commitment)
        currency         ISO 4217 code
        period_start_ms  period_end_ms  updated_ms    epoch milliseconds

    {prefix}:usage-index:{len(tenant)}:{tenant}
        a set of "{meter}:{period_start_ms}", one member per hash above

Lengths count characters (Python ``len``), so a tenant containing ':' cannot
collide with another tenant's keys. Meter slugs never contain ':'.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation

import redis

from operators.estimates import LiveReading
from sinks.redis_keys import live_index_key, live_usage_key

_FIELDS = ("quantity", "amount", "currency", "period_start_ms", "period_end_ms", "updated_ms")


class LiveUsageError(RuntimeError):
    """A live counter that does not follow the contract (a writer bug: never guessed around)."""


def read_live_usage(
    client: redis.Redis, prefix: str, tenant: str, period_start_ms: int
) -> dict[str, LiveReading]:
    """Every live counter of ``tenant`` for the period starting at ``period_start_ms``, by meter.

    Two round trips: the index, then all the period's hashes in one pipeline.
    A member whose hash is gone (expired or deleted) is skipped; a hash that
    breaks the contract raises LiveUsageError naming the key and the field.
    """
    suffix = f":{period_start_ms}"
    meters = sorted(
        member[: -len(suffix)]
        for member in map(_text, client.smembers(live_index_key(prefix, tenant)))
        if member.endswith(suffix)
    )
    if not meters:
        return {}
    keys = [live_usage_key(prefix, tenant, meter, period_start_ms) for meter in meters]
    pipeline = client.pipeline(transaction=False)
    for key in keys:
        pipeline.hgetall(key)
    found: dict[str, LiveReading] = {}
    for meter, key, raw in zip(meters, keys, pipeline.execute(), strict=True):
        if raw:
            usage = _parse(key, meter, {_text(k): _text(v) for k, v in raw.items()})
            if usage.period_start_ms != period_start_ms:
                raise LiveUsageError(
                    f"{key}: period_start_ms is {usage.period_start_ms}, "
                    f"but the key names {period_start_ms}"
                )
            found[meter] = usage
    return found


def _parse(key: str, meter: str, fields: Mapping[str, str]) -> LiveReading:
    missing = [name for name in _FIELDS if name not in fields]
    if missing:
        raise LiveUsageError(f"{key}: missing field(s) {', '.join(missing)}")
    return LiveReading(
        meter=meter,
        quantity=_decimal(key, "quantity", fields["quantity"]),
        amount=_decimal(key, "amount", fields["amount"]),
        currency=fields["currency"],
        period_start_ms=_int(key, "period_start_ms", fields["period_start_ms"]),
        period_end_ms=_int(key, "period_end_ms", fields["period_end_ms"]),
        updated_ms=_int(key, "updated_ms", fields["updated_ms"]),
    )


def _decimal(key: str, field: str, text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise LiveUsageError(f"{key}: {field} {text!r} is not a decimal") from None
    if not value.is_finite() or value < 0:
        raise LiveUsageError(f"{key}: {field} {text!r} is not a finite amount of zero or more")
    return value


def _int(key: str, field: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise LiveUsageError(f"{key}: {field} {text!r} is not an integer") from None


def _text(value: bytes | str) -> str:
    """Replies are bytes unless the client decodes them; accept both."""
    return value.decode("utf-8", "surrogatepass") if isinstance(value, bytes) else value
