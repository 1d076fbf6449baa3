"""``meterwax run --api-port``: the run serves the API from its own process, so estimates and
usage can be read (and events sent) while it holds chDB; a report that finds the store held
says where the API is."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import orjson
import pytest

from config.clock import SYSTEM_CLOCK
from config.display import iso_utc
from tests.api.conftest import Keys, bearer

pytestmark = pytest.mark.integration

METERWAX = [sys.executable, "-m", "cli.main"]
TIMEOUT_S = 90.0


def wait_for(what: str, check: Callable[[], bool], run: subprocess.Popen[bytes], err: Path) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        if run.poll() is not None:
            pytest.fail(
                f"the run exited ({run.returncode}) before {what}\n{err.read_text()[-3000:]}"
            )
        if check():
            return
        time.sleep(0.2)
    pytest.fail(f"no {what} within {TIMEOUT_S} s\n{err.read_text()[-3000:]}")


def test_a_run_serves_estimates_and_ingest_while_it_holds_chdb(
    tmp_path: Path,
    catalog_paths: tuple[Path, Path],
    kafka_brokers: str,
    new_topic: Callable[..., str],
    redis_url: str,
    prefix: str,
    keys_file: Path,
    keys: Keys,
) -> None:
    topic = new_topic(partitions=1, prefix="embedded")
    source = [
        *("--dsn", f"chdb://{tmp_path / 'chdb'}", "--database", "embedded"),
        *("--meters", str(catalog_paths[0]), "--pricing", str(catalog_paths[1])),
    ]
    env = {**os.environ, "METERWAX_REDIS__KEY_PREFIX": prefix}
    err = tmp_path / "run.err"
    with err.open("wb") as stderr:
        run = subprocess.Popen(
            [
                *METERWAX, "run", "--input", "kafka", "--topic", topic, "--brokers", kafka_brokers,
                "--redis-url", redis_url, "--api-port", "0", "--api-keys-file", str(keys_file),
                "--no-progress", "--json", *source,
            ],
            stdout=subprocess.DEVNULL, stderr=stderr, stdin=subprocess.DEVNULL, env=env,
        )  # fmt: skip
    try:
        found: list[str] = []

        def announced() -> bool:
            found.extend(re.findall(r"API on (http://\S+)", err.read_text()))
            return bool(found)

        wait_for("API address", announced, run, err)
        with httpx.Client(base_url=found[0], timeout=30) as api:
            wait_for("readiness", lambda: api.get("/readyz").status_code == 200, run, err)
            now_ms = SYSTEM_CLOCK.now_ms()
            events = [
                {
                    "specversion": "1.0", "id": f"e{n}", "source": "tests/embedded",
                    "type": "llm.completion", "subject": "acme",
                    "time": iso_utc(now_ms - 20_000 + n), "data": {"tokens": 1000, "model": "m"},
                }
                for n in range(10)
            ]  # fmt: skip
            posted = api.post(
                "/v1/events",
                content=orjson.dumps(events),
                headers={
                    "Content-Type": "application/cloudevents-batch+json",
                    **bearer(keys.acme_ingest),
                },
            )
            assert posted.json()["accepted"] == 10

            def estimated() -> bool:
                body = api.get("/v1/estimate", headers=bearer(keys.acme)).json()
                # 10,000 tokens at 0.001 USD: final and provisional together, while the run runs.
                return body.get("total") == "10"

            wait_for("the live estimate", estimated, run, err)
            assert api.get("/v1/usage", headers=bearer(keys.acme)).status_code == 200

        # A report on the same chDB data cannot open it, and says where to read instead.
        report = subprocess.run(
            [*METERWAX, "estimate", "--tenant", "acme", *source],
            capture_output=True, text=True, timeout=120, env=env, check=False,
        )  # fmt: skip
        assert report.returncode != 0
        assert f"that run serves the API at {found[0]}" in report.stderr
        assert "Traceback" not in report.stderr
    finally:
        run.send_signal(signal.SIGTERM)
        code = run.wait(timeout=TIMEOUT_S)
    assert code == 0, err.read_text()[-3000:]
    assert not (tmp_path / "chdb" / "meterwax-api-url").exists()
