"""The output lease as the flow holds it: refusal line, renewal, the write guard, release."""

from __future__ import annotations

import subprocess
import sys
import uuid

import pytest
import redis

from cli.run_command import exit_lease_lost
from config.clock import FixedClock
from config.errors import ConfigError
from config.settings import Settings, load_settings
from dataflows.lease import LOST, LeaseRefused, output_lease
from sinks.redis_keys import lease_key
from sinks.redis_lease import RedisLease

pytestmark = pytest.mark.integration

STARTED_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def _settings(redis_url: str, prefix: str, ttl: str = "1s") -> Settings:
    return load_settings(
        overrides={
            "redis": {"url": redis_url, "key_prefix": prefix},
            "clickhouse": {"dsn": "chdb:///srv/meterwax/ch", "database": "usage"},
            "flow": {"lease_ttl": ttl},
        }
    )


def test_a_second_flow_is_refused_with_one_line_naming_the_holder(redis_url: str) -> None:
    prefix = f"lease-{uuid.uuid4().hex}"
    settings = _settings(redis_url, prefix, ttl="30s")
    with output_lease(settings, "first", FixedClock(STARTED_MS), exit_lease_lost) as keeper:
        assert keeper is not None
        with (
            pytest.raises(LeaseRefused) as refused,
            output_lease(settings, "second", FixedClock(STARTED_MS), exit_lease_lost),
        ):
            pass
        keeper.check()
    assert str(refused.value) == (
        "another flow (instance first, started 2026-01-01T00:00:00Z, writing "
        "chdb:/srv/meterwax/ch database usage) holds the lease for the outputs under "
        f"Redis prefix {prefix!r} at {redis_url}; stop it, or wait 30s for its lease to "
        "expire if it crashed"
    )
    # Released on the way out: the next flow takes it at once.
    with output_lease(settings, "second", FixedClock(STARTED_MS), exit_lease_lost) as keeper:
        assert keeper is not None and keeper.holder.instance == "second"


# Holds the lease with a 1 s TTL for 2.5 s (only renewals keep it), says so,
# then checks it until the process exits.
_HOLDER = """
import sys, time
from config.clock import FixedClock
from config.settings import load_settings
from cli.run_command import exit_lease_lost
from dataflows.lease import output_lease

overrides = {"redis": {"url": sys.argv[1], "key_prefix": sys.argv[2]}, "flow": {"lease_ttl": "1s"}}
settings = load_settings(overrides=overrides)
with output_lease(settings, "first", FixedClock(0), exit_lease_lost) as keeper:
    time.sleep(2.5)
    keeper.check()
    print("renewed", flush=True)
    while True:
        keeper.check()
        time.sleep(0.05)
"""


def test_renewals_keep_the_lease_and_a_holder_that_lost_it_exits_with_one_line(
    redis_url: str,
) -> None:
    prefix = f"lease-{uuid.uuid4().hex}"
    client = redis.Redis.from_url(redis_url)
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, redis_url, prefix],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == "renewed\n", holder.stderr.read()  # type: ignore[union-attr]
        # Another flow takes over (as after an expiry while the holder was paused).
        client.delete(lease_key(prefix))
        RedisLease(client, prefix, "second", 30_000).acquire(STARTED_MS, "t")
        assert holder.wait(timeout=10) == LOST
    finally:
        holder.kill()
    lines = holder.communicate()[1].strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("meterwax: lease lost: the lease for "), lines
    # A lost lease is not released: the new holder keeps it.
    assert client.get(lease_key(prefix)) == b"second|2|1767225600000|t"


def test_a_clickhouse_server_without_redis_needs_an_acknowledgement() -> None:
    settings = load_settings(overrides={"clickhouse": {"dsn": "http://u:hunter2@ch:8123"}})
    with (
        pytest.raises(ConfigError, match=r"flow\.single_writer_unchecked") as error,
        output_lease(settings, "a", FixedClock(STARTED_MS), exit_lease_lost),
    ):
        pass
    assert "hunter2" not in str(error.value)
    vouched = load_settings(
        overrides={
            "clickhouse": {"dsn": "http://u:hunter2@ch:8123"},
            "flow": {"single_writer_unchecked": True},
        }
    )
    with output_lease(vouched, "a", FixedClock(STARTED_MS), exit_lease_lost) as keeper:
        assert keeper is None
