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

Everything else expires ``RETAIN_MS`` after the period ends (the index when
its latest period does). A counter's expiry, fixed fields and index entry are
written when its hash is created (or found gone); later writes set only
``quantity``, ``amount`` and ``updated_ms``.

Expiry is sent as a relative TTL (``PX``/``PEXPIRE``), computed from the
writer's clock at the moment of writing, never as an absolute instant: Redis
counts expiry on its own clock, which may be skewed, and a flow whose clock is
moved (tests) stays consistent with what it writes. What this clock says is
already past:

* a counter whose retention is over is not written at all (nor indexed): it
  would be expired on arrival, and estimates of closed periods come from the
  closed windows in ClickHouse;
* the hard-limit flag of a period that has ended is not set (it is only ever
  about the current period);
* a quota-sent marker is kept at least ``MIN_MARKER_TTL_MS``, so a replay soon
  after still finds it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TypeVar

import redis

from config.clock import SYSTEM_CLOCK, Clock
from operators.live_usage import LiveCounter
from sinks.redis_keys import (
    lease_key,
    live_usage_key,
    quota_sent_key,
)
from sinks.redis_lease import Fence, fence_check
from sinks.retry import REDIS_OUTAGES, RetryPolicy, redis_transient

log = logging.getLogger(__name__)

RETAIN_MS = 35 * 86_400_000
# A quota-sent marker outlives a replay even when its period's retention is over.
MIN_MARKER_TTL_MS = 86_400_000
# Counters per script call: bounds the time Redis spends in one script.
PUBLISH_CHUNK = 2_000
# Counters a writer remembers having written whole; beyond, it starts again.
MAX_WHOLE = 1_000_000
T = TypeVar("T")

# One call writes a chunk of counters: KEYS[1] is the lease and ARGV[1] the
# fence (see sinks.redis_lease; -1: lease lost, nothing written), then KEYS are
# the counters' hashes, ARGV[3] one line of tab-separated values per counter
# and ARGV[4] the key prefix. A counter's index and hard-limit keys are its
# hash's name with another kind and without the period (sinks.redis_keys):
# built here, so the client encodes one key per counter instead of three.
# Far cheaper than five pipelined commands per counter, whose encoding
# dominated publishing. A counter is rewritten every publish interval while
# its tenant sends usage, so the common case is one HSET of what changes; a
# hash that HSET finds without those fields (new, expired or lost with
# Redis's data), and every counter's first write by this writer (so an index
# entry lost while its hash lived is mended at the next start), get the fixed
# fields, the expiry and the index entry, which never change for a period.
# TTLs are relative (see the module docstring) and set when a hash is written
# whole, so its expiry stays about where the writer's clock first put it; the
# index only ever gets longer-lived, so a counter of an older period cannot
# cut a newer one's index.
_PUBLISH_SCRIPT = (
    fence_check("-1")
    + """
local now, prefix = ARGV[2], ARGV[4]
local usage = #prefix + #':usage:' + 1
local i = 0
local call, match, sub = redis.call, string.match, string.sub
local fields = '^' .. string.rep('([^\\t]*)\\t', 8) .. '(.*)$'
for line in string.gmatch(ARGV[3], '[^\\n]+') do
  -- quantity, amount, hard-limit flag TTL (0: no flag), '1' to write it whole,
  -- then currency, period start, period end, retention TTL, index member
  local q, a, flag_ttl, whole, c, s, e, ttl, member = match(line, fields)
  local key = KEYS[i + 2]
  -- '{len}:{tenant}' of '{prefix}:usage:{len}:{tenant}:{meter}:{start}'
  local owner = sub(key, usage, #key - #member - 1)
  local created = call('HSET', key, 'quantity', q, 'amount', a, 'updated_ms', now) > 0
  if created or whole == '1' then
    local index = prefix .. ':usage-index:' .. owner
    call('HSET', key, 'currency', c, 'period_start_ms', s, 'period_end_ms', e)
    call('PEXPIRE', key, ttl)
    call('SADD', index, member)
    if call('PTTL', index) < tonumber(ttl) then
      call('PEXPIRE', index, ttl)
    end
  end
  if flag_ttl ~= '0' then
    local meter = sub(member, 1, #member - #s - 1)
    call('SET', prefix .. ':hard-limit:' .. owner .. ':' .. meter, e, 'PX', flag_ttl)
  end
  i = i + 1
end
return i
"""
)


class LiveUsageWriter:
    """Writes counters in one pipeline per batch; waits (retrying) while Redis is away."""

    def __init__(
        self,
        client: redis.Redis,
        prefix: str = "meterwax",
        on_failure: Callable[[], None] | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._client = client
        self._prefix = prefix
        self._clock = clock
        self._publish = client.register_script(_PUBLISH_SCRIPT)
        # Told of every failed attempt (a metric), while writes keep retrying.
        self.on_failure = on_failure or (lambda: None)
        # Counters are written only while the flow still holds its output lease.
        self.fence = Fence()
        # Hashes this writer has written whole (fixed fields, expiry, index entry).
        self._whole: set[str] = set()

    def publish(self, counters: Sequence[LiveCounter], now_ms: int) -> None:
        """Write the absolute values of ``counters`` (``updated_ms``: ``now_ms``), in chunks.

        Expiry is computed from the writer's clock when each chunk is written
        (again on every retry); counters whose retention is over are skipped.
        """
        prefix = self._prefix
        for start in range(0, len(counters), PUBLISH_CHUNK):
            chunk = counters[start : start + PUBLISH_CHUNK]

            def write(chunk: Sequence[LiveCounter] = chunk) -> object:
                keys = [lease_key(prefix)]
                lines: list[str] = []
                clock_ms = self._clock.now_ms()
                whole = self._whole
                for c in chunk:
                    ttl = c.period_end_ms + RETAIN_MS - clock_ms
                    if ttl <= 0:
                        continue
                    key = live_usage_key(prefix, c.tenant, c.meter, c.period_start_ms)
                    keys.append(key)
                    flag_ttl = max(0, c.period_end_ms - clock_ms) if c.hard_limited else 0
                    lines.append(
                        f"{c.quantity:f}\t{c.amount:f}\t{flag_ttl}\t{int(key not in whole)}\t"
                        f"{c.currency}\t{c.period_start_ms}\t{c.period_end_ms}\t{ttl}\t"
                        f"{c.meter}:{c.period_start_ms}"
                    )
                if not lines:
                    return 0
                reply = self._publish(
                    keys=keys, args=[self.fence.token, now_ms, "\n".join(lines), prefix]
                )
                if len(whole) > MAX_WHOLE:
                    whole.clear()
                whole.update(keys[1:])
                return reply

            if _with_retry(write, "publish live usage", self.on_failure) == -1:
                self.fence.lost(f"Redis refused {len(chunk)} live counters")

    def quota_sent(self, event_id: str) -> bool:
        """Whether a quota event was produced already (by this flow, before a restart)."""
        key = quota_sent_key(self._prefix, event_id)
        return bool(
            _with_retry(lambda: self._client.exists(key), "check quota marker", self.on_failure)
        )

    def mark_quota_sent(self, event_id: str, period_end_ms: int) -> None:
        """Remember that a quota event was produced."""
        key = quota_sent_key(self._prefix, event_id)

        def mark() -> object:
            ttl = period_end_ms + RETAIN_MS - self._clock.now_ms()
            return self._client.set(key, 1, px=max(ttl, MIN_MARKER_TTL_MS))

        _with_retry(mark, "mark quota event", self.on_failure)


# Waits for as long as Redis is away: live counters are absolute values, so
# publishing late is safe, and the flow's own progress does not depend on them.
_RETRY = RetryPolicy(initial_s=0.1, max_s=5.0)


def _with_retry(operation: Callable[[], T], action: str, on_failure: Callable[[], None]) -> T:
    """Run ``operation``, retrying while Redis is unreachable, loading or failing over."""

    def retrying(exc: BaseException, failures: int, delay: float) -> None:
        log.warning("Redis unavailable (%s), retrying in %.1fs: %s", action, delay, exc)

    return _RETRY.run(
        operation,
        errors=REDIS_OUTAGES,
        transient=redis_transient,
        on_failure=lambda exc, failures: on_failure(),
        on_retry=retrying,
    )
