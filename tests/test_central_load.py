"""Load: 50 concurrent clients on loopback upload overlapping batches; nothing lost, nothing duplicated.

A real HTTP server (werkzeug, threaded) in a thread on 127.0.0.1, port chosen by the OS; bounded: 150
uploads of 30 distinct batches, each upload with a 60 s time-out.
"""

from __future__ import annotations

import json
import random
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from flask import Flask
from sqlalchemy import func, select
from werkzeug.serving import make_server

from cardsvc.central.extensions import get_db
from cardsvc.central.models import BatchRow, NonceRow, TransactionRow
from cardsvc.central.services import ingest
from cardsvc.central.services.terminals import register_terminal
from cardsvc.central.testing import FixedClock, SimCard, SimTerminal
from cardsvc.formats.batch import BatchKind, SignedBatch
from cardsvc.formats.transaction import RecordType

CLIENTS = 50
UPLOADS = 150
DISTINCT_BATCHES = 30


@pytest.fixture
def server(central_app: Flask) -> Iterator[str]:
    httpd = make_server("127.0.0.1", 0, central_app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()
    thread.join(10)


def upload(base: str, terminal: SimTerminal, body: bytes, now: int) -> tuple[int, dict]:
    headers = terminal.headers("POST", "/api/v1/batches", body, now)
    request = urllib.request.Request(f"{base}/api/v1/batches", data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.fixture(params=["insert", "copy"])
def bulk_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both ways records reach PostgreSQL: ON CONFLICT inserts, and COPY (normally for >= 200 records)."""
    if request.param == "copy":
        monkeypatch.setattr(ingest, "COPY_THRESHOLD", 1)
    return str(request.param)


@pytest.mark.slow
def test_fifty_clients_overlapping_batches(
    central_app: Flask, server: str, clock: FixedClock, bulk_path: str
) -> None:
    rng = random.Random(42)
    now = int(clock())
    terminals = [SimTerminal.new(0x10AD_0000 + i, rng) for i in range(5)]
    with get_db(central_app).sessions() as session:
        for t in terminals:
            register_terminal(session, t.terminal_id, t.key.public_key(), now - 86_400)
        session.commit()
    cards = [SimCard.new(0xCA00 + i, rng) for i in range(10)]
    for card in cards:
        for n in range(20):
            card.transact(RecordType.CASH, 1_000, now - 86_400 + n * 600, terminals[0].terminal_id, 1, 1)
    every_item = [item for card in cards for item in card.items()]
    batches = []
    for i in range(DISTINCT_BATCHES):
        start = rng.randrange(0, len(every_item) - 40)
        items = every_item[start : start + rng.randrange(10, 40)]  # overlapping slices of the same records
        batches.append((terminals[i % 5], terminals[i % 5].batch(BatchKind.TRANSACTIONS, items, now, seq=i)))
    plan = [batches[i % DISTINCT_BATCHES] for i in range(UPLOADS)]
    rng.shuffle(plan)

    with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
        results = list(pool.map(lambda tb: upload(server, tb[0], tb[1], now), plan))

    statuses = [status for status, _ in results]
    assert set(statuses) <= {200, 201}, [r for r in results if r[0] not in (200, 201)][:3]
    assert statuses.count(201) == DISTINCT_BATCHES, "each distinct batch stored exactly once"
    receipts: dict[str, dict] = {}
    for (_terminal, body), (_status, answer) in zip(plan, results, strict=True):
        key = SignedBatch.parse(body).batch.content_hash().hex()
        assert receipts.setdefault(key, answer["receipt"]) == answer["receipt"], "one receipt per content"
    sent_records = {
        item.record
        for _t, body in batches
        for item in SignedBatch.parse(body).batch.items  # type: ignore[union-attr]
    }
    with get_db(central_app).sessions() as session:
        stored_batches = session.execute(select(func.count()).select_from(BatchRow)).scalar_one()
        stored = session.execute(select(TransactionRow.raw)).scalars().all()
        nonces = session.execute(select(func.count()).select_from(NonceRow)).scalar_one()
    assert stored_batches == DISTINCT_BATCHES
    assert len(stored) == len(set(stored)), "no record stored twice"
    assert set(stored) == sent_records, "no record lost"
    assert nonces == UPLOADS
    assert sum(r["new_items"] for r in receipts.values()) == len(sent_records)
