"""The public Redis key contract: every key meterwax writes, under ``redis.key_prefix``.

Readers outside meterwax (quota enforcement, dashboards) rely on these names.
Tenants are written with their length first, so a tenant containing ``:``
cannot make two keys collide.

* ``{prefix}:usage:{len}:{tenant}:{meter}:{period_start_ms}`` hash: a live
  counter (quantity, amount, currency, period bounds, updated_ms).
* ``{prefix}:usage-index:{len}:{tenant}`` set of ``{meter}:{period_start_ms}``:
  the tenant's live counters.
* ``{prefix}:hard-limit:{len}:{tenant}:{meter}``: exists while the tenant is over
  the meter's hard limit.
* ``{prefix}:quota-sent:{event_id}``: a quota event was produced.
* ``{prefix}:lease`` and ``{prefix}:lease-epoch``: the single-writer lease.
* Idempotency claims: see ``sinks.redis_idempotency`` (its layout is versioned there).
"""

from __future__ import annotations


def live_usage_key(prefix: str, tenant: str, meter: str, period_start_ms: int) -> str:
    """The hash of one tenant's meter in the period starting at ``period_start_ms``."""
    return f"{prefix}:usage:{len(tenant)}:{tenant}:{meter}:{period_start_ms}"


def live_index_key(prefix: str, tenant: str) -> str:
    """The set listing the tenant's counters as ``{meter}:{period_start_ms}``."""
    return f"{prefix}:usage-index:{len(tenant)}:{tenant}"


def hard_limit_key(prefix: str, tenant: str, meter: str) -> str:
    """Exists while the tenant is over the meter's hard limit."""
    return f"{prefix}:hard-limit:{len(tenant)}:{tenant}:{meter}"


def quota_sent_key(prefix: str, event_id: str) -> str:
    """Marks the quota event ``event_id`` as produced (by this flow, before a restart)."""
    return f"{prefix}:quota-sent:{event_id}"


def lease_key(prefix: str) -> str:
    """The lease of the outputs under ``prefix``."""
    return f"{prefix}:lease"


def lease_epoch_key(prefix: str) -> str:
    """The counter raised at every acquisition of the lease (never expires)."""
    return f"{prefix}:lease-epoch"


def lease_last_key(prefix: str) -> str:
    """Hash of who held the lease: '' -> the last holder, instance -> its latest epoch."""
    return f"{prefix}:lease-holders"
