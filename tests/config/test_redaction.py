"""Passwords never reach output: one masking rule for every URL we print."""

from __future__ import annotations

import pytest

from config.redaction import is_secret_setting, redact_url, remember, url_secrets


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


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("http://u:pa/ss@host:8123/db", "http://u:***@host:8123/db"),
        ("http://u:pa#ss?x@host", "http://u:***@host"),
        # Help texts keep their placeholder.
        ("expected http://user:password@host", "expected http://user:password@host"),
    ],
)
def test_a_password_with_url_delimiters_is_masked_whole(text: str, masked: str) -> None:
    assert redact_url(text) == masked


@pytest.mark.parametrize(
    ("url", "secrets"),
    [
        ("http://u:pa%2Fss@host", {"pa%2Fss", "pa/ss"}),
        # A standard parser cuts this one at '/' and quotes "pa" as the port.
        ("redis://:pa/ss@host", {"pa/ss", "pa"}),
        ("u:pw1@host:9000", {"pw1"}),
        ("http://host:8123/db?password=pw2&compress=1", {"pw2"}),
        ("http://user@host:8123/db", set()),
        ("chdb:///var/lib/meterwax", set()),
    ],
)
def test_url_secrets(url: str, secrets: set[str]) -> None:
    assert set(url_secrets(url)) == secrets


def test_given_and_remembered_secrets_are_masked_anywhere() -> None:
    remember(["remembered-Ab9"])
    text = "got 'remembered-Ab9' and 'given Cd8' and given\\\\Ef7"
    assert redact_url(text, ["given Cd8", "given\\Ef7"]) == "got '***' and '***' and ***"


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("sasl.password", True),
        ("ssl.key.password", True),
        ("ssl.keystore.password", True),
        ("sasl.oauthbearer.client.secret", True),
        ("ssl.key.pem", True),
        ("sasl.oauthbearer.config", True),
        ("security.protocol", False),
        ("bootstrap.servers", False),
    ],
)
def test_secret_kafka_properties(name: str, secret: bool) -> None:
    assert is_secret_setting(name) is secret
