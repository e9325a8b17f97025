"""Renewal for a new policy year, done by the card: central's RENEW_POLICY opens the renewal on the chip,
the station stages the new profile, the FKO card certifies it (ledger), COMMIT RENEWAL swaps profile,
certificate and wallet at once. A terminal accepts the renewed card for the new year; a tear at any APDU
leaves the old valid card or the new one, never a mixture."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cardsvc.beneficiary import protocol as ben
from cardsvc.beneficiary.session import BeneficiarySession
from cardsvc.beneficiary.session import sign_authorisation as sign_card_authorisation
from cardsvc.beneficiary.verify import CardRefusedError, RefusalReason, VerifiedCard, verify_card
from cardsvc.card.errors import ApduError
from cardsvc.card.inprocess import InProcessConnection
from cardsvc.formats.transaction import RecordType
from cardsvc.pki.signer import SoftwareSigner
from enrolment_station.authorisation import AuthKind, SignedAuthorisation
from enrolment_station.camp import Camp
from enrolment_station.errors import AuthorisationError
from enrolment_station.fingers import SyntheticFingerReader
from enrolment_station.reissue import RenewalResult, renew, renew_until_done
from hardware_sims.card.cardos import SimulatedCard
from tests.fixtures.reissue import (
    card_authorisation,
    personalise_again,
    station_authorisation,
    verify_as_terminal,
)
from tests.fixtures.station import (
    DISTRICT,
    DISTRICT_SECRET,
    FKO_PIN,
    ROOT,
    ROOT_SECRET,
    TERMINAL_PASSPHRASE,
    MovableClock,
    PinnedClock,
    StationWorld,
    build_world,
)
from tests.test_station_tearing import TearingConnection

LIST = (
    "household_id,village_code,member_no,name,gender,year_of_birth,relation\n"
    "HH-0200,654321,1,Kamla Devi,F,1965,HEAD\n"
    "HH-0200,654321,2,Mohan Lal,M,1962,SPOUSE\n"
)
OLD_COVER = 3_000_000  # the station's default Policy
NEW_COVER = 3_500_000


@dataclasses.dataclass
class RenewalCamp:
    world: StationWorld
    camp: Camp
    clock: MovableClock  # the station, the FKO card and the beneficiary card
    reader: SyntheticFingerReader
    fko: InProcessConnection

    def reopen(self) -> None:
        """A new camp day: the FKO opens the session again (PIN and finger)."""
        self.camp.open_session(self.fko, pin=FKO_PIN, fingerprint=self.reader.officer_probe)

    def enrol(self) -> tuple[str, SimulatedCard]:
        """HH-0200 on a fresh blank card (captured once; later cards reuse the capture)."""
        return personalise_again(self.camp, self.world, "HH-0200", clock=self.clock)


@pytest.fixture
def renewal_camp(tmp_path: Path, station_clock: PinnedClock) -> Iterator[RenewalCamp]:
    """The session opened at noon of the pinned day (station_clock); the ceremony on the same day."""
    clock = MovableClock(station_clock)
    world = build_world(tmp_path, now=station_clock)
    world.fko_card.clock = clock
    reader = SyntheticFingerReader()
    camp = Camp(world.home, passphrase=TERMINAL_PASSPHRASE, operator="op-meena", camp_id="CAMP-REN",
                reader=reader, now=clock.now)  # fmt: skip
    (tmp_path / "l.csv").write_text(LIST)
    camp.import_list(tmp_path / "l.csv")
    rc = RenewalCamp(world, camp, clock, reader, InProcessConnection(world.fko_card))
    rc.reopen()
    yield rc
    camp.close()


def _card_auth(rc: RenewalCamp, card_id: str, start: date, end: date, *, serial: int = 1,
               cover: int = NEW_COVER, by_root: bool = False) -> ben.Authorisation:  # fmt: skip
    auth = ben.Authorisation(ben.AuthKind.RENEW_POLICY, card_id, serial, 0, 0, policy=(start, end),
                             covers=((1, cover),))  # fmt: skip
    return card_authorisation(rc.world, auth, by_root=by_root)


def _station_auth(rc: RenewalCamp, card_id: str, start: date, end: date, cover: int = NEW_COVER
                  ) -> SignedAuthorisation:  # fmt: skip
    return station_authorisation(
        rc.world, AuthKind.RENEW, "HH-0200", card_id, now=rc.clock.now(), members=(0, 1), cover=cover,
        policy=(start, end), by_root=True, auth_id="5eed5eed5eed5eed",
    )  # fmt: skip


def _verify(rc: RenewalCamp, card: SimulatedCard, at: datetime) -> VerifiedCard:
    """verify_card as a terminal runs it, at ``at``."""
    with InProcessConnection(card) as conn:
        return verify_as_terminal(rc.world, conn, at)


def _old_period(card: SimulatedCard) -> tuple[date, date]:
    with InProcessConnection(card) as conn:
        status = BeneficiarySession(conn).status()
    assert status.policy_start is not None and status.policy_end is not None
    return status.policy_start, status.policy_end


def test_renewal_after_the_year_ended_gives_a_card_terminals_accept_for_the_new_year(
    renewal_camp: RenewalCamp,
) -> None:
    rc = renewal_camp
    card_id, card = rc.enrol()
    old_start, old_end = _old_period(card)
    rc.clock.offset = timedelta(days=(old_end - old_start).days + 6)  # a week into the next year
    today = rc.clock.now()
    with pytest.raises(CardRefusedError) as refused:
        _verify(rc, card, today)
    assert refused.value.reason is RefusalReason.POLICY_EXPIRED  # what the household meets at the hospital

    start, end = old_end + timedelta(days=1), date(old_end.year + 1, old_end.month, old_end.day)
    auth = _card_auth(rc, card_id, start, end)
    rc.reopen()  # the next year's camp
    result = renew(rc.camp.personaliser, InProcessConnection(card), auth, now=today, fko=rc.camp.session(),
                   station_authorisation=_station_auth(rc, card_id, start, end))  # fmt: skip

    assert (result.profile.policy_start, result.profile.policy_end) == (start, end)
    assert (result.certificate.effective, result.certificate.expiry) == (start, end)
    [record] = result.records
    assert (record.record_type, record.scheme_id, record.balance_after, record.reference) == (
        RecordType.RENEWAL, 1, NEW_COVER, 1,
    )  # fmt: skip
    verified = _verify(rc, card, today)  # the POS verification accepts it for the new year
    assert (verified.profile.policy_start, verified.profile.policy_end) == (start, end)
    assert verified.card_certificate.encode() == result.certificate.encode()
    assert verified.status.wallet(1).balance == NEW_COVER
    assert [m.name for m in verified.profile.members] == ["Kamla Devi", "Mohan Lal"]
    with pytest.raises(CardRefusedError) as later:  # and no longer than the new year
        _verify(rc, card, datetime.combine(end + timedelta(days=1), datetime.min.time(), UTC))
    assert later.value.reason is RefusalReason.POLICY_EXPIRED

    check = rc.camp.ledger()  # the FKO ledger holds the first activation and the renewal, both journaled
    assert check.matches and check.ledger_count == 2, check.describe()
    row = rc.camp.journal.card(card_id)
    assert row is not None and row["policy_end"] == end.isoformat() and row["cover_paise"] == NEW_COVER
    assert rc.camp.journal.authorisation_used("5eed5eed5eed5eed")
    from cardsvc.formats.batch import BatchKind, TransactionItem

    [tx] = [b for b in rc.camp.upload_batches() if b.batch.kind is BatchKind.TRANSACTIONS]
    assert [i.record for i in tx.batch.items if isinstance(i, TransactionItem)] == [record.encode()]
    again = renew(rc.camp.personaliser, InProcessConnection(card), auth, now=today, fko=rc.camp.session())
    assert again.recovered == "already renewed" and again.records == result.records
    with InProcessConnection(card) as conn, pytest.raises(ApduError):  # the card refuses a replay itself
        BeneficiarySession(conn).open_renewal(auth)


def test_renewal_refusals_say_why_and_leave_the_card_as_it_was(renewal_camp: RenewalCamp) -> None:
    rc = renewal_camp
    card_id, card = rc.enrol()
    start, end = _old_period(card)
    new_end = date(end.year + 1, end.month, end.day)
    today = rc.clock.now()
    fko = rc.camp.session()

    def attempt(auth: ben.Authorisation, **kw: Any) -> RenewalResult:
        return renew(rc.camp.personaliser, InProcessConnection(card), auth, now=today, fko=fko, **kw)

    forged = sign_card_authorisation(SoftwareSigner.generate(), _card_auth(rc, card_id, start, new_end))
    with pytest.raises(AuthorisationError, match="does not verify"):
        attempt(forged)
    with pytest.raises(AuthorisationError, match="reader holds"):
        attempt(_card_auth(rc, "CARD-12", start, new_end))
    future = start + timedelta(days=30)
    with pytest.raises(AuthorisationError, match="starts"):
        attempt(_card_auth(rc, card_id, future, new_end))
    with pytest.raises(AuthorisationError, match="different period or cover"):
        greedy = _station_auth(rc, card_id, start, new_end, cover=9_000_000)
        attempt(_card_auth(rc, card_id, start, new_end), station_authorisation=greedy)
    top_up = sign_card_authorisation(
        rc.world.km.load_signer(ROOT, ROOT_SECRET), ben.Authorisation(ben.AuthKind.RENEWAL, card_id, 1, 1, 5)
    )
    with pytest.raises(AuthorisationError, match="does not renew"):
        attempt(top_up)
    with InProcessConnection(card) as conn:
        status = BeneficiarySession(conn).status()
    assert (status.auth_serial, status.renewal_open, status.counter) == (0, 0, 0)
    assert (status.policy_start, status.policy_end, status.wallet(1).balance) == (start, end, OLD_COVER)
    renewed = attempt(_card_auth(rc, card_id, start, new_end, by_root=True))  # root-signed works too
    assert renewed.profile.policy_end == new_end


def test_the_card_itself_refuses_a_profile_the_renewal_did_not_authorise(renewal_camp: RenewalCamp) -> None:
    """A station that stages other data than central authorised gets 6A80 at COMMIT; the card stays old."""
    rc = renewal_camp
    card_id, card = rc.enrol()
    start, end = _old_period(card)
    new_end = date(end.year + 1, end.month, end.day)
    auth = _card_auth(rc, card_id, start, new_end)
    identity = rc.world.identity()
    with InProcessConnection(card) as conn:
        s = BeneficiarySession(conn)
        s.terminal_authenticate(identity.chain, identity.terminal, card_id)
        old, _ = s.read_profile()
        with pytest.raises(ApduError):  # nothing to stage before the renewal is open
            s.write_next_profile(old)
        s.open_renewal(auth)
        assert s.status().renewal_open == 1
        greedy = dataclasses.replace(old, policy_end=new_end, schemes=(dataclasses.replace(old.schemes[0],
                                     cover_paise=9_000_000),))  # fmt: skip
        s.write_next_profile(greedy)
        from cardsvc.pki.cvc import build_body
        from cardsvc.pki.rights import Right, Role

        public = s.read_public()
        assert public.card_certificate is not None
        fko = rc.camp.session()
        body = build_body(car=fko.fko_chr, chr=card_id, public_point=public.card_certificate.public_point,
                          role=Role.BENEFICIARY_CARD, rights=Right.NONE, effective=start, expiry=new_end,
                          content_digest=b"\x00" * 32)  # fmt: skip
        cert = fko.activate(body)
        with pytest.raises(ApduError) as refused:
            s.commit_renewal(cert, fko.officer_cert, time=int(rc.clock()), operator_id=1)
        assert refused.value.sw == 0x6A80
        status = s.status()
    assert status.policy_end == end and status.wallet(1).balance == OLD_COVER and status.counter == 0
    assert _verify(rc, card, rc.clock.now()).profile.policy_end == end  # still the old, valid card


def test_tear_at_every_apdu_of_a_renewal(renewal_camp: RenewalCamp) -> None:
    """Pull the card at each APDU of a renewal (before and after the card acted); at every re-insertion a
    terminal accepts either the whole old card or the whole new one; the station always finishes."""
    rc = renewal_camp
    card_id, card = rc.enrol()
    start, end = _old_period(card)
    new_end = date(end.year + 1, end.month, end.day)
    fko = rc.camp.session()
    clean = TearingConnection(card, None, after=False)
    renew_until_done(rc.camp.personaliser, clean, _card_auth(rc, card_id, start, new_end), now=rc.clock.now(),
                     fko=fko)  # fmt: skip
    total = clean.sent
    assert total >= 10, f"a renewal should take ten APDUs or more, took {total}"
    outcomes: dict[str, int] = {}
    for k in range(1, total + 1):
        for after in (False, True):
            card_id, card = rc.enrol()
            conn = TearingConnection(card, k, after=after)
            seen: list[str] = []

            def check(card: SimulatedCard = card, seen: list[str] = seen, where: tuple[int, bool] = (k, after)
                      ) -> None:  # fmt: skip
                verified = _verify(rc, card, rc.clock.now())  # never refused: old or new, both valid today
                p, cert = verified.profile, verified.card_certificate
                whole = {(end, end, OLD_COVER), (new_end, new_end, NEW_COVER)}
                assert (p.policy_end, cert.expiry, verified.status.wallet(1).balance) in whole, where
                seen.append("new" if p.policy_end == new_end else "old")

            conn.on_reinsert = check  # type: ignore[method-assign]
            result = renew_until_done(rc.camp.personaliser, conn, _card_auth(rc, card_id, start, new_end),
                                      now=rc.clock.now(), fko=fko)  # fmt: skip
            assert conn.torn and seen, f"APDU {k} was never sent"
            final = _verify(rc, card, rc.clock.now())
            assert final.profile.policy_end == new_end and final.status.wallet(1).balance == NEW_COVER
            assert [r.balance_after for r in result.records] == [NEW_COVER]
            key = f"{seen[0]} at tear, {result.recovered or 'clean'}"
            outcomes[key] = outcomes.get(key, 0) + 1
    print(f"{total} APDUs, outcomes {outcomes}")
    assert sum(outcomes.values()) == 2 * total
    assert any(k.startswith("new") for k in outcomes) and any(k.startswith("old") for k in outcomes)
    assert any("completed" in k for k in outcomes), outcomes  # committed, answer lost: finished from the log
    ledger = rc.camp.ledger()
    assert ledger.matches, ledger.describe()


@pytest.mark.usefixtures("pcscd")
def test_renewed_card_is_accepted_by_a_pos_terminal_through_pcsc(
    renewal_camp: RenewalCamp, serve_card: Any
) -> None:
    """The renewal and the hospital's verification both through pcscd + vpcd + pyscard: after the old year
    the POS refuses the card as expired; renewed at the camp, the same POS accepts it for the new year."""
    from cardsvc.card.pcsc import PcscConnection
    from cardsvc.pki.rights import Role

    rc = renewal_camp
    km = rc.world.km
    km.register_terminal("INTRM-POS-0042", district=DISTRICT, role=Role.POS_TERMINAL,
                         district_secret=DISTRICT_SECRET, terminal_passphrase=b"pos-pass-42")  # fmt: skip
    pos_chain, pos_signer = km.chain("INTRM-POS-0042"), km.load_signer("INTRM-POS-0042", "pos-pass-42")
    identity = rc.world.identity()
    card_id, card = rc.enrol()
    old_start, old_end = _old_period(card)
    served = serve_card(slot=0, card=card)

    def pos_verify() -> VerifiedCard:
        with PcscConnection(served.reader, exclusive=True) as conn:
            _, verified = verify_card(
                conn, anchor=rc.world.anchor, district_certificates=list(identity.bundle.districts.values()),
                revocations=identity.revocations, terminal_chain=pos_chain, terminal_signer=pos_signer,
                now=rc.clock.now(),
            )  # fmt: skip
        return verified

    assert pos_verify().profile.policy_end == old_end
    rc.clock.offset = timedelta(days=(old_end - old_start).days + 3)
    with pytest.raises(CardRefusedError) as expired:
        pos_verify()
    assert expired.value.reason is RefusalReason.POLICY_EXPIRED
    start, end = old_end + timedelta(days=1), date(old_end.year + 1, old_end.month, old_end.day)
    rc.reopen()
    with PcscConnection(served.reader, exclusive=True) as conn:
        result = renew_until_done(rc.camp.personaliser, conn, _card_auth(rc, card_id, start, end),
                                  now=rc.clock.now(), fko=rc.camp.session())  # fmt: skip
    print(f"renewal through pcscd + vpcd: {result.apdus} APDUs on the beneficiary card")
    verified = pos_verify()
    assert (verified.profile.policy_start, verified.profile.policy_end) == (start, end)
    assert verified.card_certificate.encode() == result.certificate.encode()
    assert verified.status.wallet(1).balance == NEW_COVER
