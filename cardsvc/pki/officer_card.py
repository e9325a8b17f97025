"""Host session for the officer card (FKO / facility operator): personalisation, activation, ledger.

Domain verbs over the card-host stack (``ApplicationSession``); formats from cardsvc/pki/officer.py. Every
answer the card signs is verified here before it is returned, so callers get checked objects or an error.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cardsvc.card.errors import ApduError, WrongPinError
from cardsvc.card.iso import SW
from cardsvc.card.session import ApplicationSession, encode_pin
from cardsvc.pki import officer as fmt
from cardsvc.pki.cvc import CvCertificate
from cardsvc.pki.errors import FormatError, PkiError, SignatureInvalidError
from cardsvc.pki.signer import POINT_LEN, load_public_point


class OfficerCardError(PkiError):
    rule = "officer-card"


class FingerprintMismatchError(OfficerCardError):
    """Match-on-card said no; ``attempts_remaining`` before fingerprint verification blocks."""

    rule = "fingerprint-mismatch"

    def __init__(self, attempts_remaining: int) -> None:
        self.attempts_remaining = attempts_remaining
        super().__init__(
            f"fingerprint does not match the officer's; {attempts_remaining} attempt(s) remaining"
        )


class OfficerNotGenuineError(OfficerCardError):
    """The card could not prove it holds the certified officer key (a copy, or not an officer card)."""

    rule = "officer-not-genuine"


class OfficerNotVerifiedError(OfficerCardError):
    """The genuine card says its officer has not verified PIN and fingerprint in this power session."""

    rule = "officer-not-verified"

    def __init__(self, officer_chr: str, flags: fmt.AuthFlag) -> None:
        self.flags = flags
        named = ((fmt.AuthFlag.PIN_VERIFIED, "PIN"), (fmt.AuthFlag.FINGERPRINT_VERIFIED, "fingerprint"))
        missing = [what for flag, what in named if not flags & flag]
        super().__init__(f"{officer_chr}: {' and '.join(missing)} not verified on the card in this session")


class UnblockRefusedError(OfficerCardError):
    """The card refused a district's RESET RETRY COUNTER; ``sw`` is its status word, the message says why."""

    rule = "unblock-refused"

    def __init__(self, officer_chr: str, sw: int, why: str) -> None:
        self.sw = sw
        super().__init__(f"{officer_chr}: the card refused the unblock: {why}", subject=officer_chr)


#: What each refusal of RESET RETRY COUNTER means (the card's checks, hardware_sims/card/apps/officer.py).
UNBLOCK_REFUSALS: dict[int, str] = {
    SW.CONDITIONS_NOT_SATISFIED: "the card is not OPERATIONAL (or holds no trust anchor)",
    SW.REFERENCE_DATA_NOT_USABLE: (
        "the authorisation is not for the card's current challenge (replayed or stale)"
    ),
    SW.SECURITY_STATUS_NOT_SATISFIED: (
        "the district certificate does not chain to the card's root, or the signature is not that "
        "district's over this authorisation (altered, or signed by another key)"
    ),
    SW.REFERENCE_NOT_FOUND: "the authorisation is not from this card's own district, or names another card",
    SW.INCORRECT_DATA: "the authorisation is malformed",
}


@dataclass(frozen=True)
class OfficerAuthentication:
    """A verified AUTHENTICATE answer: the card holding ``officer``'s key signed ``challenge``."""

    officer: CvCertificate
    challenge: bytes
    flags: fmt.AuthFlag
    signature: bytes


@dataclass(frozen=True)
class VerifiedLedger:
    """The whole activation ledger, checked against the head the card signed for our challenge.

    Besides the parsed entries it keeps what the card itself said, so a third party (central) can check
    the officer's word instead of ours: ``challenge``, ``raw_entries`` (the 64-byte entries exactly as
    read), ``signature`` (the card's signature over officer CHR, count, head and challenge,
    :func:`cardsvc.pki.officer.ledger_statement`) and ``pages`` (every READ LEDGER answer as received).
    """

    officer: CvCertificate
    entries: tuple[fmt.LedgerEntry, ...]
    head: bytes
    challenge: bytes = b""
    raw_entries: bytes = b""
    signature: bytes = b""
    pages: tuple[bytes, ...] = ()

    @property
    def count(self) -> int:
        return len(self.entries)

    def verify(self) -> tuple[fmt.LedgerEntry, ...]:
        """Check again, from the kept bytes alone, that the card signed this ledger (raises PkiError)."""
        if not self.signature:
            raise FormatError(f"{self.officer.chr}: the ledger was kept without the card's signature")
        return fmt.verify_ledger(
            self.officer.chr, self.officer.public_point, self.challenge, self.raw_entries, self.count,
            self.head, self.signature,
        )  # fmt: skip


class OfficerCardSession(ApplicationSession):
    """Talk to the officer application (selected on construction)."""

    AID = fmt.OFFICER_AID

    def _cmd(
        self, ins: fmt.OfficerIns, data: bytes = b"", *, p1p2: int = 0, le: int = 0, sensitive: bool = False
    ) -> bytes:
        return self.protocol.send_apdu(
            fmt.OFFICER_CLA, ins, p1p2 >> 8, p1p2 & 0xFF, data, le, sensitive=sensitive
        )

    # --- state -------------------------------------------------------------------------------------
    def status(self) -> fmt.Status:
        return fmt.Status.decode(self._cmd(fmt.OfficerIns.GET_STATUS, le=256))

    def certificate(self) -> CvCertificate:
        return CvCertificate.parse(self._cmd(fmt.OfficerIns.GET_CERTIFICATE, le=65536))

    # --- personalisation (DKMA) --------------------------------------------------------------------
    def generate_key(self) -> bytes:
        """A new officer key pair ON the card; returns its public point (the private key never leaves)."""
        point = self._cmd(fmt.OfficerIns.GENERATE_KEY, le=256)
        if len(point) != POINT_LEN:
            raise FormatError(f"card returned a {len(point)}-byte public point")
        load_public_point(point)
        return point

    def put_certificate(self, cert: CvCertificate) -> None:
        self._cmd(fmt.OfficerIns.PUT_CERTIFICATE, cert.encode())

    def put_templates(self, templates: Sequence[bytes]) -> None:
        """``templates``: each a 7F2E {81 compact minutiae} (cardsvc.bio.iso19794.wrap_verify_template)."""
        data = fmt.join_templates(templates)
        fmt.split_templates(data)
        self._cmd(fmt.OfficerIns.PUT_TEMPLATES, data, sensitive=True)

    def set_pin(self, pin: str) -> None:
        self._cmd(fmt.OfficerIns.SET_PIN, encode_pin(pin), sensitive=True)

    def lock(self) -> None:
        self._cmd(fmt.OfficerIns.LOCK)

    # --- operational -------------------------------------------------------------------------------
    def verify_pin_code(self, pin: str) -> None:
        """ISO VERIFY of the officer PIN; raises cardsvc WrongPinError / AuthBlockedError."""
        self.verify_pin(pin, fmt.PIN_REF)

    def verify_fingerprint(self, probe: bytes) -> None:
        """Match-on-card of a live ``probe`` (7F2E-wrapped compact minutiae)."""
        try:
            self._cmd(fmt.OfficerIns.VERIFY_BIOMETRIC, probe, sensitive=True)
        except WrongPinError as exc:
            raise FingerprintMismatchError(exc.attempts_remaining) from None

    def activate_card(self, body: bytes) -> CvCertificate:
        """Have the card sign a beneficiary card's certificate body (after PIN and fingerprint).

        Returns the complete certificate, checked against this officer's key; the card has appended the
        activation to its ledger.
        """
        signature = self._cmd(fmt.OfficerIns.ACTIVATE_CARD, body, le=256)
        officer = self.certificate()
        cert = CvCertificate.parse_body(body).with_signature(signature)
        cert.verify_signed_by(officer.public_point)
        return cert

    def authenticate(
        self,
        challenge: bytes,
        *,
        officer: CvCertificate | None = None,
        require: fmt.AuthFlag = fmt.AUTH_FULLY_VERIFIED,
    ) -> OfficerAuthentication:
        """Have the card sign ``challenge`` (8-32 fresh bytes) and verify it against the officer certificate.

        ``officer``: the certificate the caller already validated (read from the card if omitted); the
        signature is checked against ITS key, so a card presenting a copied certificate is refused.
        Raises OfficerNotGenuineError if the card cannot prove it holds that key, OfficerNotVerifiedError if
        the card reports that ``require`` (default: PIN and fingerprint) is not verified in this session.
        """
        fmt.check_auth_challenge(challenge)
        cert = officer if officer is not None else self.certificate()
        try:
            flags, signature = fmt.parse_auth_response(
                self._cmd(fmt.OfficerIns.AUTHENTICATE, challenge, le=256)
            )
            fmt.verify_officer_auth(cert.chr, cert.public_point, challenge, flags, signature)
        except ApduError as exc:
            raise OfficerNotGenuineError(
                f"{cert.chr}: the card refused to prove it holds the officer key: {exc}", subject=cert.chr
            ) from None
        except (FormatError, SignatureInvalidError) as exc:
            raise OfficerNotGenuineError(
                f"{cert.chr}: the card did not prove it holds the certified officer key: {exc}",
                subject=cert.chr,
            ) from None
        if require & ~flags:
            raise OfficerNotVerifiedError(cert.chr, flags)
        return OfficerAuthentication(cert, challenge, flags, signature)

    def unblock_challenge(self) -> bytes:
        """A fresh GET CHALLENGE for a district's unblock authorisation (one command, this power session)."""
        return self.get_challenge(fmt.UNBLOCK_CHALLENGE_LENGTH)

    def reset_retry_counter(
        self, authorisation: fmt.UnblockAuthorisation, new_pin: str | None = None
    ) -> None:
        """Send a district's authorisation: the card sets ``new_pin`` (PIN unblock) and/or resets the
        fingerprint tries in one transaction, or raises :class:`UnblockRefusedError` saying why not."""
        pin = None if new_pin is None else encode_pin(new_pin)
        data = authorisation.encode(pin)
        try:
            self._cmd(fmt.OfficerIns.RESET_RETRY_COUNTER, data, sensitive=pin is not None)
        except ApduError as exc:
            why = UNBLOCK_REFUSALS.get(exc.sw, f"status {exc.sw_name}")
            raise UnblockRefusedError(authorisation.officer_chr, exc.sw, why) from None

    def read_ledger(self, *, rng: Callable[[int], bytes] = os.urandom) -> VerifiedLedger:
        """Read the whole ledger with a fresh challenge and verify the card's signature and hash chain."""
        challenge = rng(16)
        officer = self.certificate()
        le = min(65536, self.limits.max_response_data)
        raw = b""
        first_page: fmt.LedgerPage | None = None
        pages: list[bytes] = []
        while True:
            start = len(raw) // fmt.LEDGER_ENTRY_SIZE
            answer = self._cmd(fmt.OfficerIns.READ_LEDGER, challenge, p1p2=start, le=le)
            pages.append(answer)
            page = fmt.LedgerPage.parse(answer)
            if page.first != start:
                raise FormatError(f"card answered ledger page {page.first}, {start} was asked")
            # every page is signed; count and head must not change while we read
            fmt.verify_ledger_page(officer.chr, officer.public_point, challenge, page)
            if first_page is None:
                first_page = page
            elif (page.count, page.head) != (first_page.count, first_page.head):
                raise FormatError("the ledger changed while it was being read")
            raw += page.raw_entries
            if len(raw) >= page.count * fmt.LEDGER_ENTRY_SIZE or not page.entries:
                break
        entries = fmt.verify_ledger(
            officer.chr,
            officer.public_point,
            challenge,
            raw,
            first_page.count,
            first_page.head,
            first_page.signature,
        )
        return VerifiedLedger(
            officer, entries, first_page.head, challenge=challenge, raw_entries=raw,
            signature=first_page.signature, pages=tuple(pages),
        )  # fmt: skip


__all__ = [
    "FingerprintMismatchError",
    "OfficerAuthentication",
    "OfficerCardError",
    "OfficerCardSession",
    "OfficerNotGenuineError",
    "OfficerNotVerifiedError",
    "UnblockRefusedError",
    "VerifiedLedger",
]
