"""Central acknowledges a card's records by itself after ingest (services/sync_acks.py): one SYNC_ACK per card
per new contiguous high-water mark, served on GET /authorisations; never past a gap, never for a clone, an
unknown card or without a central key. Both backends, through the real API."""

from __future__ import annotations

import base64
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask

from cardsvc.beneficiary.protocol import AuthKind, Authorisation
from cardsvc.central.app import create_app
from cardsvc.central.extensions import get_db
from cardsvc.central.services.publish import CentralKey
from cardsvc.central.services.reconcile import reconcile
from cardsvc.central.services.sync_acks import acknowledge_all, card_ids_of_batch
from cardsvc.central.services.terminals import add_facility, register_terminal
from cardsvc.central.testing import FixedClock, SimCard, SimTerminal
from cardsvc.formats.batch import BatchKind, Item
from cardsvc.formats.profile import card_chr
from cardsvc.formats.transaction import RecordType, TransactionRecord
from tests.fixtures.beneficiary import BeneficiaryWorld

DAY = 86_400
FACILITY = 9


@dataclass
class Central:
    app: Flask
    clock: FixedClock
    terminal: SimTerminal

    @property
    def now(self) -> int:
        return int(self.clock())

    def upload(self, kind: BatchKind, items: Sequence[Item], seq: int | None = None) -> int:
        body = self.terminal.batch(kind, items, self.now, seq)
        headers = self.terminal.headers("POST", "/api/v1/batches", body, self.now)
        response = self.app.test_client().post("/api/v1/batches", data=body, headers=headers)
        assert response.status_code in (200, 201), response.get_json()
        return response.status_code

    def register(self, card: SimCard) -> None:
        camp = card.camp_card("INDKMA-PATNA1", self.now - 100 * DAY, self.now + 265 * DAY, 0xF0)
        self.upload(BatchKind.CAMP, [camp])

    def pay(self, card: SimCard, n: int) -> list[TransactionRecord]:
        return [
            card.transact(RecordType.CASH, 100, self.now - DAY + i, 0x5E_A7, 1, FACILITY) for i in range(n)
        ]

    def acks(self, card: SimCard) -> list[Authorisation]:
        path = f"/api/v1/authorisations?card={card.card_id:016x}"
        response = self.app.test_client().get(path, headers=self.terminal.headers("GET", path, b"", self.now))
        assert response.status_code == 200, response.get_json()
        mine = [a for a in response.get_json()["authorisations"] if a["card_id"] == f"{card.card_id:016x}"]
        listed = [a for a in mine if a["kind"] == "sync_ack"]
        assert all(a["audience"] == "card" for a in listed)
        return [Authorisation.parse(base64.b64decode(a["wire"])) for a in listed]


def _central(db_url: str, clock: FixedClock, key: CentralKey | None) -> Central:
    app = create_app({"DATABASE_URL": db_url, "CLOCK": clock, "TESTING": True, "CENTRAL_KEY": key})
    terminal = SimTerminal.new(0x5E_A7, random.Random(4))
    with get_db(app).sessions() as session:
        add_facility(session, FACILITY, "Patna Hospital", "INDKMA-PATNA1", 25.6, 85.1)
        session.flush()
        register_terminal(
            session, terminal.terminal_id, terminal.key.public_key(), int(clock()) - DAY, FACILITY
        )
        session.commit()
    return Central(app, clock, terminal)


@pytest.fixture
def central(db_url: str, clock: FixedClock, beneficiary_world: BeneficiaryWorld) -> Iterator[Central]:
    district = beneficiary_world.pki.district
    c = _central(db_url, clock, CentralKey(district.signer, district.chr, (district.cert,)))
    yield c
    get_db(c.app).dispose()


def _values(acks: list[Authorisation]) -> list[tuple[int, int]]:
    return sorted((a.serial, a.value) for a in acks)


def test_each_new_contiguous_high_water_mark_is_acknowledged_once(central: Central) -> None:
    card = SimCard.new(0xAC01, random.Random(1))
    central.register(card)
    first = card.items(central.pay(card, 3))
    assert central.upload(BatchKind.TRANSACTIONS, list(first), seq=7) == 201
    (ack,) = central.acks(card)
    assert (ack.kind, ack.card_id, ack.serial, ack.value) == (AuthKind.SYNC_ACK, card_chr(card.card_id), 1, 3)
    assert central.upload(BatchKind.TRANSACTIONS, list(first), seq=7) == 200, "the same batch again"
    assert central.upload(BatchKind.TRANSACTIONS, first[1:], seq=8) == 201, "some records again, nothing new"
    assert _values(central.acks(card)) == [(1, 3)], "no new high-water mark: no new acknowledgement"
    central.upload(BatchKind.TRANSACTIONS, card.items(central.pay(card, 2)))
    assert _values(central.acks(card)) == [(1, 3), (2, 5)]


def test_never_past_a_gap_and_the_gap_filled_moves_the_mark(central: Central) -> None:
    card = SimCard.new(0xAC02, random.Random(2))
    central.register(card)
    records = central.pay(card, 4)
    central.upload(BatchKind.TRANSACTIONS, card.items([records[0], records[1], records[3]]))
    assert _values(central.acks(card)) == [(1, 2)], "counter 3 is missing: acknowledged up to 2 only"
    central.upload(BatchKind.TRANSACTIONS, card.items([records[3]]))  # 4 again: still a gap at 3
    assert _values(central.acks(card)) == [(1, 2)]
    central.upload(BatchKind.TRANSACTIONS, card.items([records[2]]))
    assert _values(central.acks(card)) == [(1, 2), (2, 4)]
    first_missing = SimCard.new(0xAC03, random.Random(3))
    central.register(first_missing)
    later = central.pay(first_missing, 2)
    central.upload(BatchKind.TRANSACTIONS, first_missing.items(later[1:]))
    assert central.acks(first_missing) == [], "nothing from counter 1: nothing to acknowledge"


def test_a_clone_or_an_unknown_card_is_not_acknowledged(central: Central) -> None:
    card = SimCard.new(0xAC04, random.Random(4))
    central.register(card)
    clone = SimCard(card.card_id, card.key)  # same chip key and id: a copy debiting on its own
    central.upload(BatchKind.TRANSACTIONS, card.items(central.pay(card, 2)))
    assert _values(central.acks(card)) == [(1, 2)]
    central.upload(BatchKind.TRANSACTIONS, clone.items(central.pay(clone, 3)))
    central.upload(BatchKind.TRANSACTIONS, card.items(central.pay(card, 2)))  # genuine 3, 4
    assert _values(central.acks(card)) == [(1, 2)], "two records at counters 1-3: no acknowledgement"
    with get_db(central.app).sessions() as session:
        reconcile(session, central.now)
        report = acknowledge_all(session, central.app.config["CENTRAL_KEY"], now=central.now)
    assert f"{card.card_id:016x}" in report.skipped and not report.issued
    assert "clone or replay" in report.skipped[f"{card.card_id:016x}"]

    stranger = SimCard.new(0xAC05, random.Random(5))  # its camp has not arrived
    central.upload(BatchKind.TRANSACTIONS, stranger.items(central.pay(stranger, 1)))
    assert central.acks(stranger) == []


def test_without_a_central_key_nothing_is_issued(db_url: str, clock: FixedClock) -> None:
    central = _central(db_url, clock, None)
    try:
        card = SimCard.new(0xAC06, random.Random(6))
        central.register(card)
        central.upload(BatchKind.TRANSACTIONS, card.items(central.pay(card, 2)))
        assert central.acks(card) == []
    finally:
        get_db(central.app).dispose()


def test_card_ids_are_read_from_the_batch_wire() -> None:
    cards = [SimCard.new(0xAC10 + i, random.Random(i)) for i in range(3)]
    items: list[Any] = []
    for c in cards:
        items += c.items([c.transact(RecordType.CASH, 5, 1_800_000_000, 1, 1, 1)])
    wire = SimTerminal.new(1, random.Random(9)).batch(BatchKind.TRANSACTIONS, items, 1_800_000_000)
    assert card_ids_of_batch(wire) == [f"{c.card_id:016x}" for c in cards]
    with pytest.raises(ValueError, match="not a stored transactions batch"):
        card_ids_of_batch(b'{"batch": {}}')
