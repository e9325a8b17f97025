"""Central's balance replay of an admission open when a held renewal took effect (docs/central.md,
docs/card-layout.md "Renewal camps before the year starts"), on SQLite and PostgreSQL.

The card pays such an admission from the year it started in: its SETTLE or RELEASE, after the RENEWAL
records of a RENEW_POLICY central authorised, leaves the new year's balance as it is. The records here are
made the way the card makes them (tests/test_beneficiary_renewal_blocks.py checks the card itself); a card
that credits the rest of the old year's hold to the new wallet (the old rule) is flagged, and its claim held.
"""

from __future__ import annotations

from sqlalchemy import select

from cardsvc.beneficiary.protocol import Authorisation
from cardsvc.central.extensions import get_db
from cardsvc.central.models import Card
from cardsvc.central.services.authorise import CardKind, issue_card_authorisation
from cardsvc.central.services.publish import CentralKey
from cardsvc.central.services.reconcile import FlagKind
from cardsvc.central.services.settlement import compute_settlement
from cardsvc.central.testing import SimCard
from cardsvc.formats.batch import BatchKind
from cardsvc.formats.transaction import RecordType
from cardsvc.pki.signer import SoftwareSigner
from tests.test_central_reconcile import DAY, JAIPUR, World, world  # noqa: F401 (the fixture)

COVER = 3_000_000  # the camp's cover and the renewed year's
HELD = 1_000_000


def _renew_policy(w: World, card: SimCard, start: int) -> int:
    """Central authorises the next year (RENEW_POLICY); the serial the card's RENEWAL records answer."""
    with get_db(w.app).sessions() as session:
        issued = issue_card_authorisation(
            session, CentralKey(SoftwareSigner.generate(), "INROOT"), CardKind.RENEW_POLICY,
            f"{card.card_id:016x}", now=w.now, policy=(start, start + 365 * DAY),
        )  # fmt: skip
        session.commit()
    return Authorisation.parse(issued.wire).serial


def _year_with_open_admission(w: World, end: int, closing: RecordType, *, inflate: bool = False) -> SimCard:
    """A card admitted before its year's end, renewed (held, taking effect on the new year's first day),
    a new-year CASH, then the old admission closed. ``inflate``: the rest of the hold is credited to the
    new wallet, as a card of the old rule would."""
    card = w.card(policy=(end - 365 * DAY, end - 1))
    serial = _renew_policy(w, card, end)
    block = w.debit(card, RecordType.BLOCK, HELD, end - 5 * DAY, reference=301)
    w.debit(card, RecordType.RENEWAL, COVER, end + 3600, reference=serial)  # the held renewal takes effect
    w.debit(card, RecordType.CASH, 100_000, end + DAY)
    amount = 800_000 if closing is RecordType.SETTLE else 0
    honest = {} if inflate else {"balance_after": COVER - 100_000}
    w.debit(card, closing, amount, end + 2 * DAY, reference=block.counter, **honest)
    return card


def test_old_year_admissions_closed_in_the_new_year_raise_no_flag_and_are_paid(world: World) -> None:  # noqa: F811
    w = world
    end = (w.now - 20 * DAY) // DAY * DAY  # the first year's end (exclusive): the new year began then
    settled = _year_with_open_admission(w, end, RecordType.SETTLE)
    released = _year_with_open_admission(w, end, RecordType.RELEASE)
    inflated = _year_with_open_admission(w, end, RecordType.SETTLE, inflate=True)
    assert [r.balance_after for r in settled.log] == [COVER - HELD, COVER, COVER - 100_000, COVER - 100_000]
    assert released.log[-1].balance_after == COVER - 100_000
    assert inflated.log[-1].balance_after == COVER - 100_000 + HELD - 800_000  # 200,000 more than the cover
    w.upload(BatchKind.TRANSACTIONS, [i for c in (settled, released, inflated) for i in c.items()])

    report = w.reconcile()
    assert dict(report.flags) == {FlagKind.BALANCE_MISMATCH.value: 1}
    (flag,) = w.flags(FlagKind.BALANCE_MISMATCH)
    assert flag.card_id == f"{inflated.card_id:016x}"
    assert flag.details == {"counter": 4, "expected": COVER - 100_000, "reported": COVER + 100_000}
    with get_db(w.app).sessions() as session:  # the register moved to the renewed year
        card = session.execute(select(Card).where(Card.card_id == f"{settled.card_id:016x}")).scalar_one()
        assert (card.policy_start, card.cover_paise) == (end, COVER)
        claims = compute_settlement(session, JAIPUR, end, end + 30 * DAY)
    by_card = {c.card_id: c for c in claims.claims}
    honest = by_card[f"{settled.card_id:016x}"]
    assert (honest.amount_paise, honest.payable) == (800_000, True)
    assert by_card[f"{inflated.card_id:016x}"].payable is False
    assert claims.payable_paise == 800_000
    assert len(claims.claims) == 2  # a RELEASE claims nothing


def test_a_settle_over_the_old_years_hold_is_flagged(world: World) -> None:  # noqa: F811
    """The card refuses it (6986); records showing one did not come from an honest card."""
    w = world
    end = (w.now - 20 * DAY) // DAY * DAY
    card = w.card(policy=(end - 365 * DAY, end - 1))
    serial = _renew_policy(w, card, end)
    block = w.debit(card, RecordType.BLOCK, HELD, end - 5 * DAY, reference=301)
    w.debit(card, RecordType.RENEWAL, COVER, end + 3600, reference=serial)
    w.debit(card, RecordType.SETTLE, HELD + 500_000, end + DAY, reference=block.counter, balance_after=COVER)
    w.upload(BatchKind.TRANSACTIONS, card.items())
    w.reconcile()
    (flag,) = w.flags(FlagKind.BALANCE_MISMATCH)
    assert flag.details["reason"] == "settles more than the previous year's hold"
    details = flag.details
    assert (details["counter"], details["held"], details["amount"]) == (3, HELD, HELD + 500_000)
