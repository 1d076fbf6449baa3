"""Passwords never reach output: one masking rule for every URL we print."""

from __future__ import annotations

import pytest

from config.redaction import redact_url


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("https://meter:s3cr3t@ch.example:8443/db", "https://meter:***@ch.example:8443/db"),
        ("redis://:p@ss:w0rd@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
        ("chdb://./data/clickhouse", "chdb://./data/clickhouse"),
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        (
            "cannot reach http://u:x@a:1 nor https://v:y@b:2",
            "cannot reach http://u:***@a:1 nor https://v:***@b:2",
        ),
    ],
)
def test_passwords_are_masked(text: str, masked: str) -> None:
    assert redact_url(text) == masked
