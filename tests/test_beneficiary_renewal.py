"""The card's own renewal and split rules (docs/card-layout.md, "Renewal and split"): RENEW_POLICY opens a
renewal, the new profile is staged, COMMIT RENEWAL checks it against the authorisation and the FKO's new
certificate and swaps profile, certificate, hashes and wallet in one transaction (torn at every write:
the old card or the new one); SPLIT lowers a balance with a card-signed SPLIT record (amount = the paise
lowered)."""

from __future__ import annotations

import dataclasses
import random
import shutil
from datetime import date
from pathlib import Path

import pytest

from cardsvc.beneficiary import protocol as fmt
from cardsvc.beneficiary.errors import BalanceError
from cardsvc.beneficiary.session import BeneficiarySession, sign_authorisation
from cardsvc.beneficiary.verify import verify_card
from cardsvc.card.errors import ApduError, ConditionsNotSatisfiedError
from cardsvc.card.inprocess import InProcessConnection
from cardsvc.formats.profile import ContentHashes, HouseholdProfile, SchemeCover, split_tlvs, tlv
from cardsvc.formats.transaction import RecordType
from cardsvc.pki.cvc import CvCertificate, build_body
from cardsvc.pki.rights import Right, Role
from hardware_sims.card.cardos import SimulatedCard
from hardware_sims.card.errors import CardTorn
from hardware_sims.card.faults import FaultInjector
from tests.fixtures.beneficiary import (
    CARD_ID,
    CARD_NOW,
    COVER,
    FKO_CHR,
    POLICY_END,
    SCHEME_HEALTH,
    SCHEME_PENSION,
    BeneficiaryWorld,
)

NEW_START, NEW_END = date(2026, 11, 23), date(2028, 10, 31)
NEW_COVERS = ((SCHEME_HEALTH, 4_000_000), (SCHEME_PENSION, 600_000))


def _card(world: BeneficiaryWorld, dest: Path) -> tuple[SimulatedCard, FaultInjector]:
    shutil.copytree(world.templates["activated"], dest)
    faults = FaultInjector()
    return world.new_card(dest, faults=faults, rng=random.Random(77)), faults


def _station(world: BeneficiaryWorld, card: SimulatedCard) -> BeneficiarySession:
    """An enrolment station with ENROL and RENEW, authenticated to the card."""
    holder = world.pki.issue(world.pki.district, "INTRM-ENR-RENEW", Role.ENROLMENT_TERMINAL,
                             rights=Right.ENROL | Right.READ_PROFILE | Right.RENEW)  # fmt: skip
    s = BeneficiarySession(InProcessConnection(card))
    s.terminal_authenticate([world.pki.district.cert, holder.cert], holder.signer, CARD_ID)
    s.read_public()
    return s


def _renewal(world: BeneficiaryWorld, serial: int = 1, **changes: object) -> fmt.Authorisation:
    auth = fmt.Authorisation(fmt.AuthKind.RENEW_POLICY, CARD_ID, serial, 0, 0, policy=(NEW_START, NEW_END),
                             covers=NEW_COVERS)  # fmt: skip
    return sign_authorisation(world.pki.district.signer, dataclasses.replace(auth, **changes),  # type: ignore[arg-type]
                              world.pki.district.cert)  # fmt: skip


def _new_profile(old: HouseholdProfile) -> HouseholdProfile:
    return dataclasses.replace(old, policy_start=NEW_START, policy_end=NEW_END,
                               schemes=tuple(SchemeCover(s, c) for s, c in NEW_COVERS))  # fmt: skip


def _certify(world: BeneficiaryWorld, s: BeneficiarySession, profile: HouseholdProfile, tmp: Path
             ) -> CvCertificate:  # fmt: skip
    """What the station does: the FKO card certifies the staged profile with the attested template and
    photo hashes, for the card's existing key."""
    assert s.card_certificate is not None
    point = s.card_certificate.public_point
    att = s.internal_authenticate(bytes(range(16)), CARD_ID, point)
    digest = ContentHashes(ContentHashes.of(profile.encode(), b"", b"").profile, att.hashes.templates,
                           att.hashes.photos).digest()  # fmt: skip
    body = build_body(car=FKO_CHR, chr=CARD_ID, public_point=point, role=Role.BENEFICIARY_CARD,
                      rights=Right.NONE, effective=profile.policy_start, expiry=profile.policy_end,
                      content_digest=digest)  # fmt: skip
    officer_card, officer = world.officer_session(tmp)
    cert = officer.activate_card(body)
    officer_card.power_off()
    return cert


def _staged(
    world: BeneficiaryWorld, card: SimulatedCard, tmp: Path
) -> tuple[BeneficiarySession, CvCertificate]:
    s = _station(world, card)
    old, _ = s.read_profile()
    s.open_renewal(_renewal(world))
    new = _new_profile(old)
    s.write_next_profile(new)
    return s, _certify(world, s, new, tmp)


def _pos_view(world: BeneficiaryWorld, card: SimulatedCard) -> tuple[date, date, int, int]:
    """What a POS accepts: (profile's policy end, certificate expiry, health and pension balances)."""
    _, verified = verify_card(
        InProcessConnection(card), anchor=world.anchor, district_certificates=world.district_certificates,
        revocations=None, terminal_chain=world.pos.chain, terminal_signer=world.pos.holder.signer,
        now=CARD_NOW, rng=random.Random(1).randbytes,
    )  # fmt: skip
    st = verified.status
    return (verified.profile.policy_end, verified.card_certificate.expiry, st.wallet(SCHEME_HEALTH).balance,
            st.wallet(SCHEME_PENSION).balance)  # fmt: skip


OLD_VIEW = (POLICY_END, POLICY_END, COVER, 500_000)
NEW_VIEW = (NEW_END, NEW_END, 4_000_000, 600_000)


def test_renewal_commit_swaps_profile_certificate_and_wallet(beneficiary_world: BeneficiaryWorld,
                                                            tmp_path: Path) -> None:  # fmt: skip
    w = beneficiary_world
    card, _ = _card(w, tmp_path / "card")
    s, cert = _staged(w, card, tmp_path)
    assert s.status().renewal_open == 1
    assert _pos_view(w, card) == OLD_VIEW  # opened and staged: still the old, whole card
    s = _station(w, card)
    records = s.commit_renewal(
        cert, w.fko_certificate, w.pki.district.cert, time=1_800_000_000, operator_id=9
    )
    assert [(r.record_type, r.scheme_id, r.balance_after, r.reference, r.counter) for r in records] == [
        (RecordType.RENEWAL, SCHEME_HEALTH, 4_000_000, 1, 1),
        (RecordType.RENEWAL, SCHEME_PENSION, 600_000, 1, 2),
    ]  # fmt: skip
    assert s.read_log(1) == records  # chained in the card's log like any record
    status = s.status()
    assert (status.renewal_open, status.auth_serial, status.policy_end) == (0, 1, NEW_END)
    assert _pos_view(w, card) == NEW_VIEW
    with pytest.raises(ConditionsNotSatisfiedError):  # nothing open any more: no second commit
        _station(w, card).commit_renewal(cert, w.fko_certificate, time=1, operator_id=9)


def test_the_card_refuses_what_the_renewal_did_not_authorise(beneficiary_world: BeneficiaryWorld,
                                                             tmp_path: Path) -> None:  # fmt: skip
    w = beneficiary_world
    card, _ = _card(w, tmp_path / "card")
    s = _station(w, card)
    old, _ = s.read_profile()
    with pytest.raises(ConditionsNotSatisfiedError):  # no staging before the renewal is open
        s.write_next_profile(_new_profile(old))
    with pytest.raises(ApduError) as backwards:  # a renewal must extend the policy
        s.open_renewal(_renewal(w, policy=(NEW_START, POLICY_END)))
    assert backwards.value.sw == 0x6A80
    forged = dataclasses.replace(_renewal(w), covers=((SCHEME_HEALTH, 9_000_000), (SCHEME_PENSION, 1)))
    with pytest.raises(ApduError) as unsigned:
        s.open_renewal(forged)
    assert unsigned.value.sw == 0x6982
    s.open_renewal(_renewal(w))
    for wrong in (
        dataclasses.replace(_new_profile(old), schemes=(SchemeCover(SCHEME_HEALTH, 9_000_000),)),  # cover
        dataclasses.replace(_new_profile(old), members=old.members[:1]),  # household changed
        dataclasses.replace(_new_profile(old), policy_end=date(2029, 10, 31)),  # period
    ):
        s.write_next_profile(wrong)
        cert = _certify(w, s, wrong, tmp_path)  # even with a genuine FKO certificate for it
        with pytest.raises(ApduError) as refused:
            s.commit_renewal(cert, w.fko_certificate, time=1, operator_id=9)
        assert refused.value.sw == 0x6A80
        s = _station(w, card)
    s.write_next_profile(_new_profile(old))  # the authorised profile, but the old year's certificate
    assert s.card_certificate is not None
    with pytest.raises(ApduError):
        s.commit_renewal(s.card_certificate, w.fko_certificate, time=1, operator_id=9)
    assert _pos_view(w, card) == OLD_VIEW


def test_renewal_waits_for_open_blocks(beneficiary_world: BeneficiaryWorld, tmp_path: Path) -> None:
    w = beneficiary_world
    card, _ = _card(w, tmp_path / "card")
    pos = BeneficiarySession(InProcessConnection(card))
    pos.terminal_authenticate(w.pos.chain, w.pos.holder.signer, CARD_ID)
    pos.read_public()
    pos.debit(RecordType.BLOCK, scheme_id=SCHEME_HEALTH, amount=50_000, time=1, operator_id=1, facility_id=2)
    s, cert = _staged(w, card, tmp_path)
    with pytest.raises(ConditionsNotSatisfiedError):
        s.commit_renewal(cert, w.fko_certificate, time=1, operator_id=9)


@pytest.mark.parametrize("torn_write", [False, True], ids=["lost-write", "half-write"])
def test_commit_renewal_torn_at_every_write_is_the_old_card_or_the_new(
    beneficiary_world: BeneficiaryWorld, tmp_path: Path, torn_write: bool
) -> None:
    w = beneficiary_world
    card, faults = _card(w, tmp_path / "count")
    s, cert = _staged(w, card, tmp_path)
    faults.reset_counters()
    s.commit_renewal(cert, w.fko_certificate, time=1, operator_id=9)
    total = faults.writes
    assert total > 0
    seen = set()
    for n in range(1, total + 1):
        card, faults = _card(w, tmp_path / f"run{n}")
        s, cert = _staged(w, card, tmp_path)
        faults.arm(after_writes=n, torn_write=torn_write)
        with pytest.raises(CardTorn):
            s.commit_renewal(cert, w.fko_certificate, time=1, operator_id=9)
        faults.disarm()
        card.power_on()
        view = _pos_view(w, card)
        assert view in (OLD_VIEW, NEW_VIEW), (n, view)
        seen.add(view)
        if view == OLD_VIEW:  # still open and staged: the station commits again
            s = _station(w, card)
            assert s.status().renewal_open == 1
            s.commit_renewal(cert, w.fko_certificate, time=1, operator_id=9)
        assert _pos_view(w, card) == NEW_VIEW
    assert seen == {OLD_VIEW, NEW_VIEW}


def test_split_lowers_a_balance_with_a_card_signed_record(beneficiary_world: BeneficiaryWorld,
                                                          tmp_path: Path) -> None:  # fmt: skip
    w = beneficiary_world
    card, _ = _card(w, tmp_path / "card")
    s = _station(w, card)

    def split(serial: int, value: int) -> fmt.Authorisation:
        auth = fmt.Authorisation(fmt.AuthKind.SPLIT, CARD_ID, serial, SCHEME_HEALTH, value)
        return sign_authorisation(w.pki.district.signer, auth, w.pki.district.cert)

    with pytest.raises(BalanceError):  # more than the card carries: refused, nothing written
        s.split_cover(split(1, COVER + 1), time=1, operator_id=9)
    with pytest.raises(BalanceError):  # the card checks it too (6986), even if the host does not
        s.debit(RecordType.SPLIT, scheme_id=SCHEME_HEALTH, amount=COVER + 1, time=1, operator_id=9,
                facility_id=0, authorisation=split(1, COVER + 1))  # fmt: skip
    for kind, amount in ((RecordType.SPLIT, 999_999), (RecordType.RENEWAL, COVER - 1_000_000)):
        with pytest.raises(ApduError):  # another amount, or the old encoding (a RENEWAL record): refused
            s.debit(kind, scheme_id=SCHEME_HEALTH, amount=amount, time=1, operator_id=9, facility_id=0,
                    authorisation=split(1, 1_000_000))  # fmt: skip
    assert s.status().counter == 0
    record = s.split_cover(split(1, 1_000_000), time=1, operator_id=9)
    assert (record.record_type, record.amount, record.balance_after, record.counter) == (
        RecordType.SPLIT, 1_000_000, COVER - 1_000_000, 1,
    )  # fmt: skip
    with pytest.raises(ApduError):  # a split authorisation works once
        s.split_cover(split(1, 1_000_000), time=1, operator_id=9)
    with pytest.raises(ApduError):  # and only through DEBIT
        s.authorise(split(2, 1))
    assert s.status().wallet(SCHEME_HEALTH).balance == COVER - 1_000_000


def test_renewal_authorisation_format_is_strict() -> None:
    auth = fmt.Authorisation(fmt.AuthKind.RENEW_POLICY, CARD_ID, 3, 0, 0, signature=bytes(64),
                             policy=(NEW_START, NEW_END), covers=NEW_COVERS)  # fmt: skip
    assert fmt.Authorisation.parse(auth.encode()) == auth
    for bad in (
        dataclasses.replace(auth, covers=()),
        dataclasses.replace(auth, policy=None),
        dataclasses.replace(auth, covers=tuple(reversed(NEW_COVERS))),
        dataclasses.replace(auth, kind=fmt.AuthKind.TOP_UP),  # only RENEW_POLICY carries them
    ):
        with pytest.raises(ValueError):
            bad.encode()
    top_up = fmt.Authorisation(fmt.AuthKind.TOP_UP, CARD_ID, 3, 1, 5, signature=bytes(64))
    assert fmt.Authorisation.parse(top_up.encode()) == top_up
    [(_, inner)] = split_tlvs(top_up.body(), "body")
    grafted = tlv(0xA0, b"") + tlv(0x71, inner + tlv(0x85, b"2026112320281031")) + tlv(0x5F37, bytes(64))
    with pytest.raises(ValueError):  # a period grafted onto a TOP_UP is refused
        fmt.Authorisation.parse(grafted)
    status = fmt.CardStatus.parse(fmt.CardStatus(
        lifecycle=fmt.Lifecycle.ACTIVATED, card_id=CARD_ID, counter=0, usable=1, free=1, max_count=1,
        max_amount=1, since_sync_count=0, since_sync_amount=0, synced_counter=0, log_capacity=24,
        policy_start=None, policy_end=None, object_lengths=(0, 0, 0, 0), key_generated=True, auth_serial=4,
        renewal_open=4,
    ).encode())  # fmt: skip
    assert status.renewal_open == 4
