"""Central's card authorisations at the POS: kept in the journal at sync, presented to the card at its next
verified insertion.

Only sync acknowledgements (SYNC_ACK) are presented here: they reset the card's offline risk limits once
central holds every record up to a counter (docs/card-layout.md). The terminal cannot lift the limits
itself; it only carries central's signed decision to the card, which checks the signature, the card id,
that the serial increases and that the counter does not go back. The POS does not even try one that is
for another card, already used (serial not above the card's), or older than what the card holds (counter
not above its synced counter); one whose counter is above the card's own counter cannot be right and is
journalled as refused. Wire bytes are the card's own format (``cardsvc.beneficiary.protocol``); this module
builds none.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from cardsvc.beneficiary.errors import BeneficiaryCardError
from cardsvc.beneficiary.protocol import AuthKind, Authorisation, CardStatus
from cardsvc.beneficiary.session import BeneficiarySession, OfflineState
from cardsvc.card.transport import CardError
from cardsvc.formats.errors import FormatError
from cardsvc.formats.profile import card_chr
from point_of_service.journal import Journal, hex_id

log = logging.getLogger(__name__)

#: Journal key/value slot holding the last downloaded list (central serves every unexpired one each time).
AUTHORISATIONS_KEY = "sync.authorisations"
EVENT = "authorisation"


class Audience(StrEnum):
    """``audience`` of ``GET /api/v1/authorisations`` (docs/api.md): who checks the signed bytes."""

    STATION = "station"
    CARD = "card"


@dataclass(frozen=True)
class StoredAuthorisation:
    """One downloaded authorisation as central listed it (the wire is checked by its audience)."""

    id: str
    kind: str
    audience: str
    card_id: str  # 16 hex digits
    issued_at: int
    not_after: int
    wire: bytes
    marks: tuple[str, ...]

    @classmethod
    def from_json(cls, item: Mapping[str, Any]) -> StoredAuthorisation:
        """Parse one item of central's list; ``ValueError`` saying which field is wrong."""
        try:
            wire = base64.b64decode(str(item["wire"]), validate=True)
            stored = cls(
                id=str(item["id"]),
                kind=str(item["kind"]),
                audience=str(item["audience"]),
                card_id=str(item["card_id"]).lower(),
                issued_at=int(item["issued_at"]),
                not_after=int(item["not_after"]),
                wire=wire,
                marks=tuple(str(m) for m in item.get("marks", ())),
            )
        except (KeyError, TypeError, ValueError, binascii.Error) as exc:
            raise ValueError(f"authorisation item is malformed ({type(exc).__name__}: {exc})") from None
        if len(stored.card_id) != 16 or any(c not in "0123456789abcdef" for c in stored.card_id):
            raise ValueError(f"authorisation {stored.id}: card_id {stored.card_id!r} is not 16 hex digits")
        return stored

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "kind": self.kind, "audience": self.audience, "card_id": self.card_id,
            "issued_at": self.issued_at, "not_after": self.not_after,
            "wire": base64.b64encode(self.wire).decode("ascii"), "marks": list(self.marks),
        }  # fmt: skip


def store_authorisations(journal: Journal, items: Iterable[Any]) -> int:
    """Keep central's list in the journal (replacing the previous download); malformed items are logged and
    dropped. Returns how many were kept."""
    kept: list[dict[str, Any]] = []
    for item in items:
        try:
            if not isinstance(item, Mapping):
                raise ValueError(f"authorisation item is a {type(item).__name__}, not an object")
            kept.append(StoredAuthorisation.from_json(item).to_json())
        except ValueError as exc:
            log.warning("authorisation from central dropped: %s", exc)
    journal.put(AUTHORISATIONS_KEY, kept)
    return len(kept)


def stored_authorisations(journal: Journal) -> list[StoredAuthorisation]:
    """The authorisations kept at the last sync (what the journal holds, parsed again)."""
    out: list[StoredAuthorisation] = []
    for item in journal.get(AUTHORISATIONS_KEY, []) or []:
        try:
            out.append(StoredAuthorisation.from_json(item))
        except ValueError as exc:  # written by an older version: skip, never fail an insertion
            log.warning("stored authorisation skipped: %s", exc)
    return out


@dataclass(frozen=True)
class Candidate:
    stored: StoredAuthorisation
    auth: Authorisation


@dataclass(frozen=True)
class AppliedAuthorisations:
    """What the insertion did with central's authorisations: applied, refused (id, why), the card's limits
    after (``None`` when nothing was presented: the verification's figures still hold)."""

    applied: tuple[StoredAuthorisation, ...] = ()
    refused: tuple[tuple[str, str], ...] = ()
    limits: OfflineState | None = None

    @property
    def limits_renewed(self) -> bool:
        return bool(self.applied)


def sync_acknowledgements_for(
    journal: Journal, card_id: int, status: CardStatus, *, now: int
) -> tuple[list[Candidate], list[tuple[str, str]]]:
    """The stored SYNC_ACKs worth presenting to this card now, best (highest serial) first, and those
    refused without asking the card (id, why). Used, older or expired ones are skipped silently."""
    wanted = hex_id(card_id)
    chr_ = card_chr(card_id)
    candidates: list[Candidate] = []
    refused: list[tuple[str, str]] = []
    for stored in stored_authorisations(journal):
        if stored.audience != Audience.CARD or stored.card_id != wanted or stored.not_after < now:
            continue
        try:
            auth = Authorisation.parse(stored.wire)
        except FormatError as exc:
            refused.append((stored.id, f"not a card authorisation: {exc}"))
            continue
        if auth.card_id != chr_:
            refused.append((stored.id, f"listed for card {wanted} but signed for {auth.card_id}"))
            continue
        if auth.kind is not AuthKind.SYNC_ACK or auth.serial <= status.auth_serial:
            continue  # other kinds are not presented here; used serials would be refused (6985)
        if auth.value <= status.synced_counter:
            continue  # the card already holds a newer acknowledgement
        if auth.value > status.counter:
            refused.append(
                (stored.id, f"acknowledges counter {auth.value} but the card is at {status.counter}")
            )
            continue
        candidates.append(Candidate(stored, auth))
    candidates.sort(key=lambda c: c.auth.serial, reverse=True)
    return candidates, refused


def apply_sync_acknowledgements(
    session: BeneficiarySession,
    journal: Journal,
    *,
    card_id: int,
    status: CardStatus,
    now: int,
    operator: str | None = None,
) -> AppliedAuthorisations:
    """Present the best stored sync acknowledgement for this card (highest serial; a lower one would be a
    replay once it is used) and journal what happened; a card refusal falls back to the next one."""
    candidates, refused = sync_acknowledgements_for(journal, card_id, status, now=now)
    for auth_id, why in refused:
        journal.log(EVENT, at=now, outcome="refused", operator=operator, card_id=card_id,
                    reason="not-presented", detail={"id": auth_id, "why": why})  # fmt: skip
    done: Candidate | None = None
    for c in candidates:
        try:
            session.acknowledge_sync(c.auth)
        except (CardError, BeneficiaryCardError) as exc:
            refused.append((c.stored.id, f"the card refused it: {exc}"))
            journal.log(EVENT, at=now, outcome="refused", operator=operator, card_id=card_id,
                        reason="card-refused", detail={"id": c.stored.id, "kind": c.stored.kind,
                                                       "serial": c.auth.serial, "why": str(exc)})  # fmt: skip
            continue
        done = c
        break
    if done is None:
        return AppliedAuthorisations((), tuple(refused), None)
    limits = session.offline_limits()
    journal.log(
        EVENT, at=now, operator=operator, card_id=card_id,
        detail={"id": done.stored.id, "kind": done.stored.kind, "serial": done.auth.serial,
                "synced_counter": limits.synced_counter, "since_sync": [limits.count, limits.amount],
                "offline_limits": [limits.max_count, limits.max_amount]},
    )  # fmt: skip
    applied = [done.stored]
    return AppliedAuthorisations(tuple(applied), tuple(refused), limits)


__all__ = [
    "AUTHORISATIONS_KEY", "AppliedAuthorisations", "Audience", "StoredAuthorisation",
    "apply_sync_acknowledgements", "store_authorisations", "stored_authorisations",
    "sync_acknowledgements_for",
]  # fmt: skip
