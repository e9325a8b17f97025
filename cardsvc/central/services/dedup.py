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
from cardsvc.bio.matcher import Gallery, Matcher, fmr_to_threshold
from cardsvc.bio.template import FingerTemplate
from cardsvc.central.models import Card, FlagRow, SealedTemplates
from cardsvc.central.services.chunks import in_chunks
from cardsvc.central.services.ingest import insert_ignore
from cardsvc.central.services.reconcile import Flag, FlagKind
from cardsvc.formats.templates import SealError, open_templates
from cardsvc.pki.signer import decrypt_private_key

#: (card id hex, member index, finger position)
Identity = tuple[str, int, int]


@dataclass(frozen=True, slots=True)
class DedupPolicy:
    """``target_fmr``: false-hit probability of one whole 1:N search (the per-comparison threshold T is
    raised to ``target_fmr / N``); ``shortlist``: full comparisons per probe (None: the matcher's default).

    The decision is per pair of MEMBERS, on all their fingers (:func:`member_evidence`): where both members
    gave two or more fingers, the two best finger pairs (distinct fingers on each side, any positions, so a
    finger captured under the wrong position still counts) must together reach ``fused_factor`` x T; where
    either gave only one finger (a child, an injured hand), that one score must reach T. One look-alike
    finger is not enough to call two people one: at district scale the tail of single-finger impostor scores
    is what fills a review queue (BIOMETRICS.md), while a real duplicate's fingers all match (80-120 each)."""

    target_fmr: float = 1e-3
    shortlist: int | None = None
    fused_factor: float = 2.0


@dataclass(frozen=True, slots=True)
class Evidence:
    """Why two members look like one person: the finger pairs used, their sum and the bar it cleared."""

    pairs: tuple[tuple[int, int, float], ...]  # (finger position here, finger position there, score)
    total: float
    bar: float


def member_evidence(
    scores: Mapping[tuple[int, int], float],
    fingers_a: int,
    fingers_b: int,
    threshold: float,
    policy: DedupPolicy,
) -> Evidence | None:
    """The duplicate decision for two members from their finger-pair ``scores`` ((position a, position b) ->
    calibrated score, all pairs compared), ``fingers_a``/``fingers_b`` fingers each, and the 1:N threshold T;
    None when the evidence does not reach the bar (see :class:`DedupPolicy`)."""
    ranked = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))
    if not ranked:
        return None
    if min(fingers_a, fingers_b) < 2:
        (fa, fb), best = ranked[0]
        return Evidence(((fa, fb, round(best, 1)),), round(best, 1), threshold) if best >= threshold else None
    used_a: set[int] = set()
    used_b: set[int] = set()
    chosen: list[tuple[int, int, float]] = []
    for (fa, fb), score in ranked:  # greedy assignment: distinct fingers on each side
        if fa in used_a or fb in used_b:
            continue
        chosen.append((fa, fb, round(score, 1)))
        used_a.add(fa)
        used_b.add(fb)
        if len(chosen) == 2:
            break
    total = sum(score for _, _, score in chosen)
    bar = policy.fused_factor * threshold
    return Evidence(tuple(chosen), round(total, 1), round(bar, 1)) if total >= bar else None


@dataclass
class DedupReport:
    searched_cards: int = 0
    gallery_templates: int = 0
    unreadable: list[str] = field(default_factory=list)
    pairs: list[tuple[str, str, float]] = field(default_factory=list)  # (card, other card, best evidence)
    new_flags: int = 0
    candidates: int = 0  # member pairs with a finger above T, weighed on all their fingers
    dismissed: int = 0  # of those, how many the other fingers did not confirm

    def to_json(self) -> dict[str, object]:
        return {
            "searched_cards": self.searched_cards,
            "gallery_templates": self.gallery_templates,
            "unreadable": self.unreadable,
            "pairs": [{"cards": [a, b], "score": s} for a, b, s in self.pairs],
            "new_flags": self.new_flags,
            "candidates": self.candidates,
            "dismissed": self.dismissed,
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


#: (card id hex, member index): one enrolled person
MemberKey = tuple[str, int]


def _weigh(
    matcher: Matcher,
    gallery: Gallery,
    fingers: Mapping[MemberKey, list[tuple[int, int]]],
    a: MemberKey,
    b: MemberKey,
    threshold: float,
    policy: DedupPolicy,
) -> Evidence | None:
    """Compare every finger of member ``a`` with every finger of member ``b`` and decide; ``fingers``: each
    member's (finger position, gallery index)."""
    scores = {
        (pa, pb): matcher.compare(gallery.encoded[ka].detached(), gallery.encoded[kb].detached())
        for pa, ka in fingers[a]
        for pb, kb in fingers[b]
    }
    return member_evidence(scores, len(fingers[a]), len(fingers[b]), threshold, policy)


def deduplicate(
    session: Session,
    key: ec.EllipticCurvePrivateKey,
    now: int,
    *,
    matcher: Matcher | None = None,
    policy: DedupPolicy | None = None,
) -> DedupReport:
    """Search every card not yet searched against its district's gallery; flag likely duplicates.

    Every finger of a new card is searched 1:N; a hit names a candidate pair of members, which is then
    weighed on ALL their fingers (:func:`member_evidence`) before anything is flagged."""
    policy = policy or DedupPolicy()
    matcher = matcher or Matcher()
    report = DedupReport()
    pending: defaultdict[str, list[str]] = defaultdict(list)
    for card_id, district in session.execute(
        select(SealedTemplates.card_id, SealedTemplates.district).where(SealedTemplates.searched_at.is_(None))
    ):
        pending[district].append(card_id)
    households = dict(session.execute(select(Card.card_id, Card.household_id)).all())
    found: dict[tuple[str, str], list[tuple[int, int, Evidence]]] = defaultdict(list)
    for district, new_cards in sorted(pending.items()):
        rows = session.execute(
            select(SealedTemplates.card_id, SealedTemplates.sealed).where(
                SealedTemplates.district == district
            )
        ).all()
        templates = _open_district(rows, key, report)
        report.gallery_templates += len(templates)
        gallery = matcher.gallery(cast("Mapping[Hashable, FingerTemplate]", templates))
        threshold = fmr_to_threshold(policy.target_fmr / max(1, len(gallery)))
        fingers: defaultdict[MemberKey, list[tuple[int, int]]] = defaultdict(list)
        members_of: defaultdict[str, set[int]] = defaultdict(set)
        for k, identity in enumerate(gallery.identities):
            cid, member, position = cast("Identity", identity)
            fingers[(cid, member)].append((position, k))
            members_of[cid].add(member)
        weighed: set[tuple[MemberKey, MemberKey]] = set()
        for card_id in sorted(new_cards):
            report.searched_cards += 1
            own = [(m, k) for m in sorted(members_of[card_id]) for _, k in fingers[(card_id, m)]]
            for member, k in own:
                probe = gallery.encoded[k].detached()
                for hit in matcher.search(
                    probe, gallery, target_fmr=policy.target_fmr, shortlist=policy.shortlist
                ):
                    other, o_member, _ = cast("Identity", hit.identity)
                    if other == card_id:
                        continue
                    pair = cast(
                        "tuple[MemberKey, MemberKey]", tuple(sorted([(card_id, member), (other, o_member)]))
                    )
                    if pair in weighed:
                        continue
                    weighed.add(pair)
                    report.candidates += 1
                    evidence = _weigh(matcher, gallery, fingers, *pair, threshold, policy)
                    if evidence is None:
                        report.dismissed += 1
                        continue
                    (a, ma), (b, mb) = pair
                    found[(a, b)].append((ma, mb, evidence))
    flags: list[Flag] = []
    for (a, b), members in sorted(found.items()):
        top = max(e.total for _, _, e in members)
        report.pairs.append((a, b, top))
        for card, other, side in ((a, b, 0), (b, a, 1)):
            matches: list[list[float]] = []
            for ma, mb, e in sorted(members, key=lambda m: (m[0], m[1])):
                mine, theirs = (mb, ma) if side else (ma, mb)
                matches.extend(
                    [mine, fb if side else fa, theirs, fa if side else fb, score] for fa, fb, score in e.pairs
                )
            flags.append(Flag(
                FlagKind.DUPLICATE_ENROLMENT,
                {
                    "other_card": other, "household": households.get(card), "other_household":
                    households.get(other), "score": top, "bar": max(e.bar for _, _, e in members),
                    "matches": matches,
                },
                card_id=card,
            ))  # fmt: skip
    report.new_flags = record_flags(session, flags, now)
    searched = [c for cards in pending.values() for c in cards]
    for chunk in in_chunks(searched, 1000):
        session.execute(
            update(SealedTemplates).where(SealedTemplates.card_id.in_(chunk)).values(searched_at=now)
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
