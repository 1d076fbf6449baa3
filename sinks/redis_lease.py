"""The output lease in Redis: one flow at a time writes a set of outputs.

Key layout (a public contract, beside the idempotency and live-usage keys)::

    {prefix}:lease        "{instance}|{epoch}|{started_ms}|{target}", expires after the TTL
    {prefix}:lease-epoch  counter, INCR at every acquisition (never expires)
    {prefix}:lease-holders  hash: '' -> the last holder, instance -> its latest epoch

The lease is keyed by the Redis key prefix because everything a flow writes
hangs off it: its idempotency claims decide what it counts, its live counters
and its ClickHouse rows follow. Two flows under one prefix would price the
same tenants' periods apart, whatever topics they read.

``acquire`` is ``SET NX PX`` with one exception: a holder with this flow's own
instance id (the same recovery directory, so a crash and restart) is taken
over at once, under a new epoch. The value's ``{instance}|{epoch}|`` head is
the fence: the claim and live-counter scripts refuse to write unless the
lease still starts with it (``fence_check`` below is their shared Lua), and
their writers then call ``Fence.lost``.

A flow resuming from recovery state is refused when another instance took the
lease after it: its restored period ledger and live counters know nothing of
what that flow counted, so it would price the periods as if that usage were
not there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn

import redis

from sinks.redis_keys import lease_epoch_key, lease_key, lease_last_key

# Lua that refuses a script's writes unless the lease (KEYS[1]) still starts with
# the fence (ARGV[1]): a paused flow that lost its lease cannot write. An empty
# fence checks nothing (a flow without a lease).
_FENCE_CHECK = """
if ARGV[1] ~= '' then
  local lease = redis.call('GET', KEYS[1])
  if not lease or string.sub(lease, 1, #ARGV[1]) ~= ARGV[1] then
    return %s
  end
end
"""

# KEYS: lease, epoch counter, last holder. ARGV: instance, started_ms, target,
# TTL in ms, '1' when resuming from recovery state.
# Free, or held by our own instance: take it under a new epoch -> {1, value}.
# Held by another: {0, value, remaining ms}. Resuming, having held it before,
# but another instance took it since: {2, that instance}. The holders hash keeps
# the last holder under '' and each instance's latest epoch under its id.
_ACQUIRE = """
local held = redis.call('GET', KEYS[1])
if held and string.sub(held, 1, #ARGV[1] + 1) ~= ARGV[1] .. '|' then
  return {0, held, redis.call('PTTL', KEYS[1])}
end
local last = redis.call('HGET', KEYS[3], '')
if ARGV[5] == '1' and last and last ~= ARGV[1]
    and redis.call('HEXISTS', KEYS[3], ARGV[1]) == 1 then
  return {2, last}
end
local epoch = redis.call('INCR', KEYS[2])
local value = ARGV[1] .. '|' .. epoch .. '|' .. ARGV[2] .. '|' .. ARGV[3]
redis.call('SET', KEYS[1], value, 'PX', ARGV[4])
redis.call('HSET', KEYS[3], '', ARGV[1], ARGV[1], epoch)
return {1, value}
"""

# KEYS: lease. ARGV: our value, TTL in ms. 1: extended; 0: lost (expired or taken).
_EXTEND = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

# KEYS: lease. ARGV: our value. Deletes it only while it is still ours.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def fence_check(refusal: str) -> str:
    """Lua to put first in a fenced script: returns ``refusal`` unless the lease holds.

    The script must take the lease key as ``KEYS[1]`` and the fence (``Holder.fence``,
    or empty for no check) as ``ARGV[1]``.
    """
    return _FENCE_CHECK % refusal


@dataclass(frozen=True)
class Holder:
    """Who holds a lease, from its value."""

    instance: str
    epoch: int
    started_ms: int
    # What the holder writes besides Redis (its ClickHouse target, no password).
    target: str

    @classmethod
    def parse(cls, value: str) -> Holder:
        """The holder named by a lease value."""
        instance, epoch, started, target = value.split("|", 3)
        return cls(instance, int(epoch), int(started), target)

    @property
    def fence(self) -> str:
        """The value's head that fenced scripts compare: ``{instance}|{epoch}|``."""
        return f"{self.instance}|{self.epoch}|"


class LeaseLost(RuntimeError):
    """This flow no longer holds its lease: it must not write any more."""


@dataclass(frozen=True)
class Fence:
    """What a fenced writer sends its script, and what it does once a write is refused."""

    # ``Holder.fence`` of the lease this flow holds; empty: no lease, nothing checked.
    token: str = ""
    # Told why, when a write was refused; the flow stops there (default: raise).
    on_lost: Callable[[str], NoReturn] | None = None

    def lost(self, detail: str) -> NoReturn:
        """A write was refused: the lease is no longer ours."""
        if self.on_lost is not None:
            self.on_lost(detail)
        raise LeaseLost(detail)


class LeaseHeld(RuntimeError):
    """Another flow holds the lease."""

    def __init__(self, holder: Holder, remaining_ms: int) -> None:
        super().__init__(f"lease held by instance {holder.instance}")
        self.holder = holder
        self.remaining_ms = remaining_ms


class LeaseSuperseded(RuntimeError):
    """Another instance took the lease after the one resuming: its state is stale."""

    def __init__(self, instance: str) -> None:
        super().__init__(f"instance {instance} took the lease since")
        self.instance = instance


class RedisLease:
    """The lease of the outputs under ``prefix``, for one flow instance."""

    def __init__(self, client: redis.Redis, prefix: str, instance: str, ttl_ms: int) -> None:
        if "|" in instance:
            raise ValueError(f"instance id {instance!r} must not contain '|'")
        self.key = lease_key(prefix)
        self._epoch_key = lease_epoch_key(prefix)
        self._last_key = lease_last_key(prefix)
        self._client = client
        self._instance = instance
        self.ttl_ms = ttl_ms
        self._acquire = client.register_script(_ACQUIRE)
        self._extend = client.register_script(_EXTEND)
        self._release = client.register_script(_RELEASE)
        self._value: str | None = None

    def acquire(self, started_ms: int, target: str, *, resuming: bool = False) -> Holder:
        """Take the lease (or take it over from our own instance).

        Raises ``LeaseHeld`` while another holds it, and, ``resuming`` from
        recovery state, ``LeaseSuperseded`` when another instance took it since.
        """
        reply = self._acquire(
            keys=[self.key, self._epoch_key, self._last_key],
            args=[self._instance, started_ms, target, self.ttl_ms, "1" if resuming else "0"],
        )
        value = _text(reply[1])
        if int(reply[0]) == 2:
            raise LeaseSuperseded(value)
        if int(reply[0]) != 1:
            raise LeaseHeld(Holder.parse(value), max(0, int(reply[2])))
        self._value = value
        return Holder.parse(value)

    def extend(self) -> bool:
        """Push the expiry a full TTL ahead; False once the lease is no longer ours.

        Raises ``redis.RedisError`` when Redis cannot be asked.
        """
        if self._value is None:
            return False
        return int(self._extend(keys=[self.key], args=[self._value, self.ttl_ms])) == 1

    def release(self) -> None:
        """Give the lease up (a no-op unless it is still ours)."""
        if self._value is not None:
            self._release(keys=[self.key], args=[self._value])
            self._value = None


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
