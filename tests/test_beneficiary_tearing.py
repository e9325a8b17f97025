"""Tearing: the card pulled at EVERY persistent write of a DEBIT and of a whole personalisation.

A DEBIT is one journal transaction: after any tear the card holds the debit or not, and the terminal's
retry with the same nonce completes it exactly once. A torn personalisation leaves a card the verifier
refuses until the station wipes and restarts it (or the tear came after activation committed).
"""

from __future__ import annotations

import random
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from cardsvc.beneficiary import protocol as fmt
from cardsvc.beneficiary.session import BeneficiarySession
from cardsvc.beneficiary.verify import CardRefusedError, RefusalReason, verify_card
from cardsvc.card.inprocess import InProcessConnection
from cardsvc.formats.transaction import RecordType
from hardware_sims.card.cardos import SimulatedCard
from hardware_sims.card.errors import CardTorn
from hardware_sims.card.faults import FaultInjector
from tests.fixtures.beneficiary import (
    CARD_ID,
    CARD_NOW,
    COVER,
    SCHEME_HEALTH,
    BeneficiaryWorld,
    household_profile,
    personalise,
)

NONCE = bytes(range(16))
AMOUNT = 12_345


def _card(world: BeneficiaryWorld, template: str | None, dest: Path) -> tuple[SimulatedCard, FaultInjector]:
    if template is None:
        dest.mkdir()
    else:
        shutil.copytree(world.templates[template], dest)
    faults = FaultInjector()
    return world.new_card(dest, faults=faults, rng=random.Random(77)), faults


def _pos(world: BeneficiaryWorld, card: SimulatedCard) -> BeneficiarySession:
    s = BeneficiarySession(InProcessConnection(card))
    s.terminal_authenticate(world.pos.chain, world.pos.holder.signer, CARD_ID)
    s.read_public()
    return s


def _debit(s: BeneficiarySession) -> None:
    s.debit(RecordType.CASH, scheme_id=SCHEME_HEALTH, amount=AMOUNT, time=1, operator_id=2, facility_id=3,
            member_index=0, nonce=NONCE)  # fmt: skip


def _count_writes(card: SimulatedCard, faults: FaultInjector, action: Callable[[], None]) -> int:
    faults.reset_counters()
    action()
    assert faults.writes > 0
    return faults.writes


@pytest.mark.parametrize("torn_write", [False, True], ids=["lost-write", "half-write"])
def test_debit_torn_at_every_write_is_one_debit_or_none(
    beneficiary_world: BeneficiaryWorld, tmp_path: Path, torn_write: bool
) -> None:
    w = beneficiary_world
    card, faults = _card(w, "activated", tmp_path / "count")
    s = _pos(w, card)
    total = _count_writes(card, faults, lambda: _debit(s))
    outcomes = set()
    for n in range(1, total + 1):
        card, faults = _card(w, "activated", tmp_path / f"run{n}")
        s = _pos(w, card)
        faults.arm(after_writes=n, torn_write=torn_write)
        with pytest.raises(CardTorn):
            _debit(s)
        card.power_on()
        s = _pos(w, card)
        status = s.status()
        assert status.counter in (0, 1)
        assert status.wallet(SCHEME_HEALTH).balance == COVER - AMOUNT * status.counter
        assert len(s.read_log(1)) == status.counter
        outcomes.add(status.counter)
        _debit(s)  # the terminal completes its journal: same nonce, never a second debit
        status = s.status()
        assert (status.counter, status.wallet(SCHEME_HEALTH).balance) == (1, COVER - AMOUNT)
    assert outcomes == {0, 1}  # both sides of the commit point were hit


def _personalise_and_activate(world: BeneficiaryWorld, card: SimulatedCard, cert_pair: list[object],
                              tmp: Path) -> None:  # fmt: skip
    s = BeneficiarySession(InProcessConnection(card))
    point = personalise(world, s, household_profile())
    if not cert_pair:  # the FKO card signs once; every run generates the same key (seeded card RNG)
        _, officer = world.officer_session(tmp)
        cert_pair.append(officer.activate_card(world.card_body(point)))
    s.put_certificate(cert_pair[0], world.fko_certificate)  # type: ignore[arg-type]


def _verify(world: BeneficiaryWorld, card: SimulatedCard) -> None:
    verify_card(
        InProcessConnection(card),
        anchor=world.anchor,
        district_certificates=world.district_certificates,
        revocations=None,
        terminal_chain=world.pos.chain,
        terminal_signer=world.pos.holder.signer,
        now=CARD_NOW,
        rng=random.Random(1).randbytes,
    )


def test_personalisation_torn_at_every_write_is_refused_until_redone(
    beneficiary_world: BeneficiaryWorld, tmp_path: Path
) -> None:
    w = beneficiary_world
    certs: list[object] = []
    card, faults = _card(w, None, tmp_path / "count")
    total = _count_writes(card, faults, lambda: _personalise_and_activate(w, card, certs, tmp_path))
    completed = refused = 0
    for n in range(1, total + 1):
        card, faults = _card(w, None, tmp_path / f"run{n}")
        faults.arm(after_writes=n, torn_write=n % 2 == 0)
        with pytest.raises(CardTorn):
            _personalise_and_activate(w, card, certs, tmp_path)
        card.power_on()
        try:
            _verify(w, card)
            completed += 1  # torn after activation committed: a whole card
            continue
        except CardRefusedError as exc:
            assert exc.reason is RefusalReason.NOT_ACTIVATED
            refused += 1
        s = BeneficiarySession(InProcessConnection(card))
        s.terminal_authenticate(w.enrol.chain, w.enrol.holder.signer, CARD_ID)
        if n % 3:  # the station wipes and restarts the same card
            s.wipe()
            assert s.status().lifecycle is fmt.Lifecycle.BLANK
            card.rng = random.Random(77)  # same key as the signed certificate
            _personalise_and_activate(w, card, certs, tmp_path)
        else:  # the station completes the same card: keep a key already made, rewrite, activate
            point = s.public_key() if s.status().key_generated else s.generate_key()
            s.write_profile(household_profile())
            s.write_templates(w.stored_templates())
            cert = certs[0] if point == certs[0].public_point else _activation(w, point, tmp_path)  # type: ignore[attr-defined]
            s.put_certificate(cert, w.fko_certificate)  # type: ignore[arg-type]
        _verify(w, card)
    assert refused > 0 and completed > 0


def _activation(world: BeneficiaryWorld, point: bytes, tmp: Path) -> object:
    _, officer = world.officer_session(tmp)
    return officer.activate_card(world.card_body(point))
