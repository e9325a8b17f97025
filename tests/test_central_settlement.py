"""Settlement per facility and period: payable claims, held claims with every reason, one run per period,
CSV in paise; on SQLite and PostgreSQL. Records are signed card records uploaded through the API."""

from __future__ import annotations

import csv
import io
import random

import pytest
from flask import Flask

from cardsvc.central.errors import ConflictError, MalformedError
from cardsvc.central.extensions import get_db
from cardsvc.central.services.flags import open_flags, resolve_flag
from cardsvc.central.services.reconcile import reconcile
from cardsvc.central.services.settlement import compute_settlement, run_settlement, settlement_runs
from cardsvc.central.services.terminals import add_facility, register_terminal, revoke_operator
from cardsvc.central.testing import FixedClock, SimCard, SimTerminal
from cardsvc.formats.batch import BatchKind, Item
from cardsvc.formats.transaction import RecordType

DAY = 86_400
HOSPITAL, OTHER = 41, 42
OPERATOR, ROGUE_OPERATOR = 0x0E, 0x0BAD


class Field:
    def __init__(self, app: Flask, clock: FixedClock) -> None:
        self.app, self.clock, self.rng = app, clock, random.Random(3)
        self.terminal = SimTerminal.new(0x5E77, self.rng)
        self.next_card = 0xD000
        with get_db(app).sessions() as session:
            add_facility(session, HOSPITAL, "District Hospital", "Jaipur", 26.9, 75.8)
            add_facility(session, OTHER, "Other Hospital", "Jaipur", 26.9, 75.8)
            session.flush()
            register_terminal(
                session, self.terminal.terminal_id, self.terminal.key.public_key(), self.now - 400 * DAY
            )
            session.commit()

    @property
    def now(self) -> int:
        return int(self.clock())

    def card(self, register: bool = True) -> SimCard:
        self.next_card += 1
        card = SimCard.new(self.next_card, self.rng)
        if register:
            self.upload(
                BatchKind.CAMP, [card.camp_card("Jaipur", self.now - 100 * DAY, self.now + 200 * DAY, 0xF0)]
            )
        return card

    def upload(self, kind: BatchKind, items: list[Item]) -> None:
        body = self.terminal.batch(kind, items, self.now)
        headers = self.terminal.headers("POST", "/api/v1/batches", body, self.now)
        response = self.app.test_client().post("/api/v1/batches", data=body, headers=headers)
        assert response.status_code == 201, response.get_json()

    def stay(self, card: SimCard, at: int, blocked: int, settled: int, *, facility: int = HOSPITAL,
             operator: int = OPERATOR, package: int = 301) -> None:  # fmt: skip
        t = self.terminal.terminal_id
        block = card.transact(RecordType.BLOCK, blocked, at, t, operator, facility, reference=package)
        card.transact(RecordType.SETTLE, settled, at + DAY, t, operator, facility, reference=block.counter)


@pytest.fixture
def field(central_app: Flask, clock: FixedClock) -> Field:
    return Field(central_app, clock)


def test_claims_payable_and_held_with_reasons_and_run_recorded_once(field: Field) -> None:
    start, end = field.now - 30 * DAY, field.now
    honest, cloned, late_camp, revoked_op = (
        field.card(),
        field.card(),
        field.card(register=False),
        field.card(),
    )
    field.stay(honest, start + DAY, 1_500_000, 1_400_000)
    field.stay(honest, start + 10 * DAY, 200_000, 180_000, facility=OTHER)  # another facility: not here
    field.stay(cloned, start + 2 * DAY, 900_000, 850_000)
    clone = SimCard(cloned.card_id, cloned.key, 3_000_000)  # same key, same start: counter 1 again
    clone.transact(RecordType.CASH, 5_000, start + 3 * DAY, field.terminal.terminal_id, OPERATOR, OTHER)
    field.stay(late_camp, start + 4 * DAY, 300_000, 300_000)
    with get_db(field.app).sessions() as session:
        revoke_operator(session, ROGUE_OPERATOR, start + 5 * DAY)
        session.commit()
    field.stay(revoked_op, start + 6 * DAY, 400_000, 350_000, operator=ROGUE_OPERATOR)
    field.stay(honest, end + DAY, 100_000, 100_000)  # after the period: not in it
    field.upload(
        BatchKind.TRANSACTIONS, [i for c in (honest, cloned, clone, late_camp, revoked_op) for i in c.items()]
    )

    with get_db(field.app).sessions() as session:
        settlement, created = run_settlement(session, HOSPITAL, start, end, now=field.now)
    assert created
    by_card = {c.card_id: c for c in settlement.claims}
    assert len(by_card) == 4
    assert by_card[f"{honest.card_id:016x}"].payable and by_card[f"{honest.card_id:016x}"].package == 301
    assert settlement.payable_paise == 1_400_000
    assert settlement.held_paise == 850_000 + 300_000 + 350_000
    assert any(r.startswith("duplicate_counter") for r in by_card[f"{cloned.card_id:016x}"].reasons)
    assert any(r.startswith("unregistered_card") for r in by_card[f"{late_camp.card_id:016x}"].reasons)
    assert any(r.startswith("revoked_operator") for r in by_card[f"{revoked_op.card_id:016x}"].reasons)

    rows = list(csv.DictReader(io.StringIO(settlement.to_csv())))
    assert [r["status"] for r in rows].count("payable") == 1
    assert sum(int(r["amount_paise"]) for r in rows) == 1_400_000 + 850_000 + 300_000 + 350_000
    assert "duplicate_counter" in next(r for r in rows if r["card_id"] == f"{cloned.card_id:016x}")["reasons"]

    # a second run of the same facility and period returns the recorded one, even after new uploads
    field.upload(BatchKind.CAMP, [late_camp.camp_card("Jaipur", start - 100 * DAY, end + DAY, 0xF0)])
    with get_db(field.app).sessions() as session:
        again, created_again = run_settlement(session, HOSPITAL, start, end, now=field.now + 60)
        assert not created_again and again.run_id == settlement.run_id
        assert again.to_json() == settlement.to_json()
        assert len(settlement_runs(session, HOSPITAL)) == 1
        # after reconciliation, the preview for the next decision sees the camp that arrived since
        reconcile(session, field.now + 60)
        preview = compute_settlement(session, HOSPITAL, start, end)
    assert not any(r.startswith("unregistered_card") for c in preview.claims for r in c.reasons)


def test_bad_period_refused(field: Field) -> None:
    with get_db(field.app).sessions() as session, pytest.raises(MalformedError, match="not after"):
        run_settlement(session, HOSPITAL, field.now, field.now - 1, now=field.now)


def test_resolving_a_flag_releases_the_claim(field: Field) -> None:
    start, end = field.now - 30 * DAY, field.now
    card = field.card()
    field.stay(card, start + DAY, 500_000, 450_000)
    clone = SimCard(card.card_id, card.key, 3_000_000)
    field.stay(clone, start + 2 * DAY, 700_000, 600_000, facility=OTHER)  # a clone used elsewhere
    field.upload(BatchKind.TRANSACTIONS, card.items() + clone.items())
    with get_db(field.app).sessions() as session:
        reconcile(session, field.now)
        assert compute_settlement(session, HOSPITAL, start, end).held_paise == 450_000
        flags = open_flags(session, card_ids=[f"{card.card_id:016x}"])
        assert {f.kind for f in flags} == {"duplicate_counter"}
        for flag in flags:
            resolve_flag(session, flag.id, by="auditor-7", note="card swapped, clone blocked", now=field.now)
        with pytest.raises(ConflictError, match="was resolved"):
            resolve_flag(session, flags[0].id, by="auditor-7", note="again", now=field.now)
        released = compute_settlement(session, HOSPITAL, start, end)
    assert released.payable_paise == 450_000 and released.held_paise == 0


def test_open_flags_touching_a_facility(field: Field) -> None:
    here, elsewhere = field.card(), field.card()
    field.stay(here, field.now - 5 * DAY, 100_000, 90_000)
    clone = SimCard(here.card_id, here.key, 3_000_000)
    clone.transact(RecordType.CASH, 1_000, field.now - 4 * DAY, field.terminal.terminal_id, OPERATOR, OTHER)
    field.stay(elsewhere, field.now - 5 * DAY, 100_000, 90_000, facility=OTHER)
    elsewhere.transact(RecordType.CASH, 1_000, field.now - DAY, field.terminal.terminal_id, OPERATOR, OTHER,
                       prev_hash=b"\x07" * 8)  # fmt: skip
    field.upload(BatchKind.TRANSACTIONS, here.items() + clone.items() + elsewhere.items())
    with get_db(field.app).sessions() as session:
        reconcile(session, field.now)
        touching = open_flags(session, facility_id=HOSPITAL)
        assert [(f.kind, f.card_id) for f in touching] == [("duplicate_counter", f"{here.card_id:016x}")]
        assert {f.card_id for f in open_flags(session, facility_id=OTHER)} == {
            f"{here.card_id:016x}",
            f"{elsewhere.card_id:016x}",
        }


def test_a_flag_naming_the_terminal_holds_every_claim_it_made(field: Field) -> None:
    start, end = field.now - 30 * DAY, field.now
    a, b = field.card(), field.card()
    field.stay(a, start + DAY, 100_000, 90_000)
    field.stay(b, start + 2 * DAY, 100_000, 80_000)
    with get_db(field.app).sessions() as session:
        from cardsvc.central.services.dedup import record_flags
        from cardsvc.central.services.reconcile import Flag, FlagKind

        terminal = f"{field.terminal.terminal_id:016x}"
        suspect = Flag(
            FlagKind.REVOKED_TERMINAL, {"counter": 2}, card_id=f"{a.card_id:016x}", terminal_id=terminal
        )
        record_flags(session, [suspect], field.now)
        session.commit()
    field.upload(BatchKind.TRANSACTIONS, a.items() + b.items())
    with get_db(field.app).sessions() as session:
        settlement = compute_settlement(session, HOSPITAL, start, end)
    assert settlement.payable == [] and settlement.held_paise == 170_000
    assert all(any(r.startswith("revoked_terminal") for r in c.reasons) for c in settlement.claims)
    assert all(len(c.reasons) == len(set(c.reasons)) for c in settlement.claims)
