"""Secrets out of everything printed or logged: the one masking rule.

Two layers. A pattern masks the password of any ``scheme://user:password@``
URL in a text. The secrets the settings hold (URL passwords, secret Kafka
properties) are remembered when loaded, so that a message quoting one anywhere
(a malformed URL, a library's error, a traceback) is masked as well.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import unquote, urlsplit

MASK = "***"

# `scheme://user:` then everything up to the last `@` before whitespace, so a
# password holding '@', ':', '/', '?' or '#' is masked whole; a help text's
# placeholder (`user:password@`) is left alone.
_URL_PASSWORD = re.compile(
    r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]*:)(?!password\]?@)\S*@", re.IGNORECASE
)
# librdkafka property names (and URL query keys) whose values are secret.
_SECRET_NAME = re.compile(r"password|secret|key|token|sasl\.oauthbearer\.config", re.IGNORECASE)

_remembered: set[str] = set()


def is_secret_setting(name: str) -> bool:
    """Whether a property named ``name`` holds a secret: its name says password, secret, key..."""
    return _SECRET_NAME.search(name) is not None


def url_secrets(url: str) -> list[str]:
    """The password of ``url`` and its secret query values, read leniently.

    A password holding unencoded '/', '#', '?' or spaces breaks URL parsing, so
    the user info is taken as everything before the last '@'; the pieces a
    standard parser makes of such a URL are included, as libraries quote them.
    """
    rest = url.split("://", 1)[-1]
    userinfo, at, host_part = rest.rpartition("@")
    found = [userinfo.partition(":")[2]] if at else []
    query = host_part.partition("?")[2].partition("#")[0]
    for pair in re.split("[&;]", query):
        name, _, value = pair.partition("=")
        if is_secret_setting(name):
            found.append(value)
    try:
        parts = urlsplit(url)
        # Cut short by a '/', '?' or '#' in the password, the "port" is its start.
        cut = at and "@" not in parts.netloc and ":" in parts.netloc
        found += [parts.password or "", parts.netloc.rpartition(":")[2] if cut else ""]
    except ValueError:
        pass
    found = [text for text in found if text and not text.isdigit()]
    return found + [unquote(text) for text in found]


def remember(secrets: Iterable[str]) -> None:
    """Mask ``secrets`` in everything redact_url() masks from now on (in this process)."""
    _remembered.update(secret for secret in secrets if secret)


def forget_all() -> None:
    """Forget every remembered secret (for a process that loads settings more than once)."""
    _remembered.clear()


def redact_url(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with every URL password, every remembered secret and ``secrets`` as ``***``."""
    for secret in sorted({*_remembered, *(s for s in secrets if s)}, key=len, reverse=True):
        text = text.replace(secret, MASK)
        # As repr() and tracebacks quote it.
        text = text.replace(repr(secret)[1:-1], MASK)
    return _URL_PASSWORD.sub(rf"\g<head>{MASK}@", text)
