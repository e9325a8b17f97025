"""The FKO session: the camp opens only after the Field Key Officer's card, PIN and fingerprint.

Opening checks the officer's certificate offline (chain to the root, ACTIVATE_CARD right, not revoked), then
the PIN (ISO VERIFY) and a live fingerprint matched ON the FKO card; both stay verified only in the FKO
card's current power session, so pulling the card ends the right to activate. The session is bound to this
station's terminal key, the camp and the day: the binding statement is signed by the terminal, and the FKO
card signs a READ LEDGER statement over a challenge derived from it (its key is usable for nothing else), so
the journal holds proof that this officer's card was present for this camp on this day.

The session closes on card removal (any transport error on the FKO reader), at the end of the day, and
after ``idle_timeout`` seconds without activity.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from datetime import datetime

from cardsvc.card.errors import AuthBlockedError, NotEnoughMemoryError, WrongPinError
from cardsvc.card.transport import CardConnection, CardError, TransportError
from cardsvc.pki import officer as fmt
from cardsvc.pki.chain import validate_chain
from cardsvc.pki.cvc import CvCertificate
from cardsvc.pki.errors import PkiError
from cardsvc.pki.officer_card import FingerprintMismatchError, OfficerCardSession
from cardsvc.pki.rights import Right, Role
from enrolment_station.errors import SessionClosedError, SessionError
from enrolment_station.journal import Journal
from enrolment_station.keys import StationIdentity

log = logging.getLogger(__name__)

BINDING_DOMAIN = b"RSBY-CAMP-SESSION\x01"
DEFAULT_IDLE_TIMEOUT = 30 * 60


def binding_statement(*, terminal_chr: str, fko_chr: str, camp_id: str, day: str, nonce: bytes) -> bytes:
    """What the terminal signs when a session opens (and whose hash the FKO card signs as a challenge)."""
    parts = [terminal_chr, fko_chr, camp_id, day]
    return BINDING_DOMAIN + b"\x00".join(p.encode("ascii") for p in parts) + b"\x00" + nonce


class FkoSession:
    """An open camp session: the FKO card is in its reader with PIN and fingerprint verified."""

    def __init__(
        self,
        officer: OfficerCardSession,
        officer_cert: CvCertificate,
        *,
        journal: Journal,
        identity: StationIdentity,
        session_id: int,
        camp_id: str,
        day: str,
        now: Callable[[], datetime],
        idle_timeout: float,
    ) -> None:
        self.officer = officer
        self.officer_cert = officer_cert
        self.journal = journal
        self.identity = identity
        self.session_id = session_id
        self.camp_id = camp_id
        self.day = day
        self._now = now
        self.idle_timeout = idle_timeout
        self._last_used = now()
        self.closed_reason: str | None = None

    @property
    def fko_chr(self) -> str:
        return self.officer_cert.chr

    @property
    def chain(self) -> list[CvCertificate]:
        """District and officer certificates: with a card certificate below, a chain any terminal checks."""
        district = self.identity.bundle.districts.get(self.officer_cert.car)
        return [district, self.officer_cert] if district is not None else [self.officer_cert]

    @classmethod
    def open(
        cls,
        connection: CardConnection,
        *,
        identity: StationIdentity,
        journal: Journal,
        camp_id: str,
        pin: str,
        fingerprint: Callable[[], bytes],
        now: Callable[[], datetime],
        rng: Callable[[int], bytes] = os.urandom,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
    ) -> FkoSession:
        """Open the camp: ``fingerprint()`` captures the officer's finger (7F2E-wrapped compact minutiae)."""
        t = now()
        try:
            officer = OfficerCardSession(connection)
            status = officer.status()
            cert = officer.certificate()
        except CardError as exc:
            raise SessionError(f"no FKO card answers in the FKO reader: {exc}") from None
        if status.lifecycle is not fmt.Lifecycle.OPERATIONAL:
            raise SessionError(
                f"the FKO card {cert.chr} is not personalised (life cycle {status.lifecycle.name})"
            )
        if cert.role is not Role.FIELD_KEY_OFFICER:
            raise SessionError(f"{cert.chr} is a {cert.role.name} card, not a Field Key Officer's")
        district = identity.bundle.districts.get(cert.car)
        if district is None:
            raise SessionError(f"the FKO's district {cert.car} is not in this station's trust bundle")
        try:
            validate_chain(
                [district, cert],
                identity.anchor,
                now=t,
                required=Right.ACTIVATE_CARD,
                revocations=identity.revocations,
            )
        except PkiError as exc:
            raise SessionError(f"the FKO card {cert.chr} is refused: {exc}") from None
        if status.ledger_count >= status.ledger_capacity:
            raise SessionError(f"the FKO card's ledger is full ({status.ledger_count} activations)")
        try:
            officer.verify_pin_code(pin)
        except WrongPinError as exc:
            journal_refusal(journal, cert.chr, f"wrong PIN, {exc.attempts_remaining} tries left")
            raise SessionError(f"wrong FKO PIN; {exc.attempts_remaining} tries left") from None
        except AuthBlockedError:
            journal_refusal(journal, cert.chr, "PIN blocked")
            raise SessionError("the FKO card's PIN is blocked; the district must reset it") from None
        try:
            officer.verify_fingerprint(fingerprint())
        except FingerprintMismatchError as exc:
            journal_refusal(journal, cert.chr, f"fingerprint mismatch, {exc.attempts_remaining} tries left")
            raise SessionError(
                f"the FKO's fingerprint does not match the card; {exc.attempts_remaining} tries left"
            ) from None
        except AuthBlockedError:
            journal_refusal(journal, cert.chr, "fingerprint blocked")
            raise SessionError("fingerprint verification is blocked on the FKO card") from None
        day = t.date().isoformat()
        statement = binding_statement(
            terminal_chr=identity.chr, fko_chr=cert.chr, camp_id=camp_id, day=day, nonce=rng(16)
        )
        challenge = hashlib.sha256(statement).digest()
        try:
            raw = officer.protocol.send_apdu(
                fmt.OFFICER_CLA, fmt.OfficerIns.READ_LEDGER, 0, 0, challenge, 256
            )
            page = fmt.LedgerPage.parse(raw)
            fmt.verify_ledger_page(cert.chr, cert.public_point, challenge, page)
        except (CardError, PkiError) as exc:
            raise SessionError(f"the FKO card did not sign the session binding: {exc}") from None
        terminal_sig = identity.terminal.sign(statement)
        session_id = journal.open_session(
            fko_chr=cert.chr,
            terminal_chr=identity.chr,
            camp_id=camp_id,
            day=day,
            binding=statement.hex(),
            terminal_sig=terminal_sig.hex(),
            fko_sig=page.signature.hex(),
        )
        return cls(
            officer,
            cert,
            journal=journal,
            identity=identity,
            session_id=session_id,
            camp_id=camp_id,
            day=day,
            now=now,
            idle_timeout=idle_timeout,
        )

    # -- liveness ----------------------------------------------------------------------------------------
    def close(self, reason: str) -> None:
        if self.closed_reason is None:
            self.closed_reason = reason
            self.journal.close_session(self.session_id, reason)

    def check(self) -> None:
        """Raise SessionClosedError unless still open (same day, not idle, FKO card present)."""
        if self.closed_reason is not None:
            raise SessionClosedError(f"the FKO session is closed ({self.closed_reason})")
        t = self._now()
        if t.date().isoformat() != self.day:
            self.close("day ended")
        elif (t - self._last_used).total_seconds() > self.idle_timeout:
            self.close(f"idle for more than {self.idle_timeout:.0f} s")
        else:
            try:
                self.officer.status()
            except TransportError:
                self.close("FKO card removed")
            except CardError as exc:
                self.close(f"FKO card error: {exc}")
        if self.closed_reason is not None:
            raise SessionClosedError(f"the FKO session is closed ({self.closed_reason})")
        self._last_used = t

    def activate(self, body: bytes) -> CvCertificate:
        """Have the FKO card certify a beneficiary card's body; the card appends it to its ledger."""
        self.check()
        try:
            cert = self.officer.activate_card(body)
        except TransportError:
            self.close("FKO card removed")
            raise SessionClosedError("the FKO card was removed during activation") from None
        except NotEnoughMemoryError:
            self.close("FKO card ledger full")
            raise SessionClosedError(
                "the FKO card's activation ledger is full: the district must read it back"
            ) from None
        self._last_used = self._now()
        return cert

    def read_ledger(self) -> fmt.LedgerEntry | None:
        """The newest ledger entry (None if empty); the whole ledger is read and verified."""
        ledger = self.officer.read_ledger()
        return ledger.entries[-1] if ledger.entries else None


def journal_refusal(journal: Journal, fko_chr: str, why: str) -> None:
    with journal.transaction():
        journal.event("session.refused", fko_chr, {"why": why})
