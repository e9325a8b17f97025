"""The beneficiary card through the real PC/SC stack (pcscd + vpcd + pyscard): verification within the POS
budget, a debit in exclusive mode, and a card pulled mid-session reported as "no card"."""

from __future__ import annotations

import random
from typing import Any

import pytest

from cardsvc.beneficiary.session import BeneficiarySession
from cardsvc.beneficiary.verify import CardRefusedError, RefusalReason, verify_card, verify_member
from cardsvc.bio.matcher import Matcher
from cardsvc.card.pcsc import PcscConnection
from cardsvc.formats.transaction import RecordType
from tests.fixtures.beneficiary import CARD_NOW, COVER, SCHEME_HEALTH, BeneficiaryCard


def _verify(c: BeneficiaryCard, conn: Any) -> Any:
    w = c.world
    return verify_card(
        conn,
        anchor=w.anchor,
        district_certificates=w.district_certificates,
        revocations=w.pki.revocation_store(),
        terminal_chain=w.pos.chain,
        terminal_signer=w.pos.holder.signer,
        now=CARD_NOW,
        rng=random.Random(3).randbytes,
    )


def test_verify_debit_and_match_through_pcscd(served_beneficiary_card: tuple[BeneficiaryCard, Any]) -> None:
    c, served = served_beneficiary_card
    with PcscConnection(served.reader, exclusive=True) as conn:
        session = BeneficiarySession(conn)
        session, card = _verify(c, session)
        assert session.counter.apdus <= 20 and session.counter.received <= 4096
        assert verify_member(session, card, 2, c.world.probe(2), Matcher()).matched
        record = session.debit(
            RecordType.BLOCK, scheme_id=SCHEME_HEALTH, amount=25_000, time=1, operator_id=5, facility_id=6,
            reference=1234, member_index=2,
        )  # fmt: skip
        assert record.balance_after == COVER - 25_000 and record.counter == 1
        assert session.read_log(1) == [record]


def test_pulled_card_is_reported_as_no_card(served_beneficiary_card: tuple[BeneficiaryCard, Any]) -> None:
    c, served = served_beneficiary_card
    with PcscConnection(served.reader) as conn:
        session = BeneficiarySession(conn)
        served.remove()
        with pytest.raises(CardRefusedError) as info:
            _verify(c, session)
        assert info.value.reason is RefusalReason.NO_CARD
