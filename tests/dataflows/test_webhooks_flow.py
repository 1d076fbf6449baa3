"""Webhooks from a real run: ``meterwax run`` queues them, ``meterwax webhooks`` delivers.

The flow runs while the receiver is down (it must not wait for it); then
``webhooks deliver`` sends quota, spend and period-closed messages, signed and
in order, and ``webhooks list``/``redeliver`` read and replay the log.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from cli.main import main
from config.clock import FixedClock
from operators.webhooks import message
from sinks.clickhouse import connect
from sinks.clickhouse_schema import migrate
from sinks.local_services import free_port
from sinks.webhook_log import Attempt, WebhookLog
from sinks.webhook_outbox import WebhookOutbox
from tests.clocks import CLOCK_OFFSETS, DAY_MS, mid_month_clock, month_start_ms
from tests.dataflows.conftest import METERS_YAML
from tests.fixtures.webhook_receiver import SECRET, Receiver

pytestmark = pytest.mark.integration

PRICING = """
plans:
  - id: metered
    currency: USD
    versions:
      - version: v1
        effective_from: "2000-01-01T00:00:00Z"
        prices:
          tokens: { model: per_unit, unit_price: "0.01" }
        quotas:
          tokens: { soft_limit: "1000", hard_limit: "1500", thresholds: [50] }
subscriptions:
  - { tenant: acme, plan: metered }
  - { tenant: globex, plan: metered }
"""


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


def _events(path: Path, last_period_ms: int, now_ms: int) -> None:
    """acme: 5 x 400 tokens this period (past every level), 100 last period; globex: 100."""
    lines = [
        {"tenant": "acme", "time": last_period_ms + 3_600_000, "tokens": 100},
        {"tenant": "globex", "time": now_ms - 3_600_000, "tokens": 100},
    ]
    lines += [
        {"tenant": "acme", "time": now_ms - 3_600_000 + n * 60_000, "tokens": 400} for n in range(5)
    ]
    path.write_text(
        "".join(
            json.dumps(
                {
                    "specversion": "1.0",
                    "id": f"wh-{n}",
                    "source": "tests/webhooks",
                    "type": "llm.completion",
                    "subject": e["tenant"],
                    "time": _iso(e["time"]),
                    "data": {"tokens": e["tokens"], "model": "m1"},
                }
            )
            + "\n"
            for n, e in enumerate(lines)
        )
    )


def _config(tmp_path: Path, url: str, redis_url: str, chdb_dsn: str, database: str) -> Path:
    (tmp_path / "meters.yaml").write_text(METERS_YAML)
    (tmp_path / "pricing.yaml").write_text(PRICING)
    config: dict[str, Any] = {
        "input": {"kind": "file", "path": str(tmp_path / "events.jsonl")},
        "catalogs": {
            "meters": str(tmp_path / "meters.yaml"),
            "pricing": str(tmp_path / "pricing.yaml"),
        },
        "clickhouse": {"dsn": chdb_dsn, "database": database},
        "redis": {"url": redis_url, "key_prefix": f"wh{uuid.uuid4().hex[:8]}"},
        "flow": {"live_publish_interval": "0s"},
        "webhooks": {
            "endpoints": [{"name": "platform", "url": url, "secret": SECRET}],
            "spend_thresholds": {"plans": {"metered": ["5", "15"]}, "tenants": {"globex": []}},
        },
    }
    path = tmp_path / "meterwax.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _point_at(config: Path, url: str) -> None:
    data = yaml.safe_load(config.read_text())
    data["webhooks"]["endpoints"][0]["url"] = url
    config.write_text(yaml.safe_dump(data))


@pytest.mark.parametrize("offset_ms", CLOCK_OFFSETS)
def test_run_queues_while_the_receiver_is_down_then_deliver_sends_in_order(
    tmp_path: Path,
    webhook_receiver: Receiver,
    redis_url: str,
    chdb_dsn: str,
    ch_database: str,
    capsys: pytest.CaptureFixture[str],
    offset_ms: int,
) -> None:
    clock = FixedClock(mid_month_clock(offset_ms).now_ms())
    now_ms = clock.now_ms()
    last_period = month_start_ms(month_start_ms(now_ms) - DAY_MS)
    _events(tmp_path / "events.jsonl", last_period, now_ms)
    down = f"http://127.0.0.1:{free_port()}/hooks"
    config = _config(tmp_path, down, redis_url, chdb_dsn, ch_database)
    # Waiting before the run starts: the run's dispatcher tries it (and fails) at once.
    prefix = yaml.safe_load(config.read_text())["redis"]["key_prefix"]
    earlier = message("quota.threshold", "earlier", "initech", now_ms, {"tenant": "initech"})
    WebhookOutbox(redis.Redis.from_url(redis_url), prefix).enqueue(earlier, ["platform"], now_ms)

    started = time.monotonic()
    assert main(["run", "--config", str(config), "--no-progress"], clock=clock) == 0
    # Metering did not wait for the receiver (each attempt fails at once, then backs off).
    assert time.monotonic() - started < 60
    assert webhook_receiver.requests == 0

    _point_at(config, webhook_receiver.url)
    # Later than the first attempts' backoff, and past the last period's settlement.
    later = FixedClock(now_ms + 3_600_000)
    assert main(["webhooks", "deliver", "--config", str(config), "--until-idle"], clock=later) == 0
    assert webhook_receiver.bad_signatures == 0
    got = [(r.payload["type"], r.payload["data"]) for r in webhook_receiver.unique()]
    acme = [(kind, d) for kind, d in got if d["tenant"] == "acme" and kind != "period.closed"]
    # Quota levels in the order usage reached them; spend after the counters that reached it.
    quota = [(kind, d.get("percent")) for kind, d in acme if kind.startswith("quota.")]
    assert quota == [
        ("quota.threshold", "50"),
        ("quota.soft_limit", None),
        ("quota.hard_limit", None),
    ]
    spend = [d["threshold"] for kind, d in acme if kind == "spend.threshold"]
    assert spend == ["5", "15"]
    assert all(d["tenant"] != "globex" for kind, d in got if kind == "spend.threshold")
    closed = [d for kind, d in got if kind == "period.closed"]
    # Only the period that ended (acme's last month); the current one is still open.
    assert [(d["tenant"], d["period_start_ms"]) for d in closed] == [("acme", last_period)]
    [meter] = closed[0]["meters"]
    assert (meter["meter"], D(meter["quantity"]), D(meter["amount"])) == ("tokens", 100, 1)
    assert D(closed[0]["amount"]) == 1

    capsys.readouterr()
    assert main(["webhooks", "list", "--config", str(config), "--json"], clock=later) == 0
    listed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(listed) == len(got) and all(row["status"] == "delivered" for row in listed)
    # Attempts from the run (receiver down) and from deliver are in one log.
    assert {row["msg_id"]: row["attempts"] for row in listed}[earlier.msg_id] == 2

    msg_id = webhook_receiver.unique()[0].msg_id
    assert main(["webhooks", "redeliver", msg_id, "--config", str(config)], clock=later) == 0
    assert main(["webhooks", "deliver", "--config", str(config), "--until-idle"], clock=later) == 0
    # Sent again with the same id: a receiver that deduplicates sees it once.
    assert [r.msg_id for r in webhook_receiver.accepted].count(msg_id) == 2
    assert len(webhook_receiver.unique()) == len(got)


def test_nothing_is_sent_twice_across_runs_and_deliveries(
    tmp_path: Path,
    webhook_receiver: Receiver,
    redis_url: str,
    chdb_dsn: str,
    ch_database: str,
) -> None:
    clock = FixedClock(mid_month_clock(0).now_ms())
    now_ms = clock.now_ms()
    _events(tmp_path / "events.jsonl", month_start_ms(month_start_ms(now_ms) - DAY_MS), now_ms)
    config = _config(tmp_path, webhook_receiver.url, redis_url, chdb_dsn, ch_database)
    assert main(["run", "--config", str(config), "--no-progress"], clock=clock) == 0
    deliver = ["webhooks", "deliver", "--config", str(config), "--until-idle"]
    assert main(deliver, clock=clock) == 0
    first = len(webhook_receiver.accepted)
    prefix = yaml.safe_load(config.read_text())["redis"]["key_prefix"]
    queues = redis.Redis.from_url(redis_url).keys(f"{prefix}:webhook-queue:*")
    assert first >= 6 and not queues
    # The same events metered again (a replay without recovery state): nothing new is sent.
    assert main(["run", "--config", str(config), "--no-progress"], clock=clock) == 0
    assert main(deliver, clock=clock) == 0
    assert len(webhook_receiver.accepted) == first


def test_redeliver_of_a_message_still_being_retried_says_so(
    tmp_path: Path,
    webhook_receiver: Receiver,
    redis_url: str,
    chdb_dsn: str,
    ch_database: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    clock = FixedClock(mid_month_clock(0).now_ms())
    config = _config(tmp_path, webhook_receiver.url, redis_url, chdb_dsn, ch_database)
    prefix = yaml.safe_load(config.read_text())["redis"]["key_prefix"]
    pending = message("quota.threshold", "retried", "acme", clock.now_ms(), {"tenant": "acme"})
    WebhookOutbox(redis.Redis.from_url(redis_url), prefix).enqueue(
        pending, ["platform"], clock.now_ms()
    )
    webhook_receiver.fail_first = 1
    deliver = ["webhooks", "deliver", "--config", str(config), "--until-idle"]
    assert main(deliver, clock=clock) == 0
    capsys.readouterr()

    assert (
        main(["webhooks", "redeliver", pending.msg_id, "--config", str(config)], clock=clock) == 0
    )
    out = capsys.readouterr().out
    assert out.startswith(f"{pending.msg_id} is still queued for platform;")
    assert main(["webhooks", "list", "--config", str(config), "--json"], clock=clock) == 0
    [row] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    # The log still tells the truth: the message waits for its next attempt.
    assert row["status"] == "retrying" and row["attempts"] == 1


@pytest.mark.parametrize("action", [["deliver", "--until-idle"], ["redeliver", "msg_x"]])
def test_an_unreachable_redis_is_one_line_without_its_password(
    tmp_path: Path,
    chdb_dsn: str,
    ch_database: str,
    capsys: pytest.CaptureFixture[str],
    action: list[str],
) -> None:
    down = f"redis://:hunter2-redis-pw@127.0.0.1:{free_port()}/0"
    config = _config(tmp_path, "http://127.0.0.1:9/hooks", down, chdb_dsn, ch_database)
    clock = FixedClock(mid_month_clock(0).now_ms())
    if action[0] == "redeliver":
        # Logged, so redeliver goes on to Redis.
        client = connect(chdb_dsn, ch_database)
        migrate(client, ch_database)
        WebhookLog(client, ch_database).write(
            [
                Attempt(
                    "msg_x",
                    "platform",
                    "quota.threshold",
                    "acme",
                    1,
                    "failed",
                    503,
                    "",
                    clock.now_ms(),
                    None,
                    clock.now_ms(),
                    "{}",
                )
            ]
        )
    assert main(["webhooks", *action, "--config", str(config)], clock=clock) == 1
    err = capsys.readouterr().err
    assert err.startswith("meterwax webhooks: cannot reach Redis") and err.count("\n") == 1
    assert "Traceback" not in err and "hunter2-redis-pw" not in err


@pytest.mark.parametrize("action", [["list"], ["redeliver", "msg_x"]])
def test_a_failing_clickhouse_query_is_one_line(
    tmp_path: Path,
    redis_url: str,
    chdb_dsn: str,
    ch_database: str,
    capsys: pytest.CaptureFixture[str],
    action: list[str],
) -> None:
    config = _config(tmp_path, "http://127.0.0.1:9/hooks", redis_url, chdb_dsn, ch_database)
    client = connect(chdb_dsn, ch_database)
    migrate(client, ch_database)
    # Migrated, then the log dropped by hand: every read of it fails.
    client.command(f"DROP TABLE `{ch_database}`.webhook_deliveries")
    clock = FixedClock(mid_month_clock(0).now_ms())
    assert main(["webhooks", *action, "--config", str(config)], clock=clock) == 1
    err = capsys.readouterr().err
    assert err.startswith("meterwax webhooks: ClickHouse query failed: ")
    assert "webhook_deliveries" in err and err.count("\n") == 1 and "Traceback" not in err
