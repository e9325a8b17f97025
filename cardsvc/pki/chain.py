"""Offline chain validation: only the root key (a :class:`TrustAnchor`) and an injectable clock are needed.

Rules are applied to each link in order; the first that fails raises its named error
(docs/certificates.md, "Validation rules"). Pure functions: usable from simulated card applications
as well as from terminals.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from cardsvc.pki.cvc import CONTENT_DIGEST_LEN, CONTENT_DIGEST_OID, CvCertificate
from cardsvc.pki.errors import (
    ChainEmptyError,
    ContentDigestError,
    ExpiredError,
    ExtensionNotAllowedError,
    FormatError,
    MissingRightError,
    NotYetValidError,
    RevokedError,
    RightsEscalationError,
    RoleNotIssuableError,
    RoleRightsError,
    UntrustedRootError,
    ValidationError,
    WrongIssuerError,
)
from cardsvc.pki.rights import ISSUABLE_BY, ROLE_MAX_RIGHTS, Right, Role

MAX_CHAIN_LENGTH = 4  # root -> district -> FKO -> card: at most three certificates below the root

#: Which certificate extensions (by OID) each role may carry; a role not listed may carry none.
ROLE_EXTENSIONS: dict[Role, frozenset[tuple[int, ...]]] = {
    Role.BENEFICIARY_CARD: frozenset({CONTENT_DIGEST_OID}),
}


@dataclass(frozen=True)
class TrustAnchor:
    """The root as a verifier knows it: its reference (CHR) and public point."""

    chr: str
    public_point: bytes

    @classmethod
    def from_certificate(cls, cert: CvCertificate | bytes) -> TrustAnchor:
        """Accept a self-signed root certificate (its self-signature is checked)."""
        cert = CvCertificate.parse(cert) if isinstance(cert, bytes | bytearray) else cert
        if cert.role is not Role.ROOT or not cert.self_signed:
            raise UntrustedRootError(
                f"{cert.chr} is a {cert.role.name} certificate issued by {cert.car}, not a self-signed root",
                subject=cert.chr,
            )
        cert.verify_signed_by(cert.public_point)
        return cls(chr=cert.chr, public_point=cert.public_point)


@dataclass(frozen=True)
class Revocation:
    """A revocation that applies to a holder: when, and which list (issuer reference, version) said so."""

    revoked_at: datetime
    list_issuer: str
    list_version: int
    reason: str


class RevocationLookup(Protocol):
    """What the validator needs from revocation state (implemented by revocation.RevocationStore)."""

    def revocation_of(self, chr: str, issuer_path: Sequence[str]) -> Revocation | None:
        """The earliest applicable revocation of ``chr``; ``issuer_path`` = references of its issuers."""
        ...


@dataclass(frozen=True)
class ValidatedChain:
    """A chain that passed every rule. ``rights`` are the leaf's rights (a subset of every issuer's)."""

    anchor: TrustAnchor
    certificates: tuple[CvCertificate, ...]

    @property
    def leaf(self) -> CvCertificate:
        return self.certificates[-1]

    @property
    def rights(self) -> Right:
        return self.leaf.rights

    @property
    def role(self) -> Role:
        return self.leaf.role


def _names(rights: int) -> str:
    return ",".join(Right(rights).names())


def _issue_right(role: Role) -> Right:
    """The right an issuer needs to issue ``role``: cards are activated, everything else certified."""
    return Right.ACTIVATE_CARD if role is Role.BENEFICIARY_CARD else Right.CERTIFY


def check_extensions(cert: CvCertificate) -> None:
    """The extension rules: a beneficiary card certificate carries exactly one 32-byte content digest (so
    the FKO's signature covers the household data); no certificate carries an extension its role does not
    know. Used by :func:`validate_chain` and by the officer card before it signs a body."""
    allowed = ROLE_EXTENSIONS.get(cert.role, frozenset())
    for ext in cert.extensions:
        if ext.oid not in allowed:
            raise ExtensionNotAllowedError(
                f"{cert.chr}: a {cert.role.name} certificate may not carry extension {ext.oid_text}",
                subject=cert.chr,
            )
    if cert.role is Role.BENEFICIARY_CARD:
        digests = [e.value for e in cert.extensions if e.oid == CONTENT_DIGEST_OID]
        if len(digests) != 1:
            raise ContentDigestError(
                f"{cert.chr}: a card certificate must carry exactly one content digest, found {len(digests)}",
                subject=cert.chr,
            )
        if len(digests[0]) != CONTENT_DIGEST_LEN:
            raise ContentDigestError(
                f"{cert.chr}: content digest is {len(digests[0])} bytes, not {CONTENT_DIGEST_LEN}",
                subject=cert.chr,
            )


def validate_chain(
    chain: Sequence[CvCertificate | bytes],
    anchor: TrustAnchor,
    *,
    now: datetime,
    required: Right = Right.NONE,
    revocations: RevocationLookup | None = None,
    signed_at: datetime | None = None,
) -> ValidatedChain:
    """Validate ``chain`` (top first; a leading self-signed root equal to ``anchor`` is allowed and skipped).

    ``now`` is the verifier's clock for validity periods; ``signed_at`` (default ``now``) is when the leaf
    acted (signed a record, authenticated), compared with the leaf's revocation time. What an issuer signed
    counts as signed before its revocation only if the child's effective date is a day before the
    revocation date (dates are day-granular, so a certificate dated the revocation day is refused).
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware (UTC)")
    acted_at = signed_at or now
    certs = [CvCertificate.parse(c) if isinstance(c, bytes | bytearray) else c for c in chain]
    if certs and certs[0].self_signed and certs[0].role is Role.ROOT:
        root = certs.pop(0)
        if root.chr != anchor.chr or root.public_point != anchor.public_point:
            raise UntrustedRootError(
                f"chain starts at root {root.chr}, which is not the trusted root {anchor.chr}",
                subject=root.chr,
            )
    if not certs:
        raise ChainEmptyError("no certificate to validate below the root")
    if len(certs) > MAX_CHAIN_LENGTH - 1:
        raise FormatError(f"chain of {len(certs)} certificates is longer than the hierarchy allows")

    issuer_chr, issuer_point = anchor.chr, anchor.public_point
    issuer_role, issuer_rights = Role.ROOT, Right.all()
    issuer_cert: CvCertificate | None = None
    path: list[str] = [anchor.chr]
    for i, cert in enumerate(certs):
        who = cert.chr
        if cert.car != issuer_chr:
            if i == 0:
                raise UntrustedRootError(
                    f"{who} is issued by {cert.car}, but the trusted root is {anchor.chr}", subject=who
                )
            raise WrongIssuerError(
                f"{who} names issuer {cert.car}, but is presented under {issuer_chr}", subject=who
            )
        cert.verify_signed_by(issuer_point)  # SignatureInvalidError: forged or altered
        if cert.role not in ISSUABLE_BY[issuer_role]:
            raise RoleNotIssuableError(
                f"{who}: a {issuer_role.name} ({issuer_chr}) may not issue a {cert.role.name} certificate",
                subject=who,
            )
        needed = _issue_right(cert.role)
        if needed not in issuer_rights:
            raise MissingRightError(
                f"{who}: issuer {issuer_chr} lacks the {needed.name} right "
                f"needed to issue a {cert.role.name}",
                subject=who,
            )
        beyond_role = cert.rights & ~ROLE_MAX_RIGHTS[cert.role]
        if beyond_role:
            raise RoleRightsError(
                f"{who}: a {cert.role.name} may never hold {_names(beyond_role)}", subject=who
            )
        beyond_issuer = cert.rights & ~issuer_rights
        if beyond_issuer:
            raise RightsEscalationError(
                f"{who} claims {_names(beyond_issuer)}, which its issuer {issuer_chr} does not hold",
                subject=who,
            )
        check_extensions(cert)
        if now < cert.not_before:
            raise NotYetValidError(
                f"{who} is valid only from {cert.effective}; it is now {now:%Y-%m-%d}", subject=who
            )
        if now >= cert.not_after:
            raise ExpiredError(f"{who} expired on {cert.expiry}; it is now {now:%Y-%m-%d}", subject=who)
        if revocations is not None:
            if issuer_cert is not None:
                _check_issuer_revocation(issuer_cert, cert, path[:-1], revocations)
            is_leaf = i == len(certs) - 1
            if is_leaf:
                rev = revocations.revocation_of(who, tuple(path))
                if rev is not None and acted_at >= rev.revoked_at:
                    raise RevokedError(
                        f"{who} was revoked at {rev.revoked_at:%Y-%m-%d %H:%M:%S}Z "
                        f"(list {rev.list_issuer} v{rev.list_version}, reason {rev.reason}); "
                        f"the act at {acted_at:%Y-%m-%d %H:%M:%S}Z is after that",
                        subject=who,
                    )
        issuer_chr, issuer_point = cert.chr, cert.public_point
        issuer_role, issuer_rights = cert.role, cert.rights
        issuer_cert = cert
        path.append(cert.chr)

    validated = ValidatedChain(anchor=anchor, certificates=tuple(certs))
    missing = required & ~validated.rights
    if missing:
        raise MissingRightError(
            f"{validated.leaf.chr} ({validated.role.name}) lacks the right {_names(missing)}",
            subject=validated.leaf.chr,
        )
    return validated


def _check_issuer_revocation(
    issuer: CvCertificate, child: CvCertificate, issuer_path: Sequence[str], revocations: RevocationLookup
) -> None:
    rev = revocations.revocation_of(issuer.chr, tuple(issuer_path))
    if rev is None:
        return
    if child.effective < rev.revoked_at.date():
        return  # signed before the revocation: stays valid
    raise RevokedError(
        f"{child.chr} was issued on {child.effective} by {issuer.chr}, which was revoked at "
        f"{rev.revoked_at:%Y-%m-%d %H:%M:%S}Z "
        f"(list {rev.list_issuer} v{rev.list_version}, reason {rev.reason})",
        subject=child.chr,
    )


def explain(error: ValidationError) -> str:
    """One line for a clerk's screen: the rule's name, then what was wrong."""
    return f"refused ({error.rule}): {error.message}"
