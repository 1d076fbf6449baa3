"""The flow's side of webhooks: quota events and spend crossings into the outbox.

Runs in the live-usage sink, so it only writes to Redis (never HTTP): the
dispatcher delivers later. Each message is enqueued before it is marked as
announced, so a crash in between repeats it (same id), never loses it.

Spend is a tenant's amount over all its meters in a period. The sink sees
only the counters that changed, so the amounts of the others are read from
Redis once per tenant and period (after a restart, say) and kept up to date
from then on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal
from typing import TypeVar

import redis

from config.clock import SYSTEM_CLOCK, Clock
from config.webhooks import WebhookEndpoint, WebhookSettings
from operators.live_usage import LiveCounter, QuotaEvent
from operators.webhooks import WebhookMessage, quota_message, spend_crossings, spend_message
from sinks.redis_keys import live_index_key, live_usage_key
from sinks.retry import REDIS_OUTAGES, RetryPolicy, redis_transient
from sinks.webhook_outbox import WebhookOutbox

log = logging.getLogger(__name__)
T = TypeVar("T")
# (tenant, period start ms)
_Period = tuple[str, int]

_RETRY = RetryPolicy(initial_s=0.1, max_s=5.0)


class WebhookAnnouncer:
    """Queues the webhooks that live usage calls for."""

    def __init__(
        self,
        client: redis.Redis,
        prefix: str,
        settings: WebhookSettings,
        plan_of: Callable[[str], str | None],
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._client = client
        self._prefix = prefix
        self._outbox = WebhookOutbox(client, prefix)
        self._endpoints: Sequence[WebhookEndpoint] = settings.endpoints
        self._spend = settings.spend_thresholds
        self._plan_of = plan_of
        self._clock = clock
        self._amounts: dict[_Period, dict[str, Decimal]] = {}
        self._announced: dict[_Period, set[Decimal]] = {}

    def quota(self, event: QuotaEvent) -> None:
        """Queue the quota event for the endpoints that want it."""
        self._enqueue(quota_message(event))

    def counters(self, counters: Iterable[LiveCounter]) -> None:
        """Queue the spend thresholds that ``counters`` make their tenants reach."""
        touched: dict[_Period, LiveCounter] = {}
        for c in counters:
            thresholds = self._spend.for_tenant(c.tenant, self._plan_of(c.tenant))
            if not thresholds:
                continue
            period = (c.tenant, c.period_start_ms)
            if period not in self._amounts:
                self._amounts[period] = self._stored(period)
            self._amounts[period][c.meter] = c.amount
            touched[period] = c
        for period, c in touched.items():
            total = sum(self._amounts[period].values(), Decimal(0))
            thresholds = self._spend.for_tenant(c.tenant, self._plan_of(c.tenant))
            announced = self._announced.setdefault(period, set())
            for threshold in spend_crossings(total, thresholds, announced):
                msg = spend_message(c, threshold, total, self._clock.now_ms())
                self._announce_once(msg, c.period_end_ms)
                announced.add(threshold)
        self._forget_old(touched)

    def _announce_once(self, msg: WebhookMessage, period_end_ms: int) -> None:
        # Enqueue, then mark: a crash in between repeats the message, never loses it.
        if not _retry(lambda: self._outbox.was_sent(msg.msg_id)):
            self._enqueue(msg)
            now_ms = self._clock.now_ms()
            _retry(lambda: self._outbox.mark_sent(msg.msg_id, period_end_ms, now_ms))

    def _enqueue(self, msg: WebhookMessage) -> None:
        names = [e.name for e in self._endpoints if e.wants(msg.type, msg.tenant)]
        if names:
            now_ms = self._clock.now_ms()
            _retry(lambda: self._outbox.enqueue(msg, names, now_ms))

    def _stored(self, period: _Period) -> dict[str, Decimal]:
        """The tenant's published amounts per meter in the period."""
        return _retry(lambda: self._read_amounts(period))

    def _read_amounts(self, period: _Period) -> dict[str, Decimal]:
        tenant, start = period
        members = self._client.smembers(live_index_key(self._prefix, tenant))
        meters = [
            meter
            for meter, _, at in (m.decode().rpartition(":") for m in members)  # type: ignore[union-attr]
            if at == str(start)
        ]
        amounts: dict[str, Decimal] = {}
        for meter in meters:
            value = self._client.hget(live_usage_key(self._prefix, tenant, meter, start), "amount")
            if value is not None:
                amounts[meter] = Decimal(value.decode())  # type: ignore[union-attr]
        return amounts

    def _forget_old(self, touched: dict[_Period, LiveCounter]) -> None:
        # A tenant's older periods are done once a newer one has usage.
        for tenant, start in touched:
            for old in [p for p in self._amounts if p[0] == tenant and p[1] < start]:
                del self._amounts[old]
                self._announced.pop(old, None)


def _retry(operation: Callable[[], T]) -> T:
    """Run ``operation``, waiting while Redis is unreachable (the flow waits too)."""

    def retrying(exc: BaseException, failures: int, delay: float) -> None:
        log.warning("Redis unavailable (queue webhook), retrying in %.1fs: %s", delay, exc)

    return _RETRY.run(operation, errors=REDIS_OUTAGES, transient=redis_transient, on_retry=retrying)
