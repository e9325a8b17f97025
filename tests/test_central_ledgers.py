"""FKO ledger read-backs: central checks the officer card's own signature, not the station's parse.

The real FKO card application (hardware_sims, in-process) activates cards; the host's ``read_ledger`` keeps
the card's signature, challenge, raw entries and pages (``VerifiedLedger``); the upload carries them and
central (SQLite and PostgreSQL, trust anchor configured) verifies them against the FKO's certificate chain
to the root. Altered, truncated, recounted or impostor-signed ledgers, and ledgers without the card's
signature, are refused with their reason; nothing of a refused batch is stored.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select

from cardsvc.central.errors import UnprocessableError
from cardsvc.central.extensions import get_db
from cardsvc.central.models import FkoLedgerRow
from cardsvc.central.services.ingest import ingest_batch
from cardsvc.central.services.terminals import DbTerminalDirectory, public_key_bytes, register_terminal
from cardsvc.central.testing import FixedClock, SimTerminal, p256_key
from cardsvc.formats.batch import BatchKind, FkoLedgerEntry, SignedLedger
from cardsvc.formats.profile import card_number, reference_id
from cardsvc.pki.cvc import issue_certificate
from cardsvc.pki.errors import PkiError
from cardsvc.pki.officer import LEDGER_ENTRY_SIZE, LedgerPage, ledger_statement
from cardsvc.pki.officer_card import VerifiedLedger
from cardsvc.pki.rights import DEFAULT_RIGHTS, Role
from cardsvc.pki.signer import SoftwareSigner
from tests.fixtures.beneficiary import CARD_NOW, FKO_CHR

T0 = int(CARD_NOW.timestamp())
DAY = 86_400
CARDS = ("CARD-10000000002", "CARD-10000000003", "CARD-10000000004")


@dataclass
class Desk:
    app: Flask
    world: Any
    uploader: SimTerminal
    now: int

    def ingest(self, entry: FkoLedgerEntry, *, anchored: bool = True) -> Any:
        body = self.uploader.batch(BatchKind.FKO_LEDGER, [entry], self.now)
        anchor = self.world.anchor if anchored else None
        with get_db(self.app).sessions() as session:
            return ingest_batch(
                session, DbTerminalDirectory(session), body, "00000000d1570002", self.now, anchor=anchor
            )

    def refused(self, entry: FkoLedgerEntry, *, anchored: bool = True) -> UnprocessableError:
        with pytest.raises(UnprocessableError) as info:
            self.ingest(entry, anchored=anchored)
        return info.value

    def stored(self) -> list[tuple[str, list[str], str | None]]:
        with get_db(self.app).sessions() as session:
            rows = session.execute(select(FkoLedgerRow).order_by(FkoLedgerRow.id)).scalars().all()
            return [(r.fko_id, list(r.activated), r.officer_verified) for r in rows]


@pytest.fixture
def desk(central_app: Flask, clock: FixedClock, beneficiary_world: Any) -> Desk:
    now = T0 + 2 * DAY
    clock.now = float(now)
    uploader = SimTerminal.new(0xD157_0002, random.Random(12))
    with get_db(central_app).sessions() as session:
        register_terminal(session, uploader.terminal_id, uploader.key.public_key(), T0 - 100 * DAY)
        session.commit()
    return Desk(central_app, beneficiary_world, uploader, now)


@pytest.fixture
def ledger(beneficiary_world: Any, tmp_path: Path) -> VerifiedLedger:
    """The FKO card activates three cards, then its ledger is read back as the station reads it."""
    card, officer = beneficiary_world.officer_session(tmp_path)
    for i, chr_ in enumerate(CARDS):
        point = public_key_bytes(p256_key(random.Random(70 + i)).public_key())
        officer.activate_card(beneficiary_world.card_body(point, chr_))
    read = officer.read_ledger(rng=random.Random(5).randbytes)
    card.power_off()
    return read


def upload_of(world: Any, ledger: VerifiedLedger, **changes: Any) -> FkoLedgerEntry:
    """What the station uploads from the ledger it read (enrolment_station.upload.signed_ledger)."""
    signed = SignedLedger(
        (world.pki.district.cert.encode(), world.fko_certificate.encode()), ledger.challenge, ledger.count,
        ledger.head, ledger.raw_entries, ledger.signature,
    )  # fmt: skip
    activated = tuple(card_number(e.card_chr) for e in ledger.entries)
    return FkoLedgerEntry(reference_id(FKO_CHR), activated, replace(signed, **changes))


def test_the_ledger_read_keeps_what_the_card_signed(ledger: VerifiedLedger) -> None:
    assert [e.card_chr for e in ledger.entries] == list(CARDS)
    assert len(ledger.raw_entries) == 3 * LEDGER_ENTRY_SIZE and len(ledger.signature) == 64
    assert ledger.pages and all(LedgerPage.parse(p).head == ledger.head for p in ledger.pages)
    assert ledger.verify() == ledger.entries
    altered = bytearray(ledger.raw_entries)
    altered[-20] ^= 0x01
    with pytest.raises(PkiError):
        replace(ledger, raw_entries=bytes(altered)).verify()


def test_station_ledger_verified_by_central_against_the_fko_chain(desk: Desk, ledger: VerifiedLedger) -> None:
    receipt = desk.ingest(upload_of(desk.world, ledger)).receipt
    assert receipt.new_items == 1
    [(fko, activated, checked)] = desk.stored()
    assert fko == f"{reference_id(FKO_CHR):016x}" and checked == "chain"
    assert activated == [f"{card_number(c):016x}" for c in CARDS]


def test_altered_truncated_and_recounted_ledgers_refused(desk: Desk, ledger: VerifiedLedger) -> None:
    raw = bytearray(ledger.raw_entries)
    raw[LEDGER_ENTRY_SIZE + 10] ^= 0x01  # the second activation's bytes changed
    assert desk.refused(upload_of(desk.world, ledger, entries=bytes(raw))).code == "bad_ledger_signature"

    two = ledger.raw_entries[: 2 * LEDGER_ENTRY_SIZE]  # the last activation dropped, count left as signed
    assert desk.refused(upload_of(desk.world, ledger, entries=two)).code == "bad_ledger_signature"
    short = upload_of(desk.world, ledger, entries=two, count=2)  # and the count lowered to match
    assert desk.refused(short).code == "bad_ledger_signature"

    other_challenge = upload_of(desk.world, ledger, challenge=bytes(16))  # a signature from another read
    assert desk.refused(other_challenge).code == "bad_ledger_signature"

    genuine = upload_of(desk.world, ledger)  # the station's list of cards disagrees with what was signed
    fewer = replace(genuine, activated=genuine.activated[:2])
    error = desk.refused(fewer)
    assert error.code == "ledger_mismatch" and "the officer signed 3" in error.reason
    assert desk.stored() == []


def test_impostor_officer_and_unsigned_ledgers_refused(desk: Desk, ledger: VerifiedLedger) -> None:
    w = desk.world
    impostor = SoftwareSigner.generate()  # a made-up card claiming to be the FKO, certified by nobody real
    fake_cert = issue_certificate(
        SoftwareSigner.generate(), car=w.pki.district.chr, chr=FKO_CHR, public_point=impostor.public_key(),
        role=Role.FIELD_KEY_OFFICER, rights=DEFAULT_RIGHTS[Role.FIELD_KEY_OFFICER],
        effective=date(2026, 1, 1), expiry=date(2030, 12, 31),
    )  # fmt: skip
    statement = ledger_statement(FKO_CHR, ledger.count, ledger.head, ledger.challenge)
    forged = upload_of(
        w, ledger, officer_chain=(w.pki.district.cert.encode(), fake_cert.encode()),
        signature=impostor.sign(statement),
    )  # fmt: skip
    error = desk.refused(forged)
    assert error.code == "bad_officer_certificate" and "[bad-signature]" in error.reason
    assert desk.ingest(forged, anchored=False).receipt.new_items == 1  # without the root: only its signature
    assert desk.stored()[-1][2] == "signature"

    genuine = upload_of(w, ledger)
    unsigned = FkoLedgerEntry(genuine.fko_id, genuine.activated)  # the station's parse alone
    error = desk.refused(unsigned)
    assert error.code == "unsigned_ledger" and f"{reference_id(FKO_CHR):016x}" in error.reason
    with get_db(desk.app).sessions() as session:
        assert session.execute(select(func.count()).select_from(FkoLedgerRow)).scalar_one() == 1
