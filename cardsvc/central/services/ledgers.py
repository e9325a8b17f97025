"""The FKO's own word on a ledger read-back: the officer card's signature, checked by central.

The district reads each FKO card's activation ledger back after a camp; the card signs (officer CHR, entry
count, hash-chain head, the reader's challenge) with the officer's key (cardsvc/pki/officer.py). A batch item
may carry that signature with the raw entries (``FkoLedgerEntry.signed_ledger``); central then checks

- the officer certificate is the FKO the item names (``reference_id(CHR) == fko_id``) and, with a trust
  anchor configured, that its chain validates to the root as an FKO's, at the time of the last activation;
- the card's signature over count and head, and that the entries chain to that head (nothing dropped,
  altered or reordered);
- that ``activated`` lists exactly the cards of the signed entries.

With a trust anchor configured, a ledger without the officer card's signature is refused
(``unsigned_ledger``). A ledger that fails is refused whole (422). What was checked is stored in
``fko_ledgers.officer_verified``: ``chain`` (signature and certificate chain to the root), ``signature``
(signature against the enclosed certificate; no trust anchor configured), or NULL (no officer signature).
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum

from cardsvc.central.errors import UnprocessableError
from cardsvc.formats.batch import FkoLedgerEntry, id_hex
from cardsvc.formats.profile import ProfileFormatError, card_number, reference_id
from cardsvc.pki.chain import RevocationLookup, TrustAnchor, validate_chain
from cardsvc.pki.cvc import CvCertificate
from cardsvc.pki.errors import PkiError
from cardsvc.pki.officer import verify_ledger
from cardsvc.pki.rights import Role


class OfficerCheck(StrEnum):
    CHAIN = "chain"
    SIGNATURE = "signature"


def check_signed_ledger(
    entry: FkoLedgerEntry,
    where: str,
    *,
    anchor: TrustAnchor | None,
    now: int,
    revocations: RevocationLookup | None = None,
    required: bool = False,
) -> OfficerCheck | None:
    """Check an FKO ledger item's officer signature; None when it carries none (refused instead when
    ``required``: central with a trust anchor takes the officer card's word, not the terminal's). Raises
    UnprocessableError."""
    signed = entry.signed_ledger
    if signed is None:
        if required:
            raise UnprocessableError(
                "unsigned_ledger",
                f"{where}: FKO {id_hex(entry.fko_id)}'s ledger carries no signature of the officer card "
                "(signed_ledger); the terminal's parse alone is not accepted",
            )
        return None
    try:
        chain = [CvCertificate.parse(c) for c in signed.officer_chain]
    except PkiError as exc:
        raise UnprocessableError("bad_officer_certificate", f"{where}: {exc}") from None
    officer = chain[-1]
    if reference_id(officer.chr) != entry.fko_id:
        raise UnprocessableError(
            "bad_officer_certificate",
            f"{where}: the certificate is {officer.chr}'s, not FKO {id_hex(entry.fko_id)}'s",
        )
    try:
        entries = verify_ledger(
            officer.chr, officer.public_point, signed.challenge, signed.entries, signed.count, signed.head,
            signed.signature,
        )  # fmt: skip
    except PkiError as exc:
        raise UnprocessableError("bad_ledger_signature", f"{where}: {exc}") from None
    check = OfficerCheck.SIGNATURE
    if anchor is not None:
        last = max((e.time for e in entries), default=now)
        at = datetime.fromtimestamp(min(last, now), UTC)
        try:
            validated = validate_chain(chain, anchor, now=at, revocations=revocations, signed_at=at)
        except PkiError as exc:
            raise UnprocessableError("bad_officer_certificate", f"{where}: {exc}") from None
        if validated.role is not Role.FIELD_KEY_OFFICER:
            raise UnprocessableError(
                "bad_officer_certificate", f"{where}: {officer.chr} is a {validated.role.name}, not an FKO"
            )
        check = OfficerCheck.CHAIN
    try:
        on_card = sorted(card_number(e.card_chr) for e in entries)
    except ProfileFormatError as exc:
        raise UnprocessableError("ledger_mismatch", f"{where}: {exc}") from None
    if on_card != sorted(entry.activated):
        raise UnprocessableError(
            "ledger_mismatch",
            f"{where}: activated lists {len(entry.activated)} cards, the officer signed {len(on_card)} "
            "(or other ones)",
        )
    return check
