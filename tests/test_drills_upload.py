"""Fault drills: a real process SIGKILLed in the middle of an upload, then resumed.

1. The terminal (a POS sync in its own process) is killed while it uploads; it is started again and
   finishes. 2. The central service (its own process, SQLite on disk) is killed while a terminal uploads to
   it; it is started again on the same database and the terminal's next sync finishes.

In both, nothing may be lost and nothing counted twice: central holds every record the terminal holds,
each exactly once, every batch the terminal made is acknowledged, and each distinct batch is stored once.
Each drill prints what it tried (run with ``-rA`` to see it beside the result).

Records are made by ``cardsvc.central.testing.SimCard`` (signed as a card signs them); the terminal's key
is a software key registered with central directly (the PKI path is exercised by the demo and the POS
tests; here the subject is the crash, not the certificates).
"""

from __future__ import annotations

import http.client
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, func, select

from cardsvc.central.app import create_app
from cardsvc.central.extensions import get_db
from cardsvc.central.models import BatchRow, TransactionRow
from cardsvc.central.services.terminals import register_terminal
from cardsvc.central.testing import SimCard, p256_key
from cardsvc.formats.transaction import RecordType
from cardsvc.pki.chain import TrustAnchor
from cardsvc.pki.signer import SoftwareSigner
from point_of_service.journal import Journal
from point_of_service.services.sync import HttpTransport, SyncService
from point_of_service.trust import TrustState

pytestmark = pytest.mark.slow

TERMINAL_ID = 0x0D1_0000_0001
TERMINAL_SEED = 4242
CARDS = 24
RECORDS_PER_CARD = 25  # 600 records
BATCH_ITEMS = 30  # 20 batches: a wide window to kill in
LINK_PAUSE_S = 0.15  # the terminal process pauses this long after each upload (a slow link), >= 13 x 0.15 s
#                      between the 7th batch stored and the last, however fast central stores one


# ------------------------------------------------------------------------------------- processes
#: The terminal's sync as its own process: the same SyncService the POS runs, over HTTP.
TERMINAL_PROCESS = r"""
import json, random, sys, time
from types import SimpleNamespace
from cardsvc.central.testing import p256_key
from cardsvc.pki.chain import TrustAnchor
from cardsvc.pki.signer import SoftwareSigner
from point_of_service.journal import Journal
from point_of_service.services.sync import HttpTransport, SyncService
from point_of_service.trust import TrustState

journal_path, url, terminal_id, seed, max_items, link_pause = sys.argv[1:7]


class SlowLink(HttpTransport):
    # A village GPRS link: each upload is followed by a pause, so the drill's kill lands mid-upload
    # however fast this machine stores a batch.

    def request(self, method, path, body, headers):
        answer = super().request(method, path, body, headers)
        if method == "POST":
            time.sleep(float(link_pause))
        return answer


signer = SoftwareSigner(p256_key(random.Random(int(seed))))
identity = SimpleNamespace(terminal_id=int(terminal_id), signer=signer)
with Journal(journal_path) as journal:
    trust = TrustState.load(journal, TrustAnchor("INROOT00001", signer.public_key()))
    service = SyncService(journal, identity, trust, SlowLink(url, timeout=10),
                          now=lambda: int(time.time()), max_items=int(max_items))
    report = service.sync()
    print(json.dumps({"sent": report.batches_sent, "records": report.records_sent,
                      "duplicates": report.duplicates, "error": report.error}), flush=True)
"""

#: Central as its own process: the WSGI app on a free port (printed), SQLite on disk.
CENTRAL_PROCESS = r"""
import sys
from werkzeug.serving import make_server
from cardsvc.central.app import create_app
app = create_app({"DATABASE_URL": sys.argv[1]})
server = make_server("127.0.0.1", 0, app, threaded=True)
print(server.server_port, flush=True)
server.serve_forever()
"""


def _python(code: str, *args: str) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)  # fmt: skip


@dataclass
class CentralProcess:
    database_url: str
    proc: subprocess.Popen[str] | None = None
    url: str = ""

    def start(self) -> CentralProcess:
        self.proc = _python(CENTRAL_PROCESS, self.database_url)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.strip().isdigit():
            self.proc.kill()
            raise AssertionError(f"central did not start: {line!r} {self.proc.stderr.read()}")  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{line.strip()}"
        return self

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


# ----------------------------------------------------------------------------------------- world
def _terminal_key_public() -> Any:
    return p256_key(random.Random(TERMINAL_SEED)).public_key()


def _central_db(tmp_path: Path) -> str:
    """A migrated central database on disk that knows the terminal."""
    url = f"sqlite:///{tmp_path / 'central.sqlite'}"
    app = create_app({"DATABASE_URL": url})
    with get_db(app).sessions() as session:
        register_terminal(session, TERMINAL_ID, _terminal_key_public(), int(time.time()) - 3600)
        session.commit()
    get_db(app).dispose()
    return url


def _terminal_journal(tmp_path: Path) -> tuple[Path, int]:
    """A POS journal holding card-signed records (as after days offline); returns (path, records)."""
    path = tmp_path / "pos" / "journal.sqlite"
    path.parent.mkdir()
    rng = random.Random(7)
    now = int(time.time())
    n = 0
    with Journal(path) as journal, journal.transaction():
        for c in range(CARDS):
            card = SimCard.new(0x0C00_0000 + c, rng)
            for k in range(RECORDS_PER_CARD):
                record = card.transact(RecordType.CASH, 1_000, now - 3600 + k, TERMINAL_ID, 0x0FF1, 17)
                journal.add_record(record, card.public_key)
                n += 1
    return path, n


def _central_counts(database_url: str) -> dict[str, int]:
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(func.count()).select_from(TransactionRow)).scalar_one()
            distinct = conn.execute(
                select(func.count()).select_from(
                    select(TransactionRow.card_id, TransactionRow.counter).distinct().subquery()
                )
            ).scalar_one()
            batches = conn.execute(select(func.count()).select_from(BatchRow)).scalar_one()
            hashes = conn.execute(
                select(func.count(BatchRow.content_hash.distinct())).select_from(BatchRow)
            ).scalar_one()
    finally:
        engine.dispose()
    return {"records": rows, "distinct_records": distinct, "batches": batches, "distinct_batches": hashes}


def _journal_state(path: Path) -> dict[str, int]:
    with Journal(path) as journal:
        status = journal.batch_status()
        return {
            "records": len(journal.records()),
            "unbatched": len(journal.unbatched_records(1_000_000)),
            "pending_batches": status.get("pending", 0),
            "acked_batches": sum(v for k, v in status.items() if k != "pending"),
        }


def _assert_nothing_lost(database_url: str, journal: Path, made: int, tried: list[str]) -> None:
    central = _central_counts(database_url)
    terminal = _journal_state(journal)
    print("tried:")
    for line in tried:
        print(f"  - {line}")
    print(f"terminal: {terminal}")
    print(f"central:  {central}")
    assert terminal["records"] == made
    assert terminal["unbatched"] == 0 and terminal["pending_batches"] == 0, terminal
    assert central["records"] == made, "central must hold every record the terminal made, once"
    assert central["distinct_records"] == made, "no record may be stored twice"
    assert central["batches"] == central["distinct_batches"] == terminal["acked_batches"], (central, terminal)
    print(f"nothing lost: {made} records made, {central['records']} held by central, each once; "
          f"{central['batches']} batches stored once each")  # fmt: skip


@pytest.fixture
def central_process(tmp_path: Path) -> Iterator[CentralProcess]:
    proc = CentralProcess(_central_db(tmp_path))
    try:
        yield proc
    finally:
        proc.stop()


# ---------------------------------------------------------------------------------------- drills
@pytest.mark.parametrize("kill_after_batches", [1, 7])
def test_terminal_killed_mid_upload_resumes_without_loss(
    tmp_path: Path, central_process: CentralProcess, kill_after_batches: int
) -> None:
    """SIGKILL the terminal's sync process once central has stored ``kill_after_batches`` of its batches;
    start it again: it sends what is left (at most the batch in flight again, answered as a duplicate)."""
    journal, made = _terminal_journal(tmp_path)
    central = central_process.start()
    args = (str(journal), central.url, str(TERMINAL_ID), str(TERMINAL_SEED), str(BATCH_ITEMS),
            str(LINK_PAUSE_S))  # fmt: skip
    tried = [f"{made} records in {made // BATCH_ITEMS} batches, terminal process SIGKILLed once central "
             f"stored {kill_after_batches} batch(es)"]  # fmt: skip
    proc = _python(TERMINAL_PROCESS, *args)
    deadline = time.monotonic() + 120
    while _central_counts(central.database_url)["batches"] < kill_after_batches:
        assert proc.poll() is None, f"the terminal finished before the kill: {proc.communicate()}"
        assert time.monotonic() < deadline, "central stored nothing in 120 s"
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    at_kill = _central_counts(central.database_url)
    tried.append(f"killed with {at_kill['batches']} batch(es) / {at_kill['records']} records at central")
    assert at_kill["records"] < made, "the kill came too late to be a drill"
    out, err = _python(TERMINAL_PROCESS, *args).communicate(timeout=300)
    result = json.loads(out.strip().splitlines()[-1]) if out.strip() else {"stderr": err}
    assert result.get("error") is None, result
    tried.append(f"restarted terminal: {result}")
    _assert_nothing_lost(central.database_url, journal, made, tried)


@pytest.mark.parametrize("kill_on_calls", [(1,), (2, 5, 9)])
def test_central_killed_mid_upload_resumes_without_loss(
    tmp_path: Path, central_process: CentralProcess, kill_on_calls: tuple[int, ...]
) -> None:
    """SIGKILL central while a batch upload is in flight (before, during or after its commit: the delay is
    drawn at random); restart it on the same database; the terminal's next sync carries on."""
    journal_path, made = _terminal_journal(tmp_path)
    central = central_process.start()
    rng = random.Random(sum(kill_on_calls))
    tried = [f"{made} records in {made // BATCH_ITEMS} batches; central SIGKILLed during upload calls "
             f"{list(kill_on_calls)} (delay 0-40 ms after the request starts)"]  # fmt: skip

    class KillingTransport:
        """HTTP to whichever central process runs now; on the chosen calls, kill central mid-request."""

        def __init__(self) -> None:
            self.calls = 0

        def request(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
            self.calls += 1
            if self.calls in kill_on_calls and method == "POST":
                delay = rng.uniform(0.0, 0.04)
                threading.Timer(delay, central.kill).start()
                tried.append(f"call {self.calls}: central killed {delay * 1000:.0f} ms into the request")
            return HttpTransport(central.url, timeout=10).request(method, path, body, headers)

    signer = SoftwareSigner(p256_key(random.Random(TERMINAL_SEED)))
    identity = type("Identity", (), {"terminal_id": TERMINAL_ID, "signer": signer})()
    transport = KillingTransport()
    with Journal(journal_path) as journal:
        trust = TrustState.load(journal, TrustAnchor("INROOT00001", signer.public_key()))
        service = SyncService(journal, identity, trust, transport, now=lambda: int(time.time()),
                              max_items=BATCH_ITEMS)  # fmt: skip
        for attempt in range(1, 12):
            try:
                report = service.sync()
            except http.client.HTTPException as exc:  # see test_answer_cut_mid_body_is_a_network_failure
                tried.append(
                    f"sync {attempt}: RAISED {type(exc).__name__} (answer cut mid-body); central restarted"
                )
                central.kill()
                central.start()
                continue
            if report.error is None:
                sent, dup = report.batches_sent, report.duplicates
                tried.append(f"sync {attempt}: done ({sent} sent, {dup} duplicates)")
                break
            tried.append(f"sync {attempt}: stopped ({report.error[:80]}); central restarted")
            time.sleep(0.05)
            central.kill()
            central.start()
        else:
            pytest.fail(f"sync never completed: {tried}")
    assert transport.calls >= max(kill_on_calls), "every planned kill happened"
    _assert_nothing_lost(central.database_url, journal_path, made, tried)


def test_answer_cut_mid_body_is_a_network_failure() -> None:
    """Central dies after its status line and headers, before the body: the terminal must see an
    unreachable central (ConnectionError, the batch stays queued), not an unexpected exception."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def answer_and_die() -> None:
        conn, _ = server.accept()
        request = b""
        while b"\r\n\r\n" not in request:  # the whole request is read, so closing sends FIN, not RST
            request += conn.recv(65536)
        head, _, body = request.partition(b"\r\n\r\n")
        length = next(
            int(h.split(b":")[1]) for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")
        )
        while len(body) < length:
            body += conn.recv(65536)
        conn.sendall(b"HTTP/1.1 201 CREATED\r\nContent-Type: application/json\r\nContent-Length: 241\r\n\r\n")
        conn.shutdown(socket.SHUT_WR)
        conn.close()

    thread = threading.Thread(target=answer_and_die, daemon=True)
    thread.start()
    try:
        with pytest.raises(ConnectionError):
            HttpTransport(f"http://127.0.0.1:{port}", timeout=5).request("POST", "/api/v1/batches", b"{}", {})
    finally:
        thread.join(timeout=5)
        server.close()
