"""Central's card register follows renewals (services/renewals.py).

First on both backends with card records signed in-test (tests/test_central_reconcile.py's World): the
register moves to the renewed period once the card's RENEWAL record arrives for a RENEW_POLICY central
issued, the camp's period is kept, the same records twice change nothing, and a RENEWAL record nobody at
central authorised moves nothing and is flagged. Then end to end on the real stack: a station enrols and
renews a card through pcscd + vpcd, a POS debits it in the new year (and once after it), both upload to
central, which reconciles.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select

from cardsvc.central.extensions import get_db
from cardsvc.central.models import Card, CardPeriod
from cardsvc.central.services.authorise import CardKind, issue_card_authorisation
from cardsvc.central.services.publish import CentralKey
from cardsvc.central.services.reconcile import FlagKind
from cardsvc.central.services.terminals import add_facility, register_terminal
from cardsvc.central.testing import FixedClock, SimCard, SimTerminal
from cardsvc.formats.batch import BatchKind
from cardsvc.formats.transaction import RecordType
from cardsvc.pki.signer import SoftwareSigner
from tests.test_central_reconcile import DAY, PLACES, World

NEW_COVER = 3_500_000


@pytest.fixture
def world(central_app: Flask, clock: FixedClock) -> World:
    """Central with the facilities and the terminal of tests/test_central_reconcile.py."""
    terminal = SimTerminal.new(0x7E57, random.Random(20))
    with get_db(central_app).sessions() as session:
        for facility_id, (lat, lon) in PLACES.items():
            add_facility(session, facility_id, f"Hospital {facility_id}", "Jaipur", lat, lon)
        session.flush()
        register_terminal(session, terminal.terminal_id, terminal.key.public_key(), int(clock()) - 365 * DAY)
        session.commit()
    return World(central_app, clock, terminal)


def _renew_policy(app: Flask, card: SimCard, period: tuple[int, int], cover: int = NEW_COVER) -> None:
    """Central's RENEW_POLICY for the card (serial 1: its first card authorisation)."""
    with get_db(app).sessions() as session:
        key = CentralKey(SoftwareSigner.generate(), "INROOT")
        issue_card_authorisation(
            session, key, CardKind.RENEW_POLICY, f"{card.card_id:016x}", now=period[0] - 5 * DAY,
            policy=period, covers=[(1, cover)],
        )  # fmt: skip
        session.commit()


def _register(app: Flask, card: SimCard) -> tuple[Any, list[tuple[int, int, int, int | None]]]:
    """The card's row as the register holds it and its kept periods (serial, start, end, counter)."""
    with get_db(app).sessions() as session:
        row = session.get(Card, f"{card.card_id:016x}")
        assert row is not None
        current = (row.policy_start, row.policy_end, row.cover_paise, row.schemes)
        periods = [
            (p.serial, p.policy_start, p.policy_end, p.counter)
            for p in session.execute(
                select(CardPeriod).where(CardPeriod.card_id == row.card_id).order_by(CardPeriod.serial)
            ).scalars()
        ]
    return current, periods


def _outside(world: World) -> list[int]:
    return sorted(f.details["counter"] for f in world.flags(FlagKind.OUTSIDE_POLICY))


def test_the_register_moves_to_the_authorised_period_once_the_renewal_is_uploaded(world: World) -> None:
    end = (world.now - 40 * DAY) // DAY * DAY
    camp = (end - 365 * DAY, end - 1)
    card = world.card(policy=camp)
    new = (end, end + 365 * DAY)
    _renew_policy(world.app, card, new)
    world.debit(card, RecordType.CASH, 1_000, end - 5 * DAY)  # 1: the camp's year
    world.upload(BatchKind.TRANSACTIONS, card.items())
    assert _register(world.app, card) == ((*camp, 3_000_000, None), []), "no renewal on the card yet"

    world.debit(card, RecordType.RENEWAL, NEW_COVER, end + 3 * DAY, reference=1)  # 2: COMMIT RENEWAL
    world.upload(BatchKind.TRANSACTIONS, card.items(card.log[1:]))  # the station's upload
    renewed = (new[0], new[1] - 1, NEW_COVER, [{"scheme_id": 1, "cover_paise": NEW_COVER}])
    expected = [(0, *camp, None), (1, new[0], new[1] - 1, 2)]
    assert _register(world.app, card) == (renewed, expected), "moved at ingest, the camp's year kept"

    world.debit(card, RecordType.CASH, 1_000, end + 10 * DAY)  # 3: the new year
    world.debit(card, RecordType.CASH, 1_000, new[1] + DAY)  # 4: after the new year's end
    world.upload(BatchKind.TRANSACTIONS, card.items())  # the POS's upload repeats the renewal record
    world.upload(BatchKind.TRANSACTIONS, card.items())  # and again (a duplicate batch)
    world.reconcile()
    world.reconcile()
    assert _register(world.app, card) == (renewed, expected), "the same records again change nothing"
    [flag] = world.flags(FlagKind.OUTSIDE_POLICY)
    assert (flag.details["counter"], flag.details["policy"]) == (4, [new[0], new[1] - 1])
    assert world.flags(FlagKind.BALANCE_MISMATCH) == [] and world.flags(FlagKind.UNAUTHORISED_RENEWAL) == []
    with get_db(world.app).sessions() as session:
        assert session.execute(select(func.count()).select_from(CardPeriod)).scalar_one() == 2


def test_a_renewal_central_did_not_authorise_moves_nothing_and_is_flagged(world: World) -> None:
    end = (world.now - 40 * DAY) // DAY * DAY
    camp = (end - 365 * DAY, end - 1)
    card = world.card(policy=camp)
    _renew_policy(world.app, card, (end, end + 365 * DAY))  # serial 1 ...
    world.debit(card, RecordType.RENEWAL, 9_000_000, end + 3 * DAY, reference=7)  # ... the card says 7
    world.debit(card, RecordType.CASH, 1_000, end + 10 * DAY)
    world.upload(BatchKind.TRANSACTIONS, card.items())
    world.reconcile()
    assert _register(world.app, card) == ((*camp, 3_000_000, None), [])
    [flag] = world.flags(FlagKind.UNAUTHORISED_RENEWAL)
    assert flag.card_id == f"{card.card_id:016x}" and flag.details == {"counter": 1, "reference": 7}
    assert _outside(world) == [2], "the unauthorised year is not a policy period"


def test_new_year_records_judged_before_the_renewal_arrived_are_cleared_when_it_does(world: World) -> None:
    """The POS uploads first: its new-year debit is outside the camp's year (and counter 1 is missing);
    the station's RENEWAL record arrives later and the finding is withdrawn at the next reconciliation."""
    end = (world.now - 40 * DAY) // DAY * DAY
    card = world.card(policy=(end - 365 * DAY, end - 1))
    _renew_policy(world.app, card, (end, end + 365 * DAY))
    world.debit(card, RecordType.RENEWAL, NEW_COVER, end + 3 * DAY, reference=1)
    world.debit(card, RecordType.CASH, 1_000, end + 10 * DAY)
    world.upload(BatchKind.TRANSACTIONS, card.items(card.log[1:]))
    world.reconcile()
    assert _outside(world) == [2] and len(world.flags(FlagKind.COUNTER_GAP)) == 1
    world.upload(BatchKind.TRANSACTIONS, card.items(card.log[:1]))
    world.reconcile()
    assert _outside(world) == [] and world.flags(FlagKind.COUNTER_GAP) == []
