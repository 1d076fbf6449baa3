"""Passwords out of URLs before anything is printed or logged."""

from __future__ import annotations

import re

# `scheme://user:` then everything up to the last `@` of the authority, so a
# password holding '@' or ':' is masked whole.
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]*:)[^/\s]*@")


def redact_url(text: str) -> str:
    """``text`` (a URL, or a message holding URLs) with every password replaced by ``***``."""
    return _URL_PASSWORD.sub(r"\g<head>***@", text)
