"""The station's error hierarchy: every refusal says what was wrong, so the operator can act on it."""

from __future__ import annotations

from dataclasses import dataclass


class StationError(Exception):
    """Root of every error the station raises on purpose; ``reason`` is a short machine-readable word."""

    reason = "station"

    def __str__(self) -> str:
        return f"{self.reason}: {super().__str__()}"


@dataclass(frozen=True)
class RowProblem:
    """One refused row of an eligibility list: line number (1 = header), column and why."""

    line: int
    column: str
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}, {self.column}: {self.reason}"


class EligibilityError(StationError):
    """The list was refused; nothing was imported. ``problems`` names every bad row."""

    reason = "eligibility"

    def __init__(self, problems: list[RowProblem]) -> None:
        self.problems = problems
        first = "; ".join(str(p) for p in problems[:5])
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        super().__init__(f"{len(problems)} problem(s), nothing imported: {first}{more}")


class SessionError(StationError):
    """No open FKO session, or it cannot be opened (PIN, fingerprint, card, day)."""

    reason = "fko-session"


class SessionClosedError(SessionError):
    """The FKO session closed (card removed, timeout, new day); the FKO must open a new one."""

    reason = "session-closed"


class CaptureError(StationError):
    reason = "capture"


class DuplicateFingerError(CaptureError):
    """A new finger matched one already enrolled (this household or the camp): enrolment stopped."""

    reason = "duplicate-finger"

    def __init__(self, message: str, *, household_id: str, member_no: int, match: str, score: float) -> None:
        self.household_id = household_id
        self.member_no = member_no
        self.match = match
        self.score = score
        super().__init__(message)


class HouseholdError(StationError):
    """Unknown household, wrong state for the step asked, or a member who cannot be recorded."""

    reason = "household"


class PersonalisationError(StationError):
    reason = "personalisation"


class CardMismatchError(PersonalisationError):
    """The card in the reader is not the one the journal expects (recovery refuses to guess)."""

    reason = "card-mismatch"


class AuthorisationError(StationError):
    """A central authorisation (renewal, split, replacement) was refused: forged, expired, wrong card."""

    reason = "authorisation"


class KeyError_(StationError):
    """The station's keys are missing or locked (wrong passphrase)."""

    reason = "station-keys"


class UploadError(StationError):
    reason = "upload"


class PhotoError(StationError):
    """A member's photo was refused; ``why`` is ``not_image``, ``too_large`` or ``too_small``."""

    reason = "photo"

    def __init__(self, why: str, message: str) -> None:
        self.why = why
        super().__init__(f"{why}: {message}")
