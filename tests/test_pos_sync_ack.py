"""The offline-limit loop closed: a card at its offline debit limit is refused; the POS uploads its records
to the real central app (Flask, SQLite in tmp_path), central signs a sync acknowledgement by itself after
ingest, the POS downloads it and presents it at the card's next insertion; the card debits again. Forged,
other-card and older acknowledgements do not lift the limits."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from flask import Flask

from cardsvc.beneficiary.protocol import AuthKind, Authorisation, BenIns
from cardsvc.beneficiary.session import sign_authorisation
from cardsvc.card.inprocess import InProcessConnection
from cardsvc.card.transport import CardRemovedError
from cardsvc.central.app import create_app
from cardsvc.central.extensions import get_db
from cardsvc.central.services.authorise import CardKind, held_counter, issue_card_authorisation
from cardsvc.central.services.publish import CentralKey
from cardsvc.central.services.reconcile import reconcile
from cardsvc.central.services.terminals import add_facility, register_terminal
from cardsvc.central.testing import FixedClock, SimCard, SimTerminal
from cardsvc.formats.batch import BatchKind
from cardsvc.formats.profile import card_chr
from cardsvc.formats.transaction import RecordType
from cardsvc.pki.rights import DEFAULT_RIGHTS, Right, Role
from hardware_sims.card.cardos import SimulatedCard
from point_of_service.catalogue import Catalogue, Package
from point_of_service.errors import TransactionError, VerificationError
from point_of_service.identity import TerminalIdentity, reference_id
from point_of_service.journal import Journal
from point_of_service.reasons import Reason, message_for
from point_of_service.services import paypoint
from point_of_service.services.authorisations import (
    StoredAuthorisation,
    store_authorisations,
    stored_authorisations,
)
from point_of_service.services.sync import SyncService
from point_of_service.services.transactions import recover_card
from point_of_service.services.verification import CardVisit, verify_card, verify_member
from tests.fixtures.beneficiary import SCHEME_HEALTH
from tests.fixtures.pos import POS_CARD_NOW, POS_FACILITY_ID, PosWorld, capture_of

NOW = POS_CARD_NOW
DAY = 86_400
OTHER_CARD = 0x0000_0000_0BAD_CA4D


class Transport:
    """The POS's HTTP exchange answered by the Flask test client of the real central app."""

    def __init__(self, app: Flask) -> None:
        self.app = app

    def request(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
        client = self.app.test_client()
        resp = (
            client.post(path, data=body, headers=headers)
            if method == "POST"
            else client.get(path, headers=headers)
        )
        return resp.status_code, resp.get_json()


class Desk:
    """One POS terminal (journal, trust, identity, clerk) and central (app, clock, its signing key)."""

    def __init__(
        self, world: PosWorld, tmp: Path, identity: TerminalIdentity | None = None, database_url: str = "",
        facility_district: str = "",
    ) -> None:  # fmt: skip
        self.world = world
        pki = world.pki
        self.journal = Journal(tmp / "journal.sqlite")
        self.trust = world.trust(self.journal)
        self.identity = identity or world.identity()
        self.clerk = world.clerk()
        self.rng = random.Random(11)
        catalogue = Catalogue(
            1, pki.district.chr, NOW - DAY, NOW - DAY, (Package(55, "Fever", 90_000, "general"),)
        )
        self.trust.install_catalogue(
            catalogue.sign(pki.district.signer, [pki.district.cert]), now=datetime.fromtimestamp(NOW, UTC)
        )
        self.clock = FixedClock(float(NOW))
        self.key = CentralKey(pki.district.signer, pki.district.chr, (pki.district.cert,))
        url = database_url or f"sqlite:///{tmp / 'central.db'}"
        self.app = create_app({"DATABASE_URL": url, "CLOCK": self.clock,
                               "TESTING": True, "CENTRAL_KEY": self.key})  # fmt: skip
        self.camp = SimTerminal.new(0x5E_CA, random.Random(3))
        point = ec.EllipticCurvePublicKey.from_encoded_point(
            ec.SECP256R1(), self.identity.certificate.public_point
        )
        with get_db(self.app).sessions() as session:
            district = facility_district or pki.district.chr
            add_facility(session, POS_FACILITY_ID, "Patna Hospital", district, 25.6, 85.1)
            session.flush()
            register_terminal(session, self.identity.terminal_id, point, NOW - DAY, POS_FACILITY_ID)
            register_terminal(session, self.camp.terminal_id, self.camp.key.public_key(), NOW - DAY)
            session.commit()
        self.sync = SyncService(self.journal, self.identity, self.trust, Transport(self.app),
                                now=lambda: int(self.clock()))  # fmt: skip

    def register_card(self, card_id: int, card_key: bytes) -> None:
        """The camp's upload: central knows the card (and its key) before it signs anything for it."""
        sim = SimCard.new(card_id, random.Random(card_id & 0xFFFF))
        camp = dataclasses.replace(
            sim.camp_card(self.world.pki.district.chr, NOW - 100 * DAY, NOW + 265 * DAY, 0xF0),
            card_key=card_key,
        )
        body = self.camp.batch(BatchKind.CAMP, [camp], int(self.clock()))
        headers = self.camp.headers("POST", "/api/v1/batches", body, int(self.clock()))
        resp = self.app.test_client().post("/api/v1/batches", data=body, headers=headers)
        assert resp.status_code == 201, resp.get_json()

    def issue_sync_ack(self, card_id: int) -> Authorisation:
        """Central staff's explicit acknowledgement (``cardsvc central authorise sync_ack``)."""
        with get_db(self.app).sessions() as db:
            issued = issue_card_authorisation(
                db, self.key, CardKind.SYNC_ACK, f"{card_id:016x}", now=int(self.clock())
            )
        return Authorisation.parse(issued.wire)

    def held(self, card_id: int) -> int:
        with get_db(self.app).sessions() as db:
            return held_counter(db, f"{card_id:016x}")

    def insert(self, card: SimulatedCard) -> CardVisit:
        """A fresh insertion: power cycle, verify the card, then the member's finger."""
        card.power_off()
        visit = verify_card(
            InProcessConnection(card),
            identity=self.identity,
            trust=self.trust,
            clerk=self.clerk,
            now=NOW,
            journal=self.journal,
            rng=self.rng.randbytes,
        )
        match = verify_member(visit, member=0, finger=2, capture=capture_of(3, 1), clerk=self.clerk, now=NOW,
                              journal=self.journal)  # fmt: skip
        assert match.matched
        return visit

    def pay(self, visit: CardVisit, at: int, amount: int = 1_000) -> None:
        paypoint.disburse(visit, scheme_id=SCHEME_HEALTH, amount=amount, now=at, journal=self.journal,
                          identity=self.identity, clerk=self.clerk, rng=self.rng.randbytes)  # fmt: skip

    def pay_refused(self, visit: CardVisit, at: int) -> Reason:
        with pytest.raises(TransactionError) as info:
            self.pay(visit, at)
        return info.value.reason

    def auth_events(self, outcome: str | None = None) -> list[Any]:
        return [
            e for e in self.journal.events(kind="authorisation") if outcome is None or e.outcome == outcome
        ]

    def close(self) -> None:
        self.journal.close()
        get_db(self.app).dispose()


@pytest.fixture
def desk(pos_world: PosWorld, tmp_path: Path) -> Iterator[Desk]:
    d = Desk(pos_world, tmp_path)
    yield d
    d.close()


@pytest.fixture
def limited(desk: Desk, pos_world: PosWorld, tmp_path: Path) -> tuple[SimulatedCard, CardVisit]:
    """A registered card with default limits (20 debits), used up and refused with the limit reason."""
    card = pos_world.beneficiary_card(tmp_path / "card")
    visit = desk.insert(card)
    desk.register_card(visit.card_id, visit.card_key)
    for i in range(20):
        desk.pay(visit, NOW + i)
    assert desk.pay_refused(visit, NOW + 50) is Reason.OFFLINE_LIMIT_REACHED
    return card, visit


def test_sync_ack_from_central_lifts_the_offline_limit(
    desk: Desk, limited: tuple[SimulatedCard, CardVisit]
) -> None:
    card, first = limited
    # still refused at the next insertion: nothing from central yet
    again = desk.insert(card)
    assert not again.authorisations.limits_renewed
    assert again.offline_limits.debits_left == 0
    assert desk.pay_refused(again, NOW + 60) is Reason.OFFLINE_LIMIT_REACHED

    desk.clock.advance(600)
    report = desk.sync.sync()
    assert report.error is None and report.records_sent == 20, report
    assert desk.held(first.card_id) == 20, "central holds every record up to the card's counter"
    # central acknowledged by itself after ingest; the same sync downloaded it
    (kept,) = stored_authorisations(desk.journal)
    assert (kept.kind, kept.card_id, kept.audience) == ("sync_ack", f"{first.card_id:016x}", "card")
    ack = Authorisation.parse(kept.wire)
    assert (ack.kind, ack.value, ack.card_id) == (AuthKind.SYNC_ACK, 20, first.card_chr)
    desk.clock.advance(600)
    assert desk.sync.sync().error is None
    assert len(stored_authorisations(desk.journal)) == 1, "nothing new uploaded: no second acknowledgement"

    renewed = desk.insert(card)
    applied = renewed.authorisations
    assert applied.limits_renewed and applied.refused == ()
    assert applied.limits is not None
    assert (applied.limits.count, applied.limits.amount, applied.limits.synced_counter) == (0, 0, 20)
    assert renewed.offline_limits.debits_left == 20, "the clerk sees the refreshed limits"
    (event,) = desk.auth_events("ok")
    assert event.detail["synced_counter"] == 20 and event.detail["since_sync"] == [0, 0]
    desk.pay(renewed, NOW + 70)
    assert renewed.session.offline_limits().count == 1

    # the next insertion does not present the used acknowledgement again
    later = desk.insert(card)
    assert not later.authorisations.limits_renewed and later.authorisations.refused == ()
    assert len(desk.auth_events()) == 1


def _forged(desk: Desk, card_id: int, serial: int, value: int) -> StoredAuthorisation:
    """Signed by the POS terminal's own key: a compromised terminal trying to lift the limits."""
    auth = sign_authorisation(
        desk.world.pki.pos_terminal.signer,
        Authorisation(AuthKind.SYNC_ACK, card_chr(card_id), serial, 1, value),
    )
    return _stored(f"forged{serial}", card_id, auth)


def _stored(auth_id: str, card_id: int, auth: Authorisation) -> StoredAuthorisation:
    return StoredAuthorisation(auth_id, "sync_ack", "card", f"{card_id:016x}", NOW - 60, NOW + 30 * DAY,
                               auth.encode(), ())  # fmt: skip


def _keep(desk: Desk, *items: StoredAuthorisation) -> None:
    store_authorisations(desk.journal, [i.to_json() for i in items])


def test_forged_and_other_card_acknowledgements_are_refused(
    desk: Desk, limited: tuple[SimulatedCard, CardVisit]
) -> None:
    card, first = limited
    desk.clock.advance(600)
    assert desk.sync.sync().error is None
    desk.register_card(OTHER_CARD, SimCard.new(OTHER_CARD, random.Random(9)).public_key)
    other = desk.issue_sync_ack(OTHER_CARD)  # genuine, but for another card
    listed_under_ours = _stored("other", first.card_id, other)
    _keep(desk, _forged(desk, first.card_id, 40, 20), listed_under_ours)

    visit = desk.insert(card)
    assert not visit.authorisations.limits_renewed
    refused = dict(visit.authorisations.refused)
    assert "signed for" in refused["other"], "another card's acknowledgement is not even presented"
    assert "the card refused it" in refused["forged40"], "the card checks central's signature itself"
    assert {e.reason for e in desk.auth_events("refused")} == {"not-presented", "card-refused"}
    assert desk.pay_refused(visit, NOW + 80) is Reason.OFFLINE_LIMIT_REACHED
    assert visit.session.offline_limits().synced_counter == 0


def test_older_or_impossible_counters_are_not_presented(
    desk: Desk, limited: tuple[SimulatedCard, CardVisit]
) -> None:
    card, first = limited
    desk.clock.advance(600)
    assert desk.sync.sync().error is None
    ack = desk.issue_sync_ack(first.card_id)
    _keep(desk, _stored("real", first.card_id, ack))
    visit = desk.insert(card)
    assert visit.authorisations.limits_renewed
    signer = desk.world.pki.district.signer
    chain = desk.world.pki.district.cert
    chr_ = first.card_chr
    # central-signed, newer serials, but an older counter, and a counter the card never reached
    older = sign_authorisation(signer, Authorisation(AuthKind.SYNC_ACK, chr_, ack.serial + 1, 1, 5), chain)
    ahead = sign_authorisation(signer, Authorisation(AuthKind.SYNC_ACK, chr_, ack.serial + 2, 1, 999), chain)
    _keep(desk, _stored("real", first.card_id, ack), _stored("older", first.card_id, older),
          _stored("ahead", first.card_id, ahead))  # fmt: skip
    later = desk.insert(card)
    assert not later.authorisations.limits_renewed
    assert [i for i, _ in later.authorisations.refused] == ["ahead"]
    assert all(e.reason != "card-refused" for e in desk.auth_events("refused")), (
        "nothing the card must refuse is sent"
    )
    assert later.session.offline_limits().synced_counter == 20


# --------------------------------------------------------------------------------- TOP_UP and SUPERSEDE
def _issue(desk: Desk, kind: CardKind, card_id: int, **kwargs: Any) -> Authorisation:
    with get_db(desk.app).sessions() as db:
        issued = issue_card_authorisation(
            db, desk.key, kind, f"{card_id:016x}", now=int(desk.clock()), **kwargs
        )
    return Authorisation.parse(issued.wire)


@pytest.fixture
def till(pos_world: PosWorld, tmp_path: Path) -> Iterator[Desk]:
    """A POS terminal whose certificate holds the TOP_UP right (the card checks it on a TOP_UP DEBIT)."""
    pki = pos_world.pki
    holder = pki.issue(
        pki.district,
        "INTRM-POS-TOPUP",
        Role.POS_TERMINAL,
        rights=DEFAULT_RIGHTS[Role.POS_TERMINAL] | Right.TOP_UP,
    )
    identity = dataclasses.replace(pos_world.identity(), chr=holder.cert.chr,
                                   chain=tuple(pki.chain_of(holder)), signer=holder.signer)  # fmt: skip
    d = Desk(pos_world, tmp_path, identity)
    yield d
    d.close()


def _balance(visit: CardVisit) -> int:
    return visit.session.status().wallet(SCHEME_HEALTH).balance


def test_top_up_and_sync_ack_presented_in_serial_order_at_one_insertion(
    till: Desk, pos_world: PosWorld, tmp_path: Path
) -> None:
    card = pos_world.beneficiary_card(tmp_path / "card")
    visit = till.insert(card)
    till.register_card(visit.card_id, visit.card_key)
    for i in range(20):
        till.pay(visit, NOW + i)
    before = _balance(visit)
    till.clock.advance(600)
    assert till.sync.sync().error is None  # records up; central's SYNC_ACK (serial 1) down
    top_up = _issue(till, CardKind.TOP_UP, visit.card_id, value=7_500, scheme_id=SCHEME_HEALTH)
    assert top_up.serial == 2
    assert till.sync.sync().error is None

    renewed = till.insert(card)
    applied = renewed.authorisations
    assert [a.kind for a in applied.applied] == ["sync_ack", "top_up"], "increasing serial order"
    assert applied.limits_renewed and applied.refused == ()
    (record,) = applied.top_ups
    assert (record.record_type, record.amount, record.reference) == (RecordType.TOP_UP, 7_500, 2)
    assert record.balance_after == before + 7_500 == _balance(renewed)
    assert renewed.offline_limits.debits_left == 20, "a top-up does not count against the limits"
    assert till.journal.last_record(visit.card_id) == record, "journalled like every card record"
    events = till.auth_events("ok")
    assert [e.detail["kind"] for e in events] == ["sync_ack", "top_up"]
    assert events[1].detail["amount"] == 7_500 and events[1].detail["counter"] == record.counter

    again = till.insert(card)
    assert again.authorisations.applied == () and _balance(again) == before + 7_500, "never twice"
    till.clock.advance(600)
    assert till.sync.sync().records_sent == 1, "the TOP_UP record goes to central"
    with get_db(till.app).sessions() as db:
        assert held_counter(db, f"{visit.card_id:016x}") == 21
        report = reconcile(db, int(till.clock()))
    assert "balance_mismatch" not in report.flags, "central's ledger follows the top-up"


def test_top_up_not_presented_by_a_terminal_without_the_right(desk: Desk, pos_world: PosWorld,
                                                              tmp_path: Path) -> None:  # fmt: skip
    card = pos_world.beneficiary_card(tmp_path / "card")
    visit = desk.insert(card)
    desk.register_card(visit.card_id, visit.card_key)
    before = _balance(visit)
    _issue(desk, CardKind.TOP_UP, visit.card_id, value=1_000, scheme_id=SCHEME_HEALTH)
    assert desk.sync.sync().error is None
    later = desk.insert(card)
    ((_, why),) = later.authorisations.refused
    assert "does not hold the TOP_UP right" in why and later.authorisations.top_ups == ()
    assert _balance(later) == before
    assert [e.reason for e in desk.auth_events("refused")] == ["not-presented"]


def test_superseded_card_is_refused_with_a_clear_reason(
    desk: Desk, pos_world: PosWorld, tmp_path: Path
) -> None:
    card = pos_world.beneficiary_card(tmp_path / "card")
    visit = desk.insert(card)
    desk.register_card(visit.card_id, visit.card_key)
    _issue(desk, CardKind.SUPERSEDE, visit.card_id)
    assert desk.sync.sync().error is None
    card.power_off()
    with pytest.raises(VerificationError) as info:
        verify_card(InProcessConnection(card), identity=desk.identity, trust=desk.trust, clerk=desk.clerk,
                    now=NOW, journal=desk.journal, rng=desk.rng.randbytes)  # fmt: skip
    assert info.value.reason is Reason.CARD_BLOCKED and "superseded" in info.value.detail
    (event,) = desk.auth_events("ok")
    assert event.detail["kind"] == "supersede" and event.detail["lifecycle"] == "superseded"
    card.power_off()
    with pytest.raises(VerificationError) as again:  # the card itself now says so, at step 1
        verify_card(InProcessConnection(card), identity=desk.identity, trust=desk.trust, clerk=desk.clerk,
                    now=NOW, journal=desk.journal, rng=desk.rng.randbytes)  # fmt: skip
    assert again.value.reason is Reason.CARD_BLOCKED and again.value.step == "activated"
    assert message_for(Reason.CARD_BLOCKED).problem.startswith("This card has been blocked or replaced")


class PullOnDebit:
    """In-process connection whose card is pulled at its DEBIT: before the card sees it, or (``after``) once
    the card has made the record and the answer is lost."""

    def __init__(self, card: SimulatedCard, *, after: bool) -> None:
        card.power_off()
        self.card, self.after = card, after
        self.atr = card.power_on()

    def send_and_receive(self, apdu: bytes) -> tuple[bytes, int]:
        debit = apdu[1] == BenIns.DEBIT
        if debit and not self.after:
            self.card.power_off()
            raise CardRemovedError("card pulled before the DEBIT")
        response = self.card.transmit(bytes(apdu))
        if debit:
            self.card.power_off()
            raise CardRemovedError("card pulled; the DEBIT's answer was lost")
        return response[:-2], int.from_bytes(response[-2:], "big")

    def close(self) -> None:
        self.card.power_off()


@pytest.mark.parametrize("after", [False, True], ids=["before-the-card", "answer-lost"])
def test_top_up_interrupted_by_a_pulled_card_is_made_once(
    till: Desk, pos_world: PosWorld, tmp_path: Path, after: bool
) -> None:
    card = pos_world.beneficiary_card(tmp_path / "card")
    visit = till.insert(card)
    till.register_card(visit.card_id, visit.card_key)
    before = _balance(visit)
    _issue(till, CardKind.TOP_UP, visit.card_id, value=3_000, scheme_id=SCHEME_HEALTH)
    assert till.sync.sync().error is None
    with pytest.raises(TransactionError) as pulled:
        verify_card(PullOnDebit(card, after=after), identity=till.identity, trust=till.trust,
                    clerk=till.clerk, now=NOW, journal=till.journal, rng=till.rng.randbytes)  # fmt: skip
    assert pulled.value.reason is Reason.CARD_REMOVED
    assert len(till.journal.pending_intents(visit.card_id)) == 1, "the write-ahead intent waits"

    again = till.insert(card)  # the card's next insertion, then the recovery every transaction runs first
    recover_card(again.session, till.journal, card_id=again.card_id, card_key=again.card_key,
                 terminal_id=reference_id(till.identity.chr), now=NOW)  # fmt: skip
    assert [r.kind for r in again.authorisations.applied] == ([] if after else ["top_up"])
    assert _balance(again) == before + 3_000, "topped up exactly once"
    assert till.journal.pending_intents(visit.card_id) == []
    tops = [r for r in till.journal.records(visit.card_id) if r.record_type is RecordType.TOP_UP]
    assert len(tops) == 1 and tops[0].reference == 1


def test_a_card_from_another_district_gets_its_acknowledgement(pos_world: PosWorld, tmp_path: Path) -> None:
    """Central lists a terminal its own district's authorisations; the POS also names the cards it served."""
    desk = Desk(pos_world, tmp_path, facility_district="INDKMA-GAYA1")
    try:
        card = pos_world.beneficiary_card(tmp_path / "card")
        visit = desk.insert(card)
        desk.register_card(visit.card_id, visit.card_key)  # a Patna card at a Gaya hospital
        desk.pay(visit, NOW)
        assert desk.sync.sync().error is None
        (kept,) = stored_authorisations(desk.journal)
        assert (kept.kind, kept.card_id) == ("sync_ack", f"{visit.card_id:016x}")
        assert desk.insert(card).authorisations.limits_renewed
    finally:
        desk.close()
