"""Split a CloudEvents batch (``application/cloudevents-batch+json``) into its events' bytes.

Each event keeps the exact bytes the client sent: the flow parses numbers from
their text (exact decimals), so re-serialising an event could change its value.
"""

from __future__ import annotations

import re

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
    except orjson.JSONDecodeError as exc:
        raise BatchFormatError(f"the body is not valid JSON ({exc})") from None
    if type(document) is not list:
        raise BatchFormatError("a batch must be a JSON array of CloudEvents")
    if not document:
        return []
    # Fast path: a compact body is exactly its elements re-encoded and joined.
    encoded = [orjson.dumps(element) for element in document]
    if len(body) == sum(map(len, encoded)) + len(encoded) + 1 and body == (
        b"[" + b",".join(encoded) + b"]"
    ):
        return encoded
    return _scan(body, document)


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
