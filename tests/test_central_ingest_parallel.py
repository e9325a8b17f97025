"""A large transaction batch (verified on worker processes; on PostgreSQL through the COPY pipeline) is
stored whole when every record verifies, and refused whole, naming the first bad item, when one does not."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select

from cardsvc.central.benchmark import NOW, make_workload
from cardsvc.central.errors import UnprocessableError
from cardsvc.central.extensions import get_db
from cardsvc.central.models import TransactionRow
from cardsvc.central.services.ingest import ingest_batch
from cardsvc.central.services.terminals import DbTerminalDirectory, register_terminal
from cardsvc.formats.batch import BatchKind, TransactionItem
from cardsvc.pki.batchverify import MIN_PARALLEL, shared_verifier

RECORDS = MIN_PARALLEL + 200


def _count(app: Flask) -> int:
    with get_db(app).sessions() as session:
        return session.execute(select(func.count()).select_from(TransactionRow)).scalar_one()


def test_large_batch_refused_whole_for_one_bad_record_then_stored(central_app: Flask) -> None:
    work = make_workload(RECORDS, per_card=20, batch_size=RECORDS)
    items = [TransactionItem(r, k) for r, k in zip(work.records, work.card_keys, strict=True)]
    assert len(items) >= shared_verifier().min_parallel  # the worker path, where there are CPUs for it

    def ingest(body: bytes) -> Any:
        with get_db(central_app).sessions() as session:
            return ingest_batch(session, DbTerminalDirectory(session), body, "bench", NOW)

    with get_db(central_app).sessions() as session:
        register_terminal(session, work.terminal.terminal_id, work.terminal.key.public_key(), NOW - 86_400)
        session.commit()
    ingest(work.camp)
    bad = RECORDS - 150  # in the last verification job
    raw = bytearray(items[bad].record)
    raw[18] ^= 0x01  # the amount: a record changed after the card signed it
    forged = [*items[:bad], TransactionItem(bytes(raw), items[bad].card_key), *items[bad + 1 :]]
    with pytest.raises(UnprocessableError) as refused:
        ingest(work.terminal.batch(BatchKind.TRANSACTIONS, forged, NOW))
    assert refused.value.code == "bad_record_signature"
    assert refused.value.reason.startswith(f"batch.items[{bad}] ")
    assert _count(central_app) == 0  # nothing of the refused batch is stored

    receipt = ingest(work.terminal.batch(BatchKind.TRANSACTIONS, items, NOW)).receipt
    assert receipt.new_items == RECORDS and _count(central_app) == RECORDS
