"""Fallbacks and supervised overrides leave the terminal: a signed ``fallbacks`` batch (docs/formats.md) that
central stores once by content, shows beside the settled claims made under an override, and uses to flag an
operator with an unusual override rate. The POS flows on in-process cards, the real central app on SQLite
AND PostgreSQL."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from cardsvc.card.inprocess import InProcessConnection
from cardsvc.central.extensions import get_db
from cardsvc.central.models import FallbackRow, FlagRow
from cardsvc.central.services.fallbacks import OverridePolicy, override_rate_flags
from cardsvc.central.services.reconcile import FlagKind, reconcile
from cardsvc.central.services.settlement import compute_settlement, run_settlement
from cardsvc.central.services.terminals import register_terminal
from cardsvc.central.testing import SimTerminal, p256_key
from cardsvc.formats.batch import (
    Batch,
    BatchKind,
    FallbackItem,
    FallbackKind,
    SignedBatch,
)
from cardsvc.formats.errors import FieldValueError
from cardsvc.formats.profile import reference_id
from hardware_sims.card.cardos import SimulatedCard
from point_of_service.services import hospital
from point_of_service.services.fallback import Override, OverrideReason
from point_of_service.services.verification import CardVisit, override_member, verify_card, verify_member
from tests.fixtures.pos import POS_CARD_NOW, POS_FACILITY_ID, PosWorld, capture_of
from tests.test_pos_sync_ack import Desk

NOW = POS_CARD_NOW
DAY = 86_400
NOTE = "manual labourer, ridges worn flat"


@pytest.fixture
def desk(pos_world: PosWorld, tmp_path: Path, db_url: str) -> Iterator[Desk]:
    d = Desk(pos_world, tmp_path, database_url=db_url)
    yield d
    d.close()


def _verified(desk: Desk, card: SimulatedCard) -> CardVisit:
    card.power_off()
    return verify_card(InProcessConnection(card), identity=desk.identity, trust=desk.trust, clerk=desk.clerk,
                       now=NOW, journal=desk.journal, rng=desk.rng.randbytes)  # fmt: skip


def _rows(desk: Desk) -> list[FallbackRow]:
    with get_db(desk.app).sessions() as db:
        rows = list(db.execute(select(FallbackRow).order_by(FallbackRow.event)).scalars())
        db.expunge_all()
    return rows


def _stay_under_override(desk: Desk, card: SimulatedCard, pos_world: PosWorld) -> tuple[int, int]:
    """Another finger at one visit; at the next, a supervised override, an admission and its discharge."""
    visit = _verified(desk, card)
    desk.register_card(visit.card_id, visit.card_key)
    kw: dict[str, Any] = {"clerk": desk.clerk, "now": NOW, "journal": desk.journal}
    miss = verify_member(visit, member=0, finger=2, capture=capture_of(5, 1), **kw)  # member 1's finger
    assert not miss.matched
    assert verify_member(visit, member=0, finger=7, capture=capture_of(4, 1), **kw).matched
    visit = _verified(desk, card)
    supervisor = pos_world.clerk(supervisor=True)
    override = Override(supervisor, OverrideReason.WORN_FINGERPRINTS, NOTE)
    override_member(visit, member=0, override=override, **kw)
    till: dict[str, Any] = {"journal": desk.journal, "identity": desk.identity, "clerk": desk.clerk,
                            "now": NOW, "rng": desk.rng.randbytes}  # fmt: skip
    block = hospital.admit(visit, package_code=55, trust=desk.trust, **till).record
    settle = hospital.discharge(visit, admission=block.counter, final_amount=80_000, **till).record
    return block.counter, settle.counter


def test_fallbacks_uploaded_stored_once_and_shown_in_settlement(
    desk: Desk, pos_world: PosWorld, tmp_path: Path
) -> None:
    card = pos_world.beneficiary_card(tmp_path / "card")
    block, settle = _stay_under_override(desk, card, pos_world)
    report = desk.sync.sync()
    assert report.error is None and report.fallbacks_sent == 1, report
    assert [r.kind for r in _rows(desk)] == ["another-finger"], "the override's visit may still go on"

    desk.clock.advance(20 * 60)
    report = desk.sync.sync()
    assert report.error is None and report.fallbacks_sent == 1 and report.records_sent == 0, report
    finger, override = _rows(desk)
    assert (finger.kind, finger.member, finger.supervisor_id, finger.records) == (
        "another-finger",
        0,
        None,
        [],
    )
    assert finger.operator_id == f"{desk.clerk.operator_id:016x}" and finger.facility_id == POS_FACILITY_ID
    supervisor = pos_world.clerk(supervisor=True)
    assert (override.kind, override.reason, override.note) == (
        "supervised-override",
        "worn-fingerprints",
        NOTE,
    )
    assert override.supervisor_id == f"{supervisor.operator_id:016x}"
    assert override.records == [block, settle], "the records made on the strength of the override"
    assert desk.sync.sync().fallbacks_sent == 0, "nothing sent twice"

    with get_db(desk.app).sessions() as db:
        settlement = compute_settlement(db, POS_FACILITY_ID, NOW - DAY, NOW + DAY)
    (claim,) = settlement.claims
    assert claim.counter == settle and claim.verification is not None
    assert claim.verification.startswith("supervised override (worn-fingerprints) by supervisor")
    assert NOTE in claim.verification and claim.to_json()["verification"] == claim.verification
    with get_db(desk.app).sessions() as db:
        recorded, new = run_settlement(db, POS_FACILITY_ID, NOW - DAY, NOW + DAY, now=int(desk.clock()))
    assert new and recorded.claims[0].verification == claim.verification, "kept in the recorded run"


def _terminal(desk: Desk) -> SimTerminal:
    """Another terminal of the same facility, uploading by hand."""
    terminal = SimTerminal.new(0x5E_F0, random.Random(7))
    with get_db(desk.app).sessions() as db:
        register_terminal(db, terminal.terminal_id, terminal.key.public_key(), NOW - DAY, POS_FACILITY_ID)
        db.commit()
    return terminal


def test_same_fallback_in_two_batches_is_stored_once(desk: Desk) -> None:
    terminal = _terminal(desk)
    item = FallbackItem(7, NOW, FallbackKind.ANOTHER_MEMBER, 0x1234, 1, reference_id(desk.clerk.chr))
    client = desk.app.test_client()
    statuses = []
    for seq in (1, 2):  # two batches (different seq), one fallback
        body = terminal.batch(BatchKind.FALLBACKS, [item], int(desk.clock()), seq)
        headers = terminal.headers("POST", "/api/v1/batches", body, int(desk.clock()))
        response = client.post("/api/v1/batches", data=body, headers=headers)
        statuses.append((response.status_code, response.get_json()["receipt"]["new_items"]))
    assert statuses == [(201, 1), (201, 0)]
    assert len(_rows(desk)) == 1


def _fallback(event: int, operator: int, kind: FallbackKind = FallbackKind.OVERRIDE) -> FallbackItem:
    if kind is not FallbackKind.OVERRIDE:
        return FallbackItem(event, NOW, kind, 0xCAFE, 0, operator)
    return FallbackItem(event, NOW, kind, 0xCAFE, 0, operator, 0x5EB, "sensor-fault", "sensor cracked today")


def test_unusual_override_rate_flags_the_operator_without_holding_claims(desk: Desk) -> None:
    terminal = _terminal(desk)
    often, rarely = 0x0AAA, 0x0BBB
    items = [_fallback(i, often) for i in range(6)] + [_fallback(100, rarely)]
    items += [_fallback(200 + i, rarely, FallbackKind.ANOTHER_FINGER) for i in range(5)]
    body = terminal.batch(BatchKind.FALLBACKS, items, int(desk.clock()))
    headers = terminal.headers("POST", "/api/v1/batches", body, int(desk.clock()))
    assert desk.app.test_client().post("/api/v1/batches", data=body, headers=headers).status_code == 201
    with get_db(desk.app).sessions() as db:
        (flag,) = override_rate_flags(db)
        assert flag.kind is FlagKind.OVERRIDE_RATE and flag.details["operator_id"] == f"{often:016x}"
        assert flag.details["overrides"] == 6 and flag.details["facility_id"] == POS_FACILITY_ID
        assert flag.card_id is None and flag.facility_id is None, "a finding for staff, not a hold"
        assert override_rate_flags(db, OverridePolicy(min_overrides=7)) == []
        reconcile(db, int(desk.clock()))
        kinds = [r.kind for r in db.execute(select(FlagRow)).scalars()]
        assert kinds.count("override_rate") == 1
        reconcile(db, int(desk.clock()))  # recomputed, not repeated
        assert [r.kind for r in db.execute(select(FlagRow)).scalars()].count("override_rate") == 1


def test_fallback_item_rules() -> None:
    good = _fallback(1, 2)
    assert FallbackItem.from_json(good.to_json(), "item") == good
    plain = _fallback(2, 2, FallbackKind.ANOTHER_FINGER)
    assert set(plain.to_json()) == {"event", "at", "kind", "card_id", "member", "operator_id"}
    with pytest.raises(FieldValueError, match="needs supervisor_id, reason and note"):
        dataclasses.replace(good, note="  ").to_json()
    with pytest.raises(FieldValueError, match="only a supervised override"):
        dataclasses.replace(plain, reason="sensor-fault").to_json()
    with pytest.raises(FieldValueError, match="kind must be one of"):
        FallbackItem.from_json({**plain.to_json(), "kind": "guess"}, "item")
    with pytest.raises(FieldValueError, match="records must list"):
        FallbackItem.from_json({**good.to_json(), "records": [5, 3]}, "item")
    with pytest.raises(FieldValueError, match="note is longer"):
        FallbackItem.from_json({**good.to_json(), "note": "x" * 201}, "item")
    rng = random.Random(1)
    batch = Batch(BatchKind.FALLBACKS, 1, 1, NOW, (good, plain))
    signed = batch.sign(p256_key(rng))
    assert SignedBatch.parse(signed.encode()).batch == batch
