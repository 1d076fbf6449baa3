"""``period.closed`` webhooks: each tenant's final usage, once a period is settled.

Read from the live counters in Redis (absolute values, final once no late
event can change them) by the dispatcher, off the flow's path. A period is
announced once ``settled_after`` has passed since it ended; a marker keeps it
from being announced twice.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from decimal import Decimal

import redis

from config.webhooks import WebhookEndpoint
from operators.live_usage import LiveCounter
from operators.webhooks import period_closed_message
from sinks.redis_keys import live_usage_key
from sinks.webhook_outbox import WebhookOutbox


def announce_closed_periods(
    client: redis.Redis,
    prefix: str,
    endpoints: Sequence[WebhookEndpoint],
    settled_after_ms: int,
    now_ms: int,
) -> int:
    """Queue ``period.closed`` for every settled period not announced yet; returns how many."""
    if not any("period.closed" in e.events for e in endpoints):
        return 0
    outbox = WebhookOutbox(client, prefix)
    index_prefix = f"{prefix}:usage-index:"
    queued = 0
    for raw_key in client.scan_iter(match=f"{index_prefix}*", count=500):
        key = raw_key.decode() if isinstance(raw_key, bytes) else str(raw_key)
        length, _, tenant = key[len(index_prefix) :].partition(":")
        if not length.isdigit() or len(tenant) != int(length):
            continue
        periods: dict[int, list[str]] = defaultdict(list)
        for member in client.smembers(key):
            meter, _, begins = _text(member).rpartition(":")
            if begins.isdigit():
                periods[int(begins)].append(meter)
        for start, meters in sorted(periods.items()):
            counters = _counters(client, prefix, tenant, start, meters)
            if not counters or counters[0].period_end_ms + settled_after_ms > now_ms:
                continue
            msg = period_closed_message(counters, now_ms)
            if outbox.was_sent(msg.msg_id):
                continue
            names = [e.name for e in endpoints if e.wants(msg.type, tenant)]
            outbox.enqueue(msg, names, now_ms)
            outbox.mark_sent(msg.msg_id, counters[0].period_end_ms, now_ms)
            queued += 1
    return queued


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _counters(
    client: redis.Redis, prefix: str, tenant: str, start: int, meters: list[str]
) -> list[LiveCounter]:
    found = []
    for meter in sorted(meters):
        raw = client.hgetall(live_usage_key(prefix, tenant, meter, start))
        fields = {k.decode(): v.decode() for k, v in raw.items()}  # type: ignore[union-attr]
        if not fields:
            continue  # expired
        found.append(
            LiveCounter(
                tenant,
                meter,
                start,
                int(fields["period_end_ms"]),
                Decimal(fields["quantity"]),
                Decimal(fields["amount"]),
                fields["currency"],
                False,
            )
        )
    return found
