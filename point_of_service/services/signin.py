"""Clerk sign-in with the facility operator card: certificate to the root, not revoked, PIN AND a live
fingerprint matched on the card, then the card signs a fresh challenge (officer AUTHENTICATE). The clerk's
identity then goes into every record and journal row.

The last step is what makes "PIN OK, fingerprint OK" trustworthy: a fake card replaying those answers
with a copied certificate cannot sign the terminal's challenge under the certified key, and the genuine
card's signed flag byte says that PIN and fingerprint were verified on IT in this power session.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from cardsvc.bio.capture import SensorError
from cardsvc.bio.errors import BiometricError
from cardsvc.card.errors import ApduError, AuthBlockedError, CardFileNotFoundError, WrongPinError
from cardsvc.card.transport import CardConnection, CardRemovedError, TransportError
from cardsvc.pki import officer as officer_fmt
from cardsvc.pki.chain import RevocationLookup, TrustAnchor, validate_chain
from cardsvc.pki.cvc import CvCertificate
from cardsvc.pki.errors import ExpiredError, MissingRightError, NotYetValidError, PkiError, RevokedError
from cardsvc.pki.officer_card import (
    FingerprintMismatchError,
    OfficerCardSession,
    OfficerNotGenuineError,
    OfficerNotVerifiedError,
)
from cardsvc.pki.revocation import operator_subject
from cardsvc.pki.rights import Right, Role
from point_of_service.errors import SignInError
from point_of_service.identity import reference_id
from point_of_service.journal import Journal
from point_of_service.probe import CaptureFn, probe_bytes
from point_of_service.reasons import Reason


@dataclass(frozen=True)
class Clerk:
    """A signed-in facility operator (or a supervisor signing an override)."""

    chr: str
    operator_id: int
    rights: Right
    signed_in_at: int
    certificate: CvCertificate

    def may(self, right: Right) -> bool:
        return bool(self.rights & right)


def sign_in(
    connection: CardConnection,
    *,
    pin: str,
    capture: CaptureFn,
    anchor: TrustAnchor,
    districts: Mapping[str, CvCertificate],
    now: int,
    journal: Journal | None = None,
    revocations: RevocationLookup | None = None,
    required: Right = Right.READ_PROFILE,
    finger_attempts: int = 3,
    event: str = "signin",
    rng: Callable[[int], bytes] = os.urandom,
) -> Clerk:
    """Sign a clerk in; every refusal raises :class:`SignInError` with its reason and is journalled.

    ``rng`` draws the fresh challenge the operator card must sign (injected so tests are deterministic).
    """
    chr: str | None = None
    try:
        clerk = _sign_in(
            connection, pin, capture, anchor, districts, now, revocations, required, finger_attempts, rng
        )
    except SignInError as exc:
        if journal is not None:
            journal.log(
                event,
                at=now,
                outcome="refused",
                reason=exc.reason.value,
                operator=chr,
                detail={"why": exc.detail},
            )
        raise
    if journal is not None:
        journal.log(event, at=now, operator=clerk.chr, detail={"rights": ",".join(clerk.rights.names())})
    return clerk


def _sign_in(
    connection: CardConnection,
    pin: str,
    capture: CaptureFn,
    anchor: TrustAnchor,
    districts: Mapping[str, CvCertificate],
    now: int,
    revocations: RevocationLookup | None,
    required: Right,
    finger_attempts: int,
    rng: Callable[[int], bytes],
) -> Clerk:
    try:
        session = OfficerCardSession(connection)
        status = session.status()
        if status.lifecycle is not officer_fmt.Lifecycle.OPERATIONAL:
            raise SignInError(
                Reason.OPERATOR_NOT_OPERATIONAL, "the operator card is still in personalisation"
            )
        cert = session.certificate()
    except CardFileNotFoundError:
        raise SignInError(Reason.OPERATOR_WRONG_ROLE, "no officer application on this card") from None
    except (CardRemovedError, TransportError) as exc:
        raise SignInError(Reason.OPERATOR_CARD_MISSING, str(exc)) from None
    except (ApduError, PkiError) as exc:
        raise SignInError(Reason.OPERATOR_CHAIN_INVALID, str(exc)) from None
    if cert.role is not Role.FACILITY_OPERATOR:
        raise SignInError(Reason.OPERATOR_WRONG_ROLE, f"{cert.chr} is a {cert.role.name} card")
    district = districts.get(cert.car)
    if district is None:
        raise SignInError(Reason.OPERATOR_CHAIN_INVALID, f"issuer {cert.car} is not a known district")
    try:
        validated = validate_chain(
            [district, cert],
            anchor,
            now=datetime.fromtimestamp(now, UTC),
            required=required,
            revocations=revocations,
        )
    except RevokedError as exc:
        raise SignInError(Reason.OPERATOR_REVOKED, str(exc)) from None
    except (ExpiredError, NotYetValidError) as exc:
        raise SignInError(Reason.OPERATOR_EXPIRED, str(exc)) from None
    except MissingRightError as exc:
        raise SignInError(Reason.MISSING_RIGHT, str(exc)) from None
    except PkiError as exc:
        raise SignInError(Reason.OPERATOR_CHAIN_INVALID, f"{exc.rule}: {exc}") from None
    _check_operator_id(cert, anchor, now, revocations)
    try:
        session.verify_pin_code(pin)
    except WrongPinError as exc:
        raise SignInError(Reason.OPERATOR_WRONG_PIN, f"{exc.attempts_remaining} tries left") from None
    except AuthBlockedError:
        raise SignInError(Reason.OPERATOR_PIN_BLOCKED, "PIN blocked") from None
    except ApduError as exc:
        raise SignInError(Reason.OPERATOR_WRONG_PIN, str(exc)) from None
    last: SignInError | None = None
    for _ in range(finger_attempts):
        try:
            session.verify_fingerprint(probe_bytes(capture()))
        except FingerprintMismatchError as exc:
            last = SignInError(Reason.OPERATOR_FINGER_MISMATCH, f"{exc.attempts_remaining} tries left")
            if exc.attempts_remaining == 0:
                raise SignInError(Reason.OPERATOR_FINGER_BLOCKED, "fingerprint blocked") from None
            continue
        except AuthBlockedError:
            raise SignInError(Reason.OPERATOR_FINGER_BLOCKED, "fingerprint blocked") from None
        except (SensorError, BiometricError) as exc:
            last = SignInError(Reason.FINGER_POOR_QUALITY, str(exc))
            continue
        _prove_genuine(session, cert, rng)
        return Clerk(cert.chr, reference_id(cert.chr), validated.rights, now, cert)
    assert last is not None
    raise last


def _check_operator_id(
    cert: CvCertificate, anchor: TrustAnchor, now: int, revocations: RevocationLookup | None
) -> None:
    """Central revokes operators by the id their records carry (``OP-<id>`` in its list), not by CHR."""
    if revocations is None:
        return
    operator_id = reference_id(cert.chr)
    found = revocations.revocation_of(operator_subject(operator_id), (anchor.chr, cert.car))
    if found is not None and found.revoked_at <= datetime.fromtimestamp(now, UTC):
        raise SignInError(
            Reason.OPERATOR_REVOKED,
            f"operator {cert.chr} (id {operator_id:016x}) revoked at {found.revoked_at:%Y-%m-%d %H:%M} UTC "
            f"by {found.list_issuer}'s list v{found.list_version} ({found.reason})",
        )


SIGNIN_CHALLENGE_SIZE = 16


def _prove_genuine(session: OfficerCardSession, cert: CvCertificate, rng: Callable[[int], bytes]) -> None:
    """The card must sign a fresh challenge under the key of the certificate we validated."""
    try:
        session.authenticate(rng(SIGNIN_CHALLENGE_SIZE), officer=cert)
    except (OfficerNotGenuineError, OfficerNotVerifiedError) as exc:
        raise SignInError(Reason.OPERATOR_NOT_GENUINE, exc.message) from None
    except (CardRemovedError, TransportError) as exc:
        raise SignInError(Reason.OPERATOR_CARD_MISSING, str(exc)) from None
