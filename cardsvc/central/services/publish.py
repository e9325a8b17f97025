"""Signed lists terminals check offline: the revocation list and the package catalogue.

Central signs with :class:`CentralKey` (the root key, or a district key with its certificate, which then
needs REVOKE / CERTIFY rights). A list is re-published only when its content changed, so repeated syncs
fetch the same signed bytes; every published version is kept (``published_lists``).

Versions are the issue time in seconds, or one above the newest version stored when that is later
(:func:`next_version`): a database restored from an older backup forgets the lists published since, but not
the time, so its next list still numbers above every list terminals took before the restore, and their
strict rollback check accepts it.

Formats have one home each: the revocation list is ``cardsvc.pki.revocation`` (``build_revocation_list``),
the catalogue ``point_of_service.catalogue`` (``Catalogue.sign`` / ``verify_catalogue``).
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cardsvc.central.errors import ConflictError
from cardsvc.central.models import Card, Operator, Package, PublishedList, Terminal
from cardsvc.formats.profile import card_chr
from cardsvc.pki.cvc import CvCertificate
from cardsvc.pki.errors import KeyCustodyError
from cardsvc.pki.revocation import (
    RevocationEntry,
    SubjectKind,
    build_revocation_list,
    operator_subject,
    terminal_subject,
)
from cardsvc.pki.signer import FileSigner, Signer


@dataclass(frozen=True)
class CentralKey:
    """Central's signing key for what the field checks offline (config ``CENTRAL_KEY``).

    ``chain``: empty when ``signer`` is the root key; the district's certificate when it is a district key.
    """

    signer: Signer
    chr: str
    chain: tuple[CvCertificate, ...] = ()


def load_central_key(
    key_file: Path, passphrase: bytes, chr: str, chain_file: Path | None = None
) -> CentralKey:
    """Central's signing key from its encrypted key file (cardsvc.pki format) and, for a district key, the
    district's CV certificate file. The certificate must hold the key and name ``chr``."""
    signer = FileSigner.load(key_file, passphrase)
    chain: tuple[CvCertificate, ...] = ()
    if chain_file is not None:
        certificate = CvCertificate.parse(chain_file.read_bytes())
        if certificate.chr != chr or certificate.public_point != signer.public_key():
            raise KeyCustodyError(f"{chain_file} is not the certificate of {chr}'s key in {key_file}")
        chain = (certificate,)
    return CentralKey(signer, chr, chain)


class ListKind(StrEnum):
    REVOCATIONS = "revocations"
    CATALOGUE = "catalogue"


@dataclass(frozen=True, slots=True)
class Published:
    kind: ListKind
    version: int
    issued_at: int
    wire: bytes


def _latest(session: Session, kind: ListKind) -> PublishedList | None:
    return (
        session.execute(
            select(PublishedList)
            .where(PublishedList.kind == kind.value)
            .order_by(PublishedList.version.desc())
        )
        .scalars()
        .first()
    )


def next_version(newest: int | None, now: int) -> int:
    """The version of a list issued at ``now`` (seconds) after ``newest`` (None: the first list).

    The issue second, so that versions keep increasing across a restore of the database from an older
    backup (rows are lost, time is not); one above ``newest`` when that is later (two lists in one
    second, or a clock set back), so versions always increase within one database too. The formats carry
    4-byte versions: enough until 2106.
    """
    return max(now, (newest or 0) + 1)


def _publish(
    session: Session, kind: ListKind, content: object, now: int, build: Callable[[int], bytes]
) -> Published:
    digest = hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()
    latest = _latest(session, kind)
    if latest is not None and latest.content_hash == digest:
        return Published(kind, latest.version, latest.issued_at, bytes(latest.wire))
    version = next_version(latest.version if latest else None, now)
    row = PublishedList(
        kind=kind.value, version=version, issued_at=now, content_hash=digest, wire=build(version)
    )
    session.add(row)
    try:
        session.commit()
    except IntegrityError:  # a concurrent request published this version first
        session.rollback()
        latest = _latest(session, kind)
        if latest is None:
            raise ConflictError("publish_failed", f"the {kind.value} list could not be published") from None
        return Published(kind, latest.version, latest.issued_at, bytes(latest.wire))
    return Published(kind, version, now, row.wire)


def revocation_entries(session: Session) -> list[RevocationEntry]:
    """Revoked cards (CARD-<n>), certified terminals (their certificate's CHR), terminals registered with a
    plain key (``TRM-<record id>``: no certificate, so no CHR; the id is the one their records and requests
    carry) and facility operators (``OP-<record id>``: central knows a clerk by the id the card records
    carry, docs/certificates.md). Every revocation of the unsigned JSON lists of ``GET /revocations`` is
    in the signed list under one of these subjects.
    """
    entries = []
    cards = select(Card.card_id, Card.revoked_at).where(Card.revoked_at.is_not(None))
    for card_id, revoked_at in session.execute(cards):
        when = datetime.fromtimestamp(int(revoked_at or 0), UTC)
        entries.append(RevocationEntry(card_chr(int(card_id, 16)), SubjectKind.CARD, when))
    operators = select(Operator.id, Operator.revoked_at).where(Operator.revoked_at.is_not(None))
    for operator_id, revoked_at in session.execute(operators):
        when = datetime.fromtimestamp(int(revoked_at or 0), UTC)
        entries.append(RevocationEntry(operator_subject(int(operator_id, 16)), SubjectKind.OPERATOR, when))
    query = select(Terminal.id, Terminal.certificate_chain, Terminal.revoked_at).where(
        Terminal.revoked_at.is_not(None)
    )
    for terminal_id, chain, at in session.execute(query):
        assert at is not None
        if chain:
            subject = CvCertificate.parse(base64.b64decode(chain[-1])).chr
        else:
            subject = terminal_subject(int(terminal_id, 16))
        entries.append(RevocationEntry(subject, SubjectKind.TERMINAL, datetime.fromtimestamp(at, UTC)))
    return sorted(entries)


def publish_revocations(session: Session, key: CentralKey, now: int) -> Published:
    """The current signed revocation list of cards, terminals and facility operators (a new version only
    when an entry was added)."""
    entries = revocation_entries(session)
    content = [[e.subject, int(e.kind), int(e.revoked_at.timestamp()), int(e.reason)] for e in entries]

    def build(version: int) -> bytes:
        rl = build_revocation_list(
            key.signer, issuer=key.chr, version=version, issued_at=datetime.fromtimestamp(now, UTC),
            entries=entries,
        )  # fmt: skip
        return rl.encode()

    return _publish(session, ListKind.REVOCATIONS, content, now, build)


def publish_catalogue(session: Session, key: CentralKey, now: int) -> Published | None:
    """The current signed package catalogue: the newest version of each package valid at ``now``.

    None when no package is valid yet. Catalogue format: point_of_service/catalogue.py (docs/pos.md).
    """
    from point_of_service.catalogue import Catalogue
    from point_of_service.catalogue import Package as CataloguePackage

    newest = (
        select(Package.code, func.max(Package.version).label("version"))
        .where(Package.valid_from <= now)
        .group_by(Package.code)
        .subquery()
    )
    rows = session.execute(
        select(Package).join(newest, (Package.code == newest.c.code) & (Package.version == newest.c.version))
        .order_by(Package.code)
    ).scalars().all()  # fmt: skip
    packages = [p for p in rows if p.code >= 1 and p.price_paise >= 1]
    if not packages:
        return None
    content = [[p.code, p.version, p.name, p.price_paise, p.category] for p in packages]
    valid_from = max(p.valid_from for p in packages)

    def build(version: int) -> bytes:
        catalogue = Catalogue(
            version, key.chr, now, valid_from,
            tuple(CataloguePackage(p.code, p.name, p.price_paise, p.category) for p in packages),
        )  # fmt: skip
        return catalogue.sign(key.signer, key.chain)

    return _publish(session, ListKind.CATALOGUE, content, now, build)
