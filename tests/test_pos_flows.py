"""POS flows on simulated cards in-process (fast): verification with every clerk reason, fingerprint
fallbacks, hospital and paypoint flows, offline limits, and 100 mixed transactions whose balances and
counters equal the card's own log and the journal. The PC/SC path is in tests/test_pos_pcsc.py."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from cardsvc.card.inprocess import InProcessConnection
from cardsvc.formats.transaction import RecordType, expected_balance
from cardsvc.pki.revocation import RevocationEntry, RevocationReason, SubjectKind, build_revocation_list
from hardware_sims.card.cardos import SimulatedCard
from point_of_service.errors import PosError, TransactionError, VerificationError
from point_of_service.journal import Journal
from point_of_service.reasons import Reason
from point_of_service.services import hospital, paypoint
from point_of_service.services.fallback import Fallback, Override, OverrideReason
from point_of_service.services.verification import CardVisit, override_member, verify_card, verify_member
from point_of_service.trust import TrustState
from tests.fixtures.beneficiary import CARD_ID, COVER, SCHEME_HEALTH, SCHEME_PENSION
from tests.fixtures.pos import POS_CARD_NOW, PosWorld, capture_of

NOW = POS_CARD_NOW


class Terminal:
    """One POS terminal's state for a test: journal, trust, identity, clerk, and a catalogue."""

    def __init__(self, world: PosWorld, tmp: Path) -> None:
        self.world = world
        self.journal = Journal(tmp / "journal.sqlite")
        self.trust: TrustState = world.trust(self.journal)
        self.identity = world.identity()
        self.clerk = world.clerk()
        self.rng = random.Random(7)
        from point_of_service.catalogue import Catalogue, Package

        pki = world.pki
        catalogue = Catalogue(
            1,
            pki.district.chr,
            NOW - 86_400,
            NOW - 86_400,
            (
                Package(301, "Normal delivery", 450_000, "obstetrics"),
                Package(112, "Cataract (one eye)", 700_000, "ophthalmology"),
                Package(55, "Fever, observation", 90_000, "general"),
            ),
        )
        at = datetime.fromtimestamp(NOW, UTC)
        self.trust.install_catalogue(catalogue.sign(pki.district.signer, [pki.district.cert]), now=at)

    def randbytes(self, n: int) -> bytes:
        return self.rng.randbytes(n)

    def verify(self, card: SimulatedCard | Any, now: int = NOW) -> CardVisit:
        conn = card if not isinstance(card, SimulatedCard) else InProcessConnection(card)
        return verify_card(
            conn,
            identity=self.identity,
            trust=self.trust,
            clerk=self.clerk,
            now=now,
            journal=self.journal,
            rng=self.randbytes,
        )

    def refused(self, card: SimulatedCard, now: int = NOW) -> Reason:
        with pytest.raises(VerificationError) as info:
            self.verify(card, now)
        assert info.value.message.problem, "every refusal has a clerk message"
        return info.value.reason

    def member(self, visit: CardVisit, member: int = 0, finger: int = 2, seed: int = 3, k: int = 1) -> bool:
        match = verify_member(
            visit,
            member=member,
            finger=finger,
            capture=capture_of(seed, k),
            clerk=self.clerk,
            now=NOW,
            journal=self.journal,
        )
        return match.matched

    def kw(self) -> dict[str, Any]:
        return {
            "journal": self.journal,
            "identity": self.identity,
            "clerk": self.clerk,
            "rng": self.randbytes,
        }


@pytest.fixture
def term(pos_world: PosWorld, tmp_path: Path) -> Iterator[Terminal]:
    t = Terminal(pos_world, tmp_path)
    yield t
    t.journal.close()


@pytest.fixture
def card(pos_world: PosWorld, tmp_path: Path) -> SimulatedCard:
    return pos_world.beneficiary_card(tmp_path / "card")


# ------------------------------------------------------------------------------------------ verification
def test_genuine_member_accepted_and_impostor_refused(term: Terminal, card: SimulatedCard) -> None:
    visit = term.verify(card)
    assert visit.card_chr == CARD_ID
    assert not term.member(visit, member=0, finger=2, seed=5), "member 1's finger is not member 0's"
    assert term.member(visit, member=0, finger=2, seed=3)
    kinds = [(e.kind, e.outcome) for e in term.journal.events()]
    assert kinds == [("verify-card", "ok"), ("verify-member", "refused"), ("verify-member", "ok")]


def test_unactivated_card_refused(term: Terminal, pos_world: PosWorld, tmp_path: Path) -> None:
    assert (
        term.refused(pos_world.beneficiary_card(tmp_path / "p", "personalised")) is Reason.CARD_NOT_ACTIVATED
    )
    (event,) = term.journal.events(kind="verify-card")
    assert event.outcome == "refused" and event.reason == Reason.CARD_NOT_ACTIVATED.value


def test_expired_and_future_policy_refused(term: Terminal, card: SimulatedCard) -> None:
    assert term.refused(card, now=int(datetime(2027, 11, 5, tzinfo=UTC).timestamp())) is Reason.POLICY_EXPIRED
    assert (
        term.refused(card, now=int(datetime(2026, 10, 5, tzinfo=UTC).timestamp()))
        is Reason.POLICY_NOT_STARTED
    )


@pytest.mark.parametrize("who", ["card", "fko"])
def test_revoked_card_or_fko_refused(term: Terminal, card: SimulatedCard, who: str) -> None:
    pki = term.world.pki
    fko = term.world.ben.fko_certificate
    subject, kind = (CARD_ID, SubjectKind.CARD) if who == "card" else (fko.chr, SubjectKind.OFFICER)
    revoked_at = datetime(2026, 10, 1, tzinfo=UTC)  # before the card's activation: the FKO's act is void
    rl = build_revocation_list(
        pki.district.signer,
        issuer=pki.district.chr,
        version=1,
        issued_at=revoked_at,
        entries=[RevocationEntry(subject, kind, revoked_at, RevocationReason.FRAUD)],
    )
    from cardsvc.pki.bundle import TrustBundle

    term.trust.apply_bundle(
        TrustBundle(pki.root.cert, {pki.district.chr: pki.district.cert}, [rl]),
        now=datetime.fromtimestamp(NOW, UTC),
    )
    expected = Reason.CARD_REVOKED if who == "card" else Reason.FKO_REVOKED
    assert term.refused(card) is expected
    # persisted: a restarted terminal still refuses
    term.trust = TrustState.load(term.journal, pki.anchor)
    assert term.refused(card) is expected


def test_card_blacklisted_by_central_register_refused(term: Terminal, card: SimulatedCard) -> None:
    term.trust.set_central_revocations({"cards": [{"id": f"{10000000001:016x}", "revoked_at": NOW - 60}]})
    assert term.refused(card) is Reason.CARD_REVOKED


def test_tampered_profile_refused(term: Terminal, card: SimulatedCard) -> None:
    card.power_off()
    [path] = [p for p in (card.state_dir / "objects").glob("bin.*") if b"Ramesh Kumar" in p.read_bytes()]
    path.write_bytes(path.read_bytes().replace(b"Ramesh Kumar", b"Rakesh Kumar"))
    assert term.refused(card) is Reason.PROFILE_TAMPERED


def test_cloned_card_refused(
    term: Terminal, card: SimulatedCard, pos_world: PosWorld, tmp_path: Path
) -> None:
    """Every file of the genuine card copied onto another chip (its own key): the challenge fails."""
    import shutil

    from cardsvc.beneficiary.session import BeneficiarySession

    clone = pos_world.ben.new_card(tmp_path / "clone", rng=random.Random(99))
    s = BeneficiarySession(InProcessConnection(clone))
    enrol = pos_world.ben.enrol
    s.terminal_authenticate(enrol.chain, enrol.holder.signer, CARD_ID)
    s.generate_key()
    clone.power_off()
    card.power_off()
    for obj in card.state_dir.glob("objects/*"):
        if not obj.name.startswith("key."):
            shutil.copy(obj, clone.state_dir / "objects" / obj.name)
    assert term.refused(clone) is Reason.CARD_NOT_GENUINE


# ------------------------------------------------------------------------------------------ fallbacks
def test_fallbacks_another_finger_then_member_then_override_all_journalled(
    term: Terminal, card: SimulatedCard, pos_world: PosWorld
) -> None:
    visit = term.verify(card)
    assert not term.member(visit, member=0, finger=2, seed=6)
    assert not term.member(visit, member=0, finger=2, seed=6)
    with pytest.raises(VerificationError) as info:
        term.member(visit, member=0, finger=2, seed=6)
    assert info.value.reason is Reason.FALLBACK_EXHAUSTED
    assert not term.member(visit, member=0, finger=7, seed=6)  # another finger
    assert not term.member(visit, member=1, finger=2, seed=6)  # another member
    with pytest.raises(PosError) as refused:
        override_member(
            visit,
            member=0,
            override=Override(term.clerk, OverrideReason.WORN_FINGERPRINTS, "labourer, worn ridges"),
            clerk=term.clerk,
            now=NOW,
            journal=term.journal,
        )
    assert refused.value.reason is Reason.OVERRIDE_NEEDS_SUPERVISOR
    supervisor = pos_world.clerk(supervisor=True)
    with pytest.raises(PosError) as short:
        override_member(
            visit,
            member=0,
            override=Override(supervisor, OverrideReason.WORN_FINGERPRINTS, "x"),
            clerk=term.clerk,
            now=NOW,
            journal=term.journal,
        )
    assert short.value.reason is Reason.OVERRIDE_NEEDS_REASON
    override_member(
        visit,
        member=0,
        override=Override(supervisor, OverrideReason.WORN_FINGERPRINTS, "manual labourer, ridges worn flat"),
        clerk=term.clerk,
        now=NOW,
        journal=term.journal,
    )
    outcome = paypoint.proof_of_life(visit, scheme_id=SCHEME_PENSION, now=NOW, **term.kw())
    assert outcome.record.record_type is RecordType.PROOF_OF_LIFE
    fallbacks = [e.fallback for e in term.journal.events(kind="fallback")]
    assert fallbacks == [Fallback.ANOTHER_FINGER, Fallback.ANOTHER_MEMBER, Fallback.OVERRIDE]
    (tx,) = term.journal.events(kind="transaction")
    assert tx.fallback == "override"


def test_no_transaction_without_a_verified_member(term: Terminal, card: SimulatedCard) -> None:
    visit = term.verify(card)
    with pytest.raises(PosError) as info:
        paypoint.disburse(visit, scheme_id=SCHEME_PENSION, amount=100, now=NOW, **term.kw())
    assert info.value.reason is Reason.FINGER_MISMATCH


# ------------------------------------------------------------------------------------------ flows
def test_hospital_admit_discharge_cancel(term: Terminal, card: SimulatedCard) -> None:
    visit = term.verify(card)
    assert term.member(visit)
    admitted = hospital.admit(visit, package_code=301, trust=term.trust, now=NOW, **term.kw())
    assert admitted.record.amount == 450_000 and admitted.record.balance_after == COVER - 450_000
    admission = admitted.record.counter
    settled = hospital.discharge(
        visit, admission=admission, final_amount=400_000, now=NOW + 86_400, **term.kw()
    )
    assert settled.record.balance_after == COVER - 400_000, "the unused 50,000 paise are released"
    assert term.journal.admission(visit.card_id, admission).status == "settled"  # type: ignore[union-attr]
    with pytest.raises(TransactionError) as again:
        hospital.discharge(visit, admission=admission, now=NOW + 86_400, **term.kw())
    assert again.value.reason is Reason.NO_OPEN_ADMISSION
    second = hospital.admit(visit, package_code=112, trust=term.trust, now=NOW + 90_000, **term.kw())
    cancelled = hospital.cancel(visit, admission=second.record.counter, now=NOW + 90_100, **term.kw())
    assert cancelled.record.balance_after == COVER - 400_000
    with pytest.raises(PosError) as unknown:
        hospital.admit(visit, package_code=999, trust=term.trust, now=NOW, **term.kw())
    assert unknown.value.reason is Reason.UNKNOWN_PACKAGE


def test_paypoint_disbursement_and_entitlement(term: Terminal, card: SimulatedCard) -> None:
    visit = term.verify(card)
    assert term.member(visit, member=1, finger=2, seed=5)
    paid = paypoint.disburse(visit, scheme_id=SCHEME_PENSION, amount=200_000, now=NOW, **term.kw())
    assert paid.record.balance_after == 300_000 and paid.record.member_index == 1
    with pytest.raises(TransactionError) as info:
        paypoint.disburse(visit, scheme_id=SCHEME_PENSION, amount=300_001, now=NOW, **term.kw())
    assert info.value.reason is Reason.ENTITLEMENT_EXCEEDED
    with pytest.raises(TransactionError) as scheme:
        paypoint.disburse(visit, scheme_id=9, amount=1, now=NOW, **term.kw())
    assert scheme.value.reason is Reason.SCHEME_NOT_ON_CARD


def test_offline_limit_on_the_card(term: Terminal, card: SimulatedCard) -> None:
    """Default limits: 20 debits or Rs 20,000 since the last acknowledged sync."""
    visit = term.verify(card)
    assert term.member(visit)
    for i in range(20):
        paypoint.disburse(visit, scheme_id=SCHEME_HEALTH, amount=1_000, now=NOW + i, **term.kw())
    with pytest.raises(TransactionError) as info:
        paypoint.disburse(visit, scheme_id=SCHEME_HEALTH, amount=1_000, now=NOW + 99, **term.kw())
    assert info.value.reason is Reason.OFFLINE_LIMIT_REACHED
    assert not term.journal.pending_intents(), "a refused debit leaves no pending intent"
    assert term.journal.card_offline_exposure(visit.card_id)[:2] == (20, 20_000)


def test_hundred_mixed_transactions_exact(term: Terminal, pos_world: PosWorld, tmp_path: Path) -> None:
    card = pos_world.beneficiary_card(tmp_path / "wide", "wide")
    visit = term.verify(card)
    assert term.member(visit)
    rng = random.Random(2026)
    balances = {SCHEME_HEALTH: COVER, SCHEME_PENSION: 500_000}
    held: dict[int, int] = {}
    for i in range(100):
        now = NOW + 60 * i
        choice = rng.choice(["admit", "close", "cash", "pol"])
        if choice == "close" and held:
            admission = rng.choice(sorted(held))
            if rng.random() < 0.5:
                out = hospital.cancel(visit, admission=admission, now=now, **term.kw())
                balances[SCHEME_HEALTH] += held.pop(admission)
            else:
                final = rng.randint(1, held[admission])
                out = hospital.discharge(visit, admission=admission, final_amount=final, now=now, **term.kw())
                balances[SCHEME_HEALTH] += held.pop(admission) - final
        elif choice in ("admit", "close") and len(held) < 8 and balances[SCHEME_HEALTH] >= 700_000:
            code = rng.choice([301, 112, 55])
            out = hospital.admit(visit, package_code=code, trust=term.trust, now=now, **term.kw())
            held[out.record.counter] = out.record.amount
            balances[SCHEME_HEALTH] -= out.record.amount
        elif choice == "cash" and balances[SCHEME_PENSION] >= 1_000:
            amount = rng.randint(1, min(20_000, balances[SCHEME_PENSION]))
            out = paypoint.disburse(visit, scheme_id=SCHEME_PENSION, amount=amount, now=now, **term.kw())
            balances[SCHEME_PENSION] -= amount
        else:
            out = paypoint.proof_of_life(visit, scheme_id=SCHEME_PENSION, now=now, **term.kw())
        assert out.record.counter == i + 1
        assert out.record.balance_after == balances[out.record.scheme_id]
    status = visit.session.status()
    assert status.counter == 100
    assert {w.scheme_id: w.balance for w in status.wallets} == balances
    assert {w.scheme_id: w.held for w in status.wallets}[SCHEME_HEALTH] == sum(held.values())
    # the journal holds exactly the card's records, chained, each balance following the format's rule
    journal = term.journal.records(visit.card_id)
    assert [r.counter for r in journal] == list(range(1, 101))
    card_log = visit.session.read_log(100 - 23, card_key=visit.card_key)
    assert [r.encode() for r in card_log] == [r.encode() for r in journal[-len(card_log) :]]
    running = {SCHEME_HEALTH: COVER, SCHEME_PENSION: 500_000}
    blocks: dict[int, int] = {}
    for prev, record in zip([None, *journal], journal, strict=False):
        if prev is not None:
            assert record.prev_hash == prev.link()
        after = expected_balance(record, running[record.scheme_id], blocks.get(record.reference))
        assert after == record.balance_after
        running[record.scheme_id] = after
        if record.record_type is RecordType.BLOCK:
            blocks[record.counter] = record.amount
    assert not term.journal.pending_intents()
    assert len(term.journal.admissions(visit.card_id, status="open")) == len(held)


@pytest.mark.parametrize("who", ["terminal-list", "terminal-central", "operator-central", "operator-list"])
def test_revoked_facility_serves_nobody(term: Terminal, card: SimulatedCard, who: str) -> None:
    from cardsvc.pki.bundle import TrustBundle
    from point_of_service.identity import reference_id

    pki = term.world.pki
    if who.endswith("central"):
        kind, number = (
            ("terminals", term.identity.terminal_id)
            if who.startswith("terminal")
            else ("operators", reference_id(term.clerk.chr))
        )
        term.trust.set_central_revocations({kind: [{"id": f"{number:016x}", "revoked_at": NOW - 3600}]})
    else:
        subject, kind_ = (
            (term.identity.chr, SubjectKind.TERMINAL)
            if who.startswith("terminal")
            else (term.clerk.chr, SubjectKind.OFFICER)
        )
        at = datetime.fromtimestamp(NOW - 3600, UTC)
        rl = build_revocation_list(
            pki.district.signer,
            issuer=pki.district.chr,
            version=1,
            issued_at=at,
            entries=[RevocationEntry(subject, kind_, at, RevocationReason.STOLEN)],
        )
        term.trust.apply_bundle(
            TrustBundle(pki.root.cert, {pki.district.chr: pki.district.cert}, [rl]),
            now=datetime.fromtimestamp(NOW, UTC),
        )
    with pytest.raises(VerificationError) as info:
        term.verify(card)
    assert info.value.reason is Reason.FACILITY_REVOKED and info.value.step == "facility"
