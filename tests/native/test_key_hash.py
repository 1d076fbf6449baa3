"""Redis claims hash idempotency keys as the native core does, so it can pass its hashes on."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from operators._native import idempotency_hash
from operators.idempotency import key_hash
from operators.model import Event, RawMessage

# The native core takes str: no lone surrogates (Python's key_hash keeps them as is).
text = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)


@given(text, text, text)
def test_key_hash_is_the_native_hash_of_the_idempotency_key(
    tenant: str, source: str, id: str
) -> None:
    event = Event(tenant, source, id, "t", 0, (), RawMessage(b"", "topic", 0, 0, 0))
    assert key_hash(tenant, source, id) == idempotency_hash(event.idempotency_key)
