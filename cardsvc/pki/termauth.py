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

from cardsvc.pki.chain import RevocationLookup, TrustAnchor, ValidatedChain, validate_chain
from cardsvc.pki.cvc import CvCertificate, check_reference
from cardsvc.pki.errors import FormatError, MissingRightError, WrongIssuerError
from cardsvc.pki.rights import Right, Role
from cardsvc.pki.signer import Signer, verify_signature
from cardsvc.tlv import tlv

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


# ----------------------------------------------------------------------------------------------------
# The card side, step by step (one object per power session, kept in the application's RAM)


class TaIns(IntEnum):
    """Terminal-authentication commands as a card application receives them (CLA 80, ISO P1P2 values):
    the simulated OS hands only CLA 8x commands to applications, so the ISO instructions travel there."""

    MSE_SET_DST = 0x22  # P1P2 81B6, data 83 L <CAR>: the key the next certificate is checked with
    PSO_VERIFY_CERTIFICATE = 0x2A  # P1P2 00BE, data 7F4E body || 5F37 signature (or a whole 7F21)
    EXTERNAL_AUTHENTICATE = 0x82  # P1P2 0000, data 64-byte r||s over terminal_auth_message(...)


TA_CLA = 0x80
MSE_SET_DST_P1P2 = 0x81B6
PSO_VERIFY_CERTIFICATE_P1P2 = 0x00BE
TA_CAR_TAG = 0x83


class TerminalAuthVerifier:
    """Card-side state machine of terminal authentication (pure; the card application feeds it APDU data).

    ``set_issuer`` (MSE:SET DST) names the key the next certificate must chain from: the root (anchor) or a
    certificate verified earlier in this session. ``verify_certificate`` (PSO:VERIFY CERTIFICATE) checks
    one link with every rule of :func:`validate_chain`. ``authenticate`` (EXTERNAL AUTHENTICATE) checks the
    terminal's signature over the card's challenge and returns the rights to grant for this session.
    Every failure raises the named ValidationError; the card maps it to a status word.
    """

    def __init__(
        self,
        anchor: TrustAnchor,
        *,
        card_id: str,
        now: datetime,
        revocations: RevocationLookup | None = None,
    ) -> None:
        self.anchor = anchor
        self.card_id = check_reference(card_id, "card id")
        self.now = now
        self.revocations = revocations
        self.chain: list[CvCertificate] = []
        self._issuer_set = False

    def set_issuer(self, car: str) -> None:
        if car == self.anchor.chr:
            self.chain = []
        else:
            refs = [c.chr for c in self.chain]
            if car not in refs:
                raise WrongIssuerError(
                    f"MSE:SET DST names {car}, which is neither the root nor verified in this session",
                    subject=car,
                )
            self.chain = self.chain[: refs.index(car) + 1]
        self._issuer_set = True

    def verify_certificate(self, data: bytes) -> CvCertificate:
        if not self._issuer_set:
            raise WrongIssuerError("PSO:VERIFY CERTIFICATE before MSE:SET DST")
        raw = bytes(data)
        if raw[:2] != b"\x7f\x21":
            raw = tlv(0x7F21, raw)
        cert = CvCertificate.parse(raw)
        validate_chain([*self.chain, cert], self.anchor, now=self.now, revocations=self.revocations)
        self.chain.append(cert)
        self._issuer_set = False
        return cert

    def authenticate(self, challenge: bytes | None, signature: bytes, required: Right = Right.NONE) -> Right:
        if challenge is None:
            raise FormatError("EXTERNAL AUTHENTICATE without a GET CHALLENGE in this session")
        if not self.chain:
            raise MissingRightError("EXTERNAL AUTHENTICATE without a verified terminal certificate")
        result = authenticate_terminal(
            self.chain,
            signature,
            anchor=self.anchor,
            challenge=challenge,
            card_id=self.card_id,
            now=self.now,
            required=required,
            revocations=self.revocations,
        )
        return result.rights


def terminal_auth_commands(chain: Sequence[CvCertificate]) -> list[tuple[int, int, int, int, bytes]]:
    """Host side: the (CLA, INS, P1, P2, data) of MSE:SET DST + PSO:VERIFY CERTIFICATE for each link, top
    first (the root itself is never sent: the card holds its key)."""
    out: list[tuple[int, int, int, int, bytes]] = []
    for cert in chain:
        if cert.self_signed:
            continue
        out.append((TA_CLA, TaIns.MSE_SET_DST, 0x81, 0xB6, tlv(TA_CAR_TAG, cert.car.encode("ascii"))))
        out.append(
            (TA_CLA, TaIns.PSO_VERIFY_CERTIFICATE, 0x00, 0xBE, cert.body + tlv(0x5F37, cert.signature))
        )
    return out
