"""The old year's admission after a held renewal, through the real PC/SC stack (pcscd + vpcd + pyscard).

The story of tests/test_beneficiary_renewal_blocks.py, with its helpers, with every command to the
beneficiary card crossing pcscd: the renewal held at the camp, the admission's BLOCK between the camp and
the new year, the card's first command of the new year (the renewal takes effect), then the admission's
SETTLE. It is paid from the old year's hold; a SETTLE above the hold is refused with the card unchanged;
a card pulled during the SETTLE is, once back in the reader, the open admission or the settled one, never
a credited wallet (docs/card-layout.md, "Renewal camps before the year starts").
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cardsvc.beneficiary import protocol as fmt
from cardsvc.beneficiary.errors import BalanceError
from cardsvc.beneficiary.session import BeneficiarySession
from cardsvc.card.errors import ReferenceNotFoundError
from cardsvc.card.pcsc import PcscConnection
from cardsvc.card.transport import CardConnection, CardRemovedError
from cardsvc.formats.transaction import RecordType, TransactionRecord
from cardsvc.pki.signer import load_public_point
from hardware_sims.card.cardos import SimulatedCard
from tests.fixtures.beneficiary import COVER, SCHEME_HEALTH, BeneficiaryWorld
from tests.fixtures.pcsc import ServedCard
from tests.test_beneficiary_renewal_blocks import (
    HELD,
    NEW_COVER,
    NEW_END,
    NEW_START,
    Renewed,
    _pos,
    _renewed_with_open_admission,
    _wallet,
)

pytestmark = [pytest.mark.pcsc, pytest.mark.slow]

REINSERT_WAIT = 30.0  # seconds: a generous deadline for pcscd to see the card back on a busy machine


@dataclass
class CardInReader:
    """The beneficiary card on vpcd slot 0, reached by the terminals through one exclusive PC/SC connection.

    It is the shared helpers' ``connect``: they make the card themselves, so the first connect serves it
    (before the camp's first command) and opens the connection; every later session reuses it.
    """

    serve_card: Callable[..., ServedCard]
    served: ServedCard | None = None
    conn: PcscConnection | None = None

    def __call__(self, card: SimulatedCard) -> CardConnection:
        if self.served is None:
            self.served = self.serve_card(slot=0, card=card)
            self.conn = PcscConnection(self.served.reader, exclusive=True)
        assert self.served.card is card and self.conn is not None, "one card in the reader per test"
        return self.conn

    def reinsert(self) -> None:
        """Put the pulled card back and reconnect to the new insertion."""
        assert self.served is not None and self.conn is not None
        self.served.insert()
        self.conn.reconnect(wait=REINSERT_WAIT)

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()


@pytest.fixture
def reader(serve_card: Callable[..., ServedCard]) -> Iterator[CardInReader]:
    in_reader = CardInReader(serve_card)
    try:
        yield in_reader
    finally:
        in_reader.close()  # before serve_card stops the card's server


def _settle(pos: BeneficiarySession, r: Renewed, amount: int, nonce: bytes | None = None
            ) -> TransactionRecord:  # fmt: skip
    return pos.debit(RecordType.SETTLE, scheme_id=SCHEME_HEALTH, amount=amount, time=int(r.clock()),
                     operator_id=1, facility_id=2, reference=r.block, nonce=nonce)  # fmt: skip


def _health_log(pos: BeneficiarySession) -> list[tuple[RecordType, int]]:
    return [(x.record_type, x.balance_after) for x in pos.read_log() if x.scheme_id == SCHEME_HEALTH]


def test_old_year_admission_settled_in_the_new_year_through_pcscd(
    beneficiary_world: BeneficiaryWorld, tmp_path: Path, reader: CardInReader
) -> None:
    w = beneficiary_world
    r = _renewed_with_open_admission(w, tmp_path, "card", reader)
    assert reader.served is not None
    apdus = reader.served.server.apdus
    pos = _pos(w, r.card, reader)
    assert pos.card_certificate is not None
    certified = (pos.card_certificate.effective, pos.card_certificate.expiry)
    assert certified == (NEW_START, NEW_END)  # the card answers as the new year's card
    settle = _settle(pos, r, 800_000)
    assert reader.served.server.apdus > apdus  # the SETTLE crossed pcscd and vpcd
    assert (settle.record_type, settle.amount, settle.reference) == (RecordType.SETTLE, 800_000, r.block)
    assert settle.balance_after == NEW_COVER  # the claim paid from the old hold, the new wallet untouched
    settle.verify(load_public_point(pos.card_certificate.public_point))  # signed by the card's own key
    assert _wallet(w, r.card, reader) == (NEW_COVER, 0)  # the new cover; the old year's hold consumed
    pos = _pos(w, r.card, reader)
    with pytest.raises(ReferenceNotFoundError):  # the admission is closed: its hold pays no second claim
        _settle(pos, r, 100_000)
    assert _health_log(pos) == [
        (RecordType.BLOCK, COVER - HELD), (RecordType.RENEWAL, NEW_COVER), (RecordType.SETTLE, NEW_COVER),
    ]  # fmt: skip
    assert pos.read_log()[-1] == settle  # the record the POS got is the one the card keeps


def test_settle_above_the_old_hold_is_refused_through_pcscd(
    beneficiary_world: BeneficiaryWorld, tmp_path: Path, reader: CardInReader
) -> None:
    w = beneficiary_world
    r = _renewed_with_open_admission(w, tmp_path, "card", reader)
    pos = _pos(w, r.card, reader)
    log = pos.read_log()
    with pytest.raises(BalanceError):  # SW 6986: the rest is not taken from the new year's wallet
        _settle(pos, r, HELD + 1)
    assert _wallet(w, r.card, reader) == (NEW_COVER, HELD)  # unchanged: the admission still open
    pos = _pos(w, r.card, reader)
    assert pos.read_log() == log  # no record written
    settle = _settle(pos, r, HELD)  # the whole hold still pays the claim
    assert settle.balance_after == NEW_COVER
    assert _wallet(w, r.card, reader) == (NEW_COVER, 0)


def test_release_of_the_old_year_admission_credits_nothing_through_pcscd(
    beneficiary_world: BeneficiaryWorld, tmp_path: Path, reader: CardInReader
) -> None:
    w = beneficiary_world
    r = _renewed_with_open_admission(w, tmp_path, "card", reader)
    pos = _pos(w, r.card, reader)
    release = pos.debit(RecordType.RELEASE, scheme_id=SCHEME_HEALTH, amount=0, time=int(r.clock()),
                        operator_id=1, facility_id=2, reference=r.block)  # fmt: skip
    assert release.balance_after == NEW_COVER  # the hold goes back to the old year
    assert _wallet(w, r.card, reader) == (NEW_COVER, 0)


@pytest.mark.parametrize(
    ("step", "label", "settled"),
    [
        (1, "command received", False),
        (2, "log record written", False),  # inside the card's transaction: rolled back at the next power-up
        (3, "response ready", True),  # committed, the answer lost with the card
    ],
    ids=["before-anything", "mid-transaction", "answer-lost"],
)
def test_card_pulled_mid_settle_through_pcscd_is_open_or_settled_never_credited(
    beneficiary_world: BeneficiaryWorld, tmp_path: Path, reader: CardInReader, step: int, label: str,
    settled: bool,
) -> None:  # fmt: skip
    """The card loses power at a point of its own SETTLE processing (a fault-injector checkpoint: vpcd drops
    it from the reader), not at a time. Back in the reader it is the open admission or the settled one, and
    the POS sending the SETTLE again (same nonce) settles it once with the new wallet untouched."""
    w = beneficiary_world
    r = _renewed_with_open_admission(w, tmp_path, "card", reader)
    nonce = bytes(range(fmt.NONCE_LENGTH))
    pos = _pos(w, r.card, reader)
    r.faults.arm(at_step=step)  # counted from the SETTLE's own command on
    with pytest.raises(CardRemovedError):
        _settle(pos, r, 800_000, nonce)
    assert r.faults.fired == f"at step {step} ({label})"
    reader.reinsert()
    assert _wallet(w, r.card, reader) == ((NEW_COVER, 0) if settled else (NEW_COVER, HELD))
    record = _settle(_pos(w, r.card, reader), r, 800_000, nonce)  # the POS sends it again
    assert (record.record_type, record.amount) == (RecordType.SETTLE, 800_000)
    assert record.balance_after == NEW_COVER
    assert _wallet(w, r.card, reader) == (NEW_COVER, 0)
    assert _health_log(_pos(w, r.card, reader)) == [
        (RecordType.BLOCK, COVER - HELD), (RecordType.RENEWAL, NEW_COVER), (RecordType.SETTLE, NEW_COVER),
    ]  # fmt: skip
