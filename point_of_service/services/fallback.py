"""Fallbacks when a fingerprint fails: another finger, another member of the household, then a supervised
override with a reason. They never strand a patient or a pensioner, and every one is journalled.

Pure policy (no I/O besides the journal): the verification service asks :class:`VisitAttempts` what the
clerk may offer next and records each attempt; the screens show ``options()``.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

from cardsvc.pki.rights import Right
from point_of_service.errors import VerificationError
from point_of_service.journal import Journal
from point_of_service.reasons import Reason
from point_of_service.services.signin import Clerk


class Fallback(enum.StrEnum):
    ANOTHER_FINGER = "another-finger"
    ANOTHER_MEMBER = "another-member"
    OVERRIDE = "supervised-override"


class OverrideReason(enum.StrEnum):
    """Why the biometric check was overridden (chosen from a list, plus a note in words)."""

    WORN_FINGERPRINTS = "worn-fingerprints"
    INJURY_OR_AMPUTATION = "injury-or-amputation"
    PATIENT_UNCONSCIOUS = "patient-unconscious"
    SENSOR_FAULT = "sensor-fault"
    ELDERLY_OR_BEDRIDDEN = "elderly-or-bedridden"


MIN_NOTE = 10


@dataclass(frozen=True)
class FallbackPolicy:
    tries_per_finger: int = 2
    fingers_per_member: int = 3
    allow_other_member: bool = True


@dataclass
class VisitAttempts:
    """Fingerprint attempts during one visit (one card insertion)."""

    policy: FallbackPolicy = field(default_factory=FallbackPolicy)
    tries: dict[tuple[int, int], int] = field(default_factory=dict)  # (member, finger) -> failed tries

    def failed(self, member: int, finger: int) -> None:
        self.tries[(member, finger)] = self.tries.get((member, finger), 0) + 1

    def fingers_tried(self, member: int) -> set[int]:
        return {f for (m, f) in self.tries if m == member}

    def may_try(self, member: int, finger: int) -> bool:
        if self.tries.get((member, finger), 0) >= self.policy.tries_per_finger:
            return False
        tried = self.fingers_tried(member)
        return finger in tried or len(tried) < self.policy.fingers_per_member

    def options(self, member: int, enrolled_fingers: set[int], members: int) -> list[Fallback]:
        """What the clerk may offer after a failure for ``member``."""
        out = []
        if any(self.may_try(member, f) and (member, f) in self.tries for f in enrolled_fingers) or any(
            self.may_try(member, f) for f in enrolled_fingers - self.fingers_tried(member)
        ):
            out.append(Fallback.ANOTHER_FINGER)
        if self.policy.allow_other_member and members > 1:
            out.append(Fallback.ANOTHER_MEMBER)
        out.append(Fallback.OVERRIDE)
        return out


@dataclass(frozen=True)
class Override:
    """A supervised override: who authorised it, why, in words."""

    supervisor: Clerk
    reason: OverrideReason
    note: str


def check_override(override: Override, clerk: Clerk) -> None:
    """A supervisor other than the clerk, holding SUPERVISE_OVERRIDE, and a reason with a real note."""
    if not override.supervisor.may(Right.SUPERVISE_OVERRIDE) or override.supervisor.chr == clerk.chr:
        raise VerificationError(
            Reason.OVERRIDE_NEEDS_SUPERVISOR,
            f"{override.supervisor.chr} may not supervise overrides here",
            step="override",
        )
    note = override.note.strip()
    if len(note) < MIN_NOTE or len(set(note.lower()) - {" "}) < 4:
        raise VerificationError(
            Reason.OVERRIDE_NEEDS_REASON, f"override note must say why in at least {MIN_NOTE} characters"
        )


def record_fallback(
    journal: Journal,
    *,
    at: int,
    clerk: Clerk,
    card_id: int,
    member: int,
    fallback: Fallback,
    detail: Mapping[str, object],
) -> None:
    journal.log(
        "fallback",
        at=at,
        operator=clerk.chr,
        card_id=card_id,
        member=member,
        fallback=fallback.value,
        detail=detail,
    )
