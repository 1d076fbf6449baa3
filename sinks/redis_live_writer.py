"""Publish live usage counters and hard-limit flags to Redis (a public contract).

Keys (``prefix`` default ``meterwax``; lengths in characters):

* ``{prefix}:usage:{len(tenant)}:{tenant}:{meter}:{period_start_ms}`` hash with
  ``quantity`` and ``amount`` (exact decimal strings: the period's usage and
  cost so far, before invoice-level rules), ``currency``, ``period_start_ms``,
  ``period_end_ms``, ``updated_ms``. Values are absolute, so a replay after a
  crash rewrites them to the same numbers.
* ``{prefix}:usage-index:{len(tenant)}:{tenant}`` set of ``{meter}:{period_start_ms}``.
* ``{prefix}:hard-limit:{len(tenant)}:{tenant}:{meter}`` exists (value: the
  period end, epoch ms) while the tenant is over the meter's hard limit in the
  current period: one GET tells a platform to refuse usage. It expires at the
  period end.
* ``{prefix}:quota-sent:{event_id}`` marks a quota event as produced, so a
  replay does not produce it again.

Everything expires ``RETAIN_MS`` after the period ends.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

import redis

from operators.live_usage import LiveCounter
from sinks.redis_live_usage import live_index_key, live_usage_key

log = logging.getLogger(__name__)

RETAIN_MS = 35 * 86_400_000
# Counters per script call: bounds the time Redis spends in one script.
PUBLISH_CHUNK = 2_000
T = TypeVar("T")

# One call writes a chunk of counters: KEYS are (hash, index, hard-limit flag) per
# counter, ARGV[2] one line of tab-separated values per counter. Far cheaper
# than five pipelined commands per counter, whose encoding dominated publishing.
_PUBLISH_SCRIPT = """
local now = ARGV[1]
local i = 0
for line in string.gmatch(ARGV[2], '[^\\n]+') do
  local f = {}
  for v in string.gmatch(line, '[^\\t]+') do f[#f + 1] = v end
  local key, index, flag = KEYS[i * 3 + 1], KEYS[i * 3 + 2], KEYS[i * 3 + 3]
  -- quantity, amount, currency, period start, period end, expiry, index member, limited
  redis.call('HSET', key, 'quantity', f[1], 'amount', f[2], 'currency', f[3],
    'period_start_ms', f[4], 'period_end_ms', f[5], 'updated_ms', now)
  redis.call('PEXPIREAT', key, f[6])
  redis.call('SADD', index, f[7])
  redis.call('PEXPIREAT', index, f[6])
  if f[8] == '1' then
    redis.call('SET', flag, f[5], 'PXAT', f[5])
  end
  i = i + 1
end
return i
"""


def hard_limit_key(prefix: str, tenant: str, meter: str) -> str:
    """Exists while the tenant is over the meter's hard limit."""
    return f"{prefix}:hard-limit:{len(tenant)}:{tenant}:{meter}"


class LiveUsageWriter:
    """Writes counters in one pipeline per batch; waits (retrying) while Redis is away."""

    def __init__(
        self,
        client: redis.Redis,
        prefix: str = "meterwax",
        on_failure: Callable[[], None] | None = None,
    ) -> None:
        self._client = client
        self._prefix = prefix
        self._publish = client.register_script(_PUBLISH_SCRIPT)
        # Told of every failed attempt (a metric), while writes keep retrying.
        self.on_failure = on_failure or (lambda: None)

    def publish(self, counters: Sequence[LiveCounter], now_ms: int) -> None:
        """Write the absolute values of ``counters``, in chunks of one script call each."""
        if not counters:
            return
        prefix = self._prefix
        for start in range(0, len(counters), PUBLISH_CHUNK):
            keys: list[str] = []
            lines: list[str] = []
            for c in counters[start : start + PUBLISH_CHUNK]:
                keys.append(live_usage_key(prefix, c.tenant, c.meter, c.period_start_ms))
                keys.append(live_index_key(prefix, c.tenant))
                keys.append(hard_limit_key(prefix, c.tenant, c.meter))
                limited = "1" if c.hard_limited and c.period_end_ms > now_ms else "0"
                lines.append(
                    f"{c.quantity:f}\t{c.amount:f}\t{c.currency}\t{c.period_start_ms}\t"
                    f"{c.period_end_ms}\t{c.period_end_ms + RETAIN_MS}\t"
                    f"{c.meter}:{c.period_start_ms}\t{limited}"
                )
            args = [now_ms, "\n".join(lines)]
            _with_retry(
                lambda k=keys, a=args: self._publish(keys=k, args=a),
                "publish live usage",
                self.on_failure,
            )

    def quota_sent(self, event_id: str) -> bool:
        """Whether a quota event was produced already (by this flow, before a restart)."""
        key = f"{self._prefix}:quota-sent:{event_id}"
        return bool(
            _with_retry(lambda: self._client.exists(key), "check quota marker", self.on_failure)
        )

    def mark_quota_sent(self, event_id: str, period_end_ms: int) -> None:
        """Remember that a quota event was produced."""
        key = f"{self._prefix}:quota-sent:{event_id}"
        _with_retry(
            lambda: self._client.set(key, 1, pxat=period_end_ms + RETAIN_MS),
            "mark quota event",
            self.on_failure,
        )


def _with_retry(operation: Callable[[], T], action: str, on_failure: Callable[[], None]) -> T:
    """Run ``operation``, retrying with backoff while Redis is unreachable or loading."""
    delay = 0.1
    while True:
        try:
            return operation()
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            on_failure()
            log.warning("Redis unavailable (%s), retrying in %.1fs: %s", action, delay, exc)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
