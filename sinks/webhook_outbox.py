"""The webhook outbox in Redis: what the flow hands over, what the dispatcher delivers.

The flow only enqueues (one script call per message, no HTTP), so a receiver
that is down never slows metering; the queue is persisted in Redis, so a
restarted dispatcher carries on where the last one stopped. Keys, under
``redis.key_prefix``:

* ``{prefix}:webhook-seq``: the counter that orders messages.
* ``{prefix}:webhook-queue:{endpoint}`` sorted set of message ids by sequence:
  each endpoint's deliveries are made in this order (first in, first out).
* ``{prefix}:webhook-msg:{endpoint}:{msg_id}`` hash: ``type``, ``tenant``,
  ``body``, ``created_ms``, ``attempts``, ``next_ms`` (the next attempt).
* ``{prefix}:webhook-sent:{msg_id}``: a spend or period-closed message was
  enqueued (quota events use ``quota-sent``).
* ``{prefix}:webhook-dispatcher``: the lease of the one dispatcher that delivers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import redis

from operators.webhooks import WebhookMessage
from sinks.redis_live_writer import MIN_MARKER_TTL_MS, RETAIN_MS

# KEYS[1] the sequence, then (queue, message hash) per endpoint. ARGV: msg id,
# type, tenant, body, created_ms. A message already queued for an endpoint is
# left as it is (its attempts go on).
_ENQUEUE = """
local added = 0
for i = 2, #KEYS, 2 do
  if redis.call('EXISTS', KEYS[i + 1]) == 0 then
    local seq = redis.call('INCR', KEYS[1])
    redis.call('HSET', KEYS[i + 1], 'type', ARGV[2], 'tenant', ARGV[3], 'body', ARGV[4],
      'created_ms', ARGV[5], 'attempts', 0, 'next_ms', 0)
    redis.call('ZADD', KEYS[i], seq, ARGV[1])
    added = added + 1
  end
end
return added
"""

# KEYS[1] the queue, KEYS[2] the message hash. ARGV: msg id, attempts, next_ms.
# Only a message still queued is updated: one delivered (or given up) meanwhile by
# a dispatcher that took the lease over must not come back as a hash without a
# queue entry, which would keep it from ever being queued again.
_FAILED = """
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  redis.call('HSET', KEYS[2], 'attempts', ARGV[2], 'next_ms', ARGV[3])
  return 1
end
return 0
"""

# KEYS[1] the lease; ARGV: holder, ttl_ms. Take it if free, renew it if held.
_ACQUIRE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@dataclass(frozen=True, slots=True)
class Pending:
    """A delivery waiting at the head of an endpoint's queue."""

    endpoint: str
    msg_id: str
    type: str
    tenant: str
    body: str
    created_ms: int
    attempts: int
    next_ms: int


class WebhookOutbox:
    """Per-endpoint FIFO queues of webhook deliveries, persisted in Redis."""

    def __init__(self, client: redis.Redis, prefix: str = "meterwax") -> None:
        self._client = client
        self._prefix = prefix
        self._enqueue = client.register_script(_ENQUEUE)
        self._failed = client.register_script(_FAILED)
        self._acquire = client.register_script(_ACQUIRE)
        self._release = client.register_script(_RELEASE)

    def enqueue(self, message: WebhookMessage, endpoints: Sequence[str], created_ms: int) -> int:
        """Queue ``message`` for each of ``endpoints``; returns how many were newly queued."""
        if not endpoints:
            return 0
        keys = [f"{self._prefix}:webhook-seq"]
        for endpoint in endpoints:
            keys += [self._queue(endpoint), self._hash(endpoint, message.msg_id)]
        args = [message.msg_id, message.type, message.tenant, message.body, created_ms]
        return int(self._enqueue(keys=keys, args=args))  # type: ignore[arg-type]

    def was_sent(self, msg_id: str) -> bool:
        """Whether ``mark_sent(msg_id)`` was called (within the marker's lifetime)."""
        return bool(self._client.exists(f"{self._prefix}:webhook-sent:{msg_id}"))

    def mark_sent(self, msg_id: str, period_end_ms: int, now_ms: int) -> None:
        """Remember that ``msg_id`` was enqueued, so a replay does not enqueue it again.

        Kept as long as the live counters of its period (which a replay rewrites),
        like the quota-sent markers.
        """
        ttl_ms = max(period_end_ms + RETAIN_MS - now_ms, MIN_MARKER_TTL_MS)
        self._client.set(f"{self._prefix}:webhook-sent:{msg_id}", 1, px=ttl_ms)

    def head(self, endpoint: str) -> Pending | None:
        """The oldest delivery queued for ``endpoint``."""
        ids = self._client.zrange(self._queue(endpoint), 0, 0)
        if not ids:
            return None
        msg_id = _text(ids[0])
        fields = {
            _text(k): _text(v)
            for k, v in self._client.hgetall(self._hash(endpoint, msg_id)).items()
        }
        if not fields:
            # The hash is gone (deleted by hand): nothing to deliver.
            self._client.zrem(self._queue(endpoint), msg_id)
            return self.head(endpoint)
        return Pending(
            endpoint,
            msg_id,
            fields["type"],
            fields["tenant"],
            fields["body"],
            int(fields["created_ms"]),
            int(fields["attempts"]),
            int(fields["next_ms"]),
        )

    def depth(self, endpoint: str) -> int:
        """How many deliveries wait for ``endpoint``."""
        return int(self._client.zcard(self._queue(endpoint)))

    def failed_attempt(self, pending: Pending, next_ms: int) -> None:
        """Count a failed attempt and set when the next one is due (if still queued)."""
        keys = [self._queue(pending.endpoint), self._hash(pending.endpoint, pending.msg_id)]
        self._failed(keys=keys, args=[pending.msg_id, pending.attempts + 1, next_ms])

    def done(self, pending: Pending) -> None:
        """Take a delivered (or given up) message off its endpoint's queue."""
        pipe = self._client.pipeline(transaction=True)
        pipe.zrem(self._queue(pending.endpoint), pending.msg_id)
        pipe.delete(self._hash(pending.endpoint, pending.msg_id))
        pipe.execute()

    def acquire(self, holder: str, ttl_ms: int) -> bool:
        """Take or renew the dispatcher lease for ``holder``; False while another holds it."""
        keys = [f"{self._prefix}:webhook-dispatcher"]
        return bool(self._acquire(keys=keys, args=[holder, ttl_ms]))

    def release(self, holder: str) -> None:
        """Give the dispatcher lease up if ``holder`` holds it."""
        self._release(keys=[f"{self._prefix}:webhook-dispatcher"], args=[holder])

    def _queue(self, endpoint: str) -> str:
        return f"{self._prefix}:webhook-queue:{endpoint}"

    def _hash(self, endpoint: str, msg_id: str) -> str:
        return f"{self._prefix}:webhook-msg:{endpoint}:{msg_id}"


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
