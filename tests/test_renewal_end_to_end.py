"""Central's card register follows renewals (services/renewals.py).

First on both backends with card records signed in-test (tests/test_central_reconcile.py's World): the
register moves to the renewed period once the card's RENEWAL record arrives for a RENEW_POLICY central
issued, the camp's period is kept, the same records twice change nothing, and a RENEWAL record nobody at
central authorised moves nothing and is flagged. Then end to end on the real stack: a station enrols and
renews a card through pcscd + vpcd, a POS debits it in the new year (and once after it), both upload to
central (SQLite, then PostgreSQL), which reconciles; staff see the new year on the dashboard.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select

from cardsvc.beneficiary.protocol import Authorisation
from cardsvc.card.inprocess import InProcessConnection
from cardsvc.card.pcsc import PcscConnection
from cardsvc.central.app import create_app
from cardsvc.central.dashboard.users import Role, UserStore
from cardsvc.central.extensions import get_db
from cardsvc.central.models import Card, CardPeriod, FlagRow
from cardsvc.central.services.authorise import CardKind, issue_card_authorisation, issue_renewal
from cardsvc.central.services.pki_keys import register_certified_terminal
from cardsvc.central.services.publish import CentralKey
from cardsvc.central.services.reconcile import FlagKind, reconcile
from cardsvc.central.services.renewals import day_start
from cardsvc.central.services.terminals import add_facility, register_terminal
from cardsvc.central.testing import FixedClock, SimCard, SimTerminal
from cardsvc.formats.batch import BatchKind, id_hex
from cardsvc.formats.profile import card_number
from cardsvc.formats.transaction import RecordType
from cardsvc.pki.signer import SoftwareSigner
from cardsvc.web.i18n import day
from enrolment_station.authorisation import SignedAuthorisation
from enrolment_station.camp import Camp
from enrolment_station.fingers import SyntheticFingerReader, finger_seed
from enrolment_station.reissue import RenewalResult
from enrolment_station.upload import send_pending
from hardware_sims.card.cardos import SimulatedCard
from point_of_service.identity import TerminalIdentity
from point_of_service.journal import Journal as PosJournal
from point_of_service.services.signin import Clerk
from point_of_service.services.sync import SyncService
from point_of_service.trust import TrustState
from tests.fixtures.pcsc import ServedCard
from tests.fixtures.station import (
    DISTRICT,
    DISTRICT_SECRET,
    FKO_PIN,
    TERMINAL_PASSPHRASE,
    MovableClock,
    PinnedClock,
    StationWorld,
    fko_template_probe,
)
from tests.test_central_reconcile import DAY, PLACES, World
from tests.test_dashboard_access import Staff
from tests.test_pos_sync_ack import Transport
from tests.test_screens_dashboard import STAFF_PASSWORD
from tests.test_station_upload import FlaskOpener

NEW_COVER = 3_500_000


@pytest.fixture
def world(central_app: Flask, clock: FixedClock) -> World:
    """Central with the facilities and the terminal of tests/test_central_reconcile.py."""
    terminal = SimTerminal.new(0x7E57, random.Random(20))
    with get_db(central_app).sessions() as session:
        for facility_id, (lat, lon) in PLACES.items():
            add_facility(session, facility_id, f"Hospital {facility_id}", "Jaipur", lat, lon)
        session.flush()
        register_terminal(session, terminal.terminal_id, terminal.key.public_key(), int(clock()) - 365 * DAY)
        session.commit()
    return World(central_app, clock, terminal)


def _renew_policy(app: Flask, card: SimCard, period: tuple[int, int], cover: int = NEW_COVER) -> None:
    """Central's RENEW_POLICY for the card (serial 1: its first card authorisation)."""
    with get_db(app).sessions() as session:
        key = CentralKey(SoftwareSigner.generate(), "INROOT")
        issue_card_authorisation(
            session, key, CardKind.RENEW_POLICY, f"{card.card_id:016x}", now=period[0] - 5 * DAY,
            policy=period, covers=[(1, cover)],
        )  # fmt: skip
        session.commit()


def _register(app: Flask, card: SimCard) -> tuple[Any, list[tuple[int, int, int, int | None]]]:
    """The card's row as the register holds it and its kept periods (serial, start, end, counter)."""
    with get_db(app).sessions() as session:
        row = session.get(Card, f"{card.card_id:016x}")
        assert row is not None
        current = (row.policy_start, row.policy_end, row.cover_paise, row.schemes)
        periods = [
            (p.serial, p.policy_start, p.policy_end, p.counter)
            for p in session.execute(
                select(CardPeriod).where(CardPeriod.card_id == row.card_id).order_by(CardPeriod.serial)
            ).scalars()
        ]
    return current, periods


def _outside(world: World) -> list[int]:
    return sorted(f.details["counter"] for f in world.flags(FlagKind.OUTSIDE_POLICY))


def test_the_register_moves_to_the_authorised_period_once_the_renewal_is_uploaded(world: World) -> None:
    end = (world.now - 40 * DAY) // DAY * DAY
    camp = (end - 365 * DAY, end - 1)
    card = world.card(policy=camp)
    new = (end, end + 365 * DAY)
    _renew_policy(world.app, card, new)
    world.debit(card, RecordType.CASH, 1_000, end - 5 * DAY)  # 1: the camp's year
    world.upload(BatchKind.TRANSACTIONS, card.items())
    assert _register(world.app, card) == ((*camp, 3_000_000, None), []), "no renewal on the card yet"

    world.debit(card, RecordType.RENEWAL, NEW_COVER, end + 3 * DAY, reference=1)  # 2: COMMIT RENEWAL
    world.upload(BatchKind.TRANSACTIONS, card.items(card.log[1:]))  # the station's upload
    renewed = (new[0], new[1] - 1, NEW_COVER, [{"scheme_id": 1, "cover_paise": NEW_COVER}])
    expected = [(0, *camp, None), (1, new[0], new[1] - 1, 2)]
    assert _register(world.app, card) == (renewed, expected), "moved at ingest, the camp's year kept"

    world.debit(card, RecordType.CASH, 1_000, end + 10 * DAY)  # 3: the new year
    world.debit(card, RecordType.CASH, 1_000, new[1] + DAY)  # 4: after the new year's end
    world.upload(BatchKind.TRANSACTIONS, card.items())  # the POS's upload repeats the renewal record
    world.upload(BatchKind.TRANSACTIONS, card.items())  # and again (a duplicate batch)
    world.reconcile()
    world.reconcile()
    assert _register(world.app, card) == (renewed, expected), "the same records again change nothing"
    [flag] = world.flags(FlagKind.OUTSIDE_POLICY)
    assert (flag.details["counter"], flag.details["policy"]) == (4, [new[0], new[1] - 1])
    assert world.flags(FlagKind.BALANCE_MISMATCH) == [] and world.flags(FlagKind.UNAUTHORISED_RENEWAL) == []
    with get_db(world.app).sessions() as session:
        assert session.execute(select(func.count()).select_from(CardPeriod)).scalar_one() == 2


def test_a_renewal_central_did_not_authorise_moves_nothing_and_is_flagged(world: World) -> None:
    end = (world.now - 40 * DAY) // DAY * DAY
    camp = (end - 365 * DAY, end - 1)
    card = world.card(policy=camp)
    _renew_policy(world.app, card, (end, end + 365 * DAY))  # serial 1 ...
    world.debit(card, RecordType.RENEWAL, 9_000_000, end + 3 * DAY, reference=7)  # ... the card says 7
    world.debit(card, RecordType.CASH, 1_000, end + 10 * DAY)
    world.upload(BatchKind.TRANSACTIONS, card.items())
    world.reconcile()
    assert _register(world.app, card) == ((*camp, 3_000_000, None), [])
    [flag] = world.flags(FlagKind.UNAUTHORISED_RENEWAL)
    assert flag.card_id == f"{card.card_id:016x}" and flag.details == {"counter": 1, "reference": 7}
    assert _outside(world) == [2], "the unauthorised year is not a policy period"


def test_new_year_records_judged_before_the_renewal_arrived_are_cleared_when_it_does(world: World) -> None:
    """The POS uploads first: its new-year debit is outside the camp's year (and counter 1 is missing);
    the station's RENEWAL record arrives later and the finding is withdrawn at the next reconciliation."""
    end = (world.now - 40 * DAY) // DAY * DAY
    card = world.card(policy=(end - 365 * DAY, end - 1))
    _renew_policy(world.app, card, (end, end + 365 * DAY))
    world.debit(card, RecordType.RENEWAL, NEW_COVER, end + 3 * DAY, reference=1)
    world.debit(card, RecordType.CASH, 1_000, end + 10 * DAY)
    world.upload(BatchKind.TRANSACTIONS, card.items(card.log[1:]))
    world.reconcile()
    assert _outside(world) == [2] and len(world.flags(FlagKind.COUNTER_GAP)) == 1
    world.upload(BatchKind.TRANSACTIONS, card.items(card.log[:1]))
    world.reconcile()
    assert _outside(world) == [] and world.flags(FlagKind.COUNTER_GAP) == []


# ------------------------------------------------------------------------------------ the real stack
HOUSEHOLD = "HH-0300"
LISTING = (
    "household_id,village_code,member_no,name,gender,year_of_birth,relation\n"
    f"{HOUSEHOLD},654321,1,Kamla Devi,F,1965,HEAD\n"
    f"{HOUSEHOLD},654321,2,Mohan Lal,M,1962,SPOUSE\n"
)
POS_CHR = "INTRM-POS-0042"
POS_PASSPHRASE = b"pos-pass-42"
CLERK_CHR = "INFOP-HOSP-0042"
CLERK_PIN = "246810"
CLERK_FINGER = 7_777
FACILITY = 17


@dataclass
class Pos:
    """A hospital terminal of the station's district: identity, journal, trust, a signed-in clerk."""

    identity: TerminalIdentity
    journal: PosJournal
    trust: TrustState
    clerk: Clerk

    def pay(self, served: ServedCard, *, verified_at: int, paid_at: int) -> int:
        """Verify card and head (finger) at ``verified_at``, pay 1,000 paise at ``paid_at``: the counter."""
        from cardsvc.bio.extract import extract_template
        from hardware_sims.fingers.impression import impression
        from point_of_service.services import paypoint
        from point_of_service.services.verification import enrolled_fingers, verify_card, verify_member

        served.remove()
        served.insert()
        with PcscConnection(served.reader, exclusive=True) as conn:
            visit = verify_card(conn, identity=self.identity, trust=self.trust, clerk=self.clerk,
                                now=verified_at, journal=self.journal)  # fmt: skip
            finger = min(enrolled_fingers(visit, 0))
            seed = finger_seed(HOUSEHOLD, 1, finger)
            match = verify_member(visit, member=0, finger=finger, clerk=self.clerk, now=verified_at,
                                  capture=lambda: extract_template(impression(seed, 2, "good")),
                                  journal=self.journal)  # fmt: skip
            assert match.matched
            outcome = paypoint.disburse(visit, scheme_id=1, amount=1_000, journal=self.journal,
                                        identity=self.identity, clerk=self.clerk, now=paid_at)  # fmt: skip
        return int(outcome.record.counter)


def _pos(world: StationWorld, home: Path, clock: MovableClock) -> Pos:
    """The POS terminal and its clerk's officer card (in-process), certified by the station's district."""
    from cardsvc.pki.officer_card import OfficerCardSession
    from cardsvc.pki.rights import Role
    from hardware_sims.card.apps.officer import OfficerApplication
    from point_of_service.identity import reference_id
    from point_of_service.services.signin import sign_in

    km = world.km
    km.register_terminal(POS_CHR, district=DISTRICT, role=Role.POS_TERMINAL, district_secret=DISTRICT_SECRET,
                         terminal_passphrase=POS_PASSPHRASE)  # fmt: skip
    identity = TerminalIdentity(
        chr=POS_CHR, terminal_id=reference_id(POS_CHR), facility_id=FACILITY, anchor=world.anchor,
        chain=tuple(km.chain(POS_CHR)), signer=km.load_signer(POS_CHR, POS_PASSPHRASE.decode()),
    )  # fmt: skip
    journal = PosJournal(home / "journal.sqlite")
    trust = TrustState.load(journal, world.anchor, districts={DISTRICT: km.store.certificate(DISTRICT)})
    (home / "clerk").mkdir()
    officer = SimulatedCard(home / "clerk", applications=[OfficerApplication()], clock=clock)
    with InProcessConnection(officer) as conn:
        km.personalise_officer_card(
            OfficerCardSession(conn), CLERK_CHR, district=DISTRICT, role=Role.FACILITY_OPERATOR,
            district_secret=DISTRICT_SECRET, pin=CLERK_PIN, templates=[fko_template_probe(CLERK_FINGER)],
        )  # fmt: skip
    officer.power_off()
    from cardsvc.bio.extract import extract_template
    from hardware_sims.fingers.impression import impression

    with InProcessConnection(officer) as conn:
        clerk = sign_in(
            conn, pin=CLERK_PIN, capture=lambda: extract_template(impression(CLERK_FINGER, 1, "good")),
            anchor=world.anchor, districts=trust.districts, now=int(clock()), journal=journal,
        )  # fmt: skip
    return Pos(identity, journal, trust, clerk)


@dataclass
class Central:
    app: Flask
    clock: FixedClock
    key: CentralKey

    def at(self, clock: MovableClock) -> Central:
        self.clock.now = float(int(clock()))
        return self

    @property
    def now(self) -> int:
        return int(self.clock())


@pytest.fixture
def central(db_url: str, tmp_path: Path, station_world: StationWorld) -> Iterator[Central]:
    """Central on an empty database (SQLite, then PostgreSQL), the world's root as trust anchor, signing
    with the district key, the dashboard with one staff user."""
    url = db_url
    km = station_world.km
    key = CentralKey(km.load_signer(DISTRICT, DISTRICT_SECRET), DISTRICT, (km.store.certificate(DISTRICT),))
    clock = FixedClock(station_world.now().timestamp())
    app = create_app({
        "DATABASE_URL": url, "CLOCK": clock, "TESTING": True, "TRUST_ANCHOR": station_world.anchor,
        "CENTRAL_KEY": key, "SECRET_KEY": b"renewal-test", "DASHBOARD_USERS": str(tmp_path / "users.json"),
        "DASHBOARD_AUDIT_LOG": str(tmp_path / "audit.jsonl"),
    })  # fmt: skip
    UserStore(tmp_path / "users.json").add("anita", STAFF_PASSWORD, Role.CENTRAL)
    yield Central(app, clock, key)
    get_db(app).dispose()


def _camp(
    world: StationWorld, clock: MovableClock, reader: SyntheticFingerReader, home: Path, camp_id: str
) -> Camp:
    """The renewal tests' camp on the shared clock: HOUSEHOLD listed, the FKO session open."""
    camp = Camp(world.home, passphrase=TERMINAL_PASSPHRASE, operator="op-meena", camp_id=camp_id,
                reader=reader, now=clock.now)  # fmt: skip
    (home / "list.csv").write_text(LISTING)
    camp.import_list(home / "list.csv")
    camp.open_session(InProcessConnection(world.fko_card), pin=FKO_PIN, fingerprint=reader.officer_probe)
    return camp


def _enrol_and_register(
    world: StationWorld, central: Central, camp: Camp, served: ServedCard, opener: FlaskOpener,
    clock: MovableClock, hospital: Sequence[Pos],
) -> tuple[str, tuple[int, int]]:  # fmt: skip
    """The camp enrols HOUSEHOLD on ``served`` through pcscd + vpcd; central registers the station and the
    ``hospital``'s terminals; the camp's batches are uploaded. Returns (card id hex, the camp period
    central registered)."""
    with PcscConnection(served.reader, exclusive=True) as conn:
        card_hex = id_hex(card_number(camp.enrol_household(HOUSEHOLD, conn).card_id))
    with get_db(central.app).sessions() as session:
        register_certified_terminal(session, camp.identity.terminal_id, camp.identity.chain, world.anchor,
                                    central.now - 60)  # fmt: skip
        add_facility(session, FACILITY, "Patna Hospital", DISTRICT, 25.6, 85.1)
        session.flush()
        for pos in hospital:
            register_certified_terminal(session, pos.identity.terminal_id, pos.identity.chain, world.anchor,
                                        central.now - 60, facility_id=FACILITY)  # fmt: skip
        session.commit()
    camp.upload_batches()
    send_pending(camp.journal, camp.identity, "http://central", now=clock.now, opener=opener)
    with get_db(central.app).sessions() as session:
        card = session.get(Card, card_hex)
        assert card is not None
        return card_hex, (card.policy_start, card.policy_end)


def _renew(
    world: StationWorld, central: Central, camp: Camp, served: ServedCard, opener: FlaskOpener,
    clock: MovableClock, reader: SyntheticFingerReader, card_hex: str, year: tuple[date, date],
) -> RenewalResult:  # fmt: skip
    """Central authorises ``year`` for the card at the clock's time; the camp renews it through pcscd +
    vpcd (a new FKO session: the camp day) and uploads what it made."""
    from enrolment_station.reissue import renew_until_done

    with get_db(central.at(clock).app).sessions() as session:
        issued = issue_renewal(session, central.key, card_hex, now=central.now,
                               policy=(day_start(year[0]), day_start(year[1]) + DAY))  # fmt: skip
    camp.open_session(InProcessConnection(world.fko_card), pin=FKO_PIN, fingerprint=reader.officer_probe)
    with PcscConnection(served.reader, exclusive=True) as conn:
        renewal = renew_until_done(
            camp.personaliser, conn, Authorisation.parse(issued.cards[0].wire), now=clock.now(),
            fko=camp.session(), station_authorisation=SignedAuthorisation.parse(issued.station.wire),
        )  # fmt: skip
    camp.upload_batches()
    send_pending(camp.journal, camp.identity, "http://central", now=clock.now, opener=opener)
    return renewal


@pytest.mark.usefixtures("pcscd")
def test_a_card_renewed_at_the_station_is_used_in_its_new_year_and_central_follows(
    station_world: StationWorld,
    station_clock: PinnedClock,
    central: Central,
    serve_card: Callable[..., ServedCard],
    tmp_path: Path,
) -> None:
    world, clock = station_world, MovableClock(station_clock)  # the station, cards and POS: the pinned day
    world.fko_card.clock = clock
    reader = SyntheticFingerReader()
    camp = _camp(world, clock, reader, tmp_path, "CAMP-E2E")
    pos = _pos(world, tmp_path / "pos", clock)
    opener = FlaskOpener(central.app)
    try:
        # 1. the camp: enrolled and activated through pcscd + vpcd, uploaded; central registers the card
        served = serve_card(slot=0, card=world.blank_card(clock=clock))
        card_hex, camp_period = _enrol_and_register(world, central, camp, served, opener, clock, [pos])
        old_end = datetime.fromtimestamp(camp_period[1], UTC).date()
        new_start, new_end = old_end + timedelta(days=1), old_end.replace(year=old_end.year + 1)

        # 2. central authorises the next year; a week into it the camp renews the card through pcscd and
        # uploads the RENEWAL record in its transactions batch
        clock.go_to(
            datetime.combine(new_start + timedelta(days=7), datetime.min.time(), UTC) + timedelta(hours=9)
        )
        renewal = _renew(world, central, camp, served, opener, clock, reader, card_hex, (new_start, new_end))
        assert renewal.profile.policy_end == new_end
        renewed = (day_start(new_start), day_start(new_end) + DAY - 1)
        with get_db(central.app).sessions() as session:
            card = session.get(Card, card_hex)
            assert card is not None and (card.policy_start, card.policy_end) == renewed, "moved at upload"

        # 3. the hospital: paid in the new year, and once more verified just before the new year ends and
        # paid just after it (a visit across midnight)
        t1 = int(clock()) + 3 * DAY
        clock.go_to(datetime.fromtimestamp(t1, UTC))
        in_year = pos.pay(served, verified_at=t1, paid_at=t1)
        last = day_start(new_end) + DAY - 600
        clock.go_to(datetime.fromtimestamp(last, UTC))
        late = pos.pay(served, verified_at=last, paid_at=last + 1_200)
        sync = SyncService(pos.journal, pos.identity, pos.trust, Transport(central.at(clock).app),
                           now=lambda: central.now)  # fmt: skip
        report = sync.sync()
        assert report.error is None and report.records_sent == 2, report
    finally:
        pos.journal.close()
        camp.close()

    # 4. central reconciles: the new-year payment is inside the register's period, the late one is not
    with get_db(central.app).sessions() as session:
        reconcile(session, central.now)
        card = session.get(Card, card_hex)
        assert card is not None
        current = (card.policy_start, card.policy_end, card.cover_paise)
        history = [(p.serial, p.policy_start, p.policy_end) for p in card.periods]
        flags = [(f.kind, f.details.get("counter")) for f in session.execute(select(FlagRow)).scalars()]
    assert current == (*renewed, renewal.profile.schemes[0].cover_paise)
    assert history == [(0, *camp_period), (1, *renewed)]
    assert flags == [(FlagKind.OUTSIDE_POLICY.value, late)], f"only the payment after the year: {flags}"
    assert in_year < late

    # 5. central staff see the card's current year, and the camp's year as an earlier one
    page = Staff(central.app, "anita").text(f"/dashboard/cards/{card_hex}")
    with central.app.test_request_context("/?lang=en"):
        now_shown, before_shown = (f"{day(a)} – {day(b)}" for a, b in (renewed, camp_period))
    assert re.search(rf'id="policy-year">{now_shown}<', page), now_shown
    assert re.search(rf'id="earlier-periods">Earlier policy years: {before_shown}<', page), before_shown
