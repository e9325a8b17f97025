"""Ingest: verify an uploaded batch end to end, then store it raw and parsed, exactly once.

Order: parse strictly (400), find the batch's terminal (422 unknown, 403 revoked when the batch was made),
verify the terminal's batch signature (422), answer a batch already held with its original receipt (200),
verify every item (each card record's signature with the card's key: 422 naming the item), then insert the
batch row and its items in one transaction. The content hash is UNIQUE in the database: when two identical
uploads race, the loser's insert fails and it answers with the winner's receipt. Records shared by different
batches are inserted with ON CONFLICT DO NOTHING on (card, counter, record hash): stored once.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import logging
import time as _time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from enum import StrEnum
from operator import itemgetter
from typing import Any, Final, Protocol

from sqlalchemy import JSON, Table, func, select
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session

from cardsvc.central.errors import (
    AuthenticationError,
    ConflictError,
    ForbiddenError,
    MalformedError,
    UnprocessableError,
)
from cardsvc.central.models import BatchRow, Card, FkoLedgerRow, SealedTemplates, TransactionRow
from cardsvc.central.services.chunks import in_chunks
from cardsvc.central.services.ledgers import check_signed_ledger
from cardsvc.central.services.renewals import apply_renewals
from cardsvc.central.services.terminals import TerminalDirectory, public_key_bytes
from cardsvc.formats.batch import (
    Batch,
    BatchKind,
    CampCard,
    FkoLedgerEntry,
    SignedBatch,
    TransactionItem,
    id_hex,
    load_public_key,
)
from cardsvc.formats.errors import FormatError, SignatureError
from cardsvc.formats.transaction import SIGNED_LENGTH, RecordType, unpack_fields, verify_raw_signature
from cardsvc.pki.batchverify import BatchVerifier, Pending, shared_verifier
from cardsvc.pki.chain import RevocationLookup, TrustAnchor

log = logging.getLogger(__name__)  # batch ids, kinds, terminals and counts only: never keys or templates

CHUNK: Final = 1000
PIPELINE_CHUNK: Final = 500  # PostgreSQL pipeline: the last chunk's COPY is the one nothing overlaps
COPY_THRESHOLD: Final = 200  # PostgreSQL: from this many rows on, insert by COPY
RETRIES: Final = 5


class RecordRaceError(Exception):
    """A concurrent upload stored some of the same records first: roll back and store the rest."""


class KeySource(StrEnum):
    """Which key a stored record was verified with."""

    REGISTERED = "registered"  # the card's key from its camp upload
    PRESENTED = "presented"  # only the key in the batch (card not yet known: re-checked by reconciliation)
    CERTIFIED = "certified"  # card not yet known, its key certified by the item's card_chain (to the root)


@dataclass(frozen=True, slots=True)
class Receipt:
    """What central tells the terminal it holds; the same for every upload of the same content."""

    batch_id: int
    content_hash: str
    kind: str
    terminal_id: str
    seq: int
    items: int
    new_items: int
    received_at: int

    def to_json(self) -> dict[str, Any]:
        return {
            "batch_id": self.batch_id,
            "content_hash": self.content_hash,
            "kind": self.kind,
            "terminal_id": self.terminal_id,
            "seq": self.seq,
            "items": self.items,
            "new_items": self.new_items,
            "received_at": self.received_at,
        }

    @classmethod
    def of(cls, row: BatchRow) -> Receipt:
        return cls(
            batch_id=row.id,
            content_hash=row.content_hash,
            kind=row.kind,
            terminal_id=row.terminal_id,
            seq=row.seq,
            items=row.item_count,
            new_items=row.new_items,
            received_at=row.received_at,
        )


@dataclass(frozen=True, slots=True)
class IngestResult:
    receipt: Receipt
    duplicate: bool


class CardKeyCheck(Protocol):
    """Checks a camp card's key beyond the terminal's word (e.g. its certificate chain, pki_keys.py)."""

    def check(self, card: CampCard, card_key: bytes, where: str) -> None: ...

    def certify_records(
        self,
        items: Sequence[TransactionItem],
        parsed: Sequence[tuple[Any, ...]],
        registered: dict[str, bytes],
    ) -> dict[str, bytes]:
        """Keys of not-yet-registered cards certified by their items' ``card_chain`` at the records' times
        (card id hex -> uncompressed point); raise UnprocessableError for a chain that does not hold."""
        ...


def ingest_batch(
    session: Session, directory: TerminalDirectory, wire: bytes, uploaded_by: str, now: int,
    cards: CardKeyCheck | None = None, *, anchor: TrustAnchor | None = None,
    revocations: RevocationLookup | None = None, require_signed_ledgers: bool | None = None,
) -> IngestResult:  # fmt: skip
    """Verify and store one uploaded batch (the wire document); raise a ServiceError to refuse it.

    ``cards``: when given, every camp card's key is checked by it too (central with a trust anchor).
    ``anchor``: FKO ledger items' officer certificates are validated to it (services/ledgers.py).
    ``require_signed_ledgers`` (default: when ``anchor`` is given): an FKO ledger item without the officer
    card's signature is refused (``unsigned_ledger``).

    A new transactions batch holding RENEWAL records then moves the register of those cards to the
    renewals central authorised (services/renewals.py), in a transaction of its own: the batch is stored
    whatever happens there, and reconciliation applies what was not applied.
    """
    result, rows = _ingest(session, directory, wire, uploaded_by, now, cards, anchor, revocations,
                           require_signed_ledgers)  # fmt: skip
    renewed = sorted({r["card_id"] for r in rows if r["record_type"] == RecordType.RENEWAL})
    if renewed and not result.duplicate:
        try:
            apply_renewals(session, now, renewed)
            session.commit()
        except SQLAlchemyError:
            session.rollback()
            log.warning("batch %s: the card register was not moved for %d renewed card(s); reconciliation "
                        "will", result.receipt.batch_id, len(renewed), exc_info=True)  # fmt: skip
    return result


def _ingest(
    session: Session, directory: TerminalDirectory, wire: bytes, uploaded_by: str, now: int,
    cards: CardKeyCheck | None, anchor: TrustAnchor | None, revocations: RevocationLookup | None,
    require_signed_ledgers: bool | None,
) -> tuple[IngestResult, list[dict[str, Any]]]:  # fmt: skip
    """:func:`ingest_batch` itself; also returns the stored transaction rows (none for a duplicate)."""
    try:
        signed = SignedBatch.parse(wire)
    except FormatError as exc:
        raise MalformedError("malformed_batch", str(exc)) from None
    batch = signed.batch
    content_hash = hashlib.sha256(signed.canonical).hexdigest()
    _verify_envelope(directory, signed, signed.canonical)
    existing = _find(session, content_hash)
    session.rollback()  # end the read transaction: on SQLite every transaction holds the write lock
    if existing is not None:
        return IngestResult(existing, duplicate=True), []
    officer_checks: dict[int, str | None] = {}
    for index, item in enumerate(batch.items):
        if isinstance(item, FkoLedgerEntry):
            where = f"batch.items[{index}]"
            officer_checks[index] = check_signed_ledger(
                item, where, anchor=anchor, now=now, revocations=revocations,
                required=anchor is not None if require_signed_ledgers is None else require_signed_ledgers,
            )  # fmt: skip
    if cards is not None:
        for index, item in enumerate(batch.items):
            if isinstance(item, CampCard):
                key = public_key_bytes(load_public_key(item.card_key))
                cards.check(item, key, f"batch.items[{index}]")
    rows: list[dict[str, Any]] = []
    verify: Callable[[], None] | None = None
    items = [i for i in batch.items if isinstance(i, TransactionItem)]
    if items and _pipelined(session, items):
        result, rows = _ingest_pipelined(session, batch, items, wire, content_hash, uploaded_by, now, cards)
        if result is not None:
            return result, rows
    elif items:  # verified once, before any retry, outside any transaction: the rows are built while the
        # signatures are checked (on worker processes for a large batch), the check completed before commit
        parsed = parse_records(items)
        registered = registered_keys(session, parsed)
        session.rollback()
        certified = _certified(cards, items, parsed, registered)
        pending = verified_rows(items, parsed, registered, len(items), certified, check_after=True)
        rows = _sorted_unique([next(pending)])
        verify = functools.partial(_exhaust, pending)
    for attempt in range(RETRIES):
        try:
            stored = _store(
                session, batch, rows, wire, content_hash, uploaded_by, now, officer_checks, verify
            )
            return stored, rows
        except (IntegrityError, RecordRaceError):
            session.rollback()
            existing = _find(session, content_hash)
            if existing is not None:
                return IngestResult(existing, duplicate=True), []
            if attempt == RETRIES - 1:
                raise
            # a concurrent batch committed some of the same records first: look again, store the rest
        except OperationalError as exc:
            session.rollback()
            if attempt == RETRIES - 1 or not _retriable(exc):
                raise
            _time.sleep(0.05 * (attempt + 1))
    raise AssertionError("unreachable")


def _exhaust(chunks: Iterator[Any]) -> None:
    for _ in chunks:
        pass


def _certified(
    cards: CardKeyCheck | None, items: Sequence[TransactionItem], parsed: Sequence[tuple[Any, ...]],
    registered: dict[str, bytes],
) -> dict[str, bytes]:  # fmt: skip
    if cards is None or not any(i.card_chain for i in items):
        return {}
    return cards.certify_records(items, parsed, registered)


def _pipelined(session: Session, items: Sequence[TransactionItem]) -> bool:
    return session.get_bind().dialect.name == "postgresql" and len(items) >= COPY_THRESHOLD


def _batch_row(batch: Batch, wire: bytes, content_hash: str, uploaded_by: str, now: int) -> BatchRow:
    return BatchRow(
        content_hash=content_hash,
        kind=batch.kind.value,
        terminal_id=id_hex(batch.terminal_id),
        seq=batch.seq,
        created=batch.created,
        received_at=now,
        uploaded_by=uploaded_by,
        raw=wire,
        item_count=len(batch.items),
        new_items=0,
        status="accepted",
    )


def _ingest_pipelined(
    session: Session, batch: Batch, items: Sequence[TransactionItem], wire: bytes, content_hash: str,
    uploaded_by: str, now: int, cards: CardKeyCheck | None = None,
) -> tuple[IngestResult | None, list[dict[str, Any]]]:  # fmt: skip
    """PostgreSQL, large batches: a second thread COPYs chunk k (psycopg2 releases the GIL while the
    server works) while chunk k is verified and chunk k+1 built, all in one transaction that is committed
    only once every record verified, and rolled back if any fails.

    Returns (result, every verified row). The result is None when a concurrent upload raced us to some
    records (or to the same batch): the transaction is rolled back and the caller retries with the rows.
    """
    parsed = parse_records(items)
    registered = registered_keys(session, parsed)
    certified = _certified(cards, items, parsed, registered)
    row = _batch_row(batch, wire, content_hash, uploaded_by, now)
    verified: list[dict[str, Any]] = []
    # chunk k is COPYed while it is verified: nothing is committed until every record of the batch verified
    chunks = verified_rows(items, parsed, registered, PIPELINE_CHUNK, certified, check_after=True)
    try:
        session.add(row)
        session.flush()
    except IntegrityError:
        session.rollback()
        return None, [r for chunk in chunks for r in chunk]
    dbapi = session.connection().connection.dbapi_connection
    raced = False
    copied = 0
    pending: Future[int] | None = None
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="cardsvc-copy") as pool:
        try:
            for chunk in chunks:
                for r in chunk:
                    r["batch_id"] = row.id
                verified.extend(chunk)
                if raced:
                    continue  # keep verifying: the retry needs every row
                if pending is not None:
                    raced, copied = _copied(pending, copied)
                if not raced:
                    pending = pool.submit(_copy_fresh, dbapi, chunk, lookup=False)
            if pending is not None and not raced:
                raced, copied = _copied(pending, copied)
        except BaseException:
            if pending is not None:
                wait([pending])
            session.rollback()
            raise
    if raced:
        session.rollback()
        return None, verified
    row.new_items = copied  # the rows COPY stored: the ones not already held
    session.commit()
    log.info("batch %s stored: %s from terminal %s, %d items, %d new", row.id, row.kind, row.terminal_id,
             row.item_count, row.new_items)  # fmt: skip
    return IngestResult(Receipt.of(row), duplicate=False), verified


def _copied(pending: Future[int], copied: int) -> tuple[bool, int]:
    """(raced, rows copied so far) once the pending COPY is done."""
    try:
        return False, copied + pending.result()
    except RecordRaceError:
        return True, copied


def _retriable(exc: OperationalError) -> bool:
    """Deadlocks and serialisation failures (PostgreSQL) and lock time-outs (SQLite) are worth a retry."""
    code = getattr(exc.orig, "pgcode", None)
    return code in ("40P01", "40001") or "database is locked" in str(exc.orig)


def _verify_envelope(directory: TerminalDirectory, signed: SignedBatch, canonical: bytes) -> None:
    batch = signed.batch
    terminal_hex = id_hex(batch.terminal_id)
    try:
        terminal = directory.lookup(terminal_hex)
    except AuthenticationError:
        raise UnprocessableError(
            "unknown_batch_terminal", f"batch.terminal_id {terminal_hex} is not a registered terminal"
        ) from None
    if terminal.revoked_by(batch.created):
        raise ForbiddenError(
            "revoked_batch_terminal",
            f"batch made at {batch.created} by terminal {terminal_hex}, revoked at {terminal.revoked_at}",
        )
    try:
        verify_raw_signature(terminal.public_key, canonical, signed.signature)
    except SignatureError:
        raise UnprocessableError(
            "bad_batch_signature", f"the batch signature does not verify with terminal {terminal_hex}'s key"
        ) from None


def _find(session: Session, content_hash: str) -> Receipt | None:
    row = session.execute(select(BatchRow).where(BatchRow.content_hash == content_hash)).scalar_one_or_none()
    return None if row is None else Receipt.of(row)


def _store(
    session: Session, batch: Batch, rows: list[dict[str, Any]], wire: bytes, content_hash: str,
    uploaded_by: str, now: int, officer_checks: dict[int, str | None] | None = None,
    before_commit: Callable[[], None] | None = None,
) -> IngestResult:  # fmt: skip
    """Insert the batch and its items; ``before_commit`` (e.g. the rest of the signature check) runs in the
    open transaction, which is rolled back if it raises."""
    row = _batch_row(batch, wire, content_hash, uploaded_by, now)
    if batch.kind is BatchKind.TRANSACTIONS:
        session.add(row)
        session.flush()  # the UNIQUE content hash is checked here
        for r in rows:
            r["batch_id"] = row.id
        store_transactions(session, rows)
        row.new_items = session.execute(
            select(func.count()).select_from(TransactionRow).where(TransactionRow.batch_id == row.id)
        ).scalar_one()
    elif batch.kind is BatchKind.CAMP:
        cards = [i for i in batch.items if isinstance(i, CampCard)]
        session.add(row)
        session.flush()
        row.new_items = _store_cards(session, cards, row.id, now)
    elif batch.kind is BatchKind.FALLBACKS:  # services/fallbacks.py
        from cardsvc.central.services.fallbacks import store_fallbacks
        from cardsvc.formats.batch import FallbackItem

        session.add(row)
        session.flush()
        fallbacks = [i for i in batch.items if isinstance(i, FallbackItem)]
        row.new_items = store_fallbacks(session, fallbacks, row.terminal_id, row.id)
    else:
        entries = [(n, i) for n, i in enumerate(batch.items) if isinstance(i, FkoLedgerEntry)]
        session.add(row)
        session.flush()
        checks = officer_checks or {}
        session.add_all(
            FkoLedgerRow(
                batch_id=row.id,
                fko_id=id_hex(e.fko_id),
                activated=[id_hex(c) for c in e.activated],
                officer_verified=checks.get(n),
            )
            for n, e in entries
        )
        row.new_items = len(entries)
    if before_commit is not None:
        try:
            before_commit()
        except BaseException:
            session.rollback()
            raise
    session.commit()
    log.info("batch %s stored: %s from terminal %s, %d items, %d new", row.id, row.kind, row.terminal_id,
             row.item_count, row.new_items)  # fmt: skip
    return IngestResult(Receipt.of(row), duplicate=False)


def transaction_rows(session: Session, items: Sequence[TransactionItem]) -> list[dict[str, Any]]:
    """Parse and verify every record; return insert rows sorted by (card, counter, hash).

    Raises UnprocessableError naming the first bad item.
    """
    parsed = parse_records(items)
    registered = registered_keys(session, parsed)
    return _sorted_unique(verified_rows(items, parsed, registered, len(items) or 1))


def _sorted_unique(chunks: Iterable[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """One row per (card, counter, record hash), sorted so concurrent inserts lock rows in one order."""
    rows: dict[tuple[str, int, bytes], dict[str, Any]] = {}
    for chunk in chunks:
        rows.update(((r["card_id"], r["counter"], r["content_hash"]), r) for r in chunk)
    return [rows[k] for k in sorted(rows)]


def parse_records(items: Sequence[TransactionItem]) -> list[tuple[Any, ...]]:
    """Unpack every record (no dataclass per record: this is the hot loop of ingest)."""
    parsed: list[tuple[Any, ...]] = []
    for index, item in enumerate(items):
        try:
            parsed.append(unpack_fields(item.record))
        except FormatError as exc:
            raise UnprocessableError("bad_record", f"batch.items[{index}].record: {exc}") from None
    return parsed


def registered_keys(session: Session, parsed: Sequence[tuple[Any, ...]]) -> dict[str, bytes]:
    """The registered public keys of the cards these records name (cards not yet registered are absent)."""
    card_ids = sorted({f"{fields[2]:016x}" for fields in parsed})
    registered: dict[str, bytes] = {}
    for chunk in in_chunks(card_ids, CHUNK):
        query = select(Card.card_id, Card.public_key).where(Card.card_id.in_(chunk))
        registered.update((k, v) for k, v in session.execute(query))
    return registered


def verified_rows(
    items: Sequence[TransactionItem], parsed: Sequence[tuple[Any, ...]], registered: dict[str, bytes],
    chunk_size: int, certified: dict[str, bytes] | None = None, verifier: BatchVerifier | None = None,
    *, check_after: bool = False,
) -> Iterator[list[dict[str, Any]]]:  # fmt: skip
    """Verify each record with its card's key and yield insert rows, ``chunk_size`` at a time (no I/O).

    Keys are parsed once per distinct key. Signatures are checked by ``verifier`` (default: the process's
    :func:`cardsvc.pki.batchverify.shared_verifier`): a large batch goes to worker processes in jobs,
    all submitted up front, while this thread builds the rows; a chunk is yielded only once every
    signature in it verified. ``check_after``: a chunk is yielded first and its signatures are checked
    when the next one is asked for (the last: when the generator ends), so a caller inside a transaction
    it rolls back on error can store chunk k while chunk k is verified. Raises UnprocessableError naming
    the first bad item.
    """
    verifier = verifier or shared_verifier()
    keys: dict[bytes, bytes] = {}
    points: list[bytes] = []
    for index, item in enumerate(items):
        point = keys.get(item.card_key)
        if point is None:
            try:
                key = load_public_key(item.card_key, f"batch.items[{index}].card_key")
            except FormatError as exc:
                raise UnprocessableError("bad_card_key", str(exc)) from None
            point = keys[item.card_key] = public_key_bytes(key)
        points.append(point)
    signed = [
        (point, item.record[:SIGNED_LENGTH], item.record[SIGNED_LENGTH:])
        for point, item in zip(points, items, strict=True)
    ]
    jobs = verifier.jobs(signed)
    checked = 0  # jobs[:checked] all verified
    rows: list[dict[str, Any]] = []
    total = len(items)
    sha256 = hashlib.sha256
    for index, (item, fields, normalised) in enumerate(zip(items, parsed, points, strict=True)):
        card_hex = f"{fields[2]:016x}"
        known = registered.get(card_hex)
        source = KeySource.REGISTERED
        if known is None and certified and card_hex in certified:
            known, source = certified[card_hex], KeySource.CERTIFIED
        if known is not None and known != normalised:
            _check_jobs(jobs, checked, index, items, parsed)  # an earlier bad signature is reported first
            raise UnprocessableError(
                "card_key_mismatch",
                f"batch.items[{index}] (card {card_hex} counter {fields[3]}): "
                "card_key is not the card's registered key",
            )
        raw = item.record
        rows.append(
            {
                "card_id": card_hex,
                "counter": fields[3],
                "content_hash": sha256(raw).digest(),
                "raw": raw,
                "record_type": fields[1],
                "scheme_id": fields[4],
                "amount": fields[5],
                "balance_after": fields[6],
                "time": fields[7],
                "terminal_id": f"{fields[8]:016x}",
                "operator_id": f"{fields[9]:016x}",
                "facility_id": fields[10],
                "reference": fields[11],
                "member_index": fields[12],
                "prev_hash": fields[13],
                "key_source": KeySource.PRESENTED if known is None else source,
            }
        )
        if len(rows) >= chunk_size or index == total - 1:
            if not check_after:
                checked = _check_jobs(jobs, checked, index + 1, items, parsed)
            yield rows
            rows = []
            if check_after:
                checked = _check_jobs(jobs, checked, index + 1, items, parsed)


def _check_jobs(
    jobs: Sequence[tuple[int, int, Pending]], checked: int, upto: int,
    items: Sequence[TransactionItem], parsed: Sequence[tuple[Any, ...]],
) -> int:  # fmt: skip
    """Wait for the verification jobs covering items before ``upto``; raise for the first bad signature.

    Returns how many jobs are now known good.
    """
    while checked < len(jobs) and jobs[checked][0] < upto:
        start, _, future = jobs[checked]
        bad = future.result()
        if bad is not None:
            index = start + bad
            fields = parsed[index]
            raise UnprocessableError(
                "bad_record_signature",
                f"batch.items[{index}] (card {fields[2]:016x} counter {fields[3]}): "
                "the card's signature does not verify",
            )
        checked += 1
    return checked


def store_transactions(session: Session, rows: list[dict[str, Any]]) -> None:
    """Insert the records not already held. Large batches on PostgreSQL: look up which are held, then COPY
    the rest straight into the table; a concurrent batch committing the same record first makes the COPY
    fail on the UNIQUE constraint and :func:`ingest_batch` retries. Otherwise ON CONFLICT DO NOTHING."""
    conflict = ["card_id", "counter", "content_hash"]
    if session.get_bind().dialect.name != "postgresql" or len(rows) < COPY_THRESHOLD:
        insert_ignore(session, TransactionRow.__table__, rows, conflict)
        return
    dbapi = session.connection().connection.dbapi_connection
    _copy_fresh(dbapi, rows)


def _copy_fresh(dbapi: Any, rows: list[dict[str, Any]], *, lookup: bool = True) -> int:
    """PostgreSQL: COPY the rows not already held straight into ``transactions`` (DB-API level, so it can
    run in the pipeline thread). A concurrent batch that stored one of them first makes this fail on the
    UNIQUE constraint: raised as RecordRaceError, and ingest retries. Returns how many rows it stored.

    ``lookup=False`` (the pipeline's first attempt): no look-up, every row COPYed; a record already held
    then fails the COPY like a race does, and the retry stores the batch with the look-up."""
    unique: dict[tuple[str, int, bytes], dict[str, Any]] = {
        (r["card_id"], r["counter"], r["content_hash"]): r for r in rows
    }
    cursor = dbapi.cursor()
    try:
        if lookup:
            wanted = sorted({(r["card_id"], r["counter"]) for r in rows})
            cursor.execute(  # only the (card, counter) pairs of these rows, through the unique index
                "SELECT t.card_id, t.counter, t.content_hash FROM transactions t"
                " JOIN unnest(%s::varchar[], %s::bigint[]) AS k(card_id, counter)"
                " ON t.card_id = k.card_id AND t.counter = k.counter",
                ([c for c, _ in wanted], [n for _, n in wanted]),
            )
            for card_id, counter, digest in cursor.fetchall():
                unique.pop((card_id, counter, bytes(digest)), None)
        fresh = [unique[k] for k in sorted(unique)]
        if fresh:
            columns = list(fresh[0])
            cursor.copy_from(io.StringIO(_copy_lines(columns, fresh, set())), "transactions", columns=columns)
        return len(fresh)
    except Exception as exc:  # psycopg2's own errors: the raw cursor bypasses SQLAlchemy's wrapping
        code = getattr(exc, "pgcode", None)
        if code == "23505":
            raise RecordRaceError("a concurrent batch stored some of these records first") from exc
        if code in ("40P01", "40001"):
            raise RecordRaceError(f"database conflict {code}") from exc
        raise
    finally:
        cursor.close()


def _store_cards(session: Session, cards: Sequence[CampCard], batch_id: int, now: int) -> int:
    """Insert new cards; the same card again with the same key is fine, with another key a conflict."""
    by_id = {id_hex(c.card_id): c for c in cards}
    normalised = {cid: public_key_bytes(load_public_key(c.card_key)) for cid, c in by_id.items()}
    existing: dict[str, bytes] = {}
    for chunk in in_chunks(sorted(by_id), CHUNK):
        query = select(Card.card_id, Card.public_key).where(Card.card_id.in_(chunk))
        existing.update((k, v) for k, v in session.execute(query))
    for cid, key in existing.items():
        if key != normalised[cid]:
            raise ConflictError("card_conflict", f"card {cid} is already registered with another key")
    rows = [
        {
            "card_id": cid,
            "household_id": c.household_id,
            "district": c.district,
            "scheme_id": c.scheme_id,
            "policy_start": c.policy_start,
            "policy_end": c.policy_end,
            "cover_paise": c.cover_paise,
            "public_key": normalised[cid],
            "fko_id": id_hex(c.fko_id),
            "members": [m.to_json() for m in c.members],
            "batch_id": batch_id,
            "revoked_at": None,
            "schemes": [x.to_json() for x in c.schemes] or None,
        }
        for cid, c in sorted(by_id.items())
        if cid not in existing
    ]
    insert_ignore(session, Card.__table__, rows, ["card_id"])
    sealed = [
        {
            "card_id": cid,
            "district": c.district,
            "sealed": c.templates,
            "received_at": now,
            "searched_at": None,
        }
        for cid, c in sorted(by_id.items())
        if c.templates and cid not in existing
    ]
    insert_ignore(session, SealedTemplates.__table__, sealed, ["card_id"])
    return len(rows)


def insert_ignore(session: Session, table: Any, rows: list[dict[str, Any]], conflict: list[str]) -> None:
    """Bulk INSERT ... ON CONFLICT (conflict) DO NOTHING, in chunks, on PostgreSQL and SQLite.

    Goes to the DB-API cursor (psycopg2 ``execute_values``, sqlite3 ``executemany``): SQLAlchemy 2.1 sends
    an ON CONFLICT executemany to psycopg2 row by row, which was the ingest bottleneck. Table and column
    names come from our own metadata, values are always bound parameters.
    """
    if not rows:
        return
    assert isinstance(table, Table)
    columns = list(rows[0])
    json_columns = {c.name for c in table.columns if isinstance(c.type, JSON)}
    dbapi = session.connection().connection.dbapi_connection
    assert dbapi is not None
    dialect = session.get_bind().dialect.name
    names = ", ".join(columns)
    target = ", ".join(conflict)
    cursor = dbapi.cursor()
    try:
        if dialect == "postgresql":
            from psycopg2.extras import Json, execute_values

            def pg(value: Any, column: str) -> Any:
                return Json(value) if column in json_columns and value is not None else value

            if len(rows) >= COPY_THRESHOLD:
                _copy_insert_ignore(cursor, table.name, columns, json_columns, rows, target)
                return
            sql = f"INSERT INTO {table.name} ({names}) VALUES %s ON CONFLICT ({target}) DO NOTHING"
            for chunk in in_chunks(rows, CHUNK):
                values = [tuple(pg(row[c], c) for c in columns) for row in chunk]
                execute_values(cursor, sql, values, page_size=CHUNK)
        elif dialect == "sqlite":

            def lite(value: Any, column: str) -> Any:
                return json.dumps(value) if column in json_columns and value is not None else value

            marks = ", ".join("?" for _ in columns)
            sql = f"INSERT INTO {table.name} ({names}) VALUES ({marks}) ON CONFLICT ({target}) DO NOTHING"
            if json_columns:
                cursor.executemany(sql, [tuple(lite(row[c], c) for c in columns) for row in rows])
            elif len(columns) > 1:
                cursor.executemany(sql, list(map(itemgetter(*columns), rows)))  # tuples built in C
            else:
                cursor.executemany(sql, [(row[columns[0]],) for row in rows])
        else:
            raise NotImplementedError(f"insert_ignore: {dialect} is not supported (SQLite, PostgreSQL)")
    finally:
        cursor.close()


_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_lines(columns: list[str], rows: list[dict[str, Any]], json_columns: set[str]) -> str:
    """Rows in PostgreSQL COPY text format (tab-separated, \\N for NULL, bytea as \\x hex, escaped text)."""
    out: list[str] = []
    for row in rows:
        fields: list[str] = []
        for column in columns:
            value = row[column]
            kind = type(value)
            if kind is int:
                fields.append(str(value))
            elif kind is bytes:
                fields.append("\\\\x" + value.hex())
            elif value is None:
                fields.append("\\N")
            else:
                text = json.dumps(value) if column in json_columns else str(value)
                fields.append(text.translate(_COPY_ESCAPES))
        out.append("\t".join(fields))
    return "\n".join(out) + "\n"


def _copy_insert_ignore(
    cursor: Any, table: str, columns: list[str], json_columns: set[str], rows: list[dict[str, Any]],
    target: str,
) -> None:  # fmt: skip
    """COPY into a temporary twin of ``table``, then INSERT ... SELECT ... ON CONFLICT DO NOTHING.

    About twice as fast as a multi-row VALUES insert here (bytea literals are costly to parse).
    """
    staging = f"_staging_{table}"
    cursor.execute(
        f"CREATE TEMP TABLE IF NOT EXISTS {staging} (LIKE {table} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
    )
    cursor.copy_from(io.StringIO(_copy_lines(columns, rows, json_columns)), staging, columns=columns)
    names = ", ".join(columns)
    # ORDER BY the conflict target: concurrent overlapping batches take row locks in one order (no deadlock)
    cursor.execute(
        f"INSERT INTO {table} ({names}) SELECT {names} FROM {staging} ORDER BY {target} "
        f"ON CONFLICT ({target}) DO NOTHING"
    )
    cursor.execute(f"TRUNCATE {staging}")
