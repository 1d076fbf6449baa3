"""Redis memory and claim speed per idempotency key: the layout before day buckets against today's.

Each layout gets a fresh redis-server of its own and the same claims: Zipf
tenants, a few sources, UUID ids, event times spread over days, tokens as the
flow writes them, in batches of ``--batch`` as the flow sends them. Every claim
must come back NEW. The report gives ``INFO memory`` used_memory after minus
before, per key, the claim rate, and what the TTL needs at steady rates.

    python -m benchmarks.redis_memory --keys 1000000 --days 7
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import json
import random
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import redis

from dataflows.local_services import start_redis, stop
from operators.idempotency import DAY_MS, Claim, ClaimStatus, claim_token
from sinks.redis_idempotency import DEFAULT_TTL_S, RedisIdempotencyStore, legacy_key

START_MS = 1_790_000_000_000  # a fixed clock: event times only pick day buckets
RATES = (1_000, 10_000, 100_000)  # events/s in the capacity table

# What the store wrote before day buckets (one key per event, the token as
# value), kept here only to measure it.
_OLD_CLAIM = """
local ttl, out = ARGV[1], {}
for i = 1, #KEYS do
  local key, token = KEYS[i], ARGV[i + 1]
  if redis.call('SET', key, token, 'NX', 'EX', ttl) then
    out[i] = '0'
  elseif redis.call('GET', key) == token then
    redis.call('EXPIRE', key, ttl)
    out[i] = '1'
  else
    out[i] = '2'
  end
end
return table.concat(out)
"""


def claims(keys: int, days: int, tenants: int, seed: int) -> list[Claim]:
    """``keys`` distinct events as the flow claims them, in event-time order over ``days``."""
    rng = random.Random(seed)
    cumulative = list(itertools.accumulate(1 / (rank + 1) for rank in range(tenants)))  # Zipf
    names = [f"tenant-{rank:05d}" for rank in range(tenants)]
    sources = [f"api-gw/{region}" for region in ("eu-west-1", "us-east-1", "ap-south-1")]
    instance = uuid.UUID(int=rng.getrandbits(128)).hex
    step = days * DAY_MS / keys
    out = []
    for n in range(keys):
        tenant = names[bisect.bisect(cumulative, rng.random() * cumulative[-1])]
        event_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        token = claim_token(instance, "usage-events", n % 12, n // 12)
        out.append(Claim(tenant, sources[n % 3], event_id, token, START_MS + int(n * step)))
    return out


@contextmanager
def fresh_redis() -> Iterator[redis.Redis]:
    """A redis-server of its own, empty, stopped afterwards."""
    with tempfile.TemporaryDirectory(prefix="meterwax-redis-memory-") as workdir:
        service = start_redis(Path(workdir))
        client = redis.Redis(port=service.port)
        try:
            yield client
        finally:
            client.close()
            stop(service.pid)


def old_claimer(client: redis.Redis, prefix: str) -> Callable[[Sequence[Claim]], str]:
    """Claims in the layout before day buckets, one script call per batch."""
    script = client.register_script(_OLD_CLAIM)
    ttl = str(DEFAULT_TTL_S).encode()

    def claim(batch: Sequence[Claim]) -> str:
        keys = [_utf8(legacy_key(prefix, c.tenant, c.source, c.id)) for c in batch]
        reply = script(keys=keys, args=[ttl, *(_utf8(c.token) for c in batch)])
        return reply.decode() if isinstance(reply, bytes) else str(reply)

    return claim


def new_claimer(client: redis.Redis, prefix: str) -> Callable[[Sequence[Claim]], str]:
    """Claims through today's store (day buckets)."""
    store = RedisIdempotencyStore(client, key_prefix=prefix)

    def claim(batch: Sequence[Claim]) -> str:
        return "".join(str(int(status)) for status in store.claim(batch))

    return claim


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def measure(
    name: str,
    make: Callable[[redis.Redis, str], Callable[[Sequence[Claim]], str]],
    events: Sequence[Claim],
    batch: int,
) -> dict[str, float | int | str]:
    """Claim ``events`` on a fresh server; memory per key and claims per second."""
    with fresh_redis() as client:
        claim = make(client, "meterwax")
        claim(events[:1])  # loads the script, creates the first keys
        before = int(client.info("memory")["used_memory"])
        script_us = _script_usec(client)
        started = time.perf_counter()
        fresh = 0
        for start in range(1, len(events), batch):
            fresh += claim(events[start : start + batch]).count(str(int(ClaimStatus.NEW)))
        seconds = time.perf_counter() - started
        used = int(client.info("memory")["used_memory"]) - before
        script_us = _script_usec(client) - script_us
        redis_keys = int(client.dbsize())
    claimed = len(events) - 1
    if fresh != claimed:
        raise SystemExit(f"{name}: {claimed - fresh} of {claimed} distinct events were not NEW")
    return {
        "layout": name,
        "keys": claimed,
        "redis_keys": redis_keys,
        "used_memory_bytes": used,
        "bytes_per_key": used / claimed,
        "claims_per_s": claimed / seconds,
        "redis_script_us_per_claim": script_us / claimed,
    }


def _script_usec(client: redis.Redis) -> int:
    """Microseconds Redis has spent running scripts by EVALSHA (``INFO commandstats``)."""
    stats = client.info("commandstats").get("cmdstat_evalsha", {"usec": 0})
    return int(stats["usec"])


def capacity(bytes_per_key: float, ttl_s: int, days_kept_extra: float) -> list[float]:
    """Memory (bytes) the TTL needs at each of ``RATES``."""
    kept_s = ttl_s + days_kept_extra * 86_400
    return [rate * kept_s * bytes_per_key for rate in RATES]


def render(results: list[dict[str, float | int | str]], ttl_s: int) -> str:
    """The report: one line per layout, then the capacity table."""
    lines = []
    for r in results:
        lines.append(
            f"{r['layout']:<12} {r['keys']:>10,} keys ({r['redis_keys']:,} Redis keys): "
            f"{r['bytes_per_key']:6.1f} bytes/key, {r['claims_per_s']:>9,.0f} claims/s "
            f"({r['redis_script_us_per_claim']:.2f} µs/claim in Redis's script)"
        )
    days = ttl_s / 86_400
    header = " | ".join(f"{rate:,} events/s" for rate in RATES)
    lines += ["", f"| layout | bytes/key | {header} |", "|---|---|" + "---|" * len(RATES)]
    for r in results:
        # Day buckets keep a claim until the TTL after its day's last claim: ~1 day more.
        extra = 1.0 if r["layout"] == "day-buckets" else 0.0
        need = capacity(float(r["bytes_per_key"]), ttl_s, extra)
        cells = " | ".join(f"{b / 2**30:,.0f} GiB" for b in need)
        lines.append(f"| {r['layout']} | {float(r['bytes_per_key']):.1f} | {cells} |")
    lines.append(f"(memory for a TTL of {days:g} days)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Measure both layouts and print the report (and ``--json``, the figures)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=1_000_000, help="distinct events claimed")
    parser.add_argument("--days", type=int, default=7, help="days of event time they span")
    parser.add_argument("--tenants", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=5_000, help="claims per round trip")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    if args.keys < 2 or args.days < 1 or args.tenants < 1 or args.batch < 1:
        parser.error("--keys must be at least 2; --days, --tenants and --batch at least 1")

    events = claims(args.keys, args.days, args.tenants, args.seed)
    results = [
        measure("old", old_claimer, events, args.batch),
        measure("day-buckets", new_claimer, events, args.batch),
    ]
    print(render(results, DEFAULT_TTL_S))
    if args.json is not None:
        args.json.write_text(json.dumps({"ttl_s": DEFAULT_TTL_S, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
