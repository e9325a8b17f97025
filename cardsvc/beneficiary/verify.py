"""Offline card verification: what a point of service runs before it serves a cardholder.

:func:`verify_card` checks, IN THIS ORDER, and stops at the first failure with a :class:`CardRefusedError`
whose ``reason`` (a :class:`RefusalReason`) says what the clerk is told:

1. card present and the beneficiary application found
2. card ACTIVATED (not blank, half-personalised, blocked or superseded)
3. certificate chain to the root: district certificate (trust bundle) -> FKO certificate -> card certificate
4. revocation lists: card, FKO, district (what an issuer signed before its revocation stays valid)
5. policy period (= the card certificate's validity, signed by the FKO)
6. a fresh challenge signed by the card key (a copy of the files on another chip fails: clone check)
7. terminal authentication to the card (opens the profile and templates for this power session)
8. the profile read from the card matches the hash the card committed to at activation, names this card,
   and carries the certified policy period; and the content digest recomputed from (hash of the profile
   read, template-set hash and photo-set hash attested by the card) equals the digest the FKO signed in the
   card certificate. So even a chip-level attacker who rewrites the profile AND the card's stored hashes
   is refused: the FKO's signature does not cover the new content (tampered profile)

:func:`verify_member` is the fingerprint step: a live probe against that member's templates on the card.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from cardsvc.beneficiary import protocol as fmt
from cardsvc.beneficiary.errors import BeneficiaryCardError
from cardsvc.beneficiary.session import BeneficiarySession
from cardsvc.bio.iso19794 import decode_compact, quantise_for_card
from cardsvc.bio.matcher import DEFAULT_THRESHOLD, Matcher, MatchResult
from cardsvc.bio.template import FingerTemplate
from cardsvc.card.errors import ApduError, CardError, CardFileNotFoundError
from cardsvc.card.transport import CardConnection, CardRemovedError
from cardsvc.formats.errors import FormatError
from cardsvc.formats.profile import ContentHashes, HouseholdProfile, Member
from cardsvc.pki.chain import RevocationLookup, TrustAnchor, validate_chain
from cardsvc.pki.cvc import CvCertificate
from cardsvc.pki.errors import PkiError, RevokedError
from cardsvc.pki.signer import Signer


class RefusalReason(StrEnum):
    """Why a card was refused (one per verification step; the value is stable for logs and screens)."""

    NO_CARD = "no-card"
    NO_APPLICATION = "no-application"
    NOT_ACTIVATED = "not-activated"
    CARD_BLOCKED = "card-blocked"
    CHAIN_INVALID = "chain-invalid"
    CARD_REVOKED = "card-revoked"
    OFFICER_REVOKED = "officer-revoked"
    DISTRICT_REVOKED = "district-revoked"
    POLICY_NOT_STARTED = "policy-not-started"
    POLICY_EXPIRED = "policy-expired"
    CLONE_SUSPECTED = "clone-suspected"
    TERMINAL_REFUSED = "terminal-refused"
    PROFILE_TAMPERED = "profile-tampered"
    CARD_ERROR = "card-error"


CLERK_MESSAGES = {
    RefusalReason.NO_CARD: "No card in the reader. Insert the card.",
    RefusalReason.NO_APPLICATION: "This is not a beneficiary card.",
    RefusalReason.NOT_ACTIVATED: "This card was never activated. Send the household to an enrolment camp.",
    RefusalReason.CARD_BLOCKED: "This card has been blocked or replaced. Do not serve it.",
    RefusalReason.CHAIN_INVALID: "This card's certificate is not valid. Do not serve it.",
    RefusalReason.CARD_REVOKED: "This card is on the blacklist. Do not serve it.",
    RefusalReason.OFFICER_REVOKED: "The officer who activated this card is blacklisted. Do not serve it.",
    RefusalReason.DISTRICT_REVOKED: "This card's district key is blacklisted. Do not serve it.",
    RefusalReason.POLICY_NOT_STARTED: "The policy on this card has not started yet.",
    RefusalReason.POLICY_EXPIRED: "The policy on this card has expired. The household must renew.",
    RefusalReason.CLONE_SUSPECTED: "This card failed the chip check: it may be a copy. Keep it and report.",
    RefusalReason.TERMINAL_REFUSED: "The card refused this terminal. Sync the terminal or call support.",
    RefusalReason.PROFILE_TAMPERED: "The data on this card was altered. Keep it and report.",
    RefusalReason.CARD_ERROR: "The card did not answer correctly. Re-insert it and try again.",
}


#: The steps of :func:`verify_card` in order, as ``on_step`` names them (1 to 8 of the module docstring).
STEPS = ("present", "activated", "chain", "revocation", "policy", "challenge", "terminal-auth", "profile")


class CardRefusedError(BeneficiaryCardError):
    """The card failed a verification step; ``reason`` for screens, ``detail`` for logs."""

    def __init__(self, reason: RefusalReason, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason.value}: {detail}")

    @property
    def clerk_message(self) -> str:
        return CLERK_MESSAGES[self.reason]


@dataclass(frozen=True)
class VerifiedCard:
    """A card that passed every step of :func:`verify_card` (templates are readable in this session)."""

    card_id: str
    card_number: int
    profile: HouseholdProfile
    status: fmt.CardStatus
    attestation: fmt.Attestation
    card_certificate: CvCertificate
    chain: tuple[CvCertificate, ...]

    @property
    def household_id(self) -> str:
        return self.profile.household_id

    @property
    def members(self) -> tuple[Member, ...]:
        return self.profile.members

    @property
    def wallets(self) -> tuple[fmt.Wallet, ...]:
        return self.status.wallets

    @property
    def limits(self) -> tuple[int, int, int, int]:
        """Offline limits: (max count, max paise, count since sync, paise since sync)."""
        s = self.status
        return s.max_count, s.max_amount, s.since_sync_count, s.since_sync_amount

    @property
    def counter(self) -> int:
        return self.attestation.counter

    @property
    def public_point(self) -> bytes:
        return self.card_certificate.public_point


def open_session(connection: CardConnection | BeneficiarySession) -> BeneficiarySession:
    """Step 1: the card answers and carries the beneficiary application."""
    if isinstance(connection, BeneficiarySession):
        return connection
    try:
        return BeneficiarySession(connection)
    except CardFileNotFoundError as exc:
        raise CardRefusedError(
            RefusalReason.NO_APPLICATION, "no beneficiary application on this card"
        ) from exc
    except CardRemovedError as exc:
        raise CardRefusedError(RefusalReason.NO_CARD, str(exc)) from exc
    except CardError as exc:
        raise CardRefusedError(RefusalReason.CARD_ERROR, str(exc)) from exc


def _revocation_reason(
    subject: str | None, chain: tuple[CvCertificate, ...], anchor: TrustAnchor, revocations: RevocationLookup
) -> RefusalReason:
    """Whose revocation it was: the error names the certificate refused (the child of a revoked issuer)."""
    district, fko, card = chain
    if subject == card.chr:
        own = revocations.revocation_of(card.chr, (anchor.chr, district.chr, fko.chr))
        return RefusalReason.CARD_REVOKED if own is not None else RefusalReason.OFFICER_REVOKED
    return RefusalReason.DISTRICT_REVOKED


def verify_card(
    connection: CardConnection | BeneficiarySession,
    *,
    anchor: TrustAnchor,
    district_certificates: Sequence[CvCertificate],
    revocations: RevocationLookup | None,
    terminal_chain: Sequence[CvCertificate],
    terminal_signer: Signer,
    now: datetime,
    rng: Callable[[int], bytes] = os.urandom,
    on_step: Callable[[str], None] | None = None,
) -> tuple[BeneficiarySession, VerifiedCard]:
    """Verify a card offline (steps in the module docstring); returns the open session and the card.

    ``on_step(name)`` is called as each step PASSES, in order, with the names of :data:`STEPS` (screens
    tick them one by one while the card is being checked)."""
    step = on_step or (lambda name: None)
    session = open_session(connection)
    step("present")
    districts, chain = district_certificates, terminal_chain
    try:
        return session, _verify(
            session, anchor, districts, revocations, chain, terminal_signer, now, rng, step
        )
    except CardRemovedError as exc:
        raise CardRefusedError(RefusalReason.NO_CARD, str(exc)) from exc
    except (CardError, FormatError) as exc:
        raise CardRefusedError(RefusalReason.CARD_ERROR, str(exc)) from exc


def _verify(
    session: BeneficiarySession,
    anchor: TrustAnchor,
    districts: Sequence[CvCertificate],
    revocations: RevocationLookup | None,
    terminal_chain: Sequence[CvCertificate],
    terminal_signer: Signer,
    now: datetime,
    rng: Callable[[int], bytes],
    step: Callable[[str], None],
) -> VerifiedCard:
    status = session.status()  # step 2
    if status.lifecycle in (fmt.Lifecycle.BLOCKED, fmt.Lifecycle.SUPERSEDED):
        raise CardRefusedError(RefusalReason.CARD_BLOCKED, f"card is {status.lifecycle.name}")
    if status.lifecycle is not fmt.Lifecycle.ACTIVATED:
        raise CardRefusedError(RefusalReason.NOT_ACTIVATED, f"card is {status.lifecycle.name}")
    step("activated")
    public = session.read_public(status)  # step 3
    card, fko = public.card_certificate, public.fko_certificate
    if card is None or fko is None:
        raise CardRefusedError(RefusalReason.CHAIN_INVALID, "the card holds no certificates")
    if card.chr != status.card_id:
        raise CardRefusedError(
            RefusalReason.CHAIN_INVALID, f"certificate names {card.chr}, card is {status.card_id}"
        )
    district = next((d for d in districts if d.chr == fko.car), None)
    if district is None:
        raise CardRefusedError(RefusalReason.CHAIN_INVALID, f"district {fko.car} is not in the trust bundle")
    chain = (district, fko, card)
    # chain rules are checked inside the policy period, so an expired policy is reported as such (step 5)
    at = min(max(now, card.not_before), card.not_after - timedelta(seconds=1))
    try:
        validate_chain(chain, anchor, now=at)
    except PkiError as exc:
        raise CardRefusedError(
            RefusalReason.CHAIN_INVALID, f"{getattr(exc, 'rule', 'invalid')}: {exc}"
        ) from exc
    step("chain")
    if revocations is not None:  # step 4
        try:
            validate_chain(chain, anchor, now=at, revocations=revocations, signed_at=now)
        except RevokedError as exc:
            raise CardRefusedError(
                _revocation_reason(exc.subject, chain, anchor, revocations), str(exc)
            ) from exc
        except PkiError as exc:
            raise CardRefusedError(RefusalReason.CHAIN_INVALID, str(exc)) from exc
    step("revocation")
    if now < card.not_before:  # step 5
        raise CardRefusedError(RefusalReason.POLICY_NOT_STARTED, f"policy starts {card.effective}")
    if now >= card.not_after:
        raise CardRefusedError(RefusalReason.POLICY_EXPIRED, f"policy ended {card.expiry}")
    step("policy")
    try:  # step 6
        attestation = session.internal_authenticate(rng(16), card.chr, card.public_point)
    except (PkiError, ApduError) as exc:
        raise CardRefusedError(
            RefusalReason.CLONE_SUSPECTED, f"challenge not signed by the card key: {exc}"
        ) from exc
    if attestation.lifecycle is not fmt.Lifecycle.ACTIVATED:
        raise CardRefusedError(RefusalReason.NOT_ACTIVATED, f"the chip says {attestation.lifecycle.name}")
    step("challenge")
    try:  # step 7
        session.terminal_authenticate(terminal_chain, terminal_signer, card.chr)
    except ApduError as exc:
        raise CardRefusedError(RefusalReason.TERMINAL_REFUSED, str(exc)) from exc
    step("terminal-auth")
    try:  # step 8
        profile, raw = session.read_profile(status)
    except FormatError as exc:
        raise CardRefusedError(RefusalReason.PROFILE_TAMPERED, f"profile unreadable: {exc}") from exc
    if hashlib.sha256(raw).digest() != attestation.hashes.profile:
        raise CardRefusedError(
            RefusalReason.PROFILE_TAMPERED, "profile differs from what the card committed to"
        )
    if not hmac.compare_digest(certified_content(raw, attestation), card.content_digest or b""):
        raise CardRefusedError(
            RefusalReason.PROFILE_TAMPERED,
            "profile, templates or photos differ from what the FKO certified at activation",
        )
    if profile.card_id != card.chr or (profile.policy_start, profile.policy_end) != (
        card.effective,
        card.expiry,
    ):
        raise CardRefusedError(RefusalReason.PROFILE_TAMPERED, "profile names another card or policy period")
    step("profile")
    return VerifiedCard(
        card_id=card.chr,
        card_number=profile.card_number,
        profile=profile,
        status=status,
        attestation=attestation,
        card_certificate=card,
        chain=chain,
    )


def certified_content(profile_raw: bytes, attestation: fmt.Attestation) -> bytes:
    """The content digest a verifier recomputes without reading templates or photos: the profile bytes it
    read, with the template-set and photo-set hashes the card signed over the fresh challenge. It must equal
    the card certificate's content digest (the FKO's signature), and the templates read later must hash to
    the attested template hash (:func:`verify_member`), so both are bound to the FKO's signature."""
    hashes = ContentHashes(
        hashlib.sha256(profile_raw).digest(), attestation.hashes.templates, attestation.hashes.photos
    )
    return hashes.digest()


class NoTemplateError(BeneficiaryCardError):
    """The card holds no template for this member (enrolled without fingerprints: use the fallback)."""


def verify_member(
    session: BeneficiarySession,
    verified: VerifiedCard,
    member_index: int,
    probe: FingerTemplate,
    matcher: Matcher,
    *,
    threshold: float = DEFAULT_THRESHOLD,
) -> MatchResult:
    """The member's live finger against each of that member's templates on the card; the best result.

    Templates are read after terminal authentication (READ_TEMPLATES) and must hash to what the card
    committed to at activation; both sides are compared card-quantised.
    """
    verified.profile.member(member_index)
    templates, raw = session.read_templates(status=verified.status)
    if hashlib.sha256(raw).digest() != verified.attestation.hashes.templates:
        raise CardRefusedError(
            RefusalReason.PROFILE_TAMPERED, "templates differ from what the card committed to"
        )
    own = [t for t in templates if t.member_index == member_index]
    if not own:
        raise NoTemplateError(f"no fingerprint template for member {member_index}")
    # the same decisions as matcher.verify(probe, reference, card=True), but the probe is quantised and
    # encoded once, not once per stored template (about 12 ms each)
    encoded_probe = matcher.encode(quantise_for_card(probe))
    results = [
        MatchResult(score >= threshold, score, threshold)
        for score in (
            matcher.compare(encoded_probe, quantise_for_card(decode_compact(t.compact))) for t in own
        )
    ]
    return max(results, key=lambda r: r.score)


__all__ = [
    "CLERK_MESSAGES",
    "STEPS",
    "CardRefusedError",
    "NoTemplateError",
    "RefusalReason",
    "VerifiedCard",
    "certified_content",
    "open_session",
    "verify_card",
    "verify_member",
]
