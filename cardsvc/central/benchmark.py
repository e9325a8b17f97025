"""``cardsvc bench ingest``: transactions ingested + verified + reconciled per second, beside the ceiling.

The ceiling is the raw ECDSA P-256 verification rate of the same records on one core (pyca/cryptography,
DER signatures and key objects prepared beforehand), timed batch by batch interleaved with the ingest.
The figure is the whole service path without HTTP: parse the signed batch, verify the terminal's batch
signature, verify every record with its card's key, store raw and parsed rows, then one reconciliation
pass over everything stored. Target: at least half the ceiling, on SQLite (temporary file) and PostgreSQL
(a temporary database on DATABASE_URL or the local server; skipped with a note when none answers).
"""

from __future__ import annotations

import json
import os
import random
import secrets
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from cardsvc.central.extensions import Database
from cardsvc.central.migrate import upgrade
from cardsvc.central.services.ingest import ingest_batch
from cardsvc.central.services.reconcile import reconcile
from cardsvc.central.services.terminals import DbTerminalDirectory, register_terminal
from cardsvc.central.testing import SimCard, SimTerminal
from cardsvc.formats.batch import BatchKind
from cardsvc.formats.transaction import SIGNED_LENGTH, RecordType
from cardsvc.pki.batchverify import shared_verifier
from cardsvc.pki.signer import load_public_point

TARGET_FRACTION = 0.5
LOCAL_SERVER = "postgresql+psycopg2://postgres:postgres@127.0.0.1:5432/postgres"
NOW = 1_800_000_000


@dataclass(frozen=True)
class Workload:
    terminal: SimTerminal
    camp: bytes
    bodies: list[bytes]
    records: list[bytes]
    card_keys: list[bytes]


def make_workload(records: int, per_card: int, batch_size: int, seed: int = 1) -> Workload:
    """Cards with honest, chained logs, packed into signed transaction batches."""
    rng = random.Random(seed)
    terminal = SimTerminal.new(0xBE4C_0001, rng)
    raw: list[bytes] = []
    keys: list[bytes] = []
    items = []
    camp_cards = []
    card_number = 0
    while len(raw) < records:
        card_number += 1
        card = SimCard.new(0xB000_0000 + card_number, rng)
        for n in range(min(per_card, records - len(raw))):
            kind = RecordType.BLOCK if n % 2 == 0 else RecordType.SETTLE
            amount = 10_000 if kind is RecordType.BLOCK else 9_000
            reference = 100 + n % 7 if kind is RecordType.BLOCK else card.counter
            card.transact(kind, amount, NOW - 86_400 + n * 60, terminal.terminal_id, 7, 1 + card_number % 20,
                          reference=reference)  # fmt: skip
        camp_cards.append(card.camp_card("Bench", NOW - 100 * 86_400, NOW + 200 * 86_400, fko_id=0xF))
        for item in card.items():
            items.append(item)
            raw.append(item.record)
            keys.append(item.card_key)
    bodies = [
        terminal.batch(BatchKind.TRANSACTIONS, items[i : i + batch_size], NOW)
        for i in range(0, len(items), batch_size)
    ]
    camp = terminal.batch(BatchKind.CAMP, camp_cards, NOW - 90 * 86_400)
    return Workload(terminal, camp, bodies, raw, keys)


Prepared = list[tuple[ec.EllipticCurvePublicKey, bytes, bytes]]


def prepare_ceiling(work: Workload, batch_size: int) -> list[Prepared]:
    """Per batch, what the raw verification needs ready: key objects, DER signatures, signed bytes."""
    key_objects: dict[bytes, ec.EllipticCurvePublicKey] = {}
    prepared: Prepared = []
    for record, key in zip(work.records, work.card_keys, strict=True):
        if key not in key_objects:
            key_objects[key] = load_public_point(key)
        sig = record[SIGNED_LENGTH:]
        der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
        prepared.append((key_objects[key], der, record[:SIGNED_LENGTH]))
    return [prepared[i : i + batch_size] for i in range(0, len(prepared), batch_size)]


def _verify_all(prepared: Prepared) -> None:
    algorithm = ec.ECDSA(hashes.SHA256())
    for public_key, der, message in prepared:
        public_key.verify(der, message, algorithm)


def ingest_rate(url: str, work: Workload, ceiling_slices: list[Prepared]) -> dict[str, Any]:
    """Ingest every batch and reconcile once on the (empty, migrated) database at ``url``.

    The ceiling is measured interleaved with the figure: before each batch is ingested, the raw
    verification of that same batch's records is timed. Both thus see the same load on a shared machine.
    """
    db = Database(url)
    ceiling_seconds = 0.0
    ingested = 0.0
    try:
        upgrade(db.engine)
        with db.sessions() as session:
            register_terminal(
                session, work.terminal.terminal_id, work.terminal.key.public_key(), NOW - 100 * 86_400
            )
            session.commit()
            ingest_batch(session, DbTerminalDirectory(session), work.camp, "bench", NOW)  # set-up, not timed
        shared_verifier().warm()  # a running server's verification workers are up: not timed either
        with db.sessions() as session:
            directory = DbTerminalDirectory(session)
            for body, prepared in zip(work.bodies, ceiling_slices, strict=True):
                start = time.perf_counter()
                _verify_all(prepared)
                middle = time.perf_counter()
                result = ingest_batch(session, directory, body, "bench", NOW)
                ingested += time.perf_counter() - middle
                ceiling_seconds += middle - start
                assert not result.duplicate
        start = time.perf_counter()
        with db.sessions() as session:
            report = reconcile(session, NOW)
        reconciled = time.perf_counter() - start
    finally:
        db.dispose()
    if report.records != len(work.records) or report.flags:
        raise RuntimeError(f"benchmark data did not reconcile cleanly: {report.to_json()}")
    total = ingested + reconciled
    return {
        "records": len(work.records),
        "seconds": round(total, 3),
        "per_second": round(len(work.records) / total, 1),
        "ingest_seconds": round(ingested, 3),
        "reconcile_seconds": round(reconciled, 3),
        "ceiling_verify_per_second": round(len(work.records) / ceiling_seconds, 1),
        "fraction_of_ceiling": round(len(work.records) / total / (len(work.records) / ceiling_seconds), 3),
    }


def _postgres_database() -> tuple[str, str] | None:
    server = make_url(os.environ.get("DATABASE_URL") or LOCAL_SERVER)
    if server.drivername == "postgresql":
        server = server.set(drivername="postgresql+psycopg2")
    name = f"cardsvc_bench_{secrets.token_hex(4)}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception:  # no server: reported as skipped
        return None
    finally:
        admin.dispose()
    return server.render_as_string(hide_password=False), name


def _drop_postgres(server: str, name: str) -> None:
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _measure_backend(
    backend: str, work: Workload, slices: list[Prepared], repeats: int, tmp: Path
) -> dict[str, Any]:
    """``repeats`` runs on a fresh database each; the run with the median fraction of its ceiling is
    reported (the machine is shared and noisy), with every run's figures beside it."""
    runs: list[dict[str, Any]] = []
    for attempt in range(repeats):
        if backend == "sqlite":
            runs.append(ingest_rate(f"sqlite:///{tmp / f'bench-{attempt}.db'}", work, slices))
            continue
        postgres = _postgres_database()
        if postgres is None:
            return {"skipped": "no PostgreSQL server answered (set DATABASE_URL)"}
        server, name = postgres
        try:
            url = make_url(server).set(database=name).render_as_string(False)
            runs.append(ingest_rate(url, work, slices))
        finally:
            _drop_postgres(server, name)
    run = sorted(runs, key=lambda r: float(r["fraction_of_ceiling"]))[len(runs) // 2]
    return {
        **run,
        "meets_target": run["fraction_of_ceiling"] >= TARGET_FRACTION,
        "all_runs_per_second": [r["per_second"] for r in runs],
        "all_ceilings_per_second": [r["ceiling_verify_per_second"] for r in runs],
        "all_fractions": [r["fraction_of_ceiling"] for r in runs],
    }


def run_ingest_benchmark(
    records: int = 20_000, batch_size: int = 2_000, repeats: int = 3, as_json: bool = False
) -> bool:
    """Measure and print; True when every backend measured reaches the target fraction of the ceiling."""
    work = make_workload(records, per_card=20, batch_size=batch_size)
    slices = prepare_ceiling(work, batch_size)
    results: dict[str, Any] = {
        "records": len(work.records),
        "batch_size": batch_size,
        "repeats": repeats,
        "target_fraction": TARGET_FRACTION,
        "load_average_1min_before": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
        "backends": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        for backend in ("sqlite", "postgresql"):
            results["backends"][backend] = _measure_backend(backend, work, slices, repeats, Path(tmp))
    ok = all(f.get("meets_target", True) for f in results["backends"].values())
    if as_json:
        print(json.dumps(results, indent=2, sort_keys=True))
        return ok
    print(
        f"records: {len(work.records)} in batches of {batch_size}; median of {repeats} runs per backend; "
        f"load average {results['load_average_1min_before']} on {results['cpus']} CPUs before the run; "
        "ceiling timed batch by batch, interleaved with the ingest"
    )
    for backend, figures in results["backends"].items():
        if "skipped" in figures:
            print(f"{backend:10} skipped: {figures['skipped']}")
            continue
        verdict = "OK" if figures["meets_target"] else "BELOW TARGET"
        print(
            f"{backend:10} ingested+verified+reconciled {figures['per_second']:8.0f} /s  beside ceiling "
            f"(raw ECDSA P-256 verify, 1 core) {figures['ceiling_verify_per_second']:8.0f} /s  "
            f"= {figures['fraction_of_ceiling']:.2f} (target >= {TARGET_FRACTION}) {verdict}  "
            f"[ingest {figures['ingest_seconds']} s, reconcile {figures['reconcile_seconds']} s]"
        )
    return ok
