"""Split a CloudEvents batch (``application/cloudevents-batch+json``) into its events' bytes.

Each event keeps the exact bytes the client sent: the flow parses numbers from
their text (exact decimals), so re-serialising an event could change its value.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

# Strings (escapes included) or brackets: enough to find the top-level elements
# of a document already known to be valid JSON.
_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)
_OPEN = frozenset(b"[{")  # [ and {


class BatchFormatError(ValueError):
    """The body is not a JSON array; the message says what is wrong."""


def split_batch(body: bytes) -> list[bytes]:
    """The elements of the JSON array ``body``, each as the bytes it was sent as."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        document = _lenient(body)
    if type(document) is not list:
        raise BatchFormatError("a batch must be a JSON array of CloudEvents")
    if not document:
        return []
    fast = _split_compact(body, len(document))
    if fast is not None and all(type(element) is dict for element in document):
        return fast
    return _scan(body, document)


def _lenient(body: bytes) -> Any:
    """The document, with numbers as text: orjson refuses numbers beyond 64 bits or a double
    (and NaN), which the flow's parser rejects per event with their own reason code."""
    try:
        return json.loads(body, parse_int=str, parse_float=str, parse_constant=str)
    except (ValueError, RecursionError) as exc:
        raise BatchFormatError(f"the body is not valid JSON ({exc})") from None


def _split_compact(body: bytes, count: int) -> list[bytes] | None:
    """The objects of a compact array (``[{...},{...}]``), or None when that cannot be told.

    Between two objects of a compact array stands exactly ``},{``. When the body
    holds exactly count - 1 of them, they are all boundaries: no string or
    nested value holds one.
    """
    if not (body.startswith(b"[{") and body.endswith(b"}]")) or body.count(b"},{") != count - 1:
        return None
    parts = body[1:-1].split(b"},{")
    if count == 1:
        return parts
    return [parts[0] + b"}", *(b"{" + part + b"}" for part in parts[1:-1]), b"{" + parts[-1]]


def _scan(body: bytes, document: list[object]) -> list[bytes]:
    """Each element's bytes: objects sliced from ``body``, anything else re-encoded.

    Only objects can be events (anything else is rejected as not_an_object
    whatever its bytes), so only they need their exact text.
    """
    objects: list[bytes] = []
    depth = 0
    start = 0
    for token in _TOKENS.finditer(body):
        first = token.group()[0]
        if first == 0x22:  # a string: nothing inside it counts
            continue
        if first in _OPEN:
            if depth == 1 and first == 0x7B:
                start = token.start()
            depth += 1
            continue
        depth -= 1
        if depth == 1 and first == 0x7D:
            objects.append(body[start : token.end()])
    found = iter(objects)
    return [next(found) if type(element) is dict else orjson.dumps(element) for element in document]
