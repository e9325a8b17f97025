"""The offline-limit loop end to end on the real stack: the beneficiary card through pcscd + vpcd + pyscard,
the real central app on SQLite AND PostgreSQL. The card debits up to its offline limit and refuses the next
debit; the POS syncs; central acknowledges the records by itself after ingest; at the card's next insertion
the POS presents the acknowledgement and the card debits again."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cardsvc.beneficiary.protocol import AuthKind, Authorisation
from cardsvc.card.pcsc import PcscConnection
from point_of_service.reasons import Reason
from point_of_service.services.authorisations import stored_authorisations
from point_of_service.services.verification import CardVisit, verify_card, verify_member
from tests.fixtures.pcsc import ServedCard
from tests.fixtures.pos import POS_CARD_NOW, PosWorld, capture_of
from tests.test_pos_sync_ack import Desk

NOW = POS_CARD_NOW
LIMIT = 20  # the test cards' offline debit limit (tests/fixtures/beneficiary.py DEFAULT_LIMITS)


@pytest.fixture
def desk(pos_world: PosWorld, tmp_path: Path, db_url: str) -> Iterator[Desk]:
    d = Desk(pos_world, tmp_path, database_url=db_url)
    yield d
    d.close()


@pytest.fixture
def served(serve_card: Callable[..., ServedCard], pos_world: PosWorld, tmp_path: Path) -> ServedCard:
    return serve_card(slot=0, card=pos_world.beneficiary_card(tmp_path / "card"))


def _insert(desk: Desk, served: ServedCard) -> tuple[PcscConnection, CardVisit]:
    """A new insertion (pulled and put back: the card's session state is gone), card and member verified."""
    served.remove()
    served.insert()
    conn = PcscConnection(served.reader, exclusive=True)
    visit = verify_card(conn, identity=desk.identity, trust=desk.trust, clerk=desk.clerk, now=NOW,
                        journal=desk.journal, rng=desk.rng.randbytes)  # fmt: skip
    match = verify_member(visit, member=0, finger=2, capture=capture_of(3, 1), clerk=desk.clerk, now=NOW,
                          journal=desk.journal)  # fmt: skip
    assert match.matched
    return conn, visit


def test_limit_reached_sync_acknowledged_and_debits_again(desk: Desk, served: ServedCard) -> None:
    conn, visit = _insert(desk, served)
    try:
        desk.register_card(visit.card_id, visit.card_key)
        for i in range(LIMIT):
            desk.pay(visit, NOW + i)
        assert visit.session.offline_limits().debits_left == 0
        assert desk.pay_refused(visit, NOW + 50) is Reason.OFFLINE_LIMIT_REACHED
    finally:
        conn.close()

    desk.clock.advance(600)
    report = desk.sync.sync()
    assert report.error is None and report.records_sent == LIMIT, report
    (kept,) = stored_authorisations(desk.journal)  # issued by central at ingest, downloaded by this sync
    ack = Authorisation.parse(kept.wire)
    assert (ack.kind, ack.value, ack.card_id) == (AuthKind.SYNC_ACK, LIMIT, visit.card_chr)

    conn, renewed = _insert(desk, served)
    try:
        assert renewed.authorisations.limits_renewed and renewed.authorisations.refused == ()
        assert renewed.offline_limits.debits_left == LIMIT, "the clerk sees the refreshed limits"
        desk.pay(renewed, NOW + 70)
        limits = renewed.session.offline_limits()
        assert (limits.count, limits.synced_counter, limits.counter) == (1, LIMIT, LIMIT + 1)
    finally:
        conn.close()
    (event,) = desk.auth_events("ok")
    assert event.detail["kind"] == "sync_ack" and event.detail["synced_counter"] == LIMIT
