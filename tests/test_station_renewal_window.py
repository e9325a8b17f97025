"""Renewal camps BEFORE the policy year starts: a renewal may be certified and committed up to
RENEWAL_WINDOW (90 days) ahead of its year. The card holds it and keeps its current year (certificate,
profile, wallet) until the start date; at its first command on or after that day it takes on the new year and
makes the RENEWAL records. A year starting further ahead, inside the current one or not extending it is
refused by the station, the beneficiary card and (too far ahead) the FKO card."""

from __future__ import annotations

import shutil
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest

from cardsvc.beneficiary import protocol as ben
from cardsvc.beneficiary.session import BeneficiarySession
from cardsvc.beneficiary.verify import VerifiedCard, verify_card
from cardsvc.card.errors import ApduError, IncorrectDataError
from cardsvc.card.inprocess import InProcessConnection
from cardsvc.formats.transaction import RecordType
from cardsvc.pki.cvc import build_body
from cardsvc.pki.rights import Right, Role
from enrolment_station.errors import AuthorisationError
from enrolment_station.reissue import renew, renew_until_done
from tests import test_station_renewal as base
from tests.fixtures.station import DISTRICT, DISTRICT_SECRET
from tests.test_station_renewal import (
    NEW_COVER,
    OLD_COVER,
    RenewalCamp,
    _card_auth,
    _old_period,
    _station_auth,
    _verify,
)

renewal_camp = base.renewal_camp  # the station renewal tests' camp (one clock for station and cards)
WINDOW = ben.RENEWAL_WINDOW.days


def _set_day(rc: RenewalCamp, day: date) -> datetime:
    """Move the shared clock (station, FKO card, beneficiary card) to noon of ``day``: a test never crosses a
    midnight, whenever it runs."""
    rc.clock.go_to(datetime.combine(day, time(12), UTC))
    return rc.clock.now()


def _next_year(old_end: date) -> tuple[date, date]:
    return old_end + timedelta(days=1), date(old_end.year + 1, old_end.month, old_end.day)


def _status(card: Any) -> ben.CardStatus:
    with InProcessConnection(card) as conn:
        return BeneficiarySession(conn).status()


def test_renewal_30_days_before_the_year_is_committed_and_held_until_its_first_day(
    renewal_camp: RenewalCamp,
) -> None:
    rc = renewal_camp
    card_id, card = rc.enrol()
    old_start, old_end = _old_period(card)
    start, end = _next_year(old_end)
    today = _set_day(rc, start - timedelta(days=30))
    rc.reopen()  # the renewal camp, a month before the new year
    auth = _card_auth(rc, card_id, start, end)
    result = renew(rc.camp.personaliser, InProcessConnection(card), auth, now=today, fko=rc.camp.session(),
                   station_authorisation=_station_auth(rc, card_id, start, end))  # fmt: skip

    assert result.takes_effect == start and result.records == []  # the RENEWAL records come at the start
    assert (result.certificate.effective, result.certificate.expiry) == (start, end)
    status = _status(card)
    assert status.renewal_scheduled == (1, start, end) and status.renewal_open == 0
    assert (status.policy_start, status.policy_end) == (old_start, old_end)
    assert status.wallet(1).balance == OLD_COVER
    verified = _verify(rc, card, today)  # a hospital today still sees this year's card
    assert (verified.profile.policy_start, verified.profile.policy_end) == (old_start, old_end)
    assert verified.card_certificate.expiry == old_end
    check = rc.camp.ledger()  # the FKO ledger holds the renewal's certificate, journaled
    assert check.matches and check.ledger_count == 2, check.describe()
    row = rc.camp.journal.card(card_id)
    assert row is not None and row["policy_start"] == start.isoformat()
    again = renew(rc.camp.personaliser, InProcessConnection(card), auth, now=today, fko=rc.camp.session())
    assert again.recovered == "already renewed" and again.takes_effect == start

    new_day = _set_day(rc, start)  # the new year's first day: the card's first command takes it on
    verified = _verify(rc, card, new_day)
    assert (verified.profile.policy_start, verified.profile.policy_end) == (start, end)
    assert verified.card_certificate.encode() == result.certificate.encode()
    assert verified.status.wallet(1).balance == NEW_COVER and verified.status.renewal_scheduled is None
    identity = rc.world.identity()
    with InProcessConnection(card) as conn:
        s = BeneficiarySession(conn)
        s.terminal_authenticate(identity.chain, identity.terminal, card_id)
        [record] = s.read_log(1, card_key=result.certificate.public_point)
    assert (record.record_type, record.balance_after, record.reference) == (RecordType.RENEWAL, NEW_COVER, 1)


def test_renewals_too_far_ahead_overlapping_or_not_extending_are_refused_and_say_why(
    renewal_camp: RenewalCamp,
) -> None:
    rc = renewal_camp
    card_id, card = rc.enrol()
    old_start, old_end = _old_period(card)
    start, end = _next_year(old_end)

    def day(d: date) -> datetime:  # a camp on that day (the FKO opens a session for the day)
        now = _set_day(rc, d)
        rc.reopen()
        return now

    def attempt(s: date, e: date, serial: int = 1) -> Any:
        auth = _card_auth(rc, card_id, s, e, serial=serial)
        return renew(rc.camp.personaliser, InProcessConnection(card), auth, now=rc.clock.now(),
                     fko=rc.camp.session())  # fmt: skip

    day(start - timedelta(days=200))

    with pytest.raises(AuthorisationError, match=f"starts {start}, more than {WINDOW} days after today"):
        attempt(start, end)  # 200 days ahead
    overlapping = old_end - timedelta(days=10)  # a "next year" starting inside this one
    day(overlapping - timedelta(days=30))
    with pytest.raises(AuthorisationError, match="inside the current one"):
        attempt(overlapping, end)
    with pytest.raises(AuthorisationError, match="does not extend"):
        attempt(start, old_end)
    # a station that skips its own checks meets the cards: the beneficiary card and the FKO card refuse too
    identity = rc.world.identity()
    for when, period in ((start - timedelta(days=200), (start, end)),
                         (overlapping - timedelta(days=30), (overlapping, end)),
                         (overlapping - timedelta(days=30), (start, old_end))):  # fmt: skip
        _set_day(rc, when)
        with InProcessConnection(card) as conn, pytest.raises(ApduError) as refused:
            BeneficiarySession(conn).open_renewal(_card_auth(rc, card_id, *period))
        assert refused.value.sw == 0x6A80, period
    day(start - timedelta(days=200))
    fko = rc.camp.session()
    with InProcessConnection(card) as conn:
        s = BeneficiarySession(conn)
        s.terminal_authenticate(identity.chain, identity.terminal, card_id)
        public = s.read_public()
    assert public.card_certificate is not None
    body = build_body(car=fko.fko_chr, chr=card_id, public_point=public.card_certificate.public_point,
                      role=Role.BENEFICIARY_CARD, rights=Right.NONE, effective=start, expiry=end,
                      content_digest=bytes(32))  # fmt: skip
    with pytest.raises(IncorrectDataError):  # the FKO card certifies nothing starting 200 days ahead
        fko.activate(body)
    status = _status(card)  # nothing changed on the card
    assert (status.auth_serial, status.renewal_open, status.renewal_scheduled) == (0, 0, None)
    assert (status.counter, status.policy_start, status.policy_end) == (0, old_start, old_end)
    assert status.wallet(1).balance == OLD_COVER
    assert rc.camp.ledger().ledger_count == 1  # only the first activation

    day(start - timedelta(days=WINDOW))  # the window's first day: accepted
    held = attempt(start, end)
    assert held.takes_effect == start
    with pytest.raises(AuthorisationError, match="already holds renewal 1"):  # one held renewal at a time
        attempt(start, date(end.year + 1, end.month, end.day), serial=2)
    with InProcessConnection(card) as conn, pytest.raises(ApduError):
        BeneficiarySession(conn).open_renewal(
            _card_auth(rc, card_id, start, date(end.year + 1, end.month, end.day), serial=2)
        )


@pytest.mark.usefixtures("pcscd")
def test_debits_before_the_new_year_use_the_old_year_and_after_it_the_new_through_pcsc(
    renewal_camp: RenewalCamp, serve_card: Any
) -> None:
    """Renewed at a camp 30 days ahead, through pcscd + vpcd: a hospital claim today is judged against this
    year's period and wallet; from the new year's first day against the new period and the new cover; the
    card's log holds the old debit, the RENEWAL record, the new debit, chained in that order."""
    from cardsvc.card.pcsc import PcscConnection

    rc = renewal_camp
    km = rc.world.km
    km.register_terminal("INTRM-POS-0043", district=DISTRICT, role=Role.POS_TERMINAL,
                         district_secret=DISTRICT_SECRET, terminal_passphrase=b"pos-pass-43")  # fmt: skip
    pos_chain, pos_signer = km.chain("INTRM-POS-0043"), km.load_signer("INTRM-POS-0043", "pos-pass-43")
    identity = rc.world.identity()
    card_id, card = rc.enrol()
    old_start, old_end = _old_period(card)
    start, end = _next_year(old_end)
    served = serve_card(slot=0, card=card)

    def claim(amount: int) -> tuple[VerifiedCard, int]:
        """The POS: verify the card at the clock's today, then one CASH debit; (card, balance after)."""
        now = rc.clock.now()
        with PcscConnection(served.reader, exclusive=True) as conn:
            session, verified = verify_card(
                conn, anchor=rc.world.anchor, district_certificates=list(identity.bundle.districts.values()),
                revocations=identity.revocations, terminal_chain=pos_chain, terminal_signer=pos_signer,
                now=now,
            )  # fmt: skip
            record = session.debit(RecordType.CASH, scheme_id=1, amount=amount, time=int(now.timestamp()),
                                   operator_id=7, facility_id=17)  # fmt: skip
        return verified, record.balance_after

    today = _set_day(rc, start - timedelta(days=30))
    rc.reopen()
    with PcscConnection(served.reader, exclusive=True) as conn:
        result = renew_until_done(rc.camp.personaliser, conn, _card_auth(rc, card_id, start, end), now=today,
                                  fko=rc.camp.session())  # fmt: skip
    assert result.takes_effect == start

    _set_day(rc, start - timedelta(days=1))  # the old year's last day
    verified, after = claim(100_000)
    assert (verified.profile.policy_start, verified.profile.policy_end) == (old_start, old_end)
    assert (verified.status.wallet(1).balance, after) == (OLD_COVER, OLD_COVER - 100_000)
    assert verified.status.renewal_scheduled == (1, start, end)

    _set_day(rc, start)  # the new year's first day
    verified, after = claim(50_000)
    assert (verified.profile.policy_start, verified.profile.policy_end) == (start, end)
    assert verified.card_certificate.encode() == result.certificate.encode()
    assert (verified.status.wallet(1).balance, after) == (NEW_COVER, NEW_COVER - 50_000)

    with PcscConnection(served.reader, exclusive=True) as conn:
        s = BeneficiarySession(conn)
        s.terminal_authenticate(pos_chain, pos_signer, card_id)
        log = s.read_log(1, card_key=result.certificate.public_point)
    assert [(r.record_type, r.balance_after) for r in log] == [
        (RecordType.CASH, OLD_COVER - 100_000),
        (RecordType.RENEWAL, NEW_COVER),
        (RecordType.CASH, NEW_COVER - 50_000),
    ]
    renewal = log[1]
    assert renewal.reference == 1 and renewal.time >= int(datetime.combine(start, time(0), UTC).timestamp())


@pytest.mark.parametrize("torn_write", [False, True], ids=["lost-write", "half-write"])
def test_a_held_renewal_torn_while_taking_effect_is_taken_on_whole_at_the_next_command(
    renewal_camp: RenewalCamp, tmp_path: Path, torn_write: bool
) -> None:
    """The card is pulled at every persistent write of the take-effect transaction (the first command on
    the start date): at the next insertion the card takes the new year on whole, with its RENEWAL record
    made once."""
    from hardware_sims.card.apps.beneficiary import BeneficiaryApplication
    from hardware_sims.card.cardos import SimulatedCard
    from hardware_sims.card.errors import CardTorn

    rc = renewal_camp
    card_id, card = rc.enrol()
    _, old_end = _old_period(card)
    start, end = _next_year(old_end)
    today = _set_day(rc, start - timedelta(days=30))
    rc.reopen()
    result = renew(rc.camp.personaliser, InProcessConnection(card), _card_auth(rc, card_id, start, end),
                   now=today, fko=rc.camp.session())  # fmt: skip
    card.power_off()
    held = tmp_path / "held"
    shutil.copytree(card.state_dir, held)
    identity = rc.world.identity()

    def copy(name: str) -> SimulatedCard:
        shutil.copytree(held, tmp_path / name)
        app = BeneficiaryApplication(card_id=card_id, anchor=rc.world.anchor)
        return SimulatedCard(tmp_path / name, applications=[app], clock=rc.clock)

    new_day = _set_day(rc, start)
    counting = copy("count")
    counting.faults.reset_counters()
    assert _status(counting).policy_start == start
    total = counting.faults.writes
    assert total > 0
    for n in range(1, total + 1):
        torn = copy(f"run{n}")
        torn.faults.arm(after_writes=n, torn_write=torn_write)
        session = BeneficiarySession(InProcessConnection(torn))  # SELECT: no state is touched
        with pytest.raises(CardTorn):
            session.status()  # the first CLA 80 command on the start date
        torn.faults.disarm()
        torn.power_on()
        verified = _verify(rc, torn, new_day)
        assert (verified.profile.policy_end, verified.card_certificate.expiry) == (end, end), n
        assert verified.status.wallet(1).balance == NEW_COVER and verified.status.renewal_scheduled is None
        with InProcessConnection(torn) as conn:
            s = BeneficiarySession(conn)
            s.terminal_authenticate(identity.chain, identity.terminal, card_id)
            log = s.read_log(1, card_key=result.certificate.public_point)
        assert [(r.record_type, r.counter, r.balance_after) for r in log] == [
            (RecordType.RENEWAL, 1, NEW_COVER)
        ], n


def test_tear_at_every_apdu_of_a_renewal_held_for_next_month(renewal_camp: RenewalCamp) -> None:
    """Pulled at each APDU of a renewal 30 days ahead (before and after the card acted): at every
    re-insertion a terminal accepts the current year's whole card; the station always finishes, the card
    holds exactly the renewal the journal recorded, and takes it on at the start date."""
    from tests.test_station_tearing import TearingConnection

    rc = renewal_camp
    enrolled = rc.clock.now().date()
    card_id, card = rc.enrol()
    _, old_end = _old_period(card)
    start, end = _next_year(old_end)
    today = _set_day(rc, start - timedelta(days=30))
    rc.reopen()
    clean = TearingConnection(card, None, after=False)
    renew_until_done(rc.camp.personaliser, clean, _card_auth(rc, card_id, start, end), now=today,
                     fko=rc.camp.session())  # fmt: skip
    total = clean.sent
    _set_day(rc, enrolled)  # the same camp day as the first card: the same policy year
    rc.reopen()
    fresh = [rc.enrol() for _ in range(2 * total)]
    assert {_old_period(c)[1] for _, c in fresh} == {old_end}
    today = _set_day(rc, start - timedelta(days=30))
    rc.reopen()
    fko = rc.camp.session()
    outcomes: dict[str, int] = {}
    cards = []
    for k in range(1, total + 1):
        for after in (False, True):
            card_id, card = fresh.pop()
            conn = TearingConnection(card, k, after=after)

            def check(card: Any = card, where: tuple[int, bool] = (k, after)) -> None:
                verified = _verify(rc, card, rc.clock.now())  # the current year, whole, at every tear
                p, cert = verified.profile, verified.card_certificate
                assert (p.policy_end, cert.expiry, verified.status.wallet(1).balance) == (
                    old_end, old_end, OLD_COVER), where  # fmt: skip

            conn.on_reinsert = check  # type: ignore[method-assign]
            result = renew_until_done(rc.camp.personaliser, conn, _card_auth(rc, card_id, start, end),
                                      now=today, fko=fko)  # fmt: skip
            assert conn.torn, f"APDU {k} was never sent"
            assert result.takes_effect == start and result.records == []
            assert _status(card).renewal_scheduled == (1, start, end), (k, after)
            outcomes[result.recovered or "clean"] = outcomes.get(result.recovered or "clean", 0) + 1
            cards.append((card, result))
    print(f"{total} APDUs, outcomes {outcomes}")
    assert "completed" in outcomes, outcomes  # committed, answer lost: finished from the card's status
    assert rc.camp.ledger().matches
    new_day = _set_day(rc, start)
    for card, result in cards[-2:]:  # the last APDU torn before and after the card acted: the new year
        verified = _verify(rc, card, new_day)
        assert verified.card_certificate.encode() == result.certificate.encode()
        assert (verified.profile.policy_start, verified.status.wallet(1).balance) == (start, NEW_COVER)
