"""Offline verification of a beneficiary card and one of its members for the clerk's screens.

The checks themselves are the beneficiary card's public API (:func:`cardsvc.beneficiary.verify.verify_card`
and :func:`~cardsvc.beneficiary.verify.verify_member`), in the order the issue fixes: card present and
activated; chain to the root; revocation lists (card, FKO, district); policy period; a fresh challenge only
the genuine chip can sign; terminal authentication; the profile the chip committed to; then the member's
fingerprint. This layer adds what a POS needs around them: central's register of blacklisted cards, the
clerk-facing reason from point_of_service.reasons (with the step that failed), fallbacks (another finger,
another member, supervised override) and the journal.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cardsvc.beneficiary.errors import BeneficiaryCardError
from cardsvc.beneficiary.session import BeneficiarySession, OfflineState
from cardsvc.beneficiary.verify import (
    CardRefusedError,
    NoTemplateError,
    RefusalReason,
    VerifiedCard,
)
from cardsvc.beneficiary.verify import (
    verify_card as check_card,
)
from cardsvc.beneficiary.verify import (
    verify_member as check_member,
)
from cardsvc.bio.errors import BiometricError
from cardsvc.bio.matcher import Matcher
from cardsvc.card.errors import CardError
from cardsvc.card.transport import CardConnection
from cardsvc.formats.errors import FormatError
from cardsvc.formats.transaction import TransactionRecord
from point_of_service.errors import PosError, TransactionError, VerificationError
from point_of_service.identity import TerminalIdentity
from point_of_service.journal import Journal
from point_of_service.probe import CaptureFn
from point_of_service.reasons import Reason
from point_of_service.services.authorisations import (
    AppliedAuthorisations,
    apply_card_authorisations,
    present_supersede,
)
from point_of_service.services.fallback import (
    Fallback,
    Override,
    VisitAttempts,
    check_override,
    record_fallback,
)
from point_of_service.services.signin import Clerk
from point_of_service.services.transactions import collect_unanswered
from point_of_service.trust import TrustState

#: Decision threshold: -10 log10(FMR); 40 = FMR 1e-4, as match-on-card on officer cards.
MATCH_THRESHOLD = 40.0

#: The beneficiary API's refusal -> the POS reason and the step name shown with it.
REFUSALS: dict[RefusalReason, tuple[Reason, str]] = {
    RefusalReason.NO_CARD: (Reason.CARD_MISSING, "present"),
    RefusalReason.NO_APPLICATION: (Reason.NOT_A_BENEFICIARY_CARD, "present"),
    RefusalReason.NOT_ACTIVATED: (Reason.CARD_NOT_ACTIVATED, "activated"),
    RefusalReason.CARD_BLOCKED: (Reason.CARD_BLOCKED, "activated"),
    RefusalReason.CHAIN_INVALID: (Reason.CARD_CHAIN_INVALID, "chain"),
    RefusalReason.CARD_REVOKED: (Reason.CARD_REVOKED, "revocation"),
    RefusalReason.OFFICER_REVOKED: (Reason.FKO_REVOKED, "revocation"),
    RefusalReason.DISTRICT_REVOKED: (Reason.DISTRICT_REVOKED, "revocation"),
    RefusalReason.POLICY_NOT_STARTED: (Reason.POLICY_NOT_STARTED, "policy"),
    RefusalReason.POLICY_EXPIRED: (Reason.POLICY_EXPIRED, "policy"),
    RefusalReason.CLONE_SUSPECTED: (Reason.CARD_NOT_GENUINE, "challenge"),
    RefusalReason.TERMINAL_REFUSED: (Reason.TERMINAL_AUTH_REFUSED, "terminal-auth"),
    RefusalReason.PROFILE_TAMPERED: (Reason.PROFILE_TAMPERED, "profile"),
    RefusalReason.CARD_ERROR: (Reason.CARD_ERROR, "card"),
}

_MATCHER: Matcher | None = None


def matcher() -> Matcher:
    """One matcher per process (its calibration table loads once)."""
    global _MATCHER
    if _MATCHER is None:
        _MATCHER = Matcher()
    return _MATCHER


@dataclass
class CardVisit:
    """A verified card in the reader (one insertion): what the member step and the flows need."""

    session: BeneficiarySession
    verified: VerifiedCard
    attempts: VisitAttempts = field(default_factory=VisitAttempts)
    member: int | None = None
    member_verified_by: str | None = None  # "fingerprint" or "override"
    #: central's sync acknowledgement presented at this insertion (limits renewed) and what was refused
    authorisations: AppliedAuthorisations = field(default_factory=AppliedAuthorisations)
    #: records the card made by itself (status 8E) journalled at this insertion
    card_records: tuple[TransactionRecord, ...] = ()

    @property
    def offline_limits(self) -> OfflineState:
        """The card's offline limits now: after a renewal at this insertion, else as verification read."""
        if self.authorisations.limits is not None:
            return self.authorisations.limits
        st = self.verified.status
        return OfflineState(st.max_count, st.max_amount, st.since_sync_count, st.since_sync_amount,
                            st.synced_counter, st.counter)  # fmt: skip

    @property
    def card_chr(self) -> str:
        return self.verified.card_id

    @property
    def card_id(self) -> int:
        return self.verified.card_number

    @property
    def card_key(self) -> bytes:
        return self.verified.public_point

    @property
    def profile(self) -> Any:
        return self.verified.profile


def refusal(exc: CardRefusedError) -> VerificationError:
    reason, step = REFUSALS.get(exc.reason, (Reason.CARD_ERROR, "card"))
    return VerificationError(reason, exc.detail, step=step)


def verify_card(
    connection: CardConnection | BeneficiarySession,
    *,
    identity: TerminalIdentity,
    trust: TrustState,
    clerk: Clerk,
    now: int,
    journal: Journal | None = None,
    rng: Callable[[int], bytes] = os.urandom,
    on_step: Callable[[str], None] | None = None,
) -> CardVisit:
    """Every card step; raises :class:`VerificationError` (reason + step); journals the outcome either way.

    ``on_step(name)`` is told each card step as it passes (``cardsvc.beneficiary.verify.STEPS``), so a
    screen can tick them one by one; central's register is checked after the card's own steps."""
    try:
        check_facility(identity, trust, clerk, now)
        session, verified = check_card(
            connection,
            anchor=identity.anchor,
            district_certificates=list(trust.districts.values()),
            revocations=trust.store,
            terminal_chain=list(identity.chain),
            terminal_signer=identity.signer,
            now=datetime.fromtimestamp(now, UTC),
            rng=rng,
            on_step=on_step,
        )
        if journal is not None:  # a replaced card learns it before central's register is consulted
            superseded = present_supersede(session, journal, card_id=verified.card_number,
                                           status=verified.status, now=now, operator=clerk.chr)  # fmt: skip
            if superseded.superseded:
                raise VerificationError(
                    Reason.CARD_BLOCKED,
                    f"central superseded this card (replaced): authorisation {superseded.applied[0].id}",
                    step="authorisation",
                )
        blacklisted = trust.central_revoked_at("cards", f"{verified.card_number:016x}")
        if blacklisted is not None and blacklisted <= now:
            raise VerificationError(
                Reason.CARD_REVOKED, f"central blacklisted the card at {blacklisted}", step="revocation"
            )
    except CardRefusedError as exc:
        error = refusal(exc)
        _log_refusal(journal, now, clerk, None, error)
        raise error from None
    except VerificationError as error:
        _log_refusal(journal, now, clerk, None, error)
        raise
    if journal is not None:
        journal.log(
            "verify-card",
            at=now,
            operator=clerk.chr,
            card_id=verified.card_number,
            detail={
                "counter": verified.counter,
                "synced_counter": verified.status.synced_counter,
                "since_sync": [verified.status.since_sync_count, verified.status.since_sync_amount],
                "offline_limits": [verified.status.max_count, verified.status.max_amount],
            },
        )
    visit = CardVisit(session, verified)
    if journal is not None:
        # records the card made by itself (a held renewal taking effect) reach the journal, then central
        try:
            visit.card_records = collect_unanswered(
                session, journal, card_id=verified.card_number, card_key=verified.public_point,
                status=verified.status, now=now, operator=clerk.chr,
            )  # fmt: skip
        except TransactionError as exc:
            refused = VerificationError(exc.reason, exc.detail, step="records")
            _log_refusal(journal, now, clerk, verified.card_number, refused)
            raise refused from None
        # the card is genuine and this terminal authenticated: carry central's top-ups and acknowledgement
        visit.authorisations = apply_card_authorisations(
            session, journal, card_id=verified.card_number, card_key=verified.public_point,
            status=verified.status, now=now, identity=identity, clerk=clerk, rng=rng,
        )  # fmt: skip
    return visit


def check_facility(identity: TerminalIdentity, trust: TrustState, clerk: Clerk, now: int) -> None:
    """This terminal and the signed-in clerk must not be revoked (signed lists or central's register): a
    revoked facility serves nobody, whatever the card says."""
    from point_of_service.errors import TerminalSetupError
    from point_of_service.identity import reference_id

    try:
        identity.validate(now=datetime.fromtimestamp(now, UTC), revocations=trust.store)
    except TerminalSetupError as exc:
        raise VerificationError(Reason.FACILITY_REVOKED, exc.detail, step="facility") from None
    checks = (
        ("terminals", identity.terminal_id, identity.chr),
        ("operators", reference_id(clerk.chr), clerk.chr),
    )
    for kind, number, name in checks:
        at = trust.central_revoked_at(kind, f"{number:016x}")
        if at is not None and at <= now:
            raise VerificationError(
                Reason.FACILITY_REVOKED, f"central revoked {name} at {at}", step="facility"
            )
    path = (identity.anchor.chr, clerk.certificate.car)
    revoked = trust.revocation_of(clerk.chr, path)
    if revoked is not None and revoked.revoked_at <= datetime.fromtimestamp(now, UTC):
        raise VerificationError(Reason.FACILITY_REVOKED, f"operator {clerk.chr} revoked", step="facility")


def _log_refusal(
    journal: Journal | None, now: int, clerk: Clerk, card_id: int | None, error: VerificationError
) -> None:
    if journal is not None:
        journal.log(
            "verify-card",
            at=now,
            outcome="refused",
            operator=clerk.chr,
            card_id=card_id,
            reason=error.reason.value,
            detail={"step": error.step, "why": error.detail},
        )


def choose_member(visit: CardVisit, member: int) -> None:
    if not any(m.index == member for m in visit.verified.members):
        raise VerificationError(
            Reason.MEMBER_UNKNOWN, f"member {member} is not on card {visit.card_chr}", step="member"
        )
    if visit.member != member:
        visit.member_verified_by = None
    visit.member = member


@dataclass(frozen=True)
class MemberMatch:
    matched: bool
    score: float
    finger: int
    options: tuple[Fallback, ...] = ()


def enrolled_fingers(visit: CardVisit, member: int) -> set[int]:
    templates, _ = visit.session.read_templates(member, visit.verified.status)
    return {t.finger_position for t in templates}


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
    """The fingerprint step: ``finger`` (ISO position the clerk asked for) of ``member``, live.

    A mismatch returns ``matched=False`` with the fallbacks still open (and is journalled); the clerk then
    tries another finger, another member, or :func:`override_member`. Fallbacks are journalled as used.
    """
    choose_member(visit, member)
    attempts = visit.attempts
    if not attempts.may_try(member, finger):
        raise VerificationError(
            Reason.FALLBACK_EXHAUSTED, f"finger {finger} of member {member} tried enough", step="fingerprint"
        )
    if journal is not None and attempts.tries:
        fallback: Fallback | None = None
        if member not in {m for (m, _) in attempts.tries}:
            fallback = Fallback.ANOTHER_MEMBER
        elif finger not in attempts.fingers_tried(member):
            fallback = Fallback.ANOTHER_FINGER
        if fallback is not None:
            record_fallback(
                journal,
                at=now,
                clerk=clerk,
                card_id=visit.card_id,
                member=member,
                fallback=fallback,
                detail={"finger": finger},
            )
    try:
        probe = capture()
        result = check_member(visit.session, visit.verified, member, probe, matcher(), threshold=threshold)
    except NoTemplateError as exc:
        raise VerificationError(Reason.FINGER_NOT_ENROLLED, str(exc), step="fingerprint") from None
    except CardRefusedError as exc:
        raise refusal(exc) from None
    except (BiometricError, OSError) as exc:
        attempts.failed(member, finger)
        raise VerificationError(Reason.FINGER_POOR_QUALITY, str(exc), step="fingerprint") from None
    except (CardError, FormatError, BeneficiaryCardError) as exc:
        raise VerificationError(Reason.CARD_ERROR, str(exc), step="fingerprint") from None
    detail: dict[str, Any] = {"finger": finger, "score": round(result.score, 1)}
    if result.matched:
        visit.member_verified_by = "fingerprint"
        if journal is not None:
            journal.log(
                "verify-member",
                at=now,
                operator=clerk.chr,
                card_id=visit.card_id,
                member=member,
                detail=detail,
            )
        return MemberMatch(True, result.score, finger)
    attempts.failed(member, finger)
    fingers = enrolled_fingers(visit, member) | {finger}
    options = tuple(attempts.options(member, fingers, len(visit.verified.members)))
    if journal is not None:
        journal.log(
            "verify-member",
            at=now,
            outcome="refused",
            operator=clerk.chr,
            card_id=visit.card_id,
            member=member,
            reason=Reason.FINGER_MISMATCH.value,
            detail={**detail, "options": [o.value for o in options]},
        )
    return MemberMatch(False, result.score, finger, options)


def override_member(
    visit: CardVisit, *, member: int, override: Override, clerk: Clerk, now: int, journal: Journal
) -> None:
    """Accept ``member`` without a fingerprint match: a supervisor, a reason and a note; always journalled."""
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
