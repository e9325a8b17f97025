"""The terminal's SQLite journal: every action, the write-ahead intents of debits, card records, uploads.

Crash safety rests on one rule: an *intent* row (with the terminal's nonce, the card and the counter the
card had) is committed BEFORE the card is asked to debit, and the card's record is written after. On the
next insertion of that card (or at start), :mod:`point_of_service.services.recovery` matches pending
intents with the card's counter and log, so a debit is journalled once and never asked for twice.

SQLite with WAL and ``synchronous=FULL``: a committed row survives the process being killed. Times are
unix seconds (the unit of card records); money is integer paise; ids are 16 lower-case hex digits.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cardsvc.formats.transaction import RecordType, TransactionRecord

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at INTEGER NOT NULL,
    kind TEXT NOT NULL,
    operator TEXT,
    card_id TEXT,
    member INTEGER,
    outcome TEXT NOT NULL,
    reason TEXT,
    fallback TEXT,
    detail TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS events_card ON events (card_id);
CREATE TABLE IF NOT EXISTS intents (
    nonce TEXT PRIMARY KEY,
    created INTEGER NOT NULL,
    card_id TEXT NOT NULL,
    record_type INTEGER NOT NULL,
    amount INTEGER NOT NULL,
    reference INTEGER NOT NULL,
    member INTEGER NOT NULL,
    operator TEXT NOT NULL,
    counter_before INTEGER NOT NULL,
    request_time INTEGER NOT NULL,
    context TEXT NOT NULL DEFAULT '{}',
    status TEXT NOT NULL DEFAULT 'pending',
    counter INTEGER,
    resolved_at INTEGER
);
CREATE INDEX IF NOT EXISTS intents_pending ON intents (card_id, status);
CREATE TABLE IF NOT EXISTS records (
    card_id TEXT NOT NULL,
    counter INTEGER NOT NULL,
    record_type INTEGER NOT NULL,
    amount INTEGER NOT NULL,
    balance_after INTEGER NOT NULL,
    time INTEGER NOT NULL,
    raw BLOB NOT NULL,
    content_hash TEXT NOT NULL UNIQUE,
    card_key BLOB NOT NULL,
    intent TEXT,
    batch_seq INTEGER,
    PRIMARY KEY (card_id, counter)
);
CREATE INDEX IF NOT EXISTS records_unbatched ON records (batch_seq);
CREATE TABLE IF NOT EXISTS admissions (
    card_id TEXT NOT NULL,
    block_counter INTEGER NOT NULL,
    package_code INTEGER NOT NULL,
    catalogue_version INTEGER NOT NULL,
    amount INTEGER NOT NULL,
    member INTEGER NOT NULL,
    status TEXT NOT NULL DEFAULT 'open',
    closed_by INTEGER,
    PRIMARY KEY (card_id, block_counter)
);
CREATE TABLE IF NOT EXISTS batches (
    seq INTEGER PRIMARY KEY,
    created INTEGER NOT NULL,
    content_hash TEXT NOT NULL,
    wire BLOB NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    receipt TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT
);
CREATE TABLE IF NOT EXISTS kv (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS event_batches (
    event_id INTEGER PRIMARY KEY,
    batch_seq INTEGER NOT NULL
);
"""


def hex_id(value: int) -> str:
    """An 8-byte identifier as central writes it: 16 lower-case hex digits."""
    return f"{value:016x}"


@dataclass(frozen=True)
class Intent:
    """A debit the terminal is about to ask the card for (write-ahead)."""

    nonce: str
    created: int
    card_id: int
    record_type: RecordType
    amount: int
    reference: int
    member: int
    operator: str
    counter_before: int
    request_time: int
    context: Mapping[str, Any]
    status: str
    counter: int | None


@dataclass(frozen=True)
class Event:
    id: int
    at: int
    kind: str
    operator: str | None
    card_id: str | None
    member: int | None
    outcome: str
    reason: str | None
    fallback: str | None
    detail: Mapping[str, Any]


@dataclass(frozen=True)
class Admission:
    card_id: int
    block_counter: int
    package_code: int
    catalogue_version: int
    amount: int
    member: int
    status: str
    closed_by: int | None


@dataclass(frozen=True)
class PendingBatch:
    seq: int
    created: int
    content_hash: str
    wire: bytes
    status: str
    attempts: int


class Journal:
    """One terminal's journal file. Not thread-safe; one per process (the POS is single-user)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None, timeout=10)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(_SCHEMA)
        self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """All or nothing (BEGIN IMMEDIATE ... COMMIT); nested use joins the outer transaction."""
        if self._db.in_transaction:
            yield self._db
            return
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # --- events ------------------------------------------------------------------------------------
    def log(
        self,
        kind: str,
        *,
        at: int,
        outcome: str = "ok",
        operator: str | None = None,
        card_id: int | None = None,
        member: int | None = None,
        reason: str | None = None,
        fallback: str | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> int:
        """Record one action. ``detail`` must hold no PIN, key or template (refused by name)."""
        detail = dict(detail or {})
        _refuse_secrets(detail)
        cur = self._db.execute(
            "INSERT INTO events (at, kind, operator, card_id, member, outcome, reason, fallback, detail)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                at,
                kind,
                operator,
                None if card_id is None else hex_id(card_id),
                member,
                outcome,
                reason,
                fallback,
                json.dumps(detail, sort_keys=True),
            ),
        )
        return int(cur.lastrowid or 0)

    def events(
        self, *, card_id: int | None = None, kind: str | None = None, limit: int = 1000
    ) -> list[Event]:
        sql, args = "SELECT * FROM events WHERE 1=1", list[Any]()
        if card_id is not None:
            sql += " AND card_id = ?"
            args.append(hex_id(card_id))
        if kind is not None:
            sql += " AND kind = ?"
            args.append(kind)
        sql += " ORDER BY id DESC LIMIT ?"
        args.append(limit)
        rows = self._db.execute(sql, args).fetchall()
        return [
            Event(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], json.loads(r[9]))
            for r in reversed(rows)
        ]

    # --- intents -----------------------------------------------------------------------------------
    def add_intent(
        self,
        *,
        nonce: str,
        created: int,
        card_id: int,
        record_type: RecordType,
        amount: int,
        reference: int,
        member: int,
        operator: str,
        counter_before: int,
        request_time: int,
        context: Mapping[str, Any] | None = None,
    ) -> None:
        """Write-ahead: committed (fsync'd) before the card is asked to debit."""
        ctx = dict(context or {})
        _refuse_secrets(ctx)
        with self.transaction() as db:
            db.execute(
                "INSERT INTO intents (nonce, created, card_id, record_type, amount, reference, member,"
                " operator, counter_before, request_time, context) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    nonce,
                    created,
                    hex_id(card_id),
                    int(record_type),
                    amount,
                    reference,
                    member,
                    operator,
                    counter_before,
                    request_time,
                    json.dumps(ctx, sort_keys=True),
                ),
            )

    def pending_intents(self, card_id: int | None = None) -> list[Intent]:
        sql, args = "SELECT * FROM intents WHERE status = 'pending'", []
        if card_id is not None:
            sql += " AND card_id = ?"
            args.append(hex_id(card_id))
        rows = self._db.execute(sql + " ORDER BY created, nonce", args).fetchall()
        return [self._intent(r) for r in rows]

    def intent(self, nonce: str) -> Intent | None:
        row = self._db.execute("SELECT * FROM intents WHERE nonce = ?", (nonce,)).fetchone()
        return None if row is None else self._intent(row)

    @staticmethod
    def _intent(r: tuple[Any, ...]) -> Intent:
        return Intent(
            nonce=r[0],
            created=r[1],
            card_id=int(r[2], 16),
            record_type=RecordType(r[3]),
            amount=r[4],
            reference=r[5],
            member=r[6],
            operator=r[7],
            counter_before=r[8],
            request_time=r[9],
            context=json.loads(r[10]),
            status=r[11],
            counter=r[12],
        )

    def resolve_intent(self, nonce: str, *, status: str, at: int, counter: int | None = None) -> None:
        if status not in ("done", "abandoned", "unknown"):
            raise ValueError(f"an intent ends 'done', 'abandoned' or 'unknown', not {status!r}")
        self._db.execute(
            "UPDATE intents SET status = ?, counter = ?, resolved_at = ? WHERE nonce = ?",
            (status, counter, at, nonce),
        )

    # --- card records ------------------------------------------------------------------------------
    def add_record(self, record: TransactionRecord, card_key: bytes, *, intent: str | None = None) -> bool:
        """Store a card-made record once; False when it was already held (same card and counter)."""
        cur = self._db.execute(
            "INSERT OR IGNORE INTO records (card_id, counter, record_type, amount, balance_after, time, raw,"
            " content_hash, card_key, intent) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                hex_id(record.card_id),
                record.counter,
                int(record.record_type),
                record.amount,
                record.balance_after,
                record.time,
                record.encode(),
                record.content_hash().hex(),
                card_key,
                intent,
            ),
        )
        return cur.rowcount == 1

    def records(self, card_id: int | None = None) -> list[TransactionRecord]:
        sql, args = "SELECT raw FROM records", []
        if card_id is not None:
            sql += " WHERE card_id = ?"
            args.append(hex_id(card_id))
        rows = self._db.execute(sql + " ORDER BY card_id, counter", args).fetchall()
        return [TransactionRecord.parse(bytes(r[0])) for r in rows]

    def held_counters(self, card_id: int, first: int, last: int) -> set[int]:
        """Which of the card's counters ``first``..``last`` the journal holds a record of."""
        rows = self._db.execute(
            "SELECT counter FROM records WHERE card_id = ? AND counter BETWEEN ? AND ?",
            (hex_id(card_id), first, last),
        ).fetchall()
        return {int(r[0]) for r in rows}

    def last_record(self, card_id: int) -> TransactionRecord | None:
        row = self._db.execute(
            "SELECT raw FROM records WHERE card_id = ? ORDER BY counter DESC LIMIT 1", (hex_id(card_id),)
        ).fetchone()
        return None if row is None else TransactionRecord.parse(bytes(row[0]))

    def unbatched_records(self, limit: int) -> list[tuple[TransactionRecord, bytes]]:
        rows = self._db.execute(
            "SELECT raw, card_key FROM records WHERE batch_seq IS NULL ORDER BY card_id, counter LIMIT ?",
            (limit,),
        ).fetchall()
        return [(TransactionRecord.parse(bytes(r[0])), bytes(r[1])) for r in rows]

    def card_offline_exposure(self, card_id: int) -> tuple[int, int, int | None]:
        """(records not yet acknowledged by central, their debited paise, time of the oldest)."""
        row = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(CASE WHEN r.record_type IN (1, 4) THEN r.amount ELSE 0 END), 0),"
            " MIN(r.time) FROM records r LEFT JOIN batches b ON r.batch_seq = b.seq"
            " WHERE r.card_id = ? AND (b.status IS NULL OR b.status != 'acked')",
            (hex_id(card_id),),
        ).fetchone()
        return int(row[0]), int(row[1]), row[2]

    # --- admissions --------------------------------------------------------------------------------
    def open_admission(
        self,
        card_id: int,
        block_counter: int,
        package_code: int,
        catalogue_version: int,
        amount: int,
        member: int,
    ) -> None:
        self._db.execute(
            "INSERT OR IGNORE INTO admissions (card_id, block_counter, package_code, catalogue_version,"
            " amount, member) VALUES (?, ?, ?, ?, ?, ?)",
            (hex_id(card_id), block_counter, package_code, catalogue_version, amount, member),
        )

    def close_admission(self, card_id: int, block_counter: int, *, status: str, closed_by: int) -> None:
        self._db.execute(
            "UPDATE admissions SET status = ?, closed_by = ? WHERE card_id = ? AND block_counter = ?",
            (status, closed_by, hex_id(card_id), block_counter),
        )

    def admission(self, card_id: int, block_counter: int) -> Admission | None:
        row = self._db.execute(
            "SELECT * FROM admissions WHERE card_id = ? AND block_counter = ?",
            (hex_id(card_id), block_counter),
        ).fetchone()
        return None if row is None else Admission(int(row[0], 16), *row[1:])

    def admissions(self, card_id: int | None = None, status: str | None = None) -> list[Admission]:
        sql, args = "SELECT * FROM admissions WHERE 1=1", []
        if card_id is not None:
            sql += " AND card_id = ?"
            args.append(hex_id(card_id))
        if status is not None:
            sql += " AND status = ?"
            args.append(status)
        rows = self._db.execute(sql + " ORDER BY card_id, block_counter", args).fetchall()
        return [Admission(int(r[0], 16), *r[1:]) for r in rows]

    # --- upload batches ----------------------------------------------------------------------------
    def next_batch_seq(self) -> int:
        row = self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM batches").fetchone()
        return int(row[0]) + 1

    def add_batch(
        self, seq: int, created: int, content_hash: str, wire: bytes,
        records: Sequence[TransactionRecord] = (), *, events: Sequence[int] = (),
    ) -> None:  # fmt: skip
        """Freeze a batch and mark its records (or journal events: fallbacks) in one transaction: a retry
        re-sends the same bytes."""
        with self.transaction() as db:
            db.execute(
                "INSERT INTO batches (seq, created, content_hash, wire) VALUES (?, ?, ?, ?)",
                (seq, created, content_hash, wire),
            )
            db.executemany(
                "UPDATE records SET batch_seq = ? WHERE card_id = ? AND counter = ?",
                [(seq, hex_id(r.card_id), r.counter) for r in records],
            )
            db.executemany(
                "INSERT INTO event_batches (event_id, batch_seq) VALUES (?, ?)", [(e, seq) for e in events]
            )

    def skip_events(self, event_ids: list[int]) -> None:
        """Mark events that can never be uploaded as handled (batch 0), so they are not tried again."""
        self._db.executemany(
            "INSERT OR IGNORE INTO event_batches (event_id, batch_seq) VALUES (?, 0)",
            [(e,) for e in event_ids],
        )

    def unbatched_fallbacks(self, limit: int, *, settled_before: int) -> list[Event]:
        """Fallback events not yet in a batch whose visit is over: made before ``settled_before``, or
        followed by another card verification (the records made under them are journalled by then)."""
        rows = self._db.execute(
            "SELECT * FROM events e WHERE e.kind = 'fallback'"
            " AND NOT EXISTS (SELECT 1 FROM event_batches b WHERE b.event_id = e.id)"
            " AND (e.at < ? OR EXISTS (SELECT 1 FROM events v WHERE v.kind = 'verify-card' AND v.id > e.id))"
            " ORDER BY e.id LIMIT ?",
            (settled_before, limit),
        ).fetchall()
        return [Event(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], json.loads(r[9])) for r in rows]

    def records_under_override(self, event: Event) -> list[int]:
        """Card counters of the records made on the strength of an override ``event``: the transactions of
        the same card, after it and before the card's next verification, journalled with the override."""
        rows = self._db.execute(
            "SELECT detail FROM events WHERE kind = 'transaction' AND outcome = 'ok'"
            " AND fallback = 'override' AND card_id = ? AND id > ? AND id < COALESCE((SELECT MIN(id)"
            " FROM events WHERE kind = 'verify-card' AND card_id = ? AND id > ?), 9223372036854775807)"
            " ORDER BY id",
            (event.card_id, event.id, event.card_id, event.id),
        ).fetchall()
        return sorted({int(json.loads(r[0])["counter"]) for r in rows})

    def recent_cards(self, limit: int) -> list[int]:
        """Cards this terminal made records for, the most recently served first."""
        rows = self._db.execute(
            "SELECT card_id FROM records GROUP BY card_id ORDER BY MAX(time) DESC, card_id LIMIT ?", (limit,)
        ).fetchall()
        return [int(r[0], 16) for r in rows]

    def pending_batches(self) -> list[PendingBatch]:
        rows = self._db.execute(
            "SELECT seq, created, content_hash, wire, status, attempts FROM batches WHERE status = 'pending'"
            " ORDER BY seq"
        ).fetchall()
        return [PendingBatch(r[0], r[1], r[2], bytes(r[3]), r[4], r[5]) for r in rows]

    def batch_attempt(self, seq: int, error: str | None) -> None:
        self._db.execute(
            "UPDATE batches SET attempts = attempts + 1, last_error = ? WHERE seq = ?", (error, seq)
        )

    def ack_batch(self, seq: int, receipt: Mapping[str, Any]) -> None:
        self._db.execute(
            "UPDATE batches SET status = 'acked', receipt = ? WHERE seq = ?",
            (json.dumps(receipt, sort_keys=True), seq),
        )

    def batch_status(self) -> dict[str, int]:
        rows = self._db.execute("SELECT status, COUNT(*) FROM batches GROUP BY status").fetchall()
        return {r[0]: int(r[1]) for r in rows}

    # --- key/value state ---------------------------------------------------------------------------
    def get(self, key: str, default: Any = None) -> Any:
        row = self._db.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
        return default if row is None else json.loads(row[0])

    def put(self, key: str, value: Any) -> None:
        self._db.execute(
            "INSERT INTO kv (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, json.dumps(value, sort_keys=True)),
        )


_SECRET_WORDS = ("pin", "passphrase", "password", "private", "secret", "template", "minutiae")


def _refuse_secrets(detail: Mapping[str, Any]) -> None:
    """The journal never holds a PIN, key or template: refuse details named like one."""
    for key, value in detail.items():
        lowered = key.lower()
        if any(word in lowered for word in _SECRET_WORDS):
            raise ValueError(f"journal detail {key!r} looks like a secret or a template; not recorded")
        if isinstance(value, Mapping):
            _refuse_secrets(value)
