"""MessageBatch: the columns of one partition's messages, still a sequence of RawMessage."""

from __future__ import annotations

import pickle
from array import array

import pytest
from hypothesis import given
from hypothesis import strategies as st

from operators.message_batch import MessageBatch
from operators.model import RawMessage

payloads = st.lists(st.binary(max_size=40), min_size=1, max_size=30)


def _messages(data: list[bytes]) -> list[RawMessage]:
    return [RawMessage(p, "topic", 3, 100 + 2 * i, 7_000 + i) for i, p in enumerate(data)]


@given(payloads)
def test_a_batch_of_messages_gives_back_the_same_messages(data: list[bytes]) -> None:
    messages = _messages(data)
    batch = MessageBatch.of(messages)
    assert list(batch) == messages
    assert len(batch) == len(messages)
    assert [batch[i] for i in range(-len(data), 0)] == messages
    assert batch[1:3] == messages[1:3]
    assert [batch.payload(i) for i in range(len(data))] == data
    assert pickle.loads(pickle.dumps(batch)) == batch


def test_columns_are_what_the_native_core_reads() -> None:
    batch = MessageBatch.of_payloads(
        "t", 0, [b"ab", b"", b"cde"], array("q", [5, 6, 9]), array("q", [1, 2, 3])
    )
    assert batch.data == b"abcde"
    assert list(batch.ends) == [2, 2, 5]
    assert batch[2] == RawMessage(b"cde", "t", 0, 9, 3)
    assert MessageBatch.of(batch) is batch


def test_an_index_past_the_end_is_an_index_error() -> None:
    batch = MessageBatch.of(_messages([b"x"]))
    with pytest.raises(IndexError, match="message 1 of a batch of 1"):
        batch[1]
    with pytest.raises(IndexError):
        batch[-2]


def test_a_batch_is_of_one_partition_and_not_empty() -> None:
    with pytest.raises(ValueError, match="at least one message"):
        MessageBatch.of([])
    mixed = [RawMessage(b"a", "t", 0, 1), RawMessage(b"b", "t", 1, 1)]
    with pytest.raises(ValueError, match="one partition"):
        MessageBatch.of(mixed)
    with pytest.raises(ValueError, match="2 payloads need as many offsets"):
        MessageBatch.of_payloads("t", 0, [b"a", b"b"], array("q", [1]), array("q", [1, 2]))
