"""The upload batch envelope: canonical JSON, content hash as idempotency key, strict parsing."""

from __future__ import annotations

import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cardsvc.central.testing import SimCard, SimTerminal
from cardsvc.formats.batch import Batch, BatchKind, Gender, Member, SignedBatch, b64decode, canonical_json
from cardsvc.formats.errors import FieldValueError, FormatError, SignatureError
from cardsvc.formats.transaction import RecordType

NOW = 1_800_000_000


@pytest.fixture
def parts() -> tuple[SimTerminal, SimCard]:
    rng = random.Random(3)
    terminal, card = SimTerminal.new(0xABCDEF, rng), SimCard.new(0x77, rng)
    card.transact(RecordType.BLOCK, 1000, NOW, terminal.terminal_id, 5, 9, reference=12)
    card.transact(RecordType.SETTLE, 900, NOW + 60, terminal.terminal_id, 5, 9, reference=1)
    return terminal, card


def test_canonical_json_ignores_key_order_and_refuses_floats() -> None:
    assert canonical_json({"b": 1, "a": [2, "x"]}) == b'{"a":[2,"x"],"b":1}'
    with pytest.raises(FieldValueError, match="float"):
        canonical_json({"a": 1.5})


def test_content_hash_survives_resigning_and_reserialising(parts: tuple[SimTerminal, SimCard]) -> None:
    terminal, card = parts
    wire = terminal.batch(BatchKind.TRANSACTIONS, card.items(), NOW, seq=1)
    again = terminal.batch(BatchKind.TRANSACTIONS, card.items(), NOW, seq=1)
    assert wire != again  # ECDSA signatures differ ...
    first, second = SignedBatch.parse(wire), SignedBatch.parse(again)
    assert first.batch.content_hash() == second.batch.content_hash()  # ... the idempotency key does not
    pretty = json.dumps(json.loads(wire), indent=2).encode()
    assert SignedBatch.parse(pretty).batch.content_hash() == first.batch.content_hash()


def test_signature_checked_with_the_terminals_key(parts: tuple[SimTerminal, SimCard]) -> None:
    terminal, card = parts
    signed = SignedBatch.parse(terminal.batch(BatchKind.TRANSACTIONS, card.items(), NOW))
    signed.verify(lambda _tid: terminal.key.public_key())
    impostor = SimTerminal.new(terminal.terminal_id, random.Random(99))
    with pytest.raises(SignatureError):
        signed.verify(lambda _tid: impostor.key.public_key())


def test_changed_content_does_not_verify(parts: tuple[SimTerminal, SimCard]) -> None:
    terminal, card = parts
    document = json.loads(terminal.batch(BatchKind.TRANSACTIONS, card.items(), NOW))
    document["batch"]["seq"] += 1
    signed = SignedBatch.parse(json.dumps(document).encode())
    with pytest.raises(SignatureError):
        signed.verify(lambda _tid: terminal.key.public_key())


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["batch"].update(kind="cheques"), "batch.kind"),
        (lambda d: d["batch"].update(extra=1), "unknown fields extra"),
        (lambda d: d["batch"].pop("seq"), "lacks seq"),
        (lambda d: d["batch"].update(seq=1.0), "float"),
        (lambda d: d["batch"].update(version=True), "version"),
        (lambda d: d["batch"].update(terminal_id="ABC"), "terminal_id"),
        (lambda d: d["batch"].update(items=[]), "1 to"),
        (lambda d: d["batch"]["items"][0].update(record="!!"), "base64"),
        (lambda d: d["batch"]["items"][0].update(record="AAAA"), "expected 124"),
        (lambda d: d.update(signature="AAAA"), "64 bytes"),
    ],
)
def test_strict_parsing_says_what_is_wrong(parts: tuple[SimTerminal, SimCard], mutate, message: str) -> None:
    terminal, card = parts
    document = json.loads(terminal.batch(BatchKind.TRANSACTIONS, card.items(), NOW))
    mutate(document)
    with pytest.raises(FormatError, match=message):
        SignedBatch.parse(json.dumps(document).encode())


def test_camp_and_fko_items_round_trip(parts: tuple[SimTerminal, SimCard]) -> None:
    terminal, card = parts
    from cardsvc.formats.batch import FkoLedgerEntry

    camp = terminal.batch(BatchKind.CAMP, [card.camp_card("Jaipur", NOW - 10, NOW + 10, 0xF0)], NOW)
    parsed = SignedBatch.parse(camp).batch
    assert parsed.kind is BatchKind.CAMP
    assert parsed.items[0] == card.camp_card("Jaipur", NOW - 10, NOW + 10, 0xF0)
    ledger = Batch(BatchKind.FKO_LEDGER, 1, 1, NOW, (FkoLedgerEntry(0xF0, (card.card_id,)),))
    assert SignedBatch.parse(ledger.sign(terminal.key).encode()).batch == ledger


@settings(max_examples=60, deadline=None)
@given(
    household=st.text(min_size=1, max_size=40).filter(lambda t: t.strip() != ""),
    seq=st.integers(0, 2**63 - 1),
    created=st.integers(0, 2**32 - 1),
    members=st.lists(
        st.tuples(st.sampled_from(list(Gender)), st.integers(1880, 2200)), min_size=1, max_size=5
    ),
)
def test_received_canonical_bytes_equal_the_rebuilt_ones(household, seq, created, members) -> None:
    """The server hashes and verifies the canonical form of what it received; it must be the sender's."""
    card = SimCard.new(0x42, random.Random(1))
    camp = card.camp_card(
        "Jaipur", 1, 2, 0xF, household=household, members=tuple(Member(g, y) for g, y in members)
    )
    batch = Batch(BatchKind.CAMP, 7, seq, created, (camp,))
    wire = json.dumps({"signature": "A" * 86 + "==", "batch": batch.to_json()}, indent=1).encode()
    parsed = SignedBatch.parse(wire)
    assert parsed.batch == batch
    assert parsed.canonical == batch.canonical()


def test_non_canonical_base64_is_refused() -> None:
    with pytest.raises(FieldValueError, match="canonical"):
        b64decode("AB==", "x")  # the unused bits of the last character are not zero
    assert b64decode("AA==", "x") == b"\x00"


def test_optional_fields_round_trip_and_absent_ones_keep_old_hashes(
    parts: tuple[SimTerminal, SimCard],
) -> None:
    from dataclasses import replace

    from cardsvc.formats.batch import FkoLedgerEntry, SignedLedger, TransactionItem
    from cardsvc.formats.templates import CampTemplate, seal_templates

    terminal, card = parts
    camp = card.camp_card("Jaipur", NOW - 10, NOW + 10, 0xF0)
    plain = Batch(BatchKind.CAMP, terminal.terminal_id, 1, NOW, (camp,))
    assert b"templates" not in plain.canonical() and b"card_chain" not in plain.canonical()
    box = seal_templates(terminal.key.public_key(), card.card_id, [CampTemplate(0, 2, bytes(30))])
    sealed = Batch(BatchKind.CAMP, terminal.terminal_id, 1, NOW, (replace(camp, templates=box),))
    parsed = SignedBatch.parse(sealed.sign(terminal.key).encode()).batch
    assert parsed == sealed and parsed.content_hash() != plain.content_hash()

    item = TransactionItem(card.log[0].encode(), card.public_key, (b"\x7f\x21\x01\x00",))
    tx = Batch(BatchKind.TRANSACTIONS, terminal.terminal_id, 2, NOW, (item,))
    assert SignedBatch.parse(tx.sign(terminal.key).encode()).batch == tx

    ledger = SignedLedger((b"\x7f\x21\x01\x00",), bytes(16), 0, bytes(32), b"", bytes(64))
    fko = Batch(BatchKind.FKO_LEDGER, terminal.terminal_id, 3, NOW, (FkoLedgerEntry(0xF0, (), ledger),))
    assert SignedBatch.parse(fko.sign(terminal.key).encode()).batch == fko

    broken = json.loads(sealed.sign(terminal.key).encode())
    broken["batch"]["items"][0]["templates"] = "AAAA"
    with pytest.raises(FieldValueError, match="templates"):
        SignedBatch.parse(json.dumps(broken).encode())


def test_camp_schemes_list_every_scheme_once_including_the_main_one(
    parts: tuple[SimTerminal, SimCard],
) -> None:
    from dataclasses import replace

    from cardsvc.formats.batch import SchemeCover

    terminal, card = parts
    camp = card.camp_card("Jaipur", NOW - 10, NOW + 10, 0xF0)
    good = replace(camp, schemes=(SchemeCover(1, camp.cover_paise), SchemeCover(2, 500_000)))
    batch = Batch(BatchKind.CAMP, terminal.terminal_id, 1, NOW, (good,))
    assert SignedBatch.parse(batch.sign(terminal.key).encode()).batch == batch
    for schemes, why in (
        ((SchemeCover(2, 500_000),), "must include the card's scheme_id"),
        ((SchemeCover(1, camp.cover_paise), SchemeCover(1, 5)), "twice"),
    ):
        bad = Batch(BatchKind.CAMP, terminal.terminal_id, 1, NOW, (replace(camp, schemes=schemes),))
        with pytest.raises(FieldValueError, match=why):
            SignedBatch.parse(bad.sign(terminal.key).encode())
