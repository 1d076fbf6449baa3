"""Redis clients from ``redis.url``: one place that opens them and words a bad URL."""

from __future__ import annotations

from typing import Any

import redis

from config.redaction import redact_url, url_secrets


def redis_from_url(
    url: str, password: str | None = None, timeout_s: float | None = 10.0, **options: Any
) -> redis.Redis:
    """A client on ``url``; a password given apart (e.g. from a secret file) wins over the URL's.

    Raises ``ValueError`` with one line, without the password, when ``url`` is not
    a Redis URL.
    """
    extra = {} if password is None else {"password": password}
    try:
        return redis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, **extra, **options
        )
    except ValueError:
        # Not the parser's words: they quote pieces of a password that broke the URL.
        raise ValueError(
            f"invalid Redis URL {redact_url(url, url_secrets(url))!r}: expected "
            "redis://[[user]:password@]host[:port][/db], with '/', '?', '#', '@' and spaces "
            "in the password percent-encoded (e.g. '/' as %2F)"
        ) from None
