"""The camp service: one object that wires the station's services over the journal, for the CLI, the
scripted camp (demo) and the tests. Each method is one operator step; each step is journaled."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from cardsvc.bio.capture import CaptureResult
from cardsvc.card.transport import CardConnection
from cardsvc.formats.batch import SignedBatch
from enrolment_station.capture import CaptureOutcome, CaptureService, CaptureSettings, FingerReader
from enrolment_station.eligibility import EligibilityList, parse_eligibility
from enrolment_station.errors import SessionError
from enrolment_station.fko import DEFAULT_IDLE_TIMEOUT, FkoSession
from enrolment_station.handover import hand_over
from enrolment_station.journal import Journal, MemberException
from enrolment_station.keys import StationIdentity
from enrolment_station.personalise import CardPlan, CardResult, PersonalisationService, Policy
from enrolment_station.upload import (
    LedgerCheck,
    build_camp_batch,
    build_ledger_batch,
    build_transactions_batch,
    check_ledger,
    signed_ledger,
)


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class HouseholdTimings:
    """Station time per household, by part (seconds); ``waiting`` is time spent waiting for fingers."""

    parts: dict[str, float] = field(default_factory=dict)

    def add(self, part: str, seconds: float) -> None:
        self.parts[part] = self.parts.get(part, 0.0) + seconds


class Camp:
    def __init__(
        self,
        home: Path,
        *,
        passphrase: bytes,
        operator: str,
        camp_id: str,
        now: Callable[[], datetime] = utc_now,
        reader: FingerReader | None = None,
        policy: Policy | None = None,
        settings: CaptureSettings | None = None,
        progress: Callable[[str], None] = lambda msg: None,
    ) -> None:
        self.home = home
        self.now = now
        self.camp_id = camp_id
        self.progress = progress
        self.identity = StationIdentity.load(home, passphrase, now=now())
        self.journal = Journal(home / "journal.sqlite", now=now, operator=operator)
        self.capture = CaptureService(
            self.journal,
            self.identity,
            reader or _NoSensor(),
            settings=settings,
            progress=progress,
            current_year=now().year,
        )
        self.personaliser = PersonalisationService(
            self.journal, self.identity, self.capture, now=now, policy=policy, progress=progress
        )
        self.fko: FkoSession | None = None
        self.faces_dir = home / "faces"

    def close(self) -> None:
        if self.fko is not None and self.fko.closed_reason is None:
            self.fko.close("station closed")
        self.journal.close()

    def __enter__(self) -> Camp:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- steps -----------------------------------------------------------------------------------------
    def import_list(self, path: Path) -> EligibilityList:
        """Validate the whole file, then store it in one transaction; EligibilityError lists every bad row."""
        listing = parse_eligibility(
            path.read_text(encoding="utf-8-sig"),
            current_year=self.now().year,
            known_households=self.journal.household_ids(),
        )
        self.journal.import_list(listing, path.name)
        self.progress(
            f"imported {len(listing.households)} households ({listing.rows} members) from {path.name}"
        )
        return listing

    def open_session(
        self,
        connection: CardConnection,
        *,
        pin: str,
        fingerprint: Callable[[], bytes],
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
    ) -> FkoSession:
        self.fko = FkoSession.open(
            connection,
            identity=self.identity,
            journal=self.journal,
            camp_id=self.camp_id,
            pin=pin,
            fingerprint=fingerprint,
            now=self.now,
            idle_timeout=idle_timeout,
        )
        self.progress(f"camp {self.camp_id} opened by {self.fko.fko_chr} (session {self.fko.session_id})")
        return self.fko

    def session(self) -> FkoSession:
        if self.fko is None:
            raise SessionError("no FKO session: the Field Key Officer must open the camp first")
        self.fko.check()
        return self.fko

    def capture_household(self, household_id: str, *,
                          member_exceptions: Mapping[int, MemberException] | None = None,
                          unavailable: Mapping[int, Mapping[int, MemberException]] | None = None,
                          ) -> list[CaptureOutcome]:  # fmt: skip
        self.session()
        return self.capture.capture_household(
            household_id, member_exceptions=member_exceptions, unavailable=unavailable
        )

    def personalise(
        self,
        connection: CardConnection,
        household_id: str,
        *,
        reinsert_wait: float = 60.0,
        plan: CardPlan | None = None,
    ) -> CardResult:
        return self.personaliser.personalise_until_done(
            connection, household_id, self.session(), reinsert_wait=reinsert_wait, plan=plan
        )

    def hand_over(self, card_id: str, received_by: int | None = None) -> tuple[Path, Path]:
        row = self.journal.card(card_id)
        if received_by is None and row is not None:
            received_by = self.journal.household(row["household_id"]).head.member_no
        return hand_over(self.journal, card_id, received_by=received_by or 1, faces_dir=self.faces_dir)

    def enrol_household(self, household_id: str, connection: CardConnection, *,
                        member_exceptions: Mapping[int, MemberException] | None = None,
                        unavailable: Mapping[int, Mapping[int, MemberException]] | None = None,
                        timings: HouseholdTimings | None = None) -> CardResult:  # fmt: skip
        """Capture, personalise, activate, print and hand over one household's card."""
        t0 = time.perf_counter()
        self.capture_household(household_id, member_exceptions=member_exceptions, unavailable=unavailable)
        t1 = time.perf_counter()
        result = self.personalise(connection, household_id)
        t2 = time.perf_counter()
        self.hand_over(result.card_id)
        t3 = time.perf_counter()
        if timings is not None:
            timings.add("capture", t1 - t0)
            timings.add("personalise", t2 - t1)
            timings.add("card_face_and_handover", t3 - t2)
        self.progress(f"{household_id}: card {result.card_id} activated and handed over")
        return result

    def ledger(self) -> LedgerCheck:
        """Read the FKO card's ledger (verified), compare it with the journal and batch it for upload."""
        session = self.session()
        challenge = os.urandom(16)
        ledger = session.officer.read_ledger(rng=lambda n: challenge[:n])
        check = check_ledger(self.journal, ledger)
        signed = signed_ledger(session, ledger, challenge)
        build_ledger_batch(self.journal, self.identity, ledger, now=self.now(), signed=signed)
        with self.journal.transaction():
            self.journal.event("ledger.check", ledger.officer.chr, {
                "ledger_count": check.ledger_count, "activated": check.journal_activated,
                "void": check.journal_void, "matches": check.matches,
            })  # fmt: skip
        return check

    def upload_batches(self, out_dir: Path | None = None) -> list[SignedBatch]:
        """Build the camp batch of new cards; write every not-yet-sent batch to ``out_dir`` if given."""
        build_camp_batch(self.journal, self.identity, now=self.now())
        build_transactions_batch(self.journal, self.identity, now=self.now())  # renewal and split records
        pending = [SignedBatch.parse(bytes(r["wire"])) for r in self.journal.pending_uploads()]
        if out_dir is not None:
            out_dir.mkdir(parents=True, exist_ok=True)
            for b in pending:
                (out_dir / f"{b.batch.kind.value}-{b.batch.seq:05d}.json").write_bytes(b.encode())
        return pending


class _NoSensor:
    def capture(self, household_id: str, member_no: int, finger: int, attempt: int) -> CaptureResult:
        raise SessionError("no fingerprint sensor configured on this station")
