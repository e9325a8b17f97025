"""Offline verification of a beneficiary card and one of its members, in the order the issue fixes; every
failure becomes a catalogued clerk reason (point_of_service.reasons) naming the step that failed.

1. card present and activated          5. fresh challenge the genuine chip must sign (clone check)
2. certificate chain to the root       6. terminal authentication to the card
3. revocation lists (card, FKO, district; and central's register of cards)
4. policy period                       7. the member chosen (profile bound to what the chip committed to)
                                       8. that member's fingerprint against the templates on the card

Steps 1-7 are :func:`verify_card` (one card insertion = one :class:`CardVisit`); step 8 is
:func:`verify_member`, repeated with fallbacks (another finger, another member, supervised override).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from cardsvc.beneficiary.protocol import Attestation, CardStatus, Lifecycle
from cardsvc.beneficiary.session import BeneficiarySession
from cardsvc.bio.errors import BiometricError
from cardsvc.bio.iso19794 import decode_compact
from cardsvc.bio.matcher import Matcher
from cardsvc.card.errors import ApduError, CardFileNotFoundError
from cardsvc.card.transport import CardConnection, CardRemovedError, TransportError
from cardsvc.formats.profile import HouseholdProfile, StoredTemplate, card_number
from cardsvc.pki.chain import validate_chain
from cardsvc.pki.cvc import CvCertificate, start_of_day
from cardsvc.pki.errors import ExpiredError, NotYetValidError, PkiError, RevokedError
from cardsvc.pki.rights import Role
from point_of_service.errors import PosError, VerificationError
from point_of_service.identity import TerminalIdentity
from point_of_service.journal import Journal
from point_of_service.probe import CaptureFn
from point_of_service.reasons import Reason
from point_of_service.services.fallback import (
    Fallback,
    Override,
    VisitAttempts,
    check_override,
    record_fallback,
)
from point_of_service.services.signin import Clerk
from point_of_service.trust import TrustState

#: Decision threshold: -10 log10(FMR), 40 = FMR 1e-4 (as match-on-card on officer cards).
MATCH_THRESHOLD = 40.0

_MATCHER: Matcher | None = None


def matcher() -> Matcher:
    """One matcher per process (its calibration table loads once)."""
    global _MATCHER
    if _MATCHER is None:
        _MATCHER = Matcher()
    return _MATCHER


@dataclass
class CardVisit:
    """A verified card in the reader: what later steps and the flows need."""

    session: BeneficiarySession
    status: CardStatus
    card_certificate: CvCertificate
    fko_certificate: CvCertificate
    attestation: Attestation
    profile: HouseholdProfile
    profile_raw: bytes
    attempts: VisitAttempts = field(default_factory=VisitAttempts)
    member: int | None = None
    member_verified_by: str | None = None  # "fingerprint" or "override"

    @property
    def card_chr(self) -> str:
        return self.card_certificate.chr

    @property
    def card_id(self) -> int:
        return card_number(self.card_certificate.chr)

    @property
    def card_key(self) -> bytes:
        return self.card_certificate.public_point


def _fail(reason: Reason, detail: str, step: str) -> VerificationError:
    return VerificationError(reason, detail, step=step)


def verify_card(
    connection: CardConnection,
    *,
    identity: TerminalIdentity,
    trust: TrustState,
    clerk: Clerk,
    now: int,
    journal: Journal | None = None,
    rng: Callable[[int], bytes] = os.urandom,
) -> CardVisit:
    """Steps 1-7 (member choice is :func:`choose_member`). Journals the outcome either way."""
    card_id: int | None = None
    try:
        visit = _verify_card(connection, identity, trust, now, rng)
    except VerificationError as exc:
        if journal is not None:
            journal.log("verify-card", at=now, outcome="refused", operator=clerk.chr, card_id=card_id,
                        reason=exc.reason.value, detail={"step": exc.step, "why": exc.detail})  # fmt: skip
        raise
    if journal is not None:
        journal.log("verify-card", at=now, operator=clerk.chr, card_id=visit.card_id,
                    detail={"counter": visit.status.counter})  # fmt: skip
    return visit


def _verify_card(
    connection: CardConnection, identity: TerminalIdentity, trust: TrustState, now: int,
    rng: Callable[[int], bytes],
) -> CardVisit:  # fmt: skip
    at = datetime.fromtimestamp(now, UTC)
    # 1. present and activated
    try:
        session = BeneficiarySession(connection)
        status = session.status()
    except CardFileNotFoundError:
        raise _fail(Reason.CARD_ERROR, "no beneficiary application on this card", "present") from None
    except (CardRemovedError, TransportError) as exc:
        raise _fail(Reason.CARD_MISSING, str(exc), "present") from None
    except (ApduError, PkiError, ValueError) as exc:
        raise _fail(Reason.CARD_ERROR, str(exc), "present") from None
    if status.lifecycle in (Lifecycle.BLOCKED, Lifecycle.SUPERSEDED):
        raise _fail(Reason.CARD_REVOKED, f"the card is {status.lifecycle.name}", "activated")
    if status.lifecycle is not Lifecycle.ACTIVATED:
        raise _fail(Reason.CARD_NOT_ACTIVATED, f"life cycle {status.lifecycle.name}", "activated")
    try:
        public = session.read_public(status)
    except (ApduError, PkiError, ValueError) as exc:
        raise _fail(Reason.CARD_CHAIN_INVALID, f"certificates unreadable: {exc}", "chain") from None
    card_cert, fko = public.card_certificate, public.fko_certificate
    if card_cert is None or fko is None:
        raise _fail(Reason.CARD_NOT_ACTIVATED, "no certificate on the card", "activated")
    if card_cert.chr != status.card_id:
        raise _fail(
            Reason.CARD_CHAIN_INVALID, f"certificate names {card_cert.chr}, chip {status.card_id}", "chain"
        )
    # 2. chain to the root (as of the card's own start: validity is step 4)
    district = trust.districts.get(fko.car)
    if district is None:
        raise _fail(Reason.CARD_CHAIN_INVALID, f"FKO {fko.chr} is under unknown district {fko.car}", "chain")
    chain = [district, fko, card_cert]
    if card_cert.role is not Role.BENEFICIARY_CARD:
        raise _fail(
            Reason.CARD_CHAIN_INVALID, f"{card_cert.chr} is a {card_cert.role.name} certificate", "chain"
        )
    issued = start_of_day(card_cert.effective)
    try:
        validate_chain(chain, identity.anchor, now=issued)
    except PkiError as exc:
        raise _fail(Reason.CARD_CHAIN_INVALID, f"{exc.rule}: {exc}", "chain") from None
    # 3. revocation: signed lists (card, FKO, district) then central's register of cards
    try:
        validate_chain(chain, identity.anchor, now=issued, revocations=trust.store, signed_at=at)
    except RevokedError as exc:
        subject = getattr(exc, "subject", "")
        reason = {fko.chr: Reason.FKO_REVOKED, district.chr: Reason.DISTRICT_REVOKED}.get(
            subject, Reason.CARD_REVOKED
        )
        raise _fail(reason, str(exc), "revocation") from None
    except PkiError as exc:
        raise _fail(Reason.CARD_CHAIN_INVALID, f"{exc.rule}: {exc}", "revocation") from None
    central_at = trust.central_revoked_at("cards", f"{card_number(card_cert.chr):016x}")
    if central_at is not None and central_at <= now:
        raise _fail(Reason.CARD_REVOKED, f"central blacklisted the card at {central_at}", "revocation")
    # 4. policy period (the card certificate's validity), then everything again at now
    if at < issued:
        raise _fail(Reason.POLICY_NOT_STARTED, f"policy starts {card_cert.effective}", "policy")
    if at >= start_of_day(card_cert.expiry) + timedelta(days=1):
        raise _fail(Reason.POLICY_EXPIRED, f"policy ended {card_cert.expiry}", "policy")
    try:
        validate_chain(chain, identity.anchor, now=at, revocations=trust.store)
    except (ExpiredError, NotYetValidError) as exc:
        raise _fail(Reason.CARD_CHAIN_INVALID, f"{exc.rule}: {exc}", "policy") from None
    except PkiError as exc:
        raise _fail(Reason.CARD_CHAIN_INVALID, f"{exc.rule}: {exc}", "policy") from None
    # 5. a fresh challenge only the genuine chip can sign
    challenge = rng(16)
    try:
        attestation = session.internal_authenticate(challenge, card_cert.chr, card_cert.public_point)
    except PkiError as exc:
        raise _fail(Reason.CARD_NOT_GENUINE, f"challenge signature: {exc}", "challenge") from None
    except (ApduError, ValueError) as exc:
        raise _fail(Reason.CARD_NOT_GENUINE, f"challenge refused: {exc}", "challenge") from None
    if attestation.lifecycle is not Lifecycle.ACTIVATED or attestation.counter != status.counter:
        raise _fail(Reason.CARD_NOT_GENUINE, "attested state differs from the status read", "challenge")
    # 6. terminal authentication to the card
    try:
        session.terminal_authenticate(list(identity.chain), identity.signer, card_cert.chr)
    except (ApduError, PkiError) as exc:
        raise _fail(Reason.TERMINAL_AUTH_REFUSED, str(exc), "terminal-auth") from None
    # 7. the profile the chip committed to at activation
    try:
        profile, raw = session.read_profile(status)
    except (ApduError, PkiError, ValueError) as exc:
        raise _fail(Reason.PROFILE_TAMPERED, f"profile unreadable: {exc}", "profile") from None
    if hashlib.sha256(raw).digest() != attestation.hashes.profile:
        raise _fail(Reason.PROFILE_TAMPERED, "profile differs from what the card committed to", "profile")
    if profile.card_id != card_cert.chr or profile.fko_id != fko.chr:
        raise _fail(Reason.PROFILE_TAMPERED, "profile names another card or FKO", "profile")
    return CardVisit(session, status, card_cert, fko, attestation, profile, raw)


def choose_member(visit: CardVisit, member: int) -> None:
    if not any(m.index == member for m in visit.profile.members):
        raise _fail(Reason.MEMBER_UNKNOWN, f"member {member} is not on card {visit.card_chr}", "member")
    visit.member = member
    visit.member_verified_by = None


@dataclass(frozen=True)
class MemberMatch:
    matched: bool
    score: float
    finger: int
    options: tuple[Fallback, ...] = ()


def _templates(visit: CardVisit) -> tuple[StoredTemplate, ...]:
    try:
        templates, raw = visit.session.read_templates(None, visit.status)
    except (ApduError, ValueError) as exc:
        raise _fail(Reason.CARD_ERROR, f"templates unreadable: {exc}", "fingerprint") from None
    if hashlib.sha256(raw).digest() != visit.attestation.hashes.templates:
        raise _fail(
            Reason.PROFILE_TAMPERED, "templates differ from what the card committed to", "fingerprint"
        )
    return templates


def verify_member(
    visit: CardVisit,
    *,
    member: int,
    finger: int,
    capture: CaptureFn,
    clerk: Clerk,
    now: int,
    journal: Journal | None = None,
    threshold: float = MATCH_THRESHOLD,
) -> MemberMatch:
    """Step 8: a live finger of ``member`` against that finger's template on the card.

    A mismatch returns ``matched=False`` with the fallbacks still open (and is journalled); the clerk
    then tries another finger, another member (:func:`choose_member`), or :func:`override_member`.
    """
    choose_member(visit, member)
    enrolled = {t.finger_position: t for t in _templates(visit) if t.member_index == member}
    members = len(visit.profile.members)
    if finger not in enrolled:
        raise _fail(Reason.FINGER_NOT_ENROLLED, f"finger {finger} not enrolled; enrolled: {sorted(enrolled)}",
                    "fingerprint")  # fmt: skip
    if not visit.attempts.may_try(member, finger):
        raise _fail(
            Reason.FALLBACK_EXHAUSTED, f"finger {finger} of member {member} tried too often", "fingerprint"
        )
    if journal is not None and visit.attempts.tries:
        tried_members = {m for (m, _) in visit.attempts.tries}
        fallback: Fallback | None = None
        if member not in tried_members:
            fallback = Fallback.ANOTHER_MEMBER
        elif finger not in visit.attempts.fingers_tried(member):
            fallback = Fallback.ANOTHER_FINGER
        if fallback is not None:
            record_fallback(journal, at=now, clerk=clerk, card_id=visit.card_id, member=member,
                            fallback=fallback, detail={"finger": finger})  # fmt: skip
    try:
        probe = capture()
    except (BiometricError, OSError) as exc:
        visit.attempts.failed(member, finger)
        raise _fail(Reason.FINGER_POOR_QUALITY, str(exc), "fingerprint") from None
    reference = decode_compact(enrolled[finger].compact, finger_position=finger)
    result = matcher().verify(probe, reference, threshold=threshold)
    detail: dict[str, Any] = {"finger": finger, "score": round(result.score, 1)}
    if result.matched:
        visit.member_verified_by = "fingerprint"
        if journal is not None:
            journal.log("verify-member", at=now, operator=clerk.chr, card_id=visit.card_id, member=member,
                        detail=detail)  # fmt: skip
        return MemberMatch(True, result.score, finger)
    visit.attempts.failed(member, finger)
    options = tuple(visit.attempts.options(member, set(enrolled), members))
    if journal is not None:
        journal.log("verify-member", at=now, outcome="refused", operator=clerk.chr, card_id=visit.card_id,
                    member=member, reason=Reason.FINGER_MISMATCH.value,
                    detail={**detail, "options": [o.value for o in options]})  # fmt: skip
    return MemberMatch(False, result.score, finger, options)


def override_member(
    visit: CardVisit, *, member: int, override: Override, clerk: Clerk, now: int, journal: Journal
) -> None:
    """Accept ``member`` without a fingerprint match: supervisor + reason + note, always journalled."""
    choose_member(visit, member)
    check_override(override, clerk)
    visit.member_verified_by = "override"
    detail = {
        "supervisor": override.supervisor.chr,
        "why": override.reason.value,
        "note": override.note.strip(),
    }
    record_fallback(
        journal,
        at=now,
        clerk=clerk,
        card_id=visit.card_id,
        member=member,
        fallback=Fallback.OVERRIDE,
        detail=detail,
    )


def require_member(visit: CardVisit) -> int:
    """The member whose identity was established (fingerprint or override); refuses otherwise."""
    if visit.member is None or visit.member_verified_by is None:
        raise PosError(Reason.FINGER_MISMATCH, "no member verified on this card in this visit")
    return visit.member
