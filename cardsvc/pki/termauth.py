"""Terminal authentication: the message a terminal signs to prove to a card that it holds a certified key.

EAC-style flow (the card side runs the same functions inside the simulated card OS)::

    terminal -> card : per chain link  MSE:SET DST (CAR)  +  PSO:VERIFY CERTIFICATE (7F4E body + 5F37)
    card -> terminal : GET CHALLENGE   (8-32 random bytes, valid for this power session only)
    terminal -> card : EXTERNAL AUTHENTICATE  (64-byte r||s over terminal_auth_message(...))

The message is defined here once. It binds the card's fresh challenge (no replay), the card id (a signature
made for one card is useless on another) and the terminal's CHR (no relay of another terminal's proof).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from enum import IntEnum

from cardsvc.pki._tlv import tlv
from cardsvc.pki.chain import RevocationLookup, TrustAnchor, ValidatedChain, validate_chain
from cardsvc.pki.cvc import CvCertificate, check_reference
from cardsvc.pki.errors import FormatError, MissingRightError
from cardsvc.pki.rights import Right, Role
from cardsvc.pki.signer import Signer, verify_signature

#: Domain separation: no other signed object in the system starts with these bytes.
TERMINAL_AUTH_DOMAIN = b"RSBY-TA\x01"
MIN_CHALLENGE, MAX_CHALLENGE = 8, 32

TERMINAL_ROLES = frozenset({Role.ENROLMENT_TERMINAL, Role.POS_TERMINAL})


class TaTag(IntEnum):
    CHALLENGE = 0x80
    CARD_ID = 0x81
    TERMINAL_CHR = 0x82


def terminal_auth_message(challenge: bytes, card_id: str, terminal_chr: str) -> bytes:
    """DOMAIN || 80 challenge || 81 card id || 82 terminal CHR (TLVs, ASCII references)."""
    if not MIN_CHALLENGE <= len(challenge) <= MAX_CHALLENGE:
        raise FormatError(f"challenge must be {MIN_CHALLENGE}-{MAX_CHALLENGE} bytes, got {len(challenge)}")
    return (
        TERMINAL_AUTH_DOMAIN
        + tlv(TaTag.CHALLENGE, challenge)
        + tlv(TaTag.CARD_ID, check_reference(card_id, "card id").encode("ascii"))
        + tlv(TaTag.TERMINAL_CHR, check_reference(terminal_chr, "terminal CHR").encode("ascii"))
    )


def sign_terminal_auth(signer: Signer, *, challenge: bytes, card_id: str, terminal_chr: str) -> bytes:
    """Terminal side: the EXTERNAL AUTHENTICATE payload."""
    return signer.sign(terminal_auth_message(challenge, card_id, terminal_chr))


def authenticate_terminal(
    chain: Sequence[CvCertificate | bytes],
    signature: bytes,
    *,
    anchor: TrustAnchor,
    challenge: bytes,
    card_id: str,
    now: datetime,
    required: Right = Right.NONE,
    revocations: RevocationLookup | None = None,
) -> ValidatedChain:
    """Card side: validate the terminal's chain, then its signature over this card's challenge.

    Returns the validated chain; the card grants exactly ``result.rights`` for the rest of the power
    session. Raises the named ValidationError of the first rule that fails.
    """
    validated = validate_chain(chain, anchor, now=now, required=required, revocations=revocations)
    leaf = validated.leaf
    if leaf.role not in TERMINAL_ROLES:
        raise MissingRightError(
            f"{leaf.chr} is a {leaf.role.name}, not a terminal; only terminals authenticate to cards",
            subject=leaf.chr,
        )
    verify_signature(
        leaf.public_point, terminal_auth_message(challenge, card_id, leaf.chr), signature, subject=leaf.chr
    )
    return validated
