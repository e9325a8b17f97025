"""Camp uploads feed central's second phase: two stations (two camps) of one district upload to the REAL
central app (SQLite, trust anchor configured, so every card chain is checked to the root); central's
de-duplication then flags the person enrolled in both camps, and nobody else. A station without central's
de-duplication key sends no templates and its journal says so."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from flask import Flask
from sqlalchemy import select

from cardsvc.card.inprocess import InProcessConnection
from cardsvc.central.app import create_app
from cardsvc.central.extensions import get_db, make_engine
from cardsvc.central.migrate import upgrade
from cardsvc.central.models import Card, FlagRow, SealedTemplates
from cardsvc.central.services.dedup import deduplicate
from cardsvc.central.services.pki_keys import register_certified_terminal
from cardsvc.central.services.reconcile import FlagKind
from cardsvc.central.testing import p256_key
from cardsvc.formats.batch import BatchKind, CampCard, SchemeCover, SignedBatch, id_hex
from cardsvc.formats.profile import HouseholdProfile, card_number
from cardsvc.pki.rights import Right, Role
from enrolment_station.camp import Camp
from enrolment_station.fingers import SyntheticFingerReader, finger_seed
from enrolment_station.keys import DEDUP_KEY_FILE, StationIdentity, install
from enrolment_station.upload import DEDUP_NOT_SENT, send_pending
from tests.fixtures.station import (
    DISTRICT,
    DISTRICT_SECRET,
    FKO_PIN,
    TERMINAL_PASSPHRASE,
    OpenCamp,
    PinnedClock,
    StationWorld,
)
from tests.test_station_upload import FlaskOpener

TERMINAL_B = "INTRM-ENR-0002"
CAMP_A = """household_id,village_code,member_no,name,gender,year_of_birth,relation
HH-0001,123456,1,Ramesh Kumar,M,1971,HEAD
HH-0001,123456,2,Sita Devi,F,1975,SPOUSE
HH-0002,123456,1,Lakshmi Bai,F,1960,HEAD
"""
CAMP_B = """household_id,village_code,member_no,name,gender,year_of_birth,relation
HH-0101,654321,1,Sita Kumari,F,1975,HEAD
HH-0102,654321,1,Mohan Lal,M,1980,HEAD
"""


@pytest.fixture
def dedup_key() -> ec.EllipticCurvePrivateKey:
    return p256_key(random.Random(4711))


def _point(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )


@pytest.fixture
def central(tmp_path: Path, station_world: StationWorld) -> Iterator[Flask]:
    """Central with its own SQLite DB and the world's root as trust anchor (card chains are checked), on the
    station world's clock: requests signed at the station's time are on time at central."""
    url = f"sqlite:///{tmp_path / 'central.db'}"
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    app = create_app({
        "DATABASE_URL": url, "CLOCK": station_world.timestamp, "TESTING": True,
        "TRUST_ANCHOR": station_world.anchor,
    })  # fmt: skip
    yield app
    get_db(app).dispose()


def _second_station(world: StationWorld, dedup_point: bytes) -> Path:
    """Another enrolment terminal of the same district, installed in its own home (camp B)."""
    km = world.km
    km.register_terminal(
        TERMINAL_B, district=DISTRICT, role=Role.ENROLMENT_TERMINAL, district_secret=DISTRICT_SECRET,
        terminal_passphrase=TERMINAL_PASSPHRASE,
        rights=Right.ENROL | Right.READ_PROFILE | Right.READ_TEMPLATES | Right.RENEW,
    )  # fmt: skip
    chain_file = world.tmp / "terminal-b.chain"
    chain_file.write_bytes(b"".join(c.encode() for c in [km.store.root_certificate(), *km.chain(TERMINAL_B)]))
    home = world.tmp / "station-b"
    install(home, key_file=km.store.holder_dir(TERMINAL_B) / "key.enc", chain_file=chain_file,
            bundle_dir=world.tmp / "bundle", dedup_point=dedup_point)  # fmt: skip
    return home


def _run_camp(
    world: StationWorld, home: Path, camp_id: str, listing: str, reader: SyntheticFingerReader
) -> tuple[Camp, list[str]]:
    camp = Camp(home, passphrase=TERMINAL_PASSPHRASE, operator="op-anita", camp_id=camp_id, reader=reader,
                now=world.now)  # fmt: skip
    (world.tmp / f"{camp_id}.csv").write_text(listing)
    listed = camp.import_list(world.tmp / f"{camp_id}.csv")
    camp.open_session(InProcessConnection(world.fko_card), pin=FKO_PIN, fingerprint=reader.officer_probe)
    cards = [camp.enrol_household(h, InProcessConnection(world.blank_card())).card_id
             for h in sorted(h.household_id for h in listed.households)]  # fmt: skip
    return camp, cards


def _register(central: Flask, identity: StationIdentity, world: StationWorld) -> None:
    now = int(world.now().timestamp())
    with get_db(central).sessions() as session:
        register_certified_terminal(session, identity.terminal_id, identity.chain, world.anchor, now - 60)
        session.commit()


def test_two_camps_register_cards_with_schemes_and_chains_and_the_person_enrolled_twice_is_flagged(
    station_world: StationWorld,
    station_clock: PinnedClock,
    central: Flask,
    dedup_key: ec.EllipticCurvePrivateKey,
) -> None:
    world = station_world
    install_b = _second_station(world, _point(dedup_key))
    # camp A's home was installed without the key; it is added as `enrol install --dedup-key` writes it
    (world.home / DEDUP_KEY_FILE).write_text(_point(dedup_key).hex() + "\n")
    # Sita Devi (HH-0001 member 2 at camp A) enrols again at camp B as the head of HH-0101
    twice = {("HH-0101", 1, f): finger_seed("HH-0001", 2, f) for f in range(1, 11)}
    camp_a, cards_a = _run_camp(world, world.home, "CAMP-PAT-01", CAMP_A, SyntheticFingerReader())
    camp_b, cards_b = _run_camp(world, install_b, "CAMP-PAT-02", CAMP_B, SyntheticFingerReader(twice))
    sita_a, lakshmi, sita_b, mohan = (*cards_a, *cards_b)  # households in sorted order
    opener = FlaskOpener(central)
    for camp in (camp_a, camp_b):
        batches = camp.upload_batches()
        items = [i for b in batches if b.batch.kind is BatchKind.CAMP for i in b.batch.items]
        assert items and all(
            isinstance(i, CampCard) and i.templates and len(i.card_chain) == 3 for i in items
        )
        assert not camp.journal.events(DEDUP_NOT_SENT)
        _register(central, camp.identity, world)
        send_pending(camp.journal, camp.identity, "http://central", now=camp.now, opener=opener)
        assert camp.journal.pending_uploads() == []
    assert opener.statuses == [201, 201]  # each camp's batch accepted: chains checked to the root

    every = [sita_a, lakshmi, sita_b, mohan]
    with get_db(central).sessions() as session:
        registered = {c.card_id: c for c in session.execute(select(Card)).scalars()}
        sealed = set(session.execute(select(SealedTemplates.card_id)).scalars())
        assert sorted(registered) == sorted(id_hex(card_number(c)) for c in every)  # chains accepted
        assert sealed == set(registered)
        report = deduplicate(session, dedup_key, int(world.now().timestamp()))
        flags = session.execute(
            select(FlagRow).where(FlagRow.kind == FlagKind.DUPLICATE_ENROLMENT.value)
        ).scalars().all()  # fmt: skip
        flagged = {f.card_id: f.details["other_card"] for f in flags}
    assert report.searched_cards == 4 and report.unreadable == []
    a, b = id_hex(card_number(sita_a)), id_hex(card_number(sita_b))
    assert flagged == {a: b, b: a}  # the person enrolled twice, on both cards; Lakshmi and Mohan are not
    # what each card was registered with: every scheme on its profile, as the station's journal holds it
    for camp in (camp_a, camp_b):
        for row in camp.journal.cards():
            profile = HouseholdProfile.parse(bytes(row["profile"]))
            wires = camp.journal.db.execute("SELECT wire FROM uploads WHERE kind = 'camp'").fetchall()
            item = next(
                i for w in wires for i in _items(bytes(w[0])) if i.card_id == card_number(row["card_id"])
            )
            assert item.schemes == tuple(SchemeCover(s.scheme_id, s.cover_paise) for s in profile.schemes)
            held = registered[id_hex(card_number(row["card_id"]))]
            assert held.household_id == profile.household_id
    camp_a.close()
    camp_b.close()


def _items(wire: bytes) -> list[CampCard]:
    return [i for i in SignedBatch.parse(wire).batch.items if isinstance(i, CampCard)]


def test_without_a_dedup_key_no_templates_leave_the_station_and_the_journal_says_so(
    station_camp: OpenCamp, station_world: StationWorld, central: Flask
) -> None:
    camp = station_camp.camp
    assert isinstance(camp, Camp) and camp.identity.dedup_key() is None
    card = camp.enrol_household("HH-0002", InProcessConnection(station_world.blank_card())).card_id
    (batch,) = [b for b in camp.upload_batches() if b.batch.kind is BatchKind.CAMP]
    (item,) = _items(batch.encode())
    assert item.templates == b"" and len(item.card_chain) == 3 and item.schemes
    (event,) = camp.journal.events(DEDUP_NOT_SENT)
    assert event["details"]["cards"] == [card] and "no de-duplication key" in event["details"]["reason"]
    _register(central, camp.identity, station_world)
    send_pending(camp.journal, camp.identity, "http://central", now=camp.now, opener=FlaskOpener(central))
    with get_db(central).sessions() as session:
        assert [c.card_id for c in session.execute(select(Card)).scalars()] == [id_hex(card_number(card))]
        assert session.execute(select(SealedTemplates)).scalars().all() == []
