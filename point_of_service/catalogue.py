"""The hospital package catalogue: codes, names, rates, categories; versioned and signed (one home).

A catalogue is issued by the root (central) or a district holding CERTIFY and is signed with its key; a
terminal accepts it offline with only the root key (the district's certificate travels with it). Versions
strictly increase per issuer; a lower version, or the same version with other contents, is refused
(rollback). Wire form: canonical JSON as the upload batch uses (sorted keys, no whitespace, ASCII,
integers only), see docs/pos.md.

    {"catalogue": {"format": "rsby-package-catalogue", "version": 3, "issuer": "INDKMA-PATNA1",
                   "issued_at": 1795000000, "valid_from": 1795000000,
                   "packages": [{"code": 301, "name": "Normal delivery", "rate_paise": 450000,
                                 "category": "obstetrics"}]},
     "chain": ["<base64 CVC of the issuing district>"], "signature": "<base64 r||s over canonical catalogue>"}
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from cardsvc.pki.chain import RevocationLookup, TrustAnchor, validate_chain
from cardsvc.pki.cvc import CvCertificate
from cardsvc.pki.errors import PkiError
from cardsvc.pki.rights import Right, Role
from cardsvc.pki.signer import Signer, verify_signature
from point_of_service.errors import CatalogueError
from point_of_service.reasons import Reason

FORMAT: Final = "rsby-package-catalogue"
MAX_PACKAGES: Final = 5000
_PACKAGE_FIELDS: Final = frozenset({"code", "name", "rate_paise", "category"})
_BODY_FIELDS: Final = frozenset({"format", "version", "issuer", "issued_at", "valid_from", "packages"})


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no whitespace, ASCII only: one byte string per value."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


@dataclass(frozen=True)
class Package:
    """One package: ``code`` goes into the BLOCK record's reference; ``rate_paise`` is what is blocked."""

    code: int
    name: str
    rate_paise: int
    category: str

    def __post_init__(self) -> None:
        if not 1 <= self.code <= 0xFFFFFFFF:
            raise CatalogueError(Reason.CATALOGUE_INVALID, f"package code {self.code} is not 1..2^32-1")
        if not 1 <= len(self.name) <= 200 or not 1 <= len(self.category) <= 60:
            raise CatalogueError(Reason.CATALOGUE_INVALID, f"package {self.code}: name or category length")
        if not 1 <= self.rate_paise <= 0xFFFFFFFF:
            raise CatalogueError(Reason.CATALOGUE_INVALID, f"package {self.code}: rate {self.rate_paise}")

    def to_json(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "name": self.name,
            "rate_paise": self.rate_paise,
            "category": self.category,
        }


@dataclass(frozen=True)
class Catalogue:
    """A verified (or about to be signed) catalogue version."""

    version: int
    issuer: str
    issued_at: int
    valid_from: int
    packages: tuple[Package, ...]

    def __post_init__(self) -> None:
        if not 1 <= self.version <= 0xFFFFFFFF:
            raise CatalogueError(Reason.CATALOGUE_INVALID, f"version {self.version} is not 1..2^32-1")
        if len(self.packages) > MAX_PACKAGES:
            raise CatalogueError(
                Reason.CATALOGUE_INVALID, f"{len(self.packages)} packages (max {MAX_PACKAGES})"
            )
        codes = [p.code for p in self.packages]
        if len(set(codes)) != len(codes):
            raise CatalogueError(Reason.CATALOGUE_INVALID, "a package code appears twice")

    def body(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": self.version,
            "issuer": self.issuer,
            "issued_at": self.issued_at,
            "valid_from": self.valid_from,
            "packages": [p.to_json() for p in sorted(self.packages, key=lambda p: p.code)],
        }

    def canonical(self) -> bytes:
        return canonical_json(self.body())

    def package(self, code: int) -> Package:
        for p in self.packages:
            if p.code == code:
                return p
        raise CatalogueError(
            Reason.UNKNOWN_PACKAGE, f"package code {code} is not in catalogue v{self.version}"
        )

    def sign(self, signer: Signer, chain: Sequence[CvCertificate] = ()) -> bytes:
        """The wire document, signed by the issuer (``chain``: district certificate, empty for the root)."""
        doc = {
            "catalogue": self.body(),
            "chain": [base64.b64encode(c.encode()).decode("ascii") for c in chain],
            "signature": base64.b64encode(signer.sign(self.canonical())).decode("ascii"),
        }
        return canonical_json(doc)

    @classmethod
    def from_body(cls, body: Any) -> Catalogue:
        if not isinstance(body, dict) or set(body) != _BODY_FIELDS:
            got = sorted(body) if isinstance(body, dict) else type(body).__name__
            raise CatalogueError(
                Reason.CATALOGUE_INVALID, f"catalogue fields {got} are not {sorted(_BODY_FIELDS)}"
            )
        if body["format"] != FORMAT:
            raise CatalogueError(Reason.CATALOGUE_INVALID, f"format {body['format']!r} is not {FORMAT!r}")
        for name in ("version", "issued_at", "valid_from"):
            if type(body[name]) is not int:
                raise CatalogueError(Reason.CATALOGUE_INVALID, f"{name} must be an integer")
        if not isinstance(body["issuer"], str) or not isinstance(body["packages"], list):
            raise CatalogueError(Reason.CATALOGUE_INVALID, "issuer must be text and packages a list")
        packages = []
        for i, p in enumerate(body["packages"]):
            if not isinstance(p, dict) or set(p) != _PACKAGE_FIELDS:
                raise CatalogueError(
                    Reason.CATALOGUE_INVALID, f"package {i}: fields must be {sorted(_PACKAGE_FIELDS)}"
                )
            if type(p["code"]) is not int or type(p["rate_paise"]) is not int:
                raise CatalogueError(Reason.CATALOGUE_INVALID, f"package {i}: code and rate must be integers")
            if not isinstance(p["name"], str) or not isinstance(p["category"], str):
                raise CatalogueError(Reason.CATALOGUE_INVALID, f"package {i}: name and category must be text")
            packages.append(Package(p["code"], p["name"], p["rate_paise"], p["category"]))
        return cls(body["version"], body["issuer"], body["issued_at"], body["valid_from"], tuple(packages))


def verify_catalogue(
    wire: bytes, anchor: TrustAnchor, *, now: datetime, revocations: RevocationLookup | None = None
) -> Catalogue:
    """Parse and verify a signed catalogue: canonical form, issuer chain to the root, signature."""
    try:
        doc = json.loads(wire)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CatalogueError(Reason.CATALOGUE_INVALID, f"not JSON: {exc}") from None
    if not isinstance(doc, dict) or set(doc) != {"catalogue", "chain", "signature"}:
        raise CatalogueError(Reason.CATALOGUE_INVALID, "document must hold catalogue, chain and signature")
    catalogue = Catalogue.from_body(doc["catalogue"])
    if canonical_json(doc["catalogue"]) != catalogue.canonical():
        raise CatalogueError(
            Reason.CATALOGUE_INVALID, "catalogue is not in canonical form (packages by code)"
        )
    try:
        signature = base64.b64decode(doc["signature"], validate=True)
        chain = [CvCertificate.parse(base64.b64decode(c, validate=True)) for c in doc["chain"]]
    except (ValueError, TypeError, PkiError) as exc:
        raise CatalogueError(Reason.CATALOGUE_INVALID, f"signature or chain undecodable: {exc}") from None
    try:
        if not chain:
            if catalogue.issuer != anchor.chr:
                raise CatalogueError(
                    Reason.CATALOGUE_INVALID, f"issuer {catalogue.issuer} sent no chain and is not the root"
                )
            point = anchor.public_point
        else:
            validated = validate_chain(
                chain, anchor, now=now, required=Right.CERTIFY, revocations=revocations
            )
            if validated.role is not Role.DISTRICT or validated.leaf.chr != catalogue.issuer:
                raise CatalogueError(
                    Reason.CATALOGUE_INVALID,
                    f"issuer {catalogue.issuer} is not the district {validated.leaf.chr} of the chain",
                )
            point = validated.leaf.public_point
        verify_signature(point, catalogue.canonical(), signature, subject=catalogue.issuer)
    except PkiError as exc:
        raise CatalogueError(Reason.CATALOGUE_INVALID, f"{exc.rule}: {exc}") from None
    return catalogue


def check_not_rollback(new: Catalogue, held: Catalogue | None) -> bool:
    """True when ``new`` should replace ``held``; False for the same one again; raises on a rollback."""
    if held is None or new.issuer != held.issuer:
        return True
    if new.version > held.version:
        return True
    if new.version == held.version and new.canonical() == held.canonical():
        return False
    raise CatalogueError(
        Reason.CATALOGUE_ROLLBACK,
        f"offered v{new.version} by {new.issuer}; v{held.version} is installed",
    )


def utc(ts: int) -> datetime:
    return datetime.fromtimestamp(ts, UTC)
