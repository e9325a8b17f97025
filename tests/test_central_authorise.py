"""Signed lists and authorisations for the field, checked the way the field checks them (offline, with only
the root key); a duplicate-enrolment finding blocks the card's next authorisation. Both backends."""

from __future__ import annotations

import base64
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from cardsvc.beneficiary.protocol import Authorisation
from cardsvc.central.errors import ConflictError
from cardsvc.central.extensions import get_db
from cardsvc.central.services.authorise import (
    CardKind,
    StationKind,
    held_counter,
    issue_card_authorisation,
    issue_station_authorisation,
)
from cardsvc.central.services.catalogue import add_package_version
from cardsvc.central.services.dedup import record_flags
from cardsvc.central.services.flags import open_flags, resolve_flag
from cardsvc.central.services.publish import CentralKey
from cardsvc.central.services.reconcile import Flag, FlagKind
from cardsvc.central.services.terminals import add_facility, register_terminal, revoke_card
from cardsvc.central.testing import FixedClock, SimCard, SimTerminal
from cardsvc.formats.batch import BatchKind, Item, TransactionItem
from cardsvc.formats.profile import card_number
from cardsvc.formats.transaction import RecordType
from cardsvc.pki.revocation import RevocationList, verify_revocation_list
from cardsvc.pki.rights import Right, Role
from enrolment_station.authorisation import AuthKind, SignedAuthorisation
from enrolment_station.errors import AuthorisationError
from point_of_service.catalogue import verify_catalogue
from tests.fixtures.beneficiary import CARD_ID, POLICY_END, POLICY_START, BeneficiaryCard, BeneficiaryWorld

DAY = 86_400
CARD = card_number(CARD_ID)
CARD_HEX = f"{CARD:016x}"


@dataclass
class Desk:
    app: Flask
    clock: FixedClock
    terminal: SimTerminal
    world: BeneficiaryWorld

    @property
    def now(self) -> int:
        return int(self.clock())

    def upload(self, kind: BatchKind, items: list[Item]) -> None:
        body = self.terminal.batch(kind, items, self.now)
        headers = self.terminal.headers("POST", "/api/v1/batches", body, self.now)
        assert self.app.test_client().post("/api/v1/batches", data=body, headers=headers).status_code == 201

    def get(self, path: str) -> Any:
        response = self.app.test_client().get(path, headers=self.terminal.headers("GET", path, b"", self.now))
        assert response.status_code == 200, response.get_json()
        return response.get_json()

    def register(self, card: SimCard) -> None:
        self.upload(
            BatchKind.CAMP,
            [card.camp_card("INDKMA-PATNA1", self.now - 100 * DAY, self.now + 265 * DAY, 0xF0)],
        )


@pytest.fixture
def desk(db_url: str, clock: FixedClock, beneficiary_world: BeneficiaryWorld) -> Any:
    from cardsvc.central.app import create_app

    district = beneficiary_world.pki.district
    key = CentralKey(district.signer, district.chr, (district.cert,))
    app = create_app({"DATABASE_URL": db_url, "CLOCK": clock, "TESTING": True, "CENTRAL_KEY": key})
    terminal = SimTerminal.new(0x5E_A7, random.Random(4))
    with get_db(app).sessions() as session:
        add_facility(session, 9, "Patna Hospital", "INDKMA-PATNA1", 25.6, 85.1)
        session.flush()
        register_terminal(session, terminal.terminal_id, terminal.key.public_key(), int(clock()) - DAY, 9)
        session.commit()
    yield Desk(app, clock, terminal, beneficiary_world)
    get_db(app).dispose()


def at(t: int) -> datetime:
    return datetime.fromtimestamp(t, UTC)


def test_signed_revocation_list_verifies_and_versions_only_on_change(desk: Desk) -> None:
    cards = [SimCard.new(0xAB00 + i, random.Random(i)) for i in range(2)]
    for c in cards:
        desk.register(c)
    with get_db(desk.app).sessions() as session:
        revoke_card(session, cards[0].card_id, desk.now - 60)
        session.commit()
    first = desk.get("/api/v1/revocations")
    assert first["cards"] == [{"id": f"{cards[0].card_id:016x}", "revoked_at": desk.now - 60}]
    rl = RevocationList.parse(base64.b64decode(first["signed_list"]))
    verify_revocation_list(
        rl, desk.world.anchor, issuer_chain=[desk.world.pki.district.cert], now=at(desk.now)
    )
    assert [e.subject for e in rl.entries] == [f"CARD-{cards[0].card_id}"] and rl.version == desk.now
    assert desk.get("/api/v1/revocations")["signed_list"] == first["signed_list"]  # nothing changed
    with get_db(desk.app).sessions() as session:
        revoke_card(session, cards[1].card_id, desk.now)
        session.commit()
    later = RevocationList.parse(base64.b64decode(desk.get("/api/v1/revocations")["signed_list"]))
    assert later.version == rl.version + 1 and len(later.entries) == 2  # the same second: one above


def test_signed_catalogue_verifies_at_the_pos(desk: Desk) -> None:
    with get_db(desk.app).sessions() as session:
        add_package_version(session, 301, "Normal delivery", 450_000, desk.now - DAY, "obstetrics")
        add_package_version(session, 302, "Caesarean", 900_000, desk.now - DAY, "obstetrics")
        add_package_version(
            session, 301, "Normal delivery", 500_000, desk.now + 30 * DAY, "obstetrics"
        )  # later
        session.commit()
    payload = desk.get("/api/v1/packages")
    catalogue = verify_catalogue(
        base64.b64decode(payload["signed_catalogue"]), desk.world.anchor, now=at(desk.now)
    )
    assert {p.code: p.rate_paise for p in catalogue.packages} == {301: 450_000, 302: 900_000}
    assert catalogue.issuer == desk.world.pki.district.chr and payload["catalogue_version"] == desk.now
    desk.clock.advance(31 * DAY)  # the new price is now valid: a new signed version
    newer = verify_catalogue(
        base64.b64decode(desk.get("/api/v1/packages")["signed_catalogue"]),
        desk.world.anchor,
        now=at(desk.now),
    )
    assert newer.version == desk.now and newer.package(301).rate_paise == 500_000  # versions: issue time


def test_station_authorisation_verifies_offline_and_is_served_to_the_district(desk: Desk) -> None:
    card = SimCard.new(CARD, random.Random(1))
    desk.register(card)
    with get_db(desk.app).sessions() as session:
        key = desk.app.config["CENTRAL_KEY"]
        issued = issue_station_authorisation(
            session, key, StationKind.RENEW, CARD_HEX, now=desk.now, rng=random.Random(2).randbytes
        )
        split = issue_station_authorisation(
            session,
            key,
            StationKind.SPLIT,
            CARD_HEX,
            now=desk.now,
            members=[1],
            rng=random.Random(3).randbytes,
        )
    listed = desk.get("/api/v1/authorisations")["authorisations"]
    assert [a["id"] for a in listed] == [issued.id, split.id]
    signed = SignedAuthorisation.parse(base64.b64decode(listed[0]["wire"]))
    auth = signed.verify(desk.world.anchor, now=at(desk.now), revocations=None, kind=AuthKind.RENEW,
                         card_id=CARD_ID, household_id=f"HH-{CARD:x}")  # fmt: skip
    assert auth.policy_start > at(desk.now - 100 * DAY).date()  # the next policy year
    with pytest.raises(AuthorisationError, match="for a split"):
        SignedAuthorisation.parse(base64.b64decode(listed[1]["wire"])).verify(
            desk.world.anchor, now=at(desk.now), revocations=None, kind=AuthKind.RENEW, card_id=CARD_ID,
            household_id=f"HH-{CARD:x}",
        )  # fmt: skip
    with pytest.raises(AuthorisationError, match="expired"):
        signed.verify(desk.world.anchor, now=at(desk.now + 31 * DAY), revocations=None, kind=AuthKind.RENEW,
                      card_id=CARD_ID, household_id=f"HH-{CARD:x}")  # fmt: skip
    desk.clock.advance(31 * DAY)
    assert desk.get("/api/v1/authorisations")["authorisations"] == []  # expired ones are not served


def test_duplicate_enrolment_blocks_the_next_authorisation_until_reviewed(desk: Desk) -> None:
    card = SimCard.new(CARD, random.Random(1))
    desk.register(card)
    key = desk.app.config["CENTRAL_KEY"]
    with get_db(desk.app).sessions() as session:
        duplicate = {"other_card": "00000000000000b1", "score": 61.0}
        record_flags(session, [Flag(FlagKind.DUPLICATE_ENROLMENT, duplicate, card_id=CARD_HEX)], desk.now)
        record_flags(session, [Flag(FlagKind.COUNTER_GAP, {"counters": [2]}, card_id=CARD_HEX)], desk.now)
        session.commit()
        for issue in (
            lambda: issue_station_authorisation(session, key, StationKind.RENEW, CARD_HEX, now=desk.now),
            lambda: issue_card_authorisation(
                session, key, CardKind.TOP_UP, CARD_HEX, now=desk.now, value=5_000
            ),
        ):
            with pytest.raises(ConflictError, match="duplicate enrolment under review") as refused:
                issue()
            assert refused.value.code == "card_under_review"
        supersede = issue_card_authorisation(session, key, CardKind.SUPERSEDE, CARD_HEX, now=desk.now)
        assert any(m.startswith("duplicate_enrolment") for m in supersede.marks)
        [dup] = open_flags(session, card_ids=[CARD_HEX], kinds=[FlagKind.DUPLICATE_ENROLMENT.value])
        resolve_flag(
            session, dup.id, by="district-reviewer", note="twins, fingers differ on recapture", now=desk.now
        )
        renewed = issue_station_authorisation(session, key, StationKind.RENEW, CARD_HEX, now=desk.now)
    assert [m.split(" ")[0] for m in renewed.marks] == ["counter_gap"]  # still shown, does not block


def test_card_accepts_central_top_up_and_sync_ack(
    desk: Desk, make_beneficiary_card: Callable[..., BeneficiaryCard]
) -> None:
    bc = make_beneficiary_card("activated")
    w = bc.world
    session = bc.session()
    till = w.pki.issue(
        w.pki.district, "INTRM-POS-TOPUP2", Role.POS_TERMINAL, rights=Right.DEBIT | Right.TOP_UP
    )
    session.terminal_authenticate([w.pki.district.cert, till.cert], till.signer, CARD_ID)
    session.read_public()
    assert session.card_certificate is not None
    point = session.card_certificate.public_point
    sim = SimCard.new(CARD, random.Random(1))
    camp = sim.camp_card("INDKMA-PATNA1", desk.now - 100 * DAY, desk.now + 265 * DAY, 0xF0)
    from dataclasses import replace

    desk.upload(BatchKind.CAMP, [replace(camp, card_key=point)])
    cash = session.debit(
        RecordType.CASH, scheme_id=1, amount=2_000, time=desk.now - DAY, operator_id=1, facility_id=9
    )
    desk.upload(BatchKind.TRANSACTIONS, [TransactionItem(cash.encode(), point)])
    key = desk.app.config["CENTRAL_KEY"]
    with get_db(desk.app).sessions() as db:
        assert held_counter(db, CARD_HEX) == 1
        top_up = issue_card_authorisation(
            db, key, CardKind.TOP_UP, CARD_HEX, now=desk.now, value=5_000, scheme_id=1
        )
        ack = issue_card_authorisation(db, key, CardKind.SYNC_ACK, CARD_HEX, now=desk.now)
    record = session.debit(RecordType.TOP_UP, scheme_id=1, amount=5_000, time=desk.now, operator_id=1,
                           facility_id=9, authorisation=Authorisation.parse(top_up.wire))  # fmt: skip
    assert record.balance_after == cash.balance_after + 5_000
    assert session.offline_limits().count == 1
    session.acknowledge_sync(Authorisation.parse(ack.wire))  # central holds every record up to counter 1
    limits = session.offline_limits()
    assert limits.count == 0 and limits.synced_counter == 1


def test_authorise_command_signs_with_the_encrypted_key_file(tmp_path: Any, beneficiary_world: Any) -> None:
    from click.testing import CliRunner

    from cardsvc.central.app import create_app
    from cardsvc.central.services.publish import load_central_key
    from cardsvc.cli import main
    from cardsvc.pki.errors import KeyCustodyError
    from cardsvc.pki.signer import FileSigner, ScryptCost, verify_signature

    url = f"sqlite:///{tmp_path / 'c.db'}"
    now = 1_800_000_000
    app = create_app({"DATABASE_URL": url, "CLOCK": lambda: float(now)})
    terminal = SimTerminal.new(0x5E_A8, random.Random(4))
    with get_db(app).sessions() as session:
        register_terminal(session, terminal.terminal_id, terminal.key.public_key(), now - DAY)
        session.commit()
    card = SimCard.new(CARD, random.Random(1))
    body = terminal.batch(BatchKind.CAMP, [card.camp_card("INDKMA-PATNA1", now - DAY, now + DAY, 0xF0)], now)
    headers = terminal.headers("POST", "/api/v1/batches", body, now)
    assert app.test_client().post("/api/v1/batches", data=body, headers=headers).status_code == 201
    get_db(app).dispose()
    key_file = tmp_path / "root.key"
    root = FileSigner.create(key_file, b"pw", cost=ScryptCost(n=2**10))
    out = CliRunner().invoke(
        main,
        ["central", "authorise", "top_up", CARD_HEX, "--database-url", url, "--key-file", str(key_file),
         "--chr", "INROOT-TEST", "--value", "5000"],
        env={"CARDSVC_KEY_PASSPHRASE": "pw"},
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    with get_db(create_app({"DATABASE_URL": url, "DASHBOARD": False})).sessions() as session:
        from cardsvc.central.models import AuthorisationRow

        row = session.execute(select(AuthorisationRow)).scalar_one()
        auth = Authorisation.parse(bytes(row.wire))
    assert (auth.kind.name, auth.value, auth.card_id) == ("TOP_UP", 5000, CARD_ID)
    verify_signature(root.public_key(), auth.signed_bytes(), auth.signature)  # signed by the key in the file
    district_cert = tmp_path / "district.cvc"
    district_cert.write_bytes(beneficiary_world.pki.district.cert.encode())
    with pytest.raises(KeyCustodyError, match="not the certificate"):
        load_central_key(key_file, b"pw", "INROOT-TEST", district_cert)


def test_a_terminal_without_facility_sees_only_the_cards_it_names(desk: Desk) -> None:
    card = SimCard.new(CARD, random.Random(1))
    desk.register(card)
    with get_db(desk.app).sessions() as session:
        issued = issue_card_authorisation(
            session, desk.app.config["CENTRAL_KEY"], CardKind.TOP_UP, CARD_HEX, now=desk.now, value=1_000
        )
        roaming = SimTerminal.new(0x5E_A9, random.Random(5))
        register_terminal(session, roaming.terminal_id, roaming.key.public_key(), desk.now - DAY)
        session.commit()
    client = desk.app.test_client()

    def get(path: str) -> Any:
        return client.get(path, headers=roaming.headers("GET", path, b"", desk.now))

    assert get("/api/v1/authorisations").get_json()["authorisations"] == []
    named = get(f"/api/v1/authorisations?card={CARD_HEX}").get_json()["authorisations"]
    assert [a["id"] for a in named] == [issued.id] and named[0]["audience"] == "card"
    refused = get("/api/v1/authorisations?card=XYZ")
    assert refused.status_code == 400 and refused.get_json()["error"] == "bad_card_id"


def test_split_and_renewal_come_as_station_and_card_authorisations_the_chip_accepts(
    desk: Desk, make_beneficiary_card: Callable[..., BeneficiaryCard]
) -> None:
    """issue_split: the station's SPLIT plus a card SPLIT per scheme lowering the original by as much;
    issue_renewal: the station's RENEW and the card's RENEW_POLICY grant the same period and cover."""
    from dataclasses import replace

    from cardsvc.beneficiary.protocol import AuthKind as CardAuthKind
    from cardsvc.central.services.authorise import issue_renewal, issue_split

    # the card's own day: 30 days before its year ends (a renewal camp; RENEWAL_WINDOW bounds how far ahead)
    card_day = datetime.combine(POLICY_END - timedelta(days=30), time(12), UTC).timestamp()
    bc = make_beneficiary_card("activated", clock=lambda: card_day)
    w = bc.world
    session = bc.session()
    station = w.pki.issue(w.pki.district, "INTRM-ENR-SPLIT", Role.ENROLMENT_TERMINAL,
                          rights=Right.ENROL | Right.READ_PROFILE | Right.RENEW)  # fmt: skip
    session.terminal_authenticate([w.pki.district.cert, station.cert], station.signer, CARD_ID)
    public = session.read_public()
    assert public.card_certificate is not None
    before = session.status().wallet(1).balance
    year = [int(datetime.combine(d, time(0), UTC).timestamp()) for d in (POLICY_START, POLICY_END)]
    camp = SimCard.new(CARD, random.Random(1)).camp_card("INDKMA-PATNA1", year[0], year[1] + DAY, 0xF0)
    camp = replace(camp, card_key=public.card_certificate.public_point, cover_paise=before, scheme_id=1,
                   schemes=())  # fmt: skip
    desk.upload(BatchKind.CAMP, [camp])
    key = desk.app.config["CENTRAL_KEY"]
    with get_db(desk.app).sessions() as db:
        split = issue_split(db, key, CARD_HEX, now=desk.now, members=[1], rng=random.Random(5).randbytes)
        renewal = issue_renewal(db, key, CARD_HEX, now=desk.now, rng=random.Random(6).randbytes)
    granted = SignedAuthorisation.parse(split.station.wire).verify(
        desk.world.anchor, now=at(desk.now), revocations=None, kind=AuthKind.SPLIT, card_id=CARD_ID,
        household_id=camp.household_id,
    )  # fmt: skip
    [lowering] = [Authorisation.parse(c.wire) for c in split.cards]
    assert lowering.kind is CardAuthKind.SPLIT
    assert [(g.scheme_id, g.cover_paise) for g in granted.schemes] == [(1, lowering.value)]
    record = session.split_cover(lowering, time=desk.now, operator_id=7)  # the chip checks it itself
    assert (record.record_type, record.amount, record.balance_after) == (
        RecordType.SPLIT, lowering.value, before - lowering.value
    )  # fmt: skip
    renew = SignedAuthorisation.parse(renewal.station.wire).verify(
        desk.world.anchor, now=at(desk.now), revocations=None, kind=AuthKind.RENEW, card_id=CARD_ID,
        household_id=camp.household_id,
    )  # fmt: skip
    [chip] = [Authorisation.parse(c.wire) for c in renewal.cards]
    assert chip.kind is CardAuthKind.RENEW_POLICY and chip.serial == lowering.serial + 1
    assert chip.policy == (renew.policy_start, renew.policy_end)
    assert chip.covers == tuple((g.scheme_id, g.cover_paise) for g in renew.schemes) == ((1, before),)
    session.open_renewal(chip)
    assert session.status().renewal_open == chip.serial  # open on the chip, still the old valid card
