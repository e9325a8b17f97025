"""Central authorisations for re-personalisation (renewal, split card, replacement), checked OFFLINE.

The station rewrites or issues a card for an existing household only with an authorisation signed by the
root key (central) or by a district whose certificate chains to the root; the station checks it with its
trust bundle, no network. Each authorisation names one existing card, is valid until ``not_after`` and is
used once (its id is recorded in the journal). Format (canonical JSON, docs/station.md)::

    {"authorisation": {"format": "rsby-station-auth", "version": 1, "id": "<16 hex>", "kind": "renew",
                       "household_id": "...", "card_id": "CARD-...", "issued": unix, "not_after": unix,
                       "policy_start": "YYYY-MM-DD", "policy_end": "YYYY-MM-DD",
                       "schemes": [{"scheme_id": 1, "cover_paise": 3000000}], "members": [0, 1],
                       "signer": "<root or district CHR>"},
     "chain": ["<base64 district CVC>"], "signature": "<base64 r||s over the canonical authorisation>"}

``members``: the member indexes the new card carries (a split card: the migrant member(s)); all members
for renewal and replacement.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any

from cardsvc.formats.batch import canonical_json
from cardsvc.pki.chain import TrustAnchor, validate_chain
from cardsvc.pki.cvc import CvCertificate
from cardsvc.pki.errors import PkiError
from cardsvc.pki.revocation import RevocationStore
from cardsvc.pki.rights import Role
from cardsvc.pki.signer import Signer, verify_signature
from enrolment_station.errors import AuthorisationError

AUTH_FORMAT = "rsby-station-auth"
AUTH_VERSION = 1


class AuthKind(StrEnum):
    RENEW = "renew"
    SPLIT = "split"
    REPLACE = "replace"


@dataclass(frozen=True)
class SchemeGrant:
    scheme_id: int
    cover_paise: int


@dataclass(frozen=True)
class StationAuthorisation:
    auth_id: str
    kind: AuthKind
    household_id: str
    card_id: str
    issued: int
    not_after: int
    policy_start: date
    policy_end: date
    schemes: tuple[SchemeGrant, ...]
    members: tuple[int, ...]
    signer: str

    def to_json(self) -> dict[str, Any]:
        return {
            "format": AUTH_FORMAT, "version": AUTH_VERSION, "id": self.auth_id, "kind": self.kind.value,
            "household_id": self.household_id, "card_id": self.card_id, "issued": self.issued,
            "not_after": self.not_after, "policy_start": self.policy_start.isoformat(),
            "policy_end": self.policy_end.isoformat(),
            "schemes": [{"scheme_id": s.scheme_id, "cover_paise": s.cover_paise} for s in self.schemes],
            "members": list(self.members), "signer": self.signer,
        }  # fmt: skip

    def canonical(self) -> bytes:
        return canonical_json(self.to_json())

    @classmethod
    def from_json(cls, obj: Any) -> StationAuthorisation:
        try:
            if obj["format"] != AUTH_FORMAT or obj["version"] != AUTH_VERSION:
                raise AuthorisationError(f"not a {AUTH_FORMAT} v{AUTH_VERSION} authorisation")
            auth = cls(
                auth_id=str(obj["id"]), kind=AuthKind(obj["kind"]), household_id=str(obj["household_id"]),
                card_id=str(obj["card_id"]), issued=int(obj["issued"]), not_after=int(obj["not_after"]),
                policy_start=date.fromisoformat(obj["policy_start"]),
                policy_end=date.fromisoformat(obj["policy_end"]),
                schemes=tuple(
                    SchemeGrant(int(s["scheme_id"]), int(s["cover_paise"])) for s in obj["schemes"]
                ),
                members=tuple(int(m) for m in obj["members"]), signer=str(obj["signer"]),
            )  # fmt: skip
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, AuthorisationError):
                raise
            raise AuthorisationError(f"malformed authorisation: {exc.__class__.__name__} {exc}") from None
        if set(obj) != set(auth.to_json()):
            raise AuthorisationError(f"authorisation has unknown or missing fields: {sorted(obj)}")
        return auth


@dataclass(frozen=True)
class SignedAuthorisation:
    authorisation: StationAuthorisation
    chain: tuple[CvCertificate, ...]
    signature: bytes

    def encode(self) -> bytes:
        return canonical_json({
            "authorisation": self.authorisation.to_json(),
            "chain": [base64.b64encode(c.encode()).decode() for c in self.chain],
            "signature": base64.b64encode(self.signature).decode(),
        })  # fmt: skip

    @classmethod
    def parse(cls, wire: bytes) -> SignedAuthorisation:
        try:
            doc = json.loads(wire)
            auth = StationAuthorisation.from_json(doc["authorisation"])
            chain = tuple(CvCertificate.parse(base64.b64decode(c, validate=True)) for c in doc["chain"])
            sig = base64.b64decode(doc["signature"], validate=True)
        except (ValueError, KeyError, TypeError, binascii.Error, PkiError) as exc:
            if isinstance(exc, AuthorisationError):
                raise
            raise AuthorisationError(f"the authorisation file cannot be read: {exc}") from None
        return cls(auth, chain, sig)

    def verify(
        self,
        anchor: TrustAnchor,
        *,
        now: datetime,
        revocations: RevocationStore | None,
        kind: AuthKind,
        card_id: str,
        household_id: str,
    ) -> StationAuthorisation:
        """Check signature, signer, validity window and that it authorises exactly this act on this card."""
        a = self.authorisation
        named = anchor.chr if not self.chain else self.chain[0].chr
        if a.signer != named:
            raise AuthorisationError(f"signer {a.signer} is neither the root nor a district with its chain")
        point = authority_point(anchor, self.chain, now=now, revocations=revocations)
        check_signature(point, a.canonical(), self.signature, f"authorisation {a.auth_id}")
        t = int(now.timestamp())
        if t > a.not_after:
            raise AuthorisationError(
                f"authorisation {a.auth_id} expired at {datetime.fromtimestamp(a.not_after, UTC).isoformat()}"
            )
        if t < a.issued - 300:
            raise AuthorisationError(f"authorisation {a.auth_id} is dated in the future")
        if a.kind is not kind:
            raise AuthorisationError(f"authorisation {a.auth_id} is for a {a.kind.value}, not a {kind.value}")
        if a.card_id != card_id:
            raise AuthorisationError(f"authorisation {a.auth_id} is for card {a.card_id}, not {card_id}")
        if a.household_id != household_id:
            raise AuthorisationError(
                f"authorisation {a.auth_id} is for household {a.household_id}, not {household_id}"
            )
        if a.policy_end < a.policy_start or not a.schemes or not a.members:
            raise AuthorisationError(f"authorisation {a.auth_id} grants no valid policy, scheme or member")
        return a


def authority_point(
    anchor: TrustAnchor,
    chain: Sequence[CvCertificate],
    *,
    now: datetime,
    revocations: RevocationStore | None,
) -> bytes:
    """The key a central authorisation (station JSON or card TLV) must be signed with: the root's when it
    carries no chain, else its one district certificate's, validated to the root (revocations checked)."""
    if not chain:
        return anchor.public_point
    if len(chain) != 1 or chain[0].role is not Role.DISTRICT:
        roles = "/".join(c.role.name for c in chain)
        raise AuthorisationError(f"authorisations come from the root or a district, not {roles}")
    try:
        validate_chain(list(chain), anchor, now=now, revocations=revocations)
    except PkiError as exc:
        raise AuthorisationError(f"the signer's certificate is refused: {exc}") from None
    return chain[0].public_point


def check_signature(point: bytes, message: bytes, signature: bytes, what: str) -> None:
    """AuthorisationError naming ``what`` unless ``signature`` over ``message`` verifies under ``point``."""
    try:
        verify_signature(point, message, signature, subject=what)
    except PkiError:
        raise AuthorisationError(f"the signature of {what} does not verify (forged or altered)") from None


def sign_authorisation(
    auth: StationAuthorisation, signer: Signer, chain: tuple[CvCertificate, ...] = ()
) -> SignedAuthorisation:
    """What central does (also used by tests and the demo)."""
    return SignedAuthorisation(auth, chain, signer.sign(auth.canonical()))
