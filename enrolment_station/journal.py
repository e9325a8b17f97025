"""The camp journal: one local SQLite file (WAL) that records everything the station did, who did it, when.

Every state change goes through :class:`Journal` and is written in the same transaction as an ``events``
row naming the operator ("record who entered what"). The personalisation step machine lives here too
(``card_steps``): after a tear or a crash the station reads which steps were done to decide whether to
complete the card or wipe it. Fingerprint templates are stored sealed (AES-GCM under the station's data
key, :mod:`enrolment_station.keys`); they are never logged. Schema: docs/station.md ("Journal").
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from enrolment_station.eligibility import EligibilityList, Gender, Household, Member, Relation
from enrolment_station.errors import HouseholdError

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, at INTEGER NOT NULL, operator TEXT NOT NULL,
    action TEXT NOT NULL, subject TEXT NOT NULL, details TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS imports (
    id INTEGER PRIMARY KEY AUTOINCREMENT, source TEXT NOT NULL, sha256 TEXT NOT NULL UNIQUE,
    rows INTEGER NOT NULL, households INTEGER NOT NULL, at INTEGER NOT NULL, operator TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS households (
    household_id TEXT PRIMARY KEY, village_code TEXT NOT NULL, import_id INTEGER NOT NULL,
    status TEXT NOT NULL, updated_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS members (
    household_id TEXT NOT NULL, member_no INTEGER NOT NULL, name TEXT NOT NULL, gender TEXT NOT NULL,
    year_of_birth INTEGER NOT NULL, relation TEXT NOT NULL, line INTEGER NOT NULL,
    PRIMARY KEY (household_id, member_no));
CREATE TABLE IF NOT EXISTS sessions (
    id INTEGER PRIMARY KEY AUTOINCREMENT, fko_chr TEXT NOT NULL, terminal_chr TEXT NOT NULL,
    camp_id TEXT NOT NULL, day TEXT NOT NULL, opened_at INTEGER NOT NULL, closed_at INTEGER,
    close_reason TEXT, binding TEXT NOT NULL, terminal_sig TEXT NOT NULL, fko_sig TEXT NOT NULL,
    operator TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS captures (
    household_id TEXT NOT NULL, member_no INTEGER NOT NULL, finger INTEGER NOT NULL,
    status TEXT NOT NULL, reason TEXT, quality INTEGER, attempts INTEGER, minutiae INTEGER,
    sealed_template BLOB, at INTEGER NOT NULL, operator TEXT NOT NULL,
    PRIMARY KEY (household_id, member_no, finger));
CREATE TABLE IF NOT EXISTS member_status (
    household_id TEXT NOT NULL, member_no INTEGER NOT NULL, status TEXT NOT NULL, reason TEXT,
    at INTEGER NOT NULL, operator TEXT NOT NULL, PRIMARY KEY (household_id, member_no));
CREATE TABLE IF NOT EXISTS photos (
    household_id TEXT NOT NULL, member_no INTEGER NOT NULL, png BLOB NOT NULL, at INTEGER NOT NULL,
    operator TEXT NOT NULL, PRIMARY KEY (household_id, member_no));
CREATE TABLE IF NOT EXISTS cards (
    card_id TEXT PRIMARY KEY, household_id TEXT NOT NULL, kind TEXT NOT NULL, state TEXT NOT NULL,
    session_id INTEGER, fko_chr TEXT, card_key BLOB, certificate BLOB, profile BLOB, members TEXT,
    policy_start INTEGER, policy_end INTEGER, cover_paise INTEGER, scheme_id INTEGER,
    supersedes TEXT, authorisation TEXT, created_at INTEGER NOT NULL, activated_at INTEGER,
    handed_over_at INTEGER, handed_to TEXT, operator TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS card_steps (
    card_id TEXT NOT NULL, step TEXT NOT NULL, at INTEGER NOT NULL, details TEXT NOT NULL,
    PRIMARY KEY (card_id, step));
CREATE TABLE IF NOT EXISTS uploads (
    seq INTEGER PRIMARY KEY, kind TEXT NOT NULL, content_hash TEXT NOT NULL UNIQUE, created INTEGER NOT NULL,
    wire BLOB NOT NULL, items INTEGER NOT NULL, uploaded_at INTEGER, receipt TEXT);
CREATE TABLE IF NOT EXISTS upload_items (
    kind TEXT NOT NULL, item TEXT NOT NULL, upload_seq INTEGER NOT NULL, PRIMARY KEY (kind, item));
CREATE TABLE IF NOT EXISTS used_authorisations (
    auth_id TEXT PRIMARY KEY, card_id TEXT NOT NULL, at INTEGER NOT NULL);
"""


class HouseholdStatus(StrEnum):
    LISTED = "listed"
    CAPTURED = "captured"
    PERSONALISED = "personalised"  # a card is written and activated
    HANDED_OVER = "handed_over"


class CaptureStatus(StrEnum):
    CAPTURED = "captured"
    EXCEPTION = "exception"


class MemberException(StrEnum):
    """Ways out that real camps need; each is recorded with the operator, never a silent skip."""

    MISSING_FINGER = "missing_finger"  # amputation or congenital: capture another finger instead
    INJURED_FINGER = "injured_finger"  # bandaged, cut, burnt: capture another finger instead
    WORN_FINGERPRINTS = "worn_fingerprints"  # quality gate failed after every retry (manual workers)
    CHILD = "child"  # under 5: fingerprints not captured
    ABSENT = "absent"  # not at the camp: enrolled without fingers, to be completed later


class CardState(StrEnum):
    STARTED = "started"
    ACTIVATED = "activated"
    HANDED_OVER = "handed_over"
    WIPED = "wiped"
    ABANDONED = "abandoned"


@dataclass(frozen=True)
class CaptureRow:
    household_id: str
    member_no: int
    finger: int
    status: CaptureStatus
    reason: str | None
    quality: int | None
    sealed_template: bytes | None


class Journal:
    """The station's SQLite journal. One instance per process; safe to reopen after a crash."""

    def __init__(self, path: Path, *, now: Any, operator: str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._now = now
        self.operator = operator
        self.db = sqlite3.connect(self.path, isolation_level=None, timeout=30)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("PRAGMA foreign_keys=ON")
        self.db.executescript(_SCHEMA)
        self.db.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def now(self) -> int:
        return int(self._now().timestamp())

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def event(self, action: str, subject: str, details: dict[str, Any] | None = None) -> None:
        """Record who did what (call inside a transaction with the change it describes)."""
        self.db.execute(
            "INSERT INTO events (at, operator, action, subject, details) VALUES (?, ?, ?, ?, ?)",
            (self.now(), self.operator, action, subject, json.dumps(details or {}, sort_keys=True)),
        )

    def events(self, action: str | None = None) -> list[dict[str, Any]]:
        q = "SELECT * FROM events" + (" WHERE action = ?" if action else "") + " ORDER BY seq"
        rows = self.db.execute(q, (action,) if action else ()).fetchall()
        return [{**dict(r), "details": json.loads(r["details"])} for r in rows]

    def get_meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row["value"])

    def set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    # -- eligibility -------------------------------------------------------------------------------
    def household_ids(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT household_id FROM households ORDER BY household_id")]

    def import_list(self, listing: EligibilityList, source: str) -> int:
        """Store a validated list in one transaction (all households or none)."""
        at = self.now()
        with self.transaction() as db:
            if db.execute("SELECT 1 FROM imports WHERE sha256 = ?", (listing.sha256,)).fetchone():
                raise HouseholdError(f"this list ({listing.sha256[:12]}) was already imported")
            cur = db.execute(
                "INSERT INTO imports (source, sha256, rows, households, at, operator) VALUES (?,?,?,?,?,?)",
                (source, listing.sha256, listing.rows, len(listing.households), at, self.operator),
            )
            import_id = int(cur.lastrowid or 0)
            for h in listing.households:
                db.execute(
                    "INSERT INTO households VALUES (?, ?, ?, ?, ?)",
                    (h.household_id, h.village_code, import_id, HouseholdStatus.LISTED, at),
                )
                db.executemany(
                    "INSERT INTO members VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [
                        (
                            h.household_id,
                            m.member_no,
                            m.name,
                            m.gender.value,
                            m.year_of_birth,
                            m.relation.value,
                            m.line,
                        )
                        for m in h.members
                    ],
                )
            self.event(
                "eligibility.import",
                source,
                {"sha256": listing.sha256, "rows": listing.rows, "households": len(listing.households)},
            )
        return import_id

    def household(self, household_id: str) -> Household:
        row = self.db.execute("SELECT * FROM households WHERE household_id = ?", (household_id,)).fetchone()
        if row is None:
            raise HouseholdError(f"household {household_id} is not on the imported list")
        members = tuple(
            Member(
                r["member_no"],
                r["name"],
                Gender(r["gender"]),
                r["year_of_birth"],
                Relation(r["relation"]),
                r["line"],
            )
            for r in self.db.execute(
                "SELECT * FROM members WHERE household_id = ? ORDER BY member_no", (household_id,)
            )
        )
        return Household(household_id, row["village_code"], members)

    def household_status(self, household_id: str) -> HouseholdStatus:
        row = self.db.execute(
            "SELECT status FROM households WHERE household_id = ?", (household_id,)
        ).fetchone()
        if row is None:
            raise HouseholdError(f"household {household_id} is not on the imported list")
        return HouseholdStatus(row["status"])

    def set_household_status(self, household_id: str, status: HouseholdStatus) -> None:
        self.db.execute(
            "UPDATE households SET status = ?, updated_at = ? WHERE household_id = ?",
            (status.value, self.now(), household_id),
        )
        self.event("household.status", household_id, {"status": status.value})

    def households_by_status(self) -> dict[str, int]:
        return {
            r[0]: r[1] for r in self.db.execute("SELECT status, count(*) FROM households GROUP BY status")
        }

    # -- sessions --------------------------------------------------------------------------------------
    def open_session(
        self,
        *,
        fko_chr: str,
        terminal_chr: str,
        camp_id: str,
        day: str,
        binding: str,
        terminal_sig: str,
        fko_sig: str,
    ) -> int:
        with self.transaction() as db:
            cur = db.execute(
                "INSERT INTO sessions (fko_chr, terminal_chr, camp_id, day, opened_at, binding, terminal_sig,"
                " fko_sig, operator) VALUES (?,?,?,?,?,?,?,?,?)",
                (
                    fko_chr,
                    terminal_chr,
                    camp_id,
                    day,
                    self.now(),
                    binding,
                    terminal_sig,
                    fko_sig,
                    self.operator,
                ),
            )
            sid = int(cur.lastrowid or 0)
            self.event(
                "session.open",
                fko_chr,
                {"session": sid, "camp": camp_id, "day": day, "terminal": terminal_chr, "binding": binding},
            )
        return sid

    def close_session(self, session_id: int, reason: str) -> None:
        with self.transaction() as db:
            cur = db.execute(
                "UPDATE sessions SET closed_at = ?, close_reason = ? WHERE id = ? AND closed_at IS NULL",
                (self.now(), reason, session_id),
            )
            if cur.rowcount:
                self.event("session.close", str(session_id), {"reason": reason})

    def session_row(self, session_id: int) -> sqlite3.Row:
        return self.db.execute("SELECT * FROM sessions WHERE id = ?", (session_id,)).fetchone()

    # -- captures --------------------------------------------------------------------------------------
    def record_capture(
        self,
        household_id: str,
        member_no: int,
        finger: int,
        *,
        quality: int,
        attempts: int,
        minutiae: int,
        sealed_template: bytes,
    ) -> None:
        row = (CaptureStatus.CAPTURED, None, quality, attempts, minutiae, sealed_template)
        details = {"finger": finger, "quality": quality, "attempts": attempts, "minutiae": minutiae}
        self._put_capture(household_id, member_no, finger, row, "capture.finger", details)

    def record_finger_exception(
        self, household_id: str, member_no: int, finger: int, reason: MemberException, note: str
    ) -> None:
        self._put_capture(
            household_id, member_no, finger, (CaptureStatus.EXCEPTION, reason.value, None, None, None, None),
            "capture.exception", {"finger": finger, "reason": reason.value, "note": note},
        )  # fmt: skip

    def _put_capture(
        self, household_id: str, member_no: int, finger: int, row: tuple[Any, ...], action: str,
        details: dict[str, Any],
    ) -> None:  # fmt: skip
        """One captures row (status, reason, quality, attempts, minutiae, sealed template) and its event."""
        with self.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO captures VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (household_id, member_no, finger, *row, self.now(), self.operator),
            )
            self.event(action, f"{household_id}/{member_no}", details)

    def record_member_status(
        self, household_id: str, member_no: int, status: str, reason: str | None, note: str = ""
    ) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO member_status VALUES (?,?,?,?,?,?)",
                (household_id, member_no, status, reason, self.now(), self.operator),
            )
            self.event("member." + status, f"{household_id}/{member_no}", {"reason": reason, "note": note})

    def member_statuses(self, household_id: str) -> dict[int, tuple[str, str | None]]:
        return {
            r["member_no"]: (r["status"], r["reason"])
            for r in self.db.execute("SELECT * FROM member_status WHERE household_id = ?", (household_id,))
        }

    def captures(self, household_id: str | None = None) -> list[CaptureRow]:
        q = "SELECT * FROM captures" + (" WHERE household_id = ?" if household_id else "")
        q += " ORDER BY household_id, member_no, finger"
        return [
            CaptureRow(
                r["household_id"],
                r["member_no"],
                r["finger"],
                CaptureStatus(r["status"]),
                r["reason"],
                r["quality"],
                r["sealed_template"],
            )
            for r in self.db.execute(q, (household_id,) if household_id else ())
        ]

    def clear_captures(self, household_id: str, member_no: int) -> None:
        with self.transaction() as db:
            db.execute(
                "DELETE FROM captures WHERE household_id = ? AND member_no = ?", (household_id, member_no)
            )
            self.event("capture.discard", f"{household_id}/{member_no}", {})

    def store_photo(self, household_id: str, member_no: int, png: bytes) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO photos VALUES (?,?,?,?,?)",
                (household_id, member_no, png, self.now(), self.operator),
            )
            self.event("capture.photo", f"{household_id}/{member_no}", {"bytes": len(png)})

    def photo(self, household_id: str, member_no: int) -> bytes | None:
        row = self.db.execute(
            "SELECT png FROM photos WHERE household_id = ? AND member_no = ?", (household_id, member_no)
        ).fetchone()
        return None if row is None else bytes(row["png"])

    # -- cards and the step machine --------------------------------------------------------------------
    def start_card(
        self,
        card_id: str,
        household_id: str,
        kind: str,
        *,
        session_id: int | None,
        supersedes: str | None = None,
        authorisation: str | None = None,
    ) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO cards (card_id, household_id, kind, state, session_id, supersedes,"
                " authorisation, created_at, operator) VALUES (?,?,?,?,?,?,?,?,?)",
                (
                    card_id,
                    household_id,
                    kind,
                    CardState.STARTED,
                    session_id,
                    supersedes,
                    authorisation,
                    self.now(),
                    self.operator,
                ),
            )
            self.event(
                "card.start", card_id, {"household": household_id, "kind": kind, "supersedes": supersedes}
            )

    def card(self, card_id: str) -> sqlite3.Row | None:
        return self.db.execute("SELECT * FROM cards WHERE card_id = ?", (card_id,)).fetchone()

    def cards(self, *, state: CardState | None = None, household_id: str | None = None) -> list[sqlite3.Row]:
        q, args = "SELECT * FROM cards WHERE 1=1", []
        if state is not None:
            q += " AND state = ?"
            args.append(state.value)
        if household_id is not None:
            q += " AND household_id = ?"
            args.append(household_id)
        return list(self.db.execute(q + " ORDER BY created_at, card_id", args))

    def update_card(
        self, card_id: str, action: str, details: dict[str, Any] | None = None, **fields: Any
    ) -> None:
        with self.transaction() as db:
            if fields:
                cols = ", ".join(f"{k} = ?" for k in fields)
                db.execute(f"UPDATE cards SET {cols} WHERE card_id = ?", (*fields.values(), card_id))
            self.event(action, card_id, details or {})

    def step_done(self, card_id: str, step: str, details: dict[str, Any] | None = None) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO card_steps VALUES (?, ?, ?, ?)",
                (card_id, step, self.now(), json.dumps(details or {}, sort_keys=True)),
            )
            self.event("card.step", card_id, {"step": step, **(details or {})})

    def steps(self, card_id: str) -> dict[str, dict[str, Any]]:
        return {
            r["step"]: json.loads(r["details"])
            for r in self.db.execute("SELECT * FROM card_steps WHERE card_id = ? ORDER BY at", (card_id,))
        }

    def clear_steps(self, card_id: str) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM card_steps WHERE card_id = ?", (card_id,))
            self.event("card.steps.clear", card_id, {})

    # -- authorisations --------------------------------------------------------------------------------
    def authorisation_used(self, auth_id: str) -> bool:
        return (
            self.db.execute("SELECT 1 FROM used_authorisations WHERE auth_id = ?", (auth_id,)).fetchone()
            is not None
        )

    def use_authorisation(self, auth_id: str, card_id: str) -> None:
        self.db.execute("INSERT INTO used_authorisations VALUES (?, ?, ?)", (auth_id, card_id, self.now()))

    # -- uploads ---------------------------------------------------------------------------------------
    def next_upload_seq(self) -> int:
        row = self.db.execute("SELECT max(seq) FROM uploads").fetchone()
        return int(row[0] or 0) + 1

    def uploaded_items(self, kind: str) -> set[str]:
        return {r[0] for r in self.db.execute("SELECT item FROM upload_items WHERE kind = ?", (kind,))}

    def record_batch(
        self, seq: int, kind: str, content_hash: str, created: int, wire: bytes, items: list[str]
    ) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO uploads (seq, kind, content_hash, created, wire, items) VALUES (?,?,?,?,?,?)",
                (seq, kind, content_hash, created, wire, len(items)),
            )
            db.executemany("INSERT INTO upload_items VALUES (?, ?, ?)", [(kind, i, seq) for i in items])
            self.event(
                "upload.batch", str(seq), {"kind": kind, "content_hash": content_hash, "items": len(items)}
            )

    def pending_uploads(self) -> list[sqlite3.Row]:
        return list(self.db.execute("SELECT * FROM uploads WHERE uploaded_at IS NULL ORDER BY seq"))

    def mark_uploaded(self, seq: int, receipt: str) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE uploads SET uploaded_at = ?, receipt = ? WHERE seq = ?", (self.now(), receipt, seq)
            )
            self.event("upload.sent", str(seq), {"receipt": receipt})
