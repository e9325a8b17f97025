"""POS sync against the real central service (Flask app, SQLite): uploads are idempotent and resume after a
failure mid-upload; downloads land in the terminal's trust state; offline time is reported."""

from __future__ import annotations

import random

from flask import Flask
from sqlalchemy import func, select

from cardsvc.central.extensions import get_db
from cardsvc.central.models import BatchRow, TransactionRow
from cardsvc.central.services.terminals import revoke_operator
from cardsvc.central.testing import FixedClock, SimCard
from cardsvc.formats.transaction import RecordType
from point_of_service.identity import TerminalIdentity
from point_of_service.journal import Journal
from point_of_service.reasons import Reason
from point_of_service.services.sync import SyncService
from point_of_service.trust import TrustState
from tests.fixtures.pos import POS_NOW, FlakyTransport


def _count(app: Flask, model: type) -> int:
    with get_db(app).sessions() as session:
        return int(session.execute(select(func.count()).select_from(model)).scalar_one())


def _journal_records(
    journal: Journal, identity: TerminalIdentity, n_cards: int = 3, per_card: int = 4
) -> int:
    rng = random.Random(5)
    total = 0
    for c in range(n_cards):
        card = SimCard.new(0xCA4D_1000 + c, rng)
        for i in range(per_card):
            kind = RecordType.CASH if i % 2 else RecordType.PROOF_OF_LIFE
            amount = 50_000 if kind is RecordType.CASH else 0
            record = card.transact(kind, amount, POS_NOW - 86_400 + i, identity.terminal_id, 7, 17)
            assert journal.add_record(record, card.public_key)
            total += 1
    return total


def _service(journal: Journal, identity: TerminalIdentity, trust: TrustState, transport: FlakyTransport,
             clock: FixedClock, max_items: int = 500) -> SyncService:  # fmt: skip
    return SyncService(journal, identity, trust, transport, now=lambda: int(clock()), max_items=max_items)


def test_upload_then_sync_again_sends_nothing_new(
    pos_journal: Journal, pos_identity: TerminalIdentity, pos_trust: TrustState,
    pos_transport: FlakyTransport, pos_central: tuple[Flask, FixedClock],
) -> None:  # fmt: skip
    app, clock = pos_central
    total = _journal_records(pos_journal, pos_identity)
    sync = _service(pos_journal, pos_identity, pos_trust, pos_transport, clock)
    report = sync.sync()
    assert report.error is None, report
    assert (report.batches_made, report.batches_sent, report.records_sent) == (1, 1, total)
    assert _count(app, TransactionRow) == total
    assert set(report.downloads) >= {"revocations", "packages", "authorisations"}
    clock.advance(60)
    again = sync.sync()
    assert (again.batches_made, again.batches_sent, again.error) == (0, 0, None)
    assert _count(app, TransactionRow) == total and _count(app, BatchRow) == 1
    assert sync.status().pending_batches == 0 and sync.status().seconds_offline == 0


def test_failure_mid_upload_resumes_without_double_counting(
    pos_journal: Journal, pos_identity: TerminalIdentity, pos_trust: TrustState,
    pos_transport: FlakyTransport, pos_central: tuple[Flask, FixedClock],
) -> None:  # fmt: skip
    app, clock = pos_central
    total = _journal_records(pos_journal, pos_identity, n_cards=3, per_card=4)
    # 12 records in batches of 5: three batches; the network drops on the 2nd POST
    pos_transport.fail_on = {2}
    sync = _service(pos_journal, pos_identity, pos_trust, pos_transport, clock, max_items=5)
    first = sync.sync()
    assert first.reason is Reason.SYNC_FAILED and first.batches_made == 3 and first.batches_sent == 1
    assert _count(app, BatchRow) == 1 and _count(app, TransactionRow) == 5
    status = sync.status()
    assert status.pending_batches == 2 and status.last_success is None
    # next time: central stores batch 2 but the answer is lost
    pos_transport.fail_on, pos_transport.lose_answer_on = set(), {len(pos_transport.calls) + 1}
    clock.advance(3600)
    second = sync.sync()
    assert second.reason is Reason.SYNC_FAILED
    assert _count(app, BatchRow) == 2
    clock.advance(3600)
    third = sync.sync()
    assert third.error is None, third
    assert third.duplicates == 1, "the lost-answer batch is answered as a duplicate, not stored again"
    assert _count(app, BatchRow) == 3 and _count(app, TransactionRow) == total
    posts = [c for c in pos_transport.calls if c[0] == "POST"]
    statuses = {c[2] for c in posts}
    assert 201 in statuses and 200 in statuses


def test_offline_for_days_queues_and_reports(
    pos_journal: Journal, pos_identity: TerminalIdentity, pos_trust: TrustState,
    pos_transport: FlakyTransport, pos_central: tuple[Flask, FixedClock],
) -> None:  # fmt: skip
    app, clock = pos_central
    sync = _service(pos_journal, pos_identity, pos_trust, pos_transport, clock)
    assert sync.sync().error is None
    pos_transport.offline = True
    _journal_records(pos_journal, pos_identity, n_cards=1, per_card=2)
    for _ in range(3):
        clock.advance(86_400)
        report = sync.sync()
        assert report.reason is Reason.SYNC_FAILED
    status = sync.status()
    assert status.seconds_offline == 3 * 86_400
    assert status.pending_batches == 1
    pos_transport.offline = False
    assert sync.sync().error is None
    assert _count(app, TransactionRow) == 2
    events = pos_journal.events(kind="sync")
    assert [e.outcome for e in events] == ["ok", "failed", "failed", "failed", "ok"]


def test_revocations_download_into_trust_state(
    pos_journal: Journal, pos_identity: TerminalIdentity, pos_trust: TrustState,
    pos_transport: FlakyTransport, pos_central: tuple[Flask, FixedClock],
) -> None:  # fmt: skip
    app, clock = pos_central
    with get_db(app).sessions() as session:
        revoke_operator(session, 0x77, POS_NOW - 10)
        session.commit()
    sync = _service(pos_journal, pos_identity, pos_trust, pos_transport, clock)
    assert sync.sync().error is None
    assert pos_trust.central_revoked_at("operators", f"{0x77:016x}") == POS_NOW - 10
    # persisted: a restarted terminal still knows
    reloaded = TrustState.load(pos_journal, pos_trust.anchor)
    assert reloaded.central_revoked_at("operators", f"{0x77:016x}") == POS_NOW - 10


def test_refusal_by_central_is_not_retried_blindly(
    pos_journal: Journal, pos_identity: TerminalIdentity, pos_trust: TrustState,
    pos_transport: FlakyTransport, pos_central: tuple[Flask, FixedClock],
) -> None:  # fmt: skip
    app, clock = pos_central
    _journal_records(pos_journal, pos_identity, n_cards=1, per_card=1)
    clock.advance(10_000)  # our clock and central's now disagree by far more than the 300 s window
    sync = SyncService(pos_journal, pos_identity, pos_trust, pos_transport, now=lambda: POS_NOW)
    report = sync.sync()
    assert report.reason is Reason.SYNC_FAILED and "stale_timestamp" in (report.error or "")
    assert _count(app, TransactionRow) == 0
