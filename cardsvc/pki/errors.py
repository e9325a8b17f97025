"""The PKI error hierarchy.

Every refusal carries ``rule`` (a stable, documented name from docs/certificates.md) and ``subject`` (the
certificate holder reference or list it concerns), so a terminal can say exactly why it refused.
"""

from __future__ import annotations


class PkiError(Exception):
    """Base of every error raised by cardsvc.pki and keymgmt."""

    rule = "pki-error"

    def __init__(self, message: str, *, subject: str = "") -> None:
        self.subject = subject
        self.message = message
        super().__init__(f"[{self.rule}] {message}")


class FormatError(PkiError):
    """Bytes are not a well-formed certificate, revocation list or message."""

    rule = "format"


class PointError(FormatError):
    """Bytes are not a P-256 public point: wrong length or prefix (the point is 04 || X || Y, 65 bytes), or
    coordinates off the curve. Raised by :func:`cardsvc.pki.signer.load_public_point`, the one decoder."""


class ValidationError(PkiError):
    """A well-formed object was refused by a validation rule."""

    rule = "invalid"


class ChainEmptyError(ValidationError):
    rule = "chain-empty"


class UntrustedRootError(ValidationError):
    """The chain does not start at the trusted root key."""

    rule = "untrusted-root"


class WrongIssuerError(ValidationError):
    """A certificate's issuer reference (CAR) does not name the certificate above it."""

    rule = "wrong-issuer"


class SignatureInvalidError(ValidationError):
    """The signature does not verify under the issuer's key: forged or altered."""

    rule = "bad-signature"


class ContentDigestError(ValidationError):
    """A beneficiary card certificate does not carry exactly one 32-byte household content digest, so the
    FKO's signature would not cover the household profile."""

    rule = "content-digest"


class ExtensionNotAllowedError(ValidationError):
    """A certificate carries an extension its role may not carry (unknown, or meant for another role)."""

    rule = "extension-not-allowed"


class NotYetValidError(ValidationError):
    rule = "not-yet-valid"


class ExpiredError(ValidationError):
    rule = "expired"


class RoleNotIssuableError(ValidationError):
    """The issuer's role may not issue the holder's role (e.g. a district issuing a district)."""

    rule = "role-not-issuable"


class RightsEscalationError(ValidationError):
    """The holder claims a right its issuer does not hold."""

    rule = "rights-escalation"


class RoleRightsError(ValidationError):
    """The holder claims a right its role may never hold (e.g. a terminal that certifies)."""

    rule = "role-rights"


class MissingRightError(ValidationError):
    """The chain is valid but the holder lacks the right the operation needs."""

    rule = "missing-right"


class RevokedError(ValidationError):
    """The holder (or an issuer above it, for what it signed after) is on a revocation list."""

    rule = "revoked"


class RevocationListError(PkiError):
    rule = "revocation-list"


class RollbackError(RevocationListError):
    """A revocation list older than (or conflicting with) the one already held was offered."""

    rule = "rollback"


class KeyCustodyError(PkiError):
    """A key could not be loaded, created or used (wrong passphrase, missing token, absent key)."""

    rule = "key-custody"


class AuditError(PkiError):
    rule = "audit"


class AuditTamperedError(AuditError):
    """The audit log's hash chain or an entry signature does not verify; ``index`` = first bad entry."""

    rule = "audit-tampered"

    def __init__(self, message: str, *, index: int, subject: str = "") -> None:
        self.index = index
        super().__init__(message, subject=subject)
