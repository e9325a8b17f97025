"""De-duplication across camps: each newly received card's templates searched against its district's gallery.

Camps upload each card's fingerprint templates sealed to central's de-duplication key
(cardsvc/formats/templates.py); they are stored sealed (encrypted at rest) and opened only here, in memory,
for the search. A card whose finger matches a finger of ANOTHER card of the same district above the 1:N
threshold (raised for the gallery size: ``target_fmr / N``, cardsvc.bio.matcher) is a likely duplicate: one
person enrolled in two households or two camps. Both cards are flagged ``duplicate_enrolment`` with the
scores, for staff review; an open flag blocks the cards' next authorisation (services/authorise.py) and holds
their claims (services/settlement.py).

The key: a P-256 private key in the project's encrypted key file (cardsvc.pki.signer, scrypt + AES-GCM),
loaded with :func:`load_dedup_key`; stations seal to its public point.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from cardsvc.bio.iso19794 import decode_compact
from cardsvc.bio.matcher import Matcher
from cardsvc.bio.template import FingerTemplate
from cardsvc.central.models import Card, FlagRow, SealedTemplates
from cardsvc.central.services.ingest import insert_ignore
from cardsvc.central.services.reconcile import Flag, FlagKind
from cardsvc.formats.templates import SealError, open_templates
from cardsvc.pki.signer import decrypt_private_key

#: (card id hex, member index, finger position)
Identity = tuple[str, int, int]


@dataclass(frozen=True, slots=True)
class DedupPolicy:
    """``target_fmr``: false-hit probability of one whole 1:N search (the per-comparison threshold is
    raised to ``target_fmr / N``); ``shortlist``: full comparisons per probe (None: the matcher's default)."""

    target_fmr: float = 1e-3
    shortlist: int | None = None


@dataclass
class DedupReport:
    searched_cards: int = 0
    gallery_templates: int = 0
    unreadable: list[str] = field(default_factory=list)
    pairs: list[tuple[str, str, float]] = field(default_factory=list)  # (card, other card, best score)
    new_flags: int = 0

    def to_json(self) -> dict[str, object]:
        return {
            "searched_cards": self.searched_cards,
            "gallery_templates": self.gallery_templates,
            "unreadable": self.unreadable,
            "pairs": [{"cards": [a, b], "score": s} for a, b, s in self.pairs],
            "new_flags": self.new_flags,
        }


def load_dedup_key(path: Path, passphrase: bytes) -> ec.EllipticCurvePrivateKey:
    """Central's de-duplication key from its encrypted key file (never stored in the clear)."""
    return decrypt_private_key(path.read_bytes(), passphrase)


def _open_district(
    rows: Iterable[tuple[str, bytes]], key: ec.EllipticCurvePrivateKey, report: DedupReport
) -> dict[Identity, FingerTemplate]:
    templates: dict[Identity, FingerTemplate] = {}
    for card_id, sealed in rows:
        try:
            opened = open_templates(key, int(card_id, 16), bytes(sealed))
        except SealError:
            report.unreadable.append(card_id)
            continue
        for t in opened:
            templates[(card_id, t.member_index, t.finger_position)] = decode_compact(
                t.minutiae, finger_position=t.finger_position
            )
    return templates


def deduplicate(
    session: Session,
    key: ec.EllipticCurvePrivateKey,
    now: int,
    *,
    matcher: Matcher | None = None,
    policy: DedupPolicy | None = None,
) -> DedupReport:
    """Search every card not yet searched against its district's gallery; flag likely duplicates."""
    policy = policy or DedupPolicy()
    matcher = matcher or Matcher()
    report = DedupReport()
    pending: defaultdict[str, list[str]] = defaultdict(list)
    for card_id, district in session.execute(
        select(SealedTemplates.card_id, SealedTemplates.district).where(SealedTemplates.searched_at.is_(None))
    ):
        pending[district].append(card_id)
    households = dict(session.execute(select(Card.card_id, Card.household_id)).all())
    best: dict[tuple[str, str], list[tuple[int, int, int, int, float]]] = defaultdict(list)
    for district, new_cards in sorted(pending.items()):
        rows = session.execute(
            select(SealedTemplates.card_id, SealedTemplates.sealed).where(
                SealedTemplates.district == district
            )
        ).all()
        templates = _open_district(rows, key, report)
        report.gallery_templates += len(templates)
        gallery = matcher.gallery(cast("Mapping[Hashable, FingerTemplate]", templates))
        for card_id in sorted(new_cards):
            report.searched_cards += 1
            for (cid, member, finger), probe in templates.items():
                if cid != card_id:
                    continue
                for hit in matcher.search(
                    probe, gallery, target_fmr=policy.target_fmr, shortlist=policy.shortlist
                ):
                    identity: Identity = hit.identity  # type: ignore[assignment]
                    other, o_member, o_finger = identity
                    if other == card_id:
                        continue
                    a, b = sorted((card_id, other))
                    pair = (member, finger, o_member, o_finger) if a == card_id else (
                        o_member, o_finger, member, finger)  # fmt: skip
                    best[(a, b)].append((*pair, round(hit.score, 1)))
    flags: list[Flag] = []
    for (a, b), matches in sorted(best.items()):
        strongest: dict[tuple[int, int, int, int], float] = {}
        for ma, fa, mb, fb, score in matches:
            strongest[(ma, fa, mb, fb)] = max(score, strongest.get((ma, fa, mb, fb), 0.0))
        top = max(strongest.values())
        report.pairs.append((a, b, top))
        listed = [[*k, s] for k, s in sorted(strongest.items())]
        for card, other, side in ((a, b, 0), (b, a, 1)):
            flags.append(Flag(
                FlagKind.DUPLICATE_ENROLMENT,
                {
                    "other_card": other, "household": households.get(card), "other_household":
                    households.get(other), "score": top,
                    "matches": [[m[2], m[3], m[0], m[1], m[4]] if side else m for m in listed],
                },
                card_id=card,
            ))  # fmt: skip
    report.new_flags = record_flags(session, flags, now)
    searched = [c for cards in pending.values() for c in cards]
    for start in range(0, len(searched), 1000):
        session.execute(
            update(SealedTemplates)
            .where(SealedTemplates.card_id.in_(searched[start : start + 1000]))
            .values(searched_at=now)
        )
    session.commit()
    return report


def record_flags(session: Session, flags: list[Flag], now: int) -> int:
    """Insert findings not recorded before (``dedup_key``); returns how many are new."""
    rows = {
        f.dedup_key(): {
            "kind": f.kind.value, "card_id": f.card_id, "facility_id": f.facility_id,
            "terminal_id": f.terminal_id, "details": f.details, "created_at": now, "dedup_key": f.dedup_key(),
        }
        for f in flags
    }  # fmt: skip
    if not rows:
        return 0
    held = set(session.execute(select(FlagRow.dedup_key).where(FlagRow.dedup_key.in_(list(rows)))).scalars())
    insert_ignore(session, FlagRow.__table__, [rows[k] for k in sorted(rows)], ["dedup_key"])
    return len(set(rows) - held)
