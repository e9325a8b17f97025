"""Upload: the camp and FKO-ledger batches go to the real central service (Flask app, SQLite); re-sending
is idempotent; the card chains and the templates sealed to central's de-duplication key arrive intact."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from flask import Flask
from sqlalchemy import func, select

from cardsvc.card.inprocess import InProcessConnection
from cardsvc.central import create_app
from cardsvc.central.extensions import get_db
from cardsvc.central.models import BatchRow, Card, SealedTemplates
from cardsvc.central.services.terminals import register_terminal
from cardsvc.formats.batch import BatchKind, CampCard, FkoLedgerEntry, SignedBatch
from cardsvc.formats.profile import card_number
from cardsvc.formats.templates import open_templates
from cardsvc.pki.cvc import CvCertificate
from cardsvc.pki.officer import verify_ledger
from enrolment_station.camp import Camp
from enrolment_station.errors import UploadError
from enrolment_station.keys import DEDUP_KEY_FILE
from enrolment_station.upload import send_pending
from tests.fixtures.station import OpenCamp, StationWorld


class _Answer(io.BytesIO):
    def __enter__(self) -> _Answer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class FlaskOpener:
    """urllib's opener, delivered to central's Flask test client; ``fail`` simulates a dropped network."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.fail = False
        self.statuses: list[int] = []

    def __call__(self, request: Any, timeout: float = 0) -> _Answer:
        if self.fail:
            raise OSError("network unreachable")
        path = request.full_url.split("://", 1)[1].split("/", 1)[1]
        response = self.app.test_client().post(
            "/" + path, data=request.data, headers=dict(request.header_items())
        )
        self.statuses.append(response.status_code)
        if response.status_code >= 400:
            import urllib.error

            raise urllib.error.HTTPError(
                request.full_url,
                response.status_code,
                "refused",
                {},  # type: ignore[arg-type]
                io.BytesIO(response.data),
            )
        return _Answer(response.data)


@pytest.fixture
def central(sqlite_url: str, station_world: StationWorld) -> Iterator[Flask]:
    """Central on the station world's clock (the pinned day, moving on): requests signed at the station's
    time are on time at central however long the test runs."""
    from tests.fixtures.db import _empty_all_tables

    _empty_all_tables(sqlite_url)
    app = create_app({"DATABASE_URL": sqlite_url, "CLOCK": station_world.timestamp, "TESTING": True})
    yield app
    get_db(app).dispose()


def _count(app: Flask, model: type) -> int:
    with get_db(app).sessions() as session:
        return int(session.execute(select(func.count()).select_from(model)).scalar_one())


def test_camp_upload_reaches_central_once_with_chains_and_sealed_templates(
    station_camp: OpenCamp, station_world: StationWorld, central: Flask
) -> None:
    camp = station_camp.camp
    assert isinstance(camp, Camp)
    dedup = ec.generate_private_key(ec.SECP256R1())
    point = dedup.public_key().public_bytes(*_uncompressed())
    (station_world.home / DEDUP_KEY_FILE).write_text(point.hex())
    cards = [camp.enrol_household(h, InProcessConnection(station_world.blank_card())).card_id
             for h in ("HH-0001", "HH-0002")]  # fmt: skip
    assert camp.ledger().matches
    batches = camp.upload_batches()
    camp_batch = next(b for b in batches if b.batch.kind is BatchKind.CAMP)
    ledger_batch = next(b for b in batches if b.batch.kind is BatchKind.FKO_LEDGER)
    (ledger_item,) = ledger_batch.batch.items
    assert isinstance(ledger_item, FkoLedgerEntry) and ledger_item.signed_ledger is not None
    signed = ledger_item.signed_ledger
    officer = CvCertificate.parse(signed.officer_chain[-1])
    entries = verify_ledger(
        officer.chr,
        officer.public_point,
        signed.challenge,
        signed.entries,
        signed.count,
        signed.head,
        signed.signature,
    )  # the FKO card's own word, checkable by central
    assert sorted(e.card_chr for e in entries) == sorted(cards)
    items = [i for i in camp_batch.batch.items if isinstance(i, CampCard)]
    assert sorted(i.card_id for i in items) == sorted(card_number(c) for c in cards)
    for item in items:
        district, fko, card = (CvCertificate.parse(c) for c in item.card_chain)
        assert card.public_point == item.card_key and card.car == fko.chr and fko.car == district.chr
        opened = open_templates(dedup, item.card_id, item.templates)  # only central's key opens them
        assert len(opened) == (4 if len(item.members) == 2 else 2)
    with get_db(central).sessions() as session:
        key = ec.EllipticCurvePublicKey.from_encoded_point(
            ec.SECP256R1(), camp.identity.terminal.public_key()
        )
        register_terminal(session, camp.identity.terminal_id, key, int(camp.now().timestamp()) - 60)
        session.commit()
    opener = FlaskOpener(central)
    opener.fail = True
    with pytest.raises(UploadError, match="stay queued"):
        send_pending(camp.journal, camp.identity, "http://central", now=camp.now, opener=opener)
    assert len(camp.journal.pending_uploads()) == 2
    opener.fail = False
    receipts = send_pending(camp.journal, camp.identity, "http://central", now=camp.now, opener=opener)
    assert len(receipts) == 2 and opener.statuses == [201, 201]
    assert camp.journal.pending_uploads() == []
    assert (
        _count(central, Card) == 2
        and _count(central, SealedTemplates) == 2
        and _count(central, BatchRow) == 2
    )
    # the same signed batch again (a lost answer, a second USB stick): central counts it once
    again = central.test_client().post(
        "/api/v1/batches", data=camp_batch.encode(), headers=_headers(camp, camp_batch)
    )
    assert again.status_code == 200 and again.get_json()["duplicate"] is True
    assert _count(central, Card) == 2
    assert camp.upload_batches() == []  # nothing new to build, nothing pending


def _uncompressed() -> tuple[Any, Any]:
    from cryptography.hazmat.primitives import serialization

    return serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint


def _headers(camp: Camp, batch: SignedBatch) -> dict[str, str]:
    from enrolment_station.upload import sign_headers

    return sign_headers(camp.identity, "POST", "/api/v1/batches", batch.encode(), int(camp.now().timestamp()))


def test_records_the_station_makes_on_cards_reach_central(
    station_camp: OpenCamp, station_world: StationWorld, central: Flask
) -> None:
    """A split lowers the original card with a card-signed record: it goes to central in a transactions
    batch (once), so the card's ledger there has no gap and its balance follows the chip."""
    from cardsvc.central.models import TransactionRow
    from cardsvc.formats.batch import TransactionItem
    from cardsvc.formats.transaction import RecordType, TransactionRecord
    from enrolment_station.authorisation import AuthKind
    from enrolment_station.reissue import issue_authorised
    from tests.test_station_reissue import _auth, _lowering

    camp = station_camp.camp
    assert isinstance(camp, Camp)
    original = station_world.blank_card()
    card_id = camp.enrol_household("HH-0001", InProcessConnection(original)).card_id
    issue_authorised(
        camp.personaliser, InProcessConnection(station_world.blank_card()),
        _auth(station_world, AuthKind.SPLIT, card_id, members=(1,)), AuthKind.SPLIT, card_id,
        now=station_world.now(), fko=camp.fko, original=InProcessConnection(original),
        lowering=[_lowering(station_world, card_id, 1_000_000)],
    )  # fmt: skip
    batches = camp.upload_batches()
    [tx] = [b for b in batches if b.batch.kind is BatchKind.TRANSACTIONS]
    [item] = tx.batch.items
    assert isinstance(item, TransactionItem)
    record = TransactionRecord.parse(item.record)
    assert (record.card_id, record.counter, record.record_type, record.amount, record.balance_after) == (
        card_number(card_id), 1, RecordType.SPLIT, 1_000_000, 2_000_000
    )  # fmt: skip
    row = camp.journal.card(card_id)
    assert row is not None and item.card_key == bytes(row["card_key"])
    with get_db(central).sessions() as session:
        key = ec.EllipticCurvePublicKey.from_encoded_point(
            ec.SECP256R1(), camp.identity.terminal.public_key()
        )
        register_terminal(session, camp.identity.terminal_id, key, int(camp.now().timestamp()) - 60)
        session.commit()
    receipts = send_pending(camp.journal, camp.identity, "http://central", now=camp.now,
                            opener=FlaskOpener(central))  # fmt: skip
    assert len(receipts) == len(batches)
    assert _count(central, TransactionRow) == 1
    assert not [b for b in camp.upload_batches() if b.batch.kind is BatchKind.TRANSACTIONS]  # sent once
