"""The hostile corpus straight through the parser: a wrong reason here is a parser regression.

The corpus (tests/dataflows/hostile_corpus.py) is also run through the real
flow; this is the fast, service-free half that points at ``operators/parse.py``.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from config.meter_catalog import load_meter_catalog
from config.meters import MeterCatalog
from config.pricing_catalog import load_pricing_catalog
from operators.model import Event, RawMessage, Reason
from operators.parse import BatchParser, ParsedBatch, ParserConfig
from tests.dataflows.conftest import METERS_YAML, PRICING_YAML
from tests.dataflows.hostile_corpus import (
    ACCEPTED_TOKENS,
    CONTROL_GROUP,
    EMOJI_GROUP,
    MAX_EVENT_BYTES,
    QUOTES_GROUP,
    SOURCE,
    SQL_GROUP,
    SQL_SUBJECT,
    UNICODE_TENANT,
    Hostile,
    build_corpus,
)
from tests.dataflows.scenario import BASE_MS

# The parser's wall clock: a day after the scenario, so its times are not in the future.
NOW_MS = BASE_MS + 86_400_000
CORPUS = build_corpus(NOW_MS)
BY_NAME = {entry.name: entry for entry in CORPUS}


@pytest.fixture(scope="module")
def meters(tmp_path_factory: pytest.TempPathFactory) -> MeterCatalog:
    folder: Path = tmp_path_factory.mktemp("corpus-catalogs")
    (folder / "meters.yaml").write_text(METERS_YAML)
    return load_meter_catalog(folder / "meters.yaml")


@pytest.fixture(scope="module")
def parser(meters: MeterCatalog, tmp_path_factory: pytest.TempPathFactory) -> BatchParser:
    """The parser as the flow builds it, over the flow tests' catalogs (default plan: basic)."""
    folder: Path = tmp_path_factory.mktemp("corpus-pricing")
    (folder / "pricing.yaml").write_text(PRICING_YAML)
    pricing = load_pricing_catalog(folder / "pricing.yaml", meters)
    return BatchParser(
        ParserConfig(meters=meters, known_tenant=pricing.knows, max_event_bytes=MAX_EVENT_BYTES)
    )


def parse(parser: BatchParser, *entries: Hostile) -> ParsedBatch:
    messages = [RawMessage(e.payload, "corpus", 0, offset) for offset, e in enumerate(entries)]
    return parser.parse(messages, NOW_MS)


def parser_reason(entry: Hostile) -> Reason | None:
    """What the parser alone must say: too_late is the window stage's call, not the parser's."""
    return None if entry.reason is Reason.TOO_LATE else entry.reason


def test_the_corpus_is_broad_and_every_entry_is_distinct() -> None:
    assert len(CORPUS) >= 40
    assert len(BY_NAME) == len(CORPUS), "names must be unique"
    # The flow test matches dead letters and stored rejections by payload bytes.
    assert len({e.payload for e in CORPUS}) == len(CORPUS), "payloads must be unique"
    # Every reason the test catalogs can produce (they name a default plan, so no
    # subject is unknown), and valid entries besides.
    covered = {e.reason for e in CORPUS}
    assert covered == (set(Reason) - {Reason.UNKNOWN_SUBJECT}) | {None}
    assert set(ACCEPTED_TOKENS) == {e.name for e in CORPUS if e.reason is None}


@pytest.mark.parametrize("entry", CORPUS, ids=[e.name for e in CORPUS])
def test_each_entry_gets_its_reason(parser: BatchParser, entry: Hostile) -> None:
    parsed = parse(parser, entry)

    got = parsed.rejections[0].reason if parsed.rejections else None
    assert got == parser_reason(entry), (
        f"{entry.name}: expected {parser_reason(entry)}, got {got} "
        f"({parsed.rejections[0].detail if parsed.rejections else 'accepted'}); "
        f"payload {entry.payload[:300]!r}"
    )
    assert len(parsed.events) + len(parsed.rejections) == 1
    if parsed.rejections:
        rejection = parsed.rejections[0]
        assert rejection.payload == entry.payload  # dead letters carry the bytes as sent
        assert rejection.detail


@pytest.mark.parametrize("name", sorted(ACCEPTED_TOKENS))
def test_accepted_entries_carry_the_exact_tenant_and_value(parser: BatchParser, name: str) -> None:
    tenant, tokens = ACCEPTED_TOKENS[name]

    parsed = parse(parser, BY_NAME[name])

    assert parsed.rejections == []
    [event] = parsed.events
    assert event.tenant == tenant
    assert event.source == SOURCE
    [measure] = event.measures
    assert measure.meter == "tokens"
    assert measure.value == tokens


def group_value(event: Event) -> str:
    [measure] = event.measures
    return dict(measure.groups)["model"]


@pytest.mark.parametrize(
    ("name", "tenant", "model"),
    [
        ("sql-in-subject", SQL_SUBJECT, "m0"),
        ("unicode-tenant", UNICODE_TENANT, "m0"),
        ("sql-in-group-value", "globex", SQL_GROUP),
        ("quotes-and-backslashes-in-group-value", "globex", QUOTES_GROUP),
        ("escaped-control-chars-in-group-value", "globex", CONTROL_GROUP),
        ("emoji-group-value", "globex", EMOJI_GROUP),
        ("number-as-group-value", "globex", "3"),
        ("missing-group-value", "globex", ""),  # a missing group value is its own group
        ("escaped-unicode-in-subject", "globex", "m0"),
    ],
)
def test_hostile_strings_are_kept_verbatim(
    parser: BatchParser, name: str, tenant: str, model: str
) -> None:
    [event] = parse(parser, BY_NAME[name]).events
    assert event.tenant == tenant
    assert group_value(event) == model


def test_the_whole_corpus_in_one_batch_gets_the_same_verdicts(parser: BatchParser) -> None:
    parsed = parse(parser, *CORPUS)

    rejected = {r.offset: r.reason for r in parsed.rejections}
    verdicts = [rejected.get(offset) for offset in range(len(CORPUS))]
    assert verdicts == [parser_reason(e) for e in CORPUS]
    assert Counter(r.reason for r in parsed.rejections) == Counter(
        parser_reason(e) for e in CORPUS if parser_reason(e) is not None
    )


def test_without_a_default_plan_the_hostile_subjects_are_unknown(meters: MeterCatalog) -> None:
    strict = BatchParser(ParserConfig(meters=meters, known_tenant={"acme", "globex"}.__contains__))

    parsed = parse(strict, BY_NAME["sql-in-subject"], BY_NAME["unicode-tenant"])

    assert [r.reason for r in parsed.rejections] == [Reason.UNKNOWN_SUBJECT] * 2
    # The dead letter names the tenant exactly as sent.
    assert [r.tenant for r in parsed.rejections] == [SQL_SUBJECT, UNICODE_TENANT]


DUPLICATE_KEY_ENTRIES = (
    "duplicate-id-key",
    "duplicate-key-in-data",
    "duplicate-subject-key",
    "duplicate-key-spaced-colon",
    "duplicate-subject-key-spaced-colon",
)


def repeated_keys(payload: bytes) -> list[str]:
    """Keys that appear twice in one object, found by the standard library."""
    found: list[str] = []

    def pairs(items: list[tuple[str, object]]) -> dict[str, object]:
        counts = Counter(key for key, _ in items)
        found.extend(key for key, n in counts.items() if n > 1)
        return dict(items)

    json.loads(payload, object_pairs_hook=pairs)
    return found


@pytest.mark.parametrize("name", DUPLICATE_KEY_ENTRIES)
def test_the_repeated_key_entries_really_repeat_a_key(name: str) -> None:
    """Keeps the corpus honest: each of these is valid JSON syntax with one key twice."""
    assert BY_NAME[name].reason is Reason.MALFORMED_JSON
    assert len(repeated_keys(BY_NAME[name].payload)) == 1
