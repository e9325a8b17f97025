"""Trust bundle: what a terminal carries to verify offline (root certificate, district certificates, the
newest revocation list of each issuer), as a plain directory written by ``keymgmt export-bundle``::

    BUNDLE/root.cvc                 the self-signed root certificate (the trust anchor)
    BUNDLE/districts/<CHR>.cvc      every district certificate (needed to verify district lists)
    BUNDLE/lists/<ISSUER>.rl        the newest list of each issuer

A terminal that already holds lists applies a newer bundle with :func:`apply_bundle`: newer versions
replace older ones, an older list is refused as a rollback (RollbackError), whichever file it came from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from cardsvc.pki.chain import TrustAnchor
from cardsvc.pki.cvc import CvCertificate
from cardsvc.pki.errors import FormatError
from cardsvc.pki.revocation import RevocationList, RevocationStore
from cardsvc.pki.rights import Role


@dataclass
class TrustBundle:
    root: CvCertificate
    districts: dict[str, CvCertificate] = field(default_factory=dict)
    lists: list[RevocationList] = field(default_factory=list)

    @property
    def anchor(self) -> TrustAnchor:
        return TrustAnchor.from_certificate(self.root)

    def write(self, directory: Path) -> None:
        (directory / "districts").mkdir(parents=True, exist_ok=True)
        (directory / "lists").mkdir(parents=True, exist_ok=True)
        (directory / "root.cvc").write_bytes(self.root.encode())
        for chr_, cert in self.districts.items():
            (directory / "districts" / f"{chr_}.cvc").write_bytes(cert.encode())
        for rl in self.lists:
            (directory / "lists" / f"{rl.issuer}.rl").write_bytes(rl.encode())

    @classmethod
    def read(cls, directory: Path) -> TrustBundle:
        try:
            root = CvCertificate.parse((directory / "root.cvc").read_bytes())
        except FileNotFoundError:
            raise FormatError(f"{directory} is not a trust bundle (no root.cvc)") from None
        districts: dict[str, CvCertificate] = {}
        for p in sorted((directory / "districts").glob("*.cvc")):
            cert = CvCertificate.parse(p.read_bytes())
            if cert.role is not Role.DISTRICT:
                raise FormatError(f"{p.name} holds a {cert.role.name} certificate, not a district")
            districts[cert.chr] = cert
        lists = [RevocationList.parse(p.read_bytes()) for p in sorted((directory / "lists").glob("*.rl"))]
        return cls(root, districts, lists)


def apply_bundle(
    bundle: TrustBundle, *, now: datetime, store: RevocationStore | None = None
) -> RevocationStore:
    """Verify every list of ``bundle`` and install it into ``store`` (a new one if None).

    The bundle's root must be the store's anchor; each district list is verified with its district's
    certificate (which must validate under the root at ``now``).
    """
    anchor = bundle.anchor
    if store is None:
        store = RevocationStore(anchor)
    elif store.anchor != anchor:
        raise FormatError(
            f"bundle root {anchor.chr} is not the root this terminal trusts ({store.anchor.chr})"
        )
    for rl in bundle.lists:
        chain: list[CvCertificate] = []
        if rl.issuer != anchor.chr:
            district = bundle.districts.get(rl.issuer)
            if district is None:
                raise FormatError(f"bundle has a list by {rl.issuer} but not its certificate")
            chain = [district]
        store.offer(rl, now=now, issuer_chain=chain)
    return store
