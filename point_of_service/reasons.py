"""Every clerk-facing reason in one catalogue: what went wrong and what to do next.

Screens and the CLI show ``message_for(reason)``; the journal stores the reason code (stable, never
translated). Keeping the texts here lets a later i18n layer replace them without touching the services.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Reason(enum.StrEnum):
    """Stable codes: journal rows and tests use these, never the message text."""

    # clerk sign-in
    OPERATOR_CARD_MISSING = "operator-card-missing"
    OPERATOR_NOT_OPERATIONAL = "operator-card-not-operational"
    OPERATOR_WRONG_ROLE = "operator-wrong-role"
    OPERATOR_CHAIN_INVALID = "operator-chain-invalid"
    OPERATOR_REVOKED = "operator-revoked"
    OPERATOR_EXPIRED = "operator-expired"
    OPERATOR_WRONG_PIN = "operator-wrong-pin"
    OPERATOR_PIN_BLOCKED = "operator-pin-blocked"
    OPERATOR_FINGER_MISMATCH = "operator-finger-mismatch"
    OPERATOR_FINGER_BLOCKED = "operator-finger-blocked"
    OPERATOR_NOT_GENUINE = "operator-card-not-genuine"
    NOT_SIGNED_IN = "not-signed-in"
    MISSING_RIGHT = "missing-right"
    TERMINAL_NOT_SET_UP = "terminal-not-set-up"
    TERMINAL_REVOKED = "terminal-revoked"
    # beneficiary card verification, in pipeline order
    CARD_MISSING = "card-missing"
    CARD_REMOVED = "card-removed"
    NOT_A_BENEFICIARY_CARD = "not-a-beneficiary-card"
    CARD_NOT_ACTIVATED = "card-not-activated"
    CARD_BLOCKED = "card-blocked"
    CARD_CHAIN_INVALID = "card-chain-invalid"
    CARD_REVOKED = "card-revoked"
    FKO_REVOKED = "fko-revoked"
    DISTRICT_REVOKED = "district-revoked"
    FACILITY_REVOKED = "facility-revoked"
    POLICY_NOT_STARTED = "policy-not-started"
    POLICY_EXPIRED = "policy-expired"
    CARD_NOT_GENUINE = "card-not-genuine"
    PROFILE_TAMPERED = "profile-tampered"
    TERMINAL_AUTH_REFUSED = "terminal-auth-refused"
    MEMBER_UNKNOWN = "member-unknown"
    FINGER_MISMATCH = "finger-mismatch"
    FINGER_POOR_QUALITY = "finger-poor-quality"
    FINGER_NOT_ENROLLED = "finger-not-enrolled"
    CARD_ERROR = "card-error"
    # transactions
    INSUFFICIENT_BALANCE = "insufficient-balance"
    OFFLINE_LIMIT_REACHED = "offline-limit-reached"
    UNKNOWN_PACKAGE = "unknown-package"
    NO_OPEN_ADMISSION = "no-open-admission"
    AMOUNT_INVALID = "amount-invalid"
    ENTITLEMENT_EXCEEDED = "entitlement-exceeded"
    SCHEME_NOT_ON_CARD = "scheme-not-on-card"
    PENDING_RECOVERY = "pending-recovery"
    # fallbacks
    OVERRIDE_NEEDS_SUPERVISOR = "override-needs-supervisor"
    OVERRIDE_NEEDS_REASON = "override-needs-reason"
    FALLBACK_EXHAUSTED = "fallback-exhausted"
    # sync and data
    CATALOGUE_INVALID = "catalogue-invalid"
    CATALOGUE_ROLLBACK = "catalogue-rollback"
    SYNC_FAILED = "sync-failed"
    SYNC_REFUSED = "sync-refused"


@dataclass(frozen=True)
class ClerkMessage:
    """What the clerk reads: the problem, then the next step."""

    problem: str
    next_step: str

    def __str__(self) -> str:
        return f"{self.problem} {self.next_step}"


CATALOGUE: dict[Reason, ClerkMessage] = {
    Reason.OPERATOR_CARD_MISSING: ClerkMessage(
        "No facility operator card in the operator reader.", "Insert your operator card and try again."
    ),
    Reason.OPERATOR_NOT_OPERATIONAL: ClerkMessage(
        "This operator card was never finished by the district.", "Return it to the DKMA."
    ),
    Reason.OPERATOR_WRONG_ROLE: ClerkMessage(
        "This card is not a facility operator card.", "Use your own facility operator card."
    ),
    Reason.OPERATOR_CHAIN_INVALID: ClerkMessage(
        "The operator card's certificate is not valid.", "Do not use it; call the district helpdesk."
    ),
    Reason.OPERATOR_REVOKED: ClerkMessage(
        "This operator card has been revoked.", "Do not use it; return it to the DKMA."
    ),
    Reason.OPERATOR_EXPIRED: ClerkMessage(
        "This operator card has expired (or is not yet valid).", "Ask the DKMA for a new card."
    ),
    Reason.OPERATOR_WRONG_PIN: ClerkMessage("Wrong PIN.", "Type the PIN again carefully."),
    Reason.OPERATOR_PIN_BLOCKED: ClerkMessage(
        "The operator PIN is blocked.", "Take the card to the DKMA to unblock it."
    ),
    Reason.OPERATOR_FINGER_MISMATCH: ClerkMessage(
        "Your fingerprint did not match your operator card.", "Clean the finger and the sensor, try again."
    ),
    Reason.OPERATOR_FINGER_BLOCKED: ClerkMessage(
        "Fingerprint checks on the operator card are blocked.", "Take the card to the DKMA."
    ),
    Reason.OPERATOR_NOT_GENUINE: ClerkMessage(
        "This operator card could not prove it is the genuine card (possibly a copy).",
        "Do not use it; keep it aside and call the district helpdesk.",
    ),
    Reason.NOT_SIGNED_IN: ClerkMessage("No clerk is signed in.", "Sign in with your operator card first."),
    Reason.MISSING_RIGHT: ClerkMessage(
        "Your operator card does not allow this action.", "Ask a colleague who may do it."
    ),
    Reason.TERMINAL_NOT_SET_UP: ClerkMessage(
        "This terminal has no key or certificate installed.", "Run 'pos setup' with the district's files."
    ),
    Reason.TERMINAL_REVOKED: ClerkMessage(
        "This terminal has been revoked.", "Stop using it and call the district helpdesk."
    ),
    Reason.CARD_MISSING: ClerkMessage(
        "No beneficiary card in the patient reader.", "Insert the beneficiary's card."
    ),
    Reason.CARD_REMOVED: ClerkMessage(
        "The card was removed during the operation.",
        "Insert the same card again; the terminal will complete or undo the operation.",
    ),
    Reason.NOT_A_BENEFICIARY_CARD: ClerkMessage(
        "This is not a beneficiary card.", "Ask for the household's RSBY card."
    ),
    Reason.CARD_BLOCKED: ClerkMessage(
        "This card has been blocked or replaced by central.",
        "Do not accept it; the household should use its newer card or visit the district kiosk.",
    ),
    Reason.CARD_NOT_ACTIVATED: ClerkMessage(
        "This card was never activated at the enrolment camp.",
        "It cannot be used; the household should contact the district kiosk.",
    ),
    Reason.CARD_CHAIN_INVALID: ClerkMessage(
        "The card's certificate is not valid (not issued by a recognised officer).",
        "Do not accept it; keep the card and report it.",
    ),
    Reason.CARD_REVOKED: ClerkMessage(
        "This card is blacklisted (lost, replaced or misused).",
        "Do not accept it; the household should use its replacement card.",
    ),
    Reason.FKO_REVOKED: ClerkMessage(
        "The officer who activated this card has been revoked after it.",
        "Do not accept it; the household should visit the district kiosk.",
    ),
    Reason.DISTRICT_REVOKED: ClerkMessage(
        "The district that issued this card has been revoked.", "Do not accept it; call the helpdesk."
    ),
    Reason.FACILITY_REVOKED: ClerkMessage(
        "This facility or terminal is revoked.", "Stop and call the district helpdesk."
    ),
    Reason.POLICY_NOT_STARTED: ClerkMessage(
        "The card's policy year has not started yet.", "Come back on the start date printed on the card."
    ),
    Reason.POLICY_EXPIRED: ClerkMessage(
        "The card's policy year has ended.", "The household must renew at the next camp or kiosk."
    ),
    Reason.CARD_NOT_GENUINE: ClerkMessage(
        "The card's chip failed the genuineness check: it may be a copy.",
        "Do not accept it; keep the card and report it.",
    ),
    Reason.PROFILE_TAMPERED: ClerkMessage(
        "The household data on the card has been altered.", "Do not accept it; keep the card and report it."
    ),
    Reason.TERMINAL_AUTH_REFUSED: ClerkMessage(
        "The card refused this terminal.", "Sync the terminal, then try again; if it persists, call helpdesk."
    ),
    Reason.MEMBER_UNKNOWN: ClerkMessage(
        "That member is not on this card.", "Choose a member listed on the card."
    ),
    Reason.FINGER_MISMATCH: ClerkMessage(
        "The fingerprint does not match this member.",
        "Try another finger, or another member of the household; a supervisor may override.",
    ),
    Reason.FINGER_POOR_QUALITY: ClerkMessage(
        "The fingerprint image was too poor.", "Clean the finger and the sensor, press flat, try again."
    ),
    Reason.FINGER_NOT_ENROLLED: ClerkMessage(
        "That finger was not enrolled for this member.", "Use one of the enrolled fingers shown."
    ),
    Reason.CARD_ERROR: ClerkMessage(
        "The card answered with an error.", "Take the card out, insert it again and retry."
    ),
    Reason.INSUFFICIENT_BALANCE: ClerkMessage(
        "Not enough cover left on the card for this amount.", "Choose a smaller package or amount."
    ),
    Reason.OFFLINE_LIMIT_REACHED: ClerkMessage(
        "The card has reached its offline limit: its data must reach central first.",
        "Sync this terminal (or any terminal the card visited), then try again.",
    ),
    Reason.UNKNOWN_PACKAGE: ClerkMessage(
        "That package code is not in the catalogue.", "Check the code, or sync to get the latest catalogue."
    ),
    Reason.NO_OPEN_ADMISSION: ClerkMessage(
        "There is no open admission with that reference on this card.", "Check the admission number."
    ),
    Reason.AMOUNT_INVALID: ClerkMessage("The amount is not valid.", "Enter a positive amount in rupees."),
    Reason.ENTITLEMENT_EXCEEDED: ClerkMessage(
        "The amount exceeds this scheme's entitlement.", "Pay at most the entitlement shown."
    ),
    Reason.SCHEME_NOT_ON_CARD: ClerkMessage(
        "The card does not carry this scheme.", "Check the scheme chosen."
    ),
    Reason.PENDING_RECOVERY: ClerkMessage(
        "An earlier operation on this card was interrupted.",
        "Insert that card: the terminal will finish the record first.",
    ),
    Reason.OVERRIDE_NEEDS_SUPERVISOR: ClerkMessage(
        "An override needs a supervisor's operator card with the override right.",
        "Call the supervisor to sign with their card.",
    ),
    Reason.OVERRIDE_NEEDS_REASON: ClerkMessage(
        "An override needs a reason.", "Choose a reason and describe it in a few words."
    ),
    Reason.FALLBACK_EXHAUSTED: ClerkMessage(
        "All fingerprint attempts for this visit are used.", "Use another member or a supervised override."
    ),
    Reason.CATALOGUE_INVALID: ClerkMessage(
        "The package catalogue is not correctly signed.", "Keep the old catalogue; call the helpdesk."
    ),
    Reason.CATALOGUE_ROLLBACK: ClerkMessage(
        "The package catalogue offered is older than the one installed.",
        "Nothing to do: the newer one stays.",
    ),
    Reason.SYNC_FAILED: ClerkMessage(
        "Could not reach central.", "Keep working offline; the terminal retries at the next sync."
    ),
    Reason.SYNC_REFUSED: ClerkMessage(
        "Central refused the upload.", "Call the helpdesk with the reason shown."
    ),
}


def message_for(reason: Reason) -> ClerkMessage:
    """The clerk-facing text of ``reason`` (every Reason has one; a test checks it)."""
    return CATALOGUE[reason]
