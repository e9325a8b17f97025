"""Clerk sign-in in-process (fast): the facility operator card's chain, revocation, PIN and match-on-card
fingerprint, each refusal with its own reason and journalled; an FKO card is not a clerk's card."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cardsvc.card.inprocess import InProcessConnection
from cardsvc.pki.bundle import TrustBundle
from cardsvc.pki.revocation import RevocationEntry, RevocationReason, SubjectKind, build_revocation_list
from cardsvc.pki.rights import Right
from hardware_sims.card.apps.officer import OfficerApplication
from hardware_sims.card.cardos import SimulatedCard
from point_of_service.errors import SignInError
from point_of_service.journal import Journal
from point_of_service.reasons import Reason
from point_of_service.services.signin import Clerk, sign_in
from point_of_service.trust import TrustState
from tests.fixtures.beneficiary import CARD_NOW
from tests.fixtures.pos import OPERATOR_CHR, OPERATOR_FINGER, OPERATOR_PIN, POS_CARD_NOW, PosWorld, capture_of


def _sign_in(
    world: PosWorld,
    card: SimulatedCard,
    journal: Journal,
    trust: TrustState,
    *,
    pin: str = OPERATOR_PIN,
    seed: int = OPERATOR_FINGER,
    now: int = POS_CARD_NOW,
    required: Right = Right.READ_PROFILE,
) -> Clerk:
    return sign_in(
        InProcessConnection(card),
        pin=pin,
        capture=capture_of(seed, 2),
        anchor=world.pki.anchor,
        districts=trust.districts,
        now=now,
        journal=journal,
        revocations=trust.store,
        required=required,
        finger_attempts=2,
    )


def _refused(**kwargs: object) -> Reason:
    with pytest.raises(SignInError) as info:
        _sign_in(**kwargs)  # type: ignore[arg-type]
    assert info.value.message.next_step
    return info.value.reason


@pytest.fixture
def setup(pos_world: PosWorld, tmp_path: Path) -> tuple[PosWorld, SimulatedCard, Journal, TrustState]:
    journal = Journal(tmp_path / "j.sqlite")
    return pos_world, pos_world.officer_card(tmp_path / "op"), journal, pos_world.trust(journal)


def test_operator_signs_in_with_pin_and_finger(
    setup: tuple[PosWorld, SimulatedCard, Journal, TrustState],
) -> None:
    world, card, journal, trust = setup
    clerk = _sign_in(world, card, journal, trust)
    assert clerk.chr == OPERATOR_CHR and clerk.may(Right.DEBIT) and not clerk.may(Right.SUPERVISE_OVERRIDE)
    (event,) = journal.events(kind="signin")
    assert event.outcome == "ok" and event.operator == OPERATOR_CHR
    assert "PIN" not in str(event.detail) and OPERATOR_PIN not in str(event.detail)


def test_refusals(setup: tuple[PosWorld, SimulatedCard, Journal, TrustState], tmp_path: Path) -> None:
    world, card, journal, trust = setup
    kw = {"world": world, "card": card, "journal": journal, "trust": trust}
    assert _refused(**kw, pin="111111") is Reason.OPERATOR_WRONG_PIN
    assert _refused(**kw, seed=3) is Reason.OPERATOR_FINGER_MISMATCH
    assert _refused(**kw, required=Right.SUPERVISE_OVERRIDE) is Reason.MISSING_RIGHT
    assert _refused(**kw, now=int(datetime(2031, 2, 1, tzinfo=UTC).timestamp())) is Reason.OPERATOR_EXPIRED
    # the FKO's officer card is not a facility operator card
    fko_state = tmp_path / "fko"
    shutil.copytree(world.ben.officer_state, fko_state)
    fko = SimulatedCard(fko_state, applications=[OfficerApplication()], clock=lambda: CARD_NOW.timestamp())
    assert _refused(**{**kw, "card": fko}) is Reason.OPERATOR_WRONG_ROLE
    reasons = [e.reason for e in journal.events(kind="signin")]
    assert reasons[:2] == [Reason.OPERATOR_WRONG_PIN.value, Reason.OPERATOR_FINGER_MISMATCH.value]


def test_revoked_operator_refused(setup: tuple[PosWorld, SimulatedCard, Journal, TrustState]) -> None:
    world, card, journal, trust = setup
    pki = world.pki
    at = datetime.fromtimestamp(POS_CARD_NOW - 86_400, UTC)
    rl = build_revocation_list(
        pki.district.signer,
        issuer=pki.district.chr,
        version=1,
        issued_at=at,
        entries=[RevocationEntry(OPERATOR_CHR, SubjectKind.OFFICER, at, RevocationReason.LOST)],
    )
    trust.apply_bundle(
        TrustBundle(pki.root.cert, {pki.district.chr: pki.district.cert}, [rl]),
        now=datetime.fromtimestamp(POS_CARD_NOW, UTC),
    )
    assert _refused(world=world, card=card, journal=journal, trust=trust) is Reason.OPERATOR_REVOKED


def test_supervisor_holds_the_override_right(pos_world: PosWorld, tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite")
    card = pos_world.officer_card(tmp_path / "sup", "supervisor")
    clerk = _sign_in(pos_world, card, journal, pos_world.trust(journal), required=Right.SUPERVISE_OVERRIDE)
    assert clerk.may(Right.SUPERVISE_OVERRIDE)
