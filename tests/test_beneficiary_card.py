"""Beneficiary card, in-process: personalisation, activation with a real officer card, offline verification
and every refusal a clerk must be told, debits, the log, offline limits and central authorisations.

The card is the simulated card OS with the beneficiary application; the FKO card is the officer application
(PIN + match-on-card). Fixtures (tests/fixtures/beneficiary.py) personalise once per session and copy the
card's state directory for each test.
"""

from __future__ import annotations

import itertools
import random
import shutil
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cardsvc.beneficiary import protocol as fmt
from cardsvc.beneficiary.errors import BalanceError, OfflineLimitError
from cardsvc.beneficiary.session import BeneficiarySession, sign_authorisation
from cardsvc.beneficiary.verify import (
    CardRefusedError,
    RefusalReason,
    VerifiedCard,
    verify_card,
    verify_member,
)
from cardsvc.bio.matcher import Matcher
from cardsvc.card.errors import (
    ConditionsNotSatisfiedError,
    IncorrectDataError,
    NotEnoughMemoryError,
    ReferenceNotFoundError,
    SecurityStatusError,
)
from cardsvc.card.inprocess import InProcessConnection
from cardsvc.formats.profile import StoredPhoto, content_digest
from cardsvc.formats.transaction import RecordType, TransactionRecord
from cardsvc.pki.cvc import CvCertificate, issue_certificate
from cardsvc.pki.revocation import (
    RevocationEntry,
    RevocationReason,
    RevocationStore,
    SubjectKind,
    build_revocation_list,
)
from cardsvc.pki.rights import Right, Role
from cardsvc.pki.signer import SoftwareSigner
from hardware_sims.card.cardos import SimulatedCard
from tests.fixtures.beneficiary import (
    CARD_ID,
    CARD_NOW,
    COVER,
    SCHEME_HEALTH,
    BeneficiaryCard,
    BeneficiaryWorld,
    activate,
    household_profile,
    personalise,
)

T = int(CARD_NOW.timestamp())
_NONCES = (i.to_bytes(16, "big") for i in itertools.count(1))


def verify(c: BeneficiaryCard, *, now: datetime = CARD_NOW, revocations: RevocationStore | None = None,
           session: BeneficiarySession | None = None) -> tuple[BeneficiarySession, VerifiedCard]:  # fmt: skip
    w = c.world
    return verify_card(
        session or InProcessConnection(c.card),
        anchor=w.anchor,
        district_certificates=w.district_certificates,
        revocations=revocations,
        terminal_chain=w.pos.chain,
        terminal_signer=w.pos.holder.signer,
        now=now,
        rng=random.Random(4).randbytes,
    )


def refused(c: BeneficiaryCard, **kwargs: object) -> RefusalReason:
    with pytest.raises(CardRefusedError) as info:
        verify(c, **kwargs)  # type: ignore[arg-type]
    assert info.value.clerk_message  # every reason has a screen text
    return info.value.reason


# ------------------------------------------------------------------------------------------ verification
def test_activated_card_verifies_within_the_pos_budget(activated_card: BeneficiaryCard) -> None:
    session = BeneficiarySession(InProcessConnection(activated_card.card))
    _, card = verify(activated_card, session=session)
    assert card.card_id == CARD_ID
    assert [m.name for m in card.members][:2] == ["Ramesh Kumar", "Sunita Devi"]
    assert card.status.wallet(SCHEME_HEALTH).balance == COVER
    assert card.counter == 0
    assert session.counter.apdus <= 20
    assert session.counter.received <= 4096


def test_card_commits_to_profile_and_templates(activated_card: BeneficiaryCard) -> None:
    s = activated_card.pos_session()
    profile, raw_profile = s.read_profile()
    _, raw_templates = s.read_templates()
    att = s.internal_authenticate(bytes(16), CARD_ID, s.read_public().card_certificate.public_point)  # type: ignore[union-attr]
    assert att.hashes.digest() == content_digest(raw_profile, raw_templates)
    assert profile == household_profile()


def test_blank_and_unactivated_cards_are_refused(
    unactivated_card: BeneficiaryCard, make_beneficiary_card: object
) -> None:
    assert refused(unactivated_card) is RefusalReason.NOT_ACTIVATED
    blank = make_beneficiary_card("blank")  # type: ignore[operator]
    assert refused(blank) is RefusalReason.NOT_ACTIVATED


def test_card_without_the_application_is_refused(
    sim_card: SimulatedCard, beneficiary_world: BeneficiaryWorld
) -> None:
    w = beneficiary_world
    conn = InProcessConnection(sim_card)
    with pytest.raises(CardRefusedError) as info:
        verify_card(
            conn,
            anchor=w.anchor,
            district_certificates=w.district_certificates,
            revocations=None,
            terminal_chain=w.pos.chain,
            terminal_signer=w.pos.holder.signer,
            now=CARD_NOW,
        )
    assert info.value.reason is RefusalReason.NO_APPLICATION


def test_cloned_card_fails_the_chip_check(
    activated_card: BeneficiaryCard, make_beneficiary_card: object
) -> None:
    """Every file copied byte for byte onto another chip: only the key differs, and the challenge fails."""
    clone = make_beneficiary_card("blank", rng=random.Random(99))  # type: ignore[operator]
    s = clone.session()
    s.terminal_authenticate(clone.world.enrol.chain, clone.world.enrol.holder.signer, CARD_ID)
    s.generate_key()
    clone.card.power_off()
    for obj in activated_card.state.glob("objects/*"):
        if not obj.name.startswith("key."):
            shutil.copy(obj, clone.state / "objects" / obj.name)
    clone.card.power_on()
    assert clone.session().status().lifecycle is fmt.Lifecycle.ACTIVATED  # looks genuine
    assert refused(clone) is RefusalReason.CLONE_SUSPECTED


def _tamper(c: BeneficiaryCard, old: bytes, new: bytes) -> None:
    c.card.power_off()
    [path] = [p for p in (c.state / "objects").glob("bin.*") if old in p.read_bytes()]
    path.write_bytes(path.read_bytes().replace(old, new))
    c.card.power_on()


def test_tampered_profile_is_refused(activated_card: BeneficiaryCard) -> None:
    _tamper(activated_card, b"Rampur", b"Rampir")
    assert refused(activated_card) is RefusalReason.PROFILE_TAMPERED


def test_tampered_templates_fail_the_fingerprint_step(activated_card: BeneficiaryCard) -> None:
    session, card = verify(activated_card)
    compact = activated_card.world.stored_templates()[0].compact
    _tamper(activated_card, compact[:9], bytes(9))
    session, card = verify(activated_card)
    with pytest.raises(CardRefusedError) as info:
        verify_member(session, card, 0, activated_card.world.probe(0), Matcher())
    assert info.value.reason is RefusalReason.PROFILE_TAMPERED


def test_policy_period(activated_card: BeneficiaryCard) -> None:
    assert refused(activated_card, now=datetime(2027, 11, 1, tzinfo=UTC)) is RefusalReason.POLICY_EXPIRED
    assert refused(activated_card, now=datetime(2026, 10, 31, tzinfo=UTC)) is RefusalReason.POLICY_NOT_STARTED
    verify(activated_card, now=datetime(2027, 10, 31, 23, 59, tzinfo=UTC))


def _store(w: BeneficiaryWorld, subject: str, kind: SubjectKind, at: datetime) -> RevocationStore:
    store = RevocationStore(anchor=w.anchor)
    rl = build_revocation_list(
        w.pki.root.signer, issuer=w.pki.root.chr, version=1, issued_at=CARD_NOW,
        entries=[RevocationEntry(subject, kind, at, RevocationReason.KEY_COMPROMISE)],
    )  # fmt: skip
    store.offer(rl, now=CARD_NOW)
    return store


@pytest.mark.parametrize(
    ("subject", "kind", "reason"),
    [
        (CARD_ID, SubjectKind.CARD, RefusalReason.CARD_REVOKED),
        ("INFKO-PAT-0099", SubjectKind.OFFICER, RefusalReason.OFFICER_REVOKED),
        ("INDKMA-PATNA1", SubjectKind.DISTRICT, RefusalReason.DISTRICT_REVOKED),
    ],
)
def test_revocations_before_and_after(
    activated_card: BeneficiaryCard, subject: str, kind: SubjectKind, reason: RefusalReason
) -> None:
    w = activated_card.world
    # revoked before the card was activated (for issuers) / before now (for the card): refused
    # (an issuer signed the child on its effective date: FKO certificate 2026-01-01, card 2026-11-01)
    early = {
        SubjectKind.CARD: CARD_NOW - timedelta(hours=1),
        SubjectKind.OFFICER: datetime(2026, 10, 1, tzinfo=UTC),
        SubjectKind.DISTRICT: datetime(2025, 12, 1, tzinfo=UTC),
    }[kind]
    assert refused(activated_card, revocations=_store(w, subject, kind, early)) is reason
    # revoked later: an issuer's earlier signature stands, the card is fine until its revocation time
    late = CARD_NOW + timedelta(hours=1) if kind is SubjectKind.CARD else datetime(2026, 11, 2, tzinfo=UTC)
    verify(activated_card, revocations=_store(w, subject, kind, late))


def test_reader_without_terminal_key_reads_only_the_public_part(activated_card: BeneficiaryCard) -> None:
    s = activated_card.session()
    public = s.read_public()
    assert public.card_certificate is not None and public.status.lifecycle is fmt.Lifecycle.ACTIVATED
    with pytest.raises(SecurityStatusError):
        s.read_templates()
    with pytest.raises(SecurityStatusError):
        s.read_profile()
    with pytest.raises(SecurityStatusError):
        s.read_log()


def test_terminal_without_valid_certificate_is_refused(
    activated_card: BeneficiaryCard, beneficiary_world: BeneficiaryWorld
) -> None:
    w = beneficiary_world
    s = activated_card.session()
    # the POS terminal's certificates, but a key that is not the terminal's: templates stay closed
    with pytest.raises(SecurityStatusError):
        s.terminal_authenticate(w.pos.chain, SoftwareSigner.generate(), CARD_ID)
    with pytest.raises(SecurityStatusError):
        s.read_templates()


def test_verify_member_matches_the_right_member(activated_card: BeneficiaryCard) -> None:
    session, card = verify(activated_card)
    matcher = Matcher()
    w = activated_card.world
    assert verify_member(session, card, 1, w.probe(1, 2), matcher).matched
    assert verify_member(session, card, 1, w.probe(1, 7), matcher).matched  # either finger
    assert not verify_member(session, card, 1, w.probe(3, 2), matcher).matched  # another member's finger


# ------------------------------------------------------------------------------------------ debits
def _debit(s: BeneficiarySession, rt: RecordType, amount: int, *, reference: int = 0,
           nonce: bytes | None = None, scheme: int = SCHEME_HEALTH) -> TransactionRecord:  # fmt: skip
    return s.debit(rt, scheme_id=scheme, amount=amount, time=T, operator_id=42, facility_id=7,
                   reference=reference, member_index=1, nonce=nonce or next(_NONCES))  # fmt: skip


def test_debits_are_exact_after_many_mixed_transactions(make_beneficiary_card: object) -> None:
    c = make_beneficiary_card("activated")  # type: ignore[operator]
    s = c.pos_session()
    rng = random.Random(5)
    balance, records = COVER, []
    open_blocks: dict[int, int] = {}
    for _ in range(40):
        choice = rng.choice(["block", "settle", "release", "cash", "pol"])
        if choice == "block" and len(open_blocks) < 4:
            amount = rng.randint(1, 20_000)
            r = _debit(s, RecordType.BLOCK, amount, reference=rng.randint(1, 999))
            open_blocks[r.counter] = amount
            balance -= amount
        elif choice in ("settle", "release") and open_blocks:
            counter = rng.choice(sorted(open_blocks))
            held = open_blocks.pop(counter)
            amount = rng.randint(0, held + 500) if choice == "settle" else 0
            rt = RecordType.SETTLE if choice == "settle" else RecordType.RELEASE
            r = _debit(s, rt, amount, reference=counter)
            balance += held - amount
        elif choice == "cash":
            amount = rng.randint(1, 5_000)
            r = _debit(s, RecordType.CASH, amount)
            balance -= amount
        else:
            r = _debit(s, RecordType.PROOF_OF_LIFE, 0)
        records.append(r)
        if s.status().since_sync_count >= 15:  # keep under the offline limit: central acknowledges
            s.acknowledge_sync(_ack(c.world, r.counter, serial=len(records)))
    assert records[-1].balance_after == balance
    status = s.status()
    assert status.wallet(SCHEME_HEALTH).balance == balance
    assert status.wallet(SCHEME_HEALTH).held == sum(open_blocks.values())
    # chained, ordered, and each balance follows the documented rule
    for prev, rec in itertools.pairwise(records):
        assert rec.counter == prev.counter + 1 and rec.prev_hash == prev.link()
    log = s.read_log(status.counter - status.log_capacity + 1)
    assert [r.encode() for r in log] == [r.encode() for r in records[-status.log_capacity :]]


def _ack(w: BeneficiaryWorld, counter: int, serial: int) -> fmt.Authorisation:
    auth = fmt.Authorisation(fmt.AuthKind.SYNC_ACK, CARD_ID, serial, 0, counter)
    return sign_authorisation(w.pki.root.signer, auth)


def test_refusals_change_nothing(activated_card: BeneficiaryCard) -> None:
    s = activated_card.pos_session()
    with pytest.raises(BalanceError):
        _debit(s, RecordType.CASH, COVER + 1)
    with pytest.raises(ReferenceNotFoundError):
        _debit(s, RecordType.SETTLE, 100, reference=77)
    with pytest.raises(ReferenceNotFoundError):
        _debit(s, RecordType.CASH, 100, scheme=9)
    assert s.status().counter == 0 and s.status().wallet(SCHEME_HEALTH).balance == COVER


def test_debit_needs_the_debit_right(activated_card: BeneficiaryCard) -> None:
    s = activated_card.session()
    with pytest.raises(SecurityStatusError):
        _debit(s, RecordType.CASH, 100)
    enrol = activated_card.world.enrol  # an enrolment station holds no DEBIT right
    s.terminal_authenticate(enrol.chain, enrol.holder.signer, CARD_ID)
    with pytest.raises(SecurityStatusError):
        _debit(s, RecordType.CASH, 100)


def test_replayed_nonce_returns_the_same_record(activated_card: BeneficiaryCard) -> None:
    s = activated_card.pos_session()
    first = _debit(s, RecordType.CASH, 1000, nonce=b"N" * 16)
    again = _debit(s, RecordType.CASH, 1000, nonce=b"N" * 16)
    assert again.encode() == first.encode()
    assert s.status().wallet(SCHEME_HEALTH).balance == COVER - 1000


def test_offline_limits_and_central_acknowledgement(make_beneficiary_card: object) -> None:
    c = make_beneficiary_card("activated")  # type: ignore[operator]
    s = c.pos_session()
    for _ in range(20):
        last = _debit(s, RecordType.CASH, 10)
    with pytest.raises(OfflineLimitError):
        _debit(s, RecordType.CASH, 10)
    _debit(s, RecordType.PROOF_OF_LIFE, 0)  # no value moves: allowed
    assert (s.offline_limits().debits_left, s.offline_limits().amount_left) == (0, 2_000_000 - 200)
    ack = _ack(c.world, last.counter - 5, serial=1)
    s.acknowledge_sync(ack)
    assert s.status().since_sync_count == 5
    with pytest.raises(ConditionsNotSatisfiedError):  # the same acknowledgement again
        s.acknowledge_sync(ack)
    forged = sign_authorisation(c.world.pos.holder.signer, _ack(c.world, last.counter, serial=2))
    with pytest.raises(SecurityStatusError):
        s.acknowledge_sync(forged)
    district = sign_authorisation(c.world.pki.district.signer, _ack(c.world, last.counter, serial=2),
                                  c.world.pki.district.cert)  # fmt: skip
    s.acknowledge_sync(district)
    assert s.status().since_sync_count == 0
    _debit(s, RecordType.CASH, 10)


def test_top_up_needs_a_central_authorisation(activated_card: BeneficiaryCard) -> None:
    w = activated_card.world
    s = activated_card.session()
    operator = w.pki.issue(
        w.pki.district, "INTRM-POS-TOPUP", Role.POS_TERMINAL, rights=Right.DEBIT | Right.TOP_UP
    )
    s.terminal_authenticate([w.pki.district.cert, operator.cert], operator.signer, CARD_ID)
    s.read_public()
    auth = sign_authorisation(w.pki.root.signer, fmt.Authorisation(fmt.AuthKind.TOP_UP, CARD_ID, 1, 1, 5000))
    with pytest.raises(IncorrectDataError):
        s.debit(RecordType.TOP_UP, scheme_id=1, amount=5000, time=T, operator_id=1, facility_id=1)
    r = s.debit(RecordType.TOP_UP, scheme_id=1, amount=5000, time=T, operator_id=1, facility_id=1,
                authorisation=auth)  # fmt: skip
    assert r.balance_after == COVER + 5000
    with pytest.raises(ConditionsNotSatisfiedError):  # replayed authorisation
        s.debit(RecordType.TOP_UP, scheme_id=1, amount=5000, time=T, operator_id=1, facility_id=1,
                authorisation=auth)  # fmt: skip


def test_superseded_card_is_refused(activated_card: BeneficiaryCard) -> None:
    s = activated_card.pos_session()
    s.authorise(sign_authorisation(activated_card.world.pki.root.signer,
                                   fmt.Authorisation(fmt.AuthKind.SUPERSEDE, CARD_ID, 1, 0, 0)))  # fmt: skip
    with pytest.raises(ConditionsNotSatisfiedError):
        _debit(s, RecordType.CASH, 10)
    assert refused(activated_card) is RefusalReason.CARD_BLOCKED


# ------------------------------------------------------------------------------------------ personalisation
def test_activation_checks(unactivated_card: BeneficiaryCard, beneficiary_world: BeneficiaryWorld,
                           tmp_path: Path) -> None:  # fmt: skip
    w = beneficiary_world
    s = unactivated_card.session()
    s.terminal_authenticate(w.enrol.chain, w.enrol.holder.signer, CARD_ID)
    foreign = w.pki.card.cert  # a BENEFICIARY_CARD certificate for another key
    with pytest.raises(IncorrectDataError):
        s.put_certificate(foreign, w.fko_certificate)
    assert s.status().lifecycle is fmt.Lifecycle.PERSONALISING
    point = s.generate_key()  # a new key during personalisation is allowed; the old certificate is void
    assert s.internal_authenticate(bytes(8), CARD_ID, point).lifecycle is fmt.Lifecycle.PERSONALISING
    assert refused(unactivated_card) is RefusalReason.NOT_ACTIVATED  # (a new power session)
    s = unactivated_card.session()
    s.terminal_authenticate(w.enrol.chain, w.enrol.holder.signer, CARD_ID)
    activate(w, s, point, tmp_path)
    verify(unactivated_card)


def test_personalisation_needs_enrol_and_wipe_restarts(
    unactivated_card: BeneficiaryCard, tmp_path: Path
) -> None:
    w = unactivated_card.world
    s = unactivated_card.session()
    with pytest.raises(SecurityStatusError):
        s.write_profile(household_profile())
    s.terminal_authenticate(w.enrol.chain, w.enrol.holder.signer, CARD_ID)
    s.wipe()
    assert s.status().lifecycle is fmt.Lifecycle.BLANK and not s.status().key_generated
    point = personalise(w, s, household_profile())
    activate(w, s, point, tmp_path)
    verify(unactivated_card)
    with pytest.raises(ConditionsNotSatisfiedError):  # no wipe, no rewrite once activated
        s.wipe()


def test_whole_household_fits_and_photos_fill_the_card(
    unactivated_card: BeneficiaryCard, tmp_path: Path
) -> None:
    w = unactivated_card.world
    s = unactivated_card.session()
    s.terminal_authenticate(w.enrol.chain, w.enrol.holder.signer, CARD_ID)
    before = s.status()
    assert before.object_lengths[2] > 1000  # 10 templates stored
    with pytest.raises(NotEnoughMemoryError):
        s.write_photos([StoredPhoto(m, bytes(3000)) for m in range(5)])  # 15 KB of photos do not fit
    s.write_photos([StoredPhoto(m, bytes([m]) * 1500) for m in range(5)])  # 7.5 KB do
    activate(w, s, s.generate_key(), tmp_path)
    assert {p.member_index for p in s.read_photos()} == set(range(5))
    verify(unactivated_card)


def test_renewal_sets_the_balance_with_a_district_authorisation(activated_card: BeneficiaryCard) -> None:
    w = activated_card.world
    s = activated_card.session()
    station = w.pki.issue(
        w.pki.district, "INTRM-ENR-RENEW", Role.POS_TERMINAL, rights=Right.DEBIT | Right.RENEW
    )
    s.terminal_authenticate([w.pki.district.cert, station.cert], station.signer, CARD_ID)
    s.read_public()
    _debit(s, RecordType.CASH, 1000)
    auth = fmt.Authorisation(fmt.AuthKind.RENEWAL, CARD_ID, 1, SCHEME_HEALTH, COVER)
    signed = sign_authorisation(w.pki.district.signer, auth, w.pki.district.cert)
    r = s.debit(
        RecordType.RENEWAL, scheme_id=SCHEME_HEALTH, amount=COVER, time=T, operator_id=1, facility_id=1,
        authorisation=signed,
    )  # fmt: skip
    assert (r.counter, r.balance_after) == (2, COVER)
    top_up = fmt.Authorisation(fmt.AuthKind.TOP_UP, CARD_ID, 2, 1, 5)
    wrong = sign_authorisation(w.pki.district.signer, top_up, w.pki.district.cert)
    with pytest.raises(IncorrectDataError):  # a TOP_UP authorisation is no RENEWAL
        s.debit(RecordType.RENEWAL, scheme_id=SCHEME_HEALTH, amount=5, time=T, operator_id=1, facility_id=1,
                authorisation=wrong)  # fmt: skip
    with pytest.raises(IncorrectDataError):  # nor a SPLIT (a split's lowering needs a SPLIT authorisation)
        s.debit(RecordType.SPLIT, scheme_id=SCHEME_HEALTH, amount=5, time=T, operator_id=1, facility_id=1,
                authorisation=wrong)  # fmt: skip
    assert s.status().wallet(SCHEME_HEALTH).balance == COVER


def test_pos_recovers_its_journal_from_the_log_after_a_crash(activated_card: BeneficiaryCard) -> None:
    """The POS saw counter N at verification, sent DEBIT and crashed before reading the answer."""
    s = activated_card.pos_session()
    seen = s.status().counter
    sent = _debit(s, RecordType.BLOCK, 40_000, reference=501)
    s2 = activated_card.pos_session()  # after the restart: a new power session
    found = [r for r in s2.read_log(seen + 1) if r.reference == 501 and r.amount == 40_000]
    assert [r.encode() for r in found] == [sent.encode()]


def test_only_recent_nonces_are_remembered(activated_card: BeneficiaryCard) -> None:
    """Nonce memory is 8 deep: a POS that waits longer must find its record in the log (docs)."""
    s = activated_card.pos_session()
    first = _debit(s, RecordType.CASH, 10, nonce=b"F" * 16)
    for _ in range(fmt.NONCE_MEMORY - 1):
        _debit(s, RecordType.PROOF_OF_LIFE, 0)
    assert _debit(s, RecordType.CASH, 10, nonce=b"F" * 16).counter == first.counter


def test_short_apdu_card_personalises_and_verifies(
    make_beneficiary_card: Callable[..., BeneficiaryCard], tmp_path: Path
) -> None:
    """A card taking only short APDUs (255-byte commands, 256-byte answers): objects go in chunks."""
    c = make_beneficiary_card("blank", max_command_apdu=261, max_response_apdu=258)
    s = c.session()
    assert s.limits.max_response_data <= 256
    point = personalise(c.world, s, household_profile())
    activate(c.world, s, point, tmp_path)
    session = BeneficiarySession(InProcessConnection(c.card))
    _, card = verify(c, session=session)
    assert session.counter.apdus <= 20 and session.counter.received <= 4096
    assert verify_member(session, card, 4, c.world.probe(4, 7), Matcher()).matched


def test_activation_refuses_a_forged_officer_certificate(unactivated_card: BeneficiaryCard) -> None:
    """A self-made 'FKO' (right name, own key) signs the card: the card checks the chain to its root."""
    w = unactivated_card.world
    s = unactivated_card.session()
    s.terminal_authenticate(w.enrol.chain, w.enrol.holder.signer, CARD_ID)
    point = s.generate_key()
    fake = SoftwareSigner.generate()
    genuine = w.fko_certificate
    fko = issue_certificate(
        fake, car=w.pki.district.chr, chr=genuine.chr, public_point=fake.public_key(),
        role=Role.FIELD_KEY_OFFICER, rights=genuine.rights, effective=genuine.effective,
        expiry=genuine.expiry,
    )  # fmt: skip
    body = CvCertificate.parse_body(w.card_body(point))
    cert = body.with_signature(fake.sign(body.body))
    with pytest.raises(IncorrectDataError):
        s.put_certificate(cert, fko, w.pki.district.cert)
    assert s.status().lifecycle is fmt.Lifecycle.PERSONALISING
