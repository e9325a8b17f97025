"""A held renewal's RENEWAL records reach central through the POS's ordinary service flow.

A renewal committed at the camp 30 days before its year is held on the card (status 8D) and taken on at the
card's first command of the new year, when the card writes its RENEWAL records itself: no terminal is
answered with them. The card shows them in status 8E until central acknowledges them; the POS's
``verify_card`` (the one path of the web screens, the till and the CLI) reads them with one READ LOG,
journals them with the day's payment, and the next sync uploads them: central sees no counter gap and its
register moves to the new year. The hospital's other terminal reads them too before syncing: central keeps
one of each. Once central's SYNC_ACK is presented the tag is gone and no visit reads the
log again. Station, card and POS through pcscd + vpcd on one clock; central on SQLite (and PostgreSQL).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from cardsvc.beneficiary.protocol import Authorisation, BenIns, CardStatus
from cardsvc.card.inprocess import InProcessConnection
from cardsvc.card.pcsc import PcscConnection
from cardsvc.card.transport import CountingConnection
from cardsvc.central.extensions import get_db
from cardsvc.central.models import Card, FlagRow
from cardsvc.central.services.reconcile import FlagKind, reconcile
from cardsvc.central.services.renewals import day_start
from cardsvc.formats.transaction import RecordType, TransactionRecord
from enrolment_station.fingers import SyntheticFingerReader, finger_seed
from point_of_service.services.sync import SyncService
from tests.fixtures.pcsc import ServedCard
from tests.fixtures.station import MovableClock, PinnedClock, StationWorld
from tests.test_central_reconcile import DAY
from tests.test_pos_sync_ack import Transport
from tests.test_renewal_end_to_end import (
    HOUSEHOLD,
    Central,
    Pos,
    _camp,
    _enrol_and_register,
    _pos,
    _renew,
    central,
)
from tests.test_station_renewal import RenewalCamp, renewal_camp
from tests.test_station_renewal_window import _card_auth, _next_year, _old_period, _set_day, _station_auth
from tests.test_station_upload import FlaskOpener

__all__ = ["central", "renewal_camp"]  # the end-to-end test's central, the station renewal tests' camp


@dataclass(frozen=True)
class Visit:
    """What one insertion at the POS showed and did."""

    status: CardStatus  # as verification read it
    card_records: tuple[TransactionRecord, ...]  # journalled from the card's log at this insertion
    read_logs: int  # READ LOG commands sent
    paid: int | None  # the payment's counter
    limits_renewed: bool


def _visit(pos: Pos, served: ServedCard, at: int, *, pay: bool = True) -> Visit:
    """The POS's service flow (what the web screens and the till call): verify the card and the head's
    finger, pay 1,000 paise. Every APDU is counted."""
    from cardsvc.bio.extract import extract_template
    from hardware_sims.fingers.impression import impression
    from point_of_service.services import paypoint
    from point_of_service.services.verification import enrolled_fingers, verify_card, verify_member

    served.remove()
    served.insert()
    conn = CountingConnection(PcscConnection(served.reader, exclusive=True))
    try:
        visit = verify_card(conn, identity=pos.identity, trust=pos.trust, clerk=pos.clerk, now=at,
                            journal=pos.journal)  # fmt: skip
        paid = None
        if pay:
            finger = min(enrolled_fingers(visit, 0))
            seed = finger_seed(HOUSEHOLD, 1, finger)
            match = verify_member(visit, member=0, finger=finger, clerk=pos.clerk, now=at,
                                  journal=pos.journal,
                                  capture=lambda: extract_template(impression(seed, 2, "good")))  # fmt: skip
            assert match.matched
            outcome = paypoint.disburse(visit, scheme_id=1, amount=1_000, journal=pos.journal,
                                        identity=pos.identity, clerk=pos.clerk, now=at)  # fmt: skip
            paid = outcome.record.counter
    finally:
        conn.inner.close()
    reads = sum(1 for apdu in conn.sent if apdu[1] == BenIns.READ_LOG)
    return Visit(visit.verified.status, visit.card_records, reads, paid, visit.authorisations.limits_renewed)


def _second_pos(world: StationWorld, home: Path, clock: MovableClock, monkeypatch: pytest.MonkeyPatch) -> Pos:
    """Another terminal of the same hospital, its own journal and clerk (the end-to-end test's builder with
    other names)."""
    from tests import test_renewal_end_to_end as e2e

    with monkeypatch.context() as names:
        names.setattr(e2e, "POS_CHR", "INTRM-POS-0043")
        names.setattr(e2e, "CLERK_CHR", "INFOP-HOSP-0043")
        return _pos(world, home, clock)


@pytest.mark.usefixtures("pcscd")
def test_a_held_renewal_reaches_central_through_the_pos_and_is_acknowledged(
    station_world: StationWorld,
    station_clock: PinnedClock,
    central: Central,
    serve_card: Callable[..., ServedCard],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    world, clock = station_world, MovableClock(station_clock)  # the station, cards and POS: the pinned day
    world.fko_card.clock = clock
    reader = SyntheticFingerReader()
    camp = _camp(world, clock, reader, tmp_path, "CAMP-HELD")
    pos = _pos(world, tmp_path / "pos", clock)
    other = _second_pos(world, tmp_path / "pos-2", clock, monkeypatch)
    opener = FlaskOpener(central.app)
    try:
        # the camp enrols the household; central learns the card and both terminals
        served = serve_card(slot=0, card=world.blank_card(clock=clock))
        card_hex, camp_period = _enrol_and_register(world, central, camp, served, opener, clock, [pos, other])
        old_end = datetime.fromtimestamp(camp_period[1], UTC).date()
        new_start, new_end = old_end + timedelta(days=1), old_end.replace(year=old_end.year + 1)

        # the renewal camp, 30 days before the new year: committed and held, no record for the station
        clock.go_to(
            datetime.combine(new_start - timedelta(days=30), datetime.min.time(), UTC) + timedelta(hours=9)
        )
        renewal = _renew(world, central, camp, served, opener, clock, reader, card_hex, (new_start, new_end))
        assert renewal.takes_effect == new_start and renewal.records == []
        schemes = len(renewal.profile.schemes)

        # the new year's first day: the hospital verifies and pays; the POS journals the card-made records
        t1 = day_start(new_start) + 10 * 3600
        clock.go_to(datetime.fromtimestamp(t1, UTC))
        first = _visit(pos, served, t1)
        assert first.status.renewal_scheduled is None and first.status.policy_end == new_end
        assert first.status.unanswered == (1, schemes)
        assert first.read_logs == 1
        assert [(r.record_type, r.counter) for r in first.card_records] == [
            (RecordType.RENEWAL, c) for c in range(1, schemes + 1)
        ]
        assert first.paid == schemes + 1
        journalled = [(r.record_type, r.counter) for r in pos.journal.records(int(card_hex, 16))]
        assert journalled == [*((RecordType.RENEWAL, c) for c in range(1, schemes + 1)),
                              (RecordType.CASH, schemes + 1)]  # fmt: skip

        # the same day at the hospital's other terminal (not synced yet either): it journals them too
        elsewhere = _visit(other, served, t1 + 600, pay=False)
        assert elsewhere.read_logs == 1 and [r.counter for r in elsewhere.card_records] == list(
            range(1, schemes + 1)
        )
        again = _visit(other, served, t1 + 900, pay=False)  # and reads nothing more at the next visit
        assert again.read_logs == 0 and again.card_records == ()

        transport = Transport(central.at(clock).app)
        sync = SyncService(pos.journal, pos.identity, pos.trust, transport, now=lambda: central.now)
        report = sync.sync()
        assert report.error is None and report.records_sent == schemes + 1, report
        report = SyncService(other.journal, other.identity, other.trust, transport,
                             now=lambda: central.now).sync()  # fmt: skip
        assert report.error is None and report.records_sent == schemes, report  # central keeps one of each
        # (same card, counter and content: no duplicate_counter flag below)

        # central: no gap, the register in the new year
        with get_db(central.app).sessions() as session:
            reconcile(session, central.now)
            card = session.get(Card, card_hex)
            assert card is not None
            period = (card.policy_start, card.policy_end)
            flags = [(f.kind, f.details) for f in session.execute(select(FlagRow)).scalars()]
        assert period == (day_start(new_start), day_start(new_end) + DAY - 1)
        assert not [f for f in flags if f[0] == FlagKind.COUNTER_GAP.value], flags
        assert flags == [], flags

        # the next day: the journal holds the records (no READ LOG); central's SYNC_ACK clears the tag
        t2 = t1 + DAY
        clock.go_to(datetime.fromtimestamp(t2, UTC))
        second = _visit(pos, served, t2, pay=False)
        assert second.status.unanswered == (1, schemes) and second.read_logs == 0
        assert second.limits_renewed and second.card_records == ()
        t3 = t2 + 3600
        clock.go_to(datetime.fromtimestamp(t3, UTC))
        third = _visit(pos, served, t3)
        assert third.status.unanswered is None and third.read_logs == 0
        assert third.paid == schemes + 2
    finally:
        pos.journal.close()
        other.journal.close()
        camp.close()


def test_the_card_flags_its_own_records_until_central_acknowledges_them(renewal_camp: RenewalCamp) -> None:
    """Status 8E at the card: absent while the renewal is held and for records a terminal was answered
    with; (first, last) from the new year's first command; a SYNC_ACK below them leaves it, one covering
    them clears it for good."""
    from cardsvc.beneficiary.protocol import AuthKind
    from cardsvc.beneficiary.session import BeneficiarySession
    from enrolment_station.reissue import renew
    from tests.fixtures.reissue import card_authorisation

    rc = renewal_camp
    card_id, card = rc.enrol()
    start, end = _next_year(_old_period(card)[1])
    today = _set_day(rc, start - timedelta(days=30))
    rc.reopen()
    renew(rc.camp.personaliser, InProcessConnection(card), _card_auth(rc, card_id, start, end), now=today,
          fko=rc.camp.session(), station_authorisation=_station_auth(rc, card_id, start, end))  # fmt: skip

    def status() -> CardStatus:
        with InProcessConnection(card) as conn:
            return BeneficiarySession(conn).status()

    def ack(serial: int, counter: int) -> None:
        auth = Authorisation(AuthKind.SYNC_ACK, card_id, serial, 0, counter)
        with InProcessConnection(card) as conn:
            BeneficiarySession(conn).authorise(card_authorisation(rc.world, auth))

    assert status().unanswered is None  # held: nothing made yet
    _set_day(rc, start)
    taken = status()  # this GET STATUS is the card's first command of the new year
    assert taken.renewal_scheduled is None and taken.counter == 1 and taken.unanswered == (1, 1)
    ack(2, 0)  # central holds nothing of this card yet: the records stay flagged
    assert status().unanswered == (1, 1)
    ack(3, 1)
    assert status().unanswered is None and status().synced_counter == 1


def test_status_8e_round_trips_and_a_malformed_one_is_refused() -> None:
    from datetime import date

    from cardsvc.beneficiary.protocol import Lifecycle, StatusTag, Wallet
    from cardsvc.formats.errors import FormatError

    status = CardStatus(
        lifecycle=Lifecycle.ACTIVATED, card_id="CARD-1", counter=3, usable=20_480, free=12_000, max_count=20,
        max_amount=2_000_000, since_sync_count=1, since_sync_amount=1_000, synced_counter=0, log_capacity=24,
        policy_start=date(2027, 4, 1), policy_end=date(2028, 3, 31), object_lengths=(500, 274, 1_596, 0),
        key_generated=True, auth_serial=1, wallets=(Wallet(1, 3_000_000, 0),), unanswered=(1, 2),
    )  # fmt: skip
    wire = status.encode()
    assert CardStatus.parse(wire) == status
    assert wire.endswith(bytes([StatusTag.UNANSWERED, 8]) + (1).to_bytes(4, "big") + (2).to_bytes(4, "big"))
    body = wire[:-10]
    for bad in ((2).to_bytes(4, "big") + (1).to_bytes(4, "big"), (0).to_bytes(8, "big"), bytes(4)):
        with pytest.raises(FormatError, match="unanswered"):
            CardStatus.parse(body + bytes([StatusTag.UNANSWERED, len(bad)]) + bad)
