"""Splitting a CloudEvents batch keeps each event's bytes exactly as sent."""

from __future__ import annotations

import json

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from operators.event_batches import BatchFormatError, split_batch

texts = st.text(alphabet=st.sampled_from(list('ab},{[]"\\ :')), max_size=8)
values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | texts,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=8,
)
events = st.dictionaries(texts, values, max_size=4)


@given(st.lists(events | values, min_size=1, max_size=6), st.sampled_from([None, 1, 2]))
def test_each_element_comes_back_as_the_bytes_it_was_sent_as(
    elements: list[object], indent: int | None
) -> None:
    if indent is None:
        encoded = [orjson.dumps(e) for e in elements]
        body = b"[" + b",".join(encoded) + b"]"
    else:
        encoded = [json.dumps(e, indent=indent).encode() for e in elements]
        body = b"[\n " + b" ,\n ".join(encoded) + b"\n]"

    parts = split_batch(body)

    assert [orjson.loads(p) for p in parts] == [orjson.loads(e) for e in encoded]
    # Objects keep their exact text; anything else cannot be an event anyway.
    for part, element, original in zip(parts, elements, encoded, strict=True):
        if isinstance(element, dict):
            assert part == original


def test_numbers_keep_their_text() -> None:
    body = b'[ {"data": {"tokens": 1.10000000000000000001}} ,{"data":{"n":1e400}}]'

    assert split_batch(body) == [
        b'{"data": {"tokens": 1.10000000000000000001}}',
        b'{"data":{"n":1e400}}',
    ]


@pytest.mark.parametrize("body", [b"", b"{}", b"[1,", b'"x"', b"nope"])
def test_a_body_that_is_not_an_array_is_refused(body: bytes) -> None:
    with pytest.raises(BatchFormatError):
        split_batch(body)
