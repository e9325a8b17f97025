"""Central's card authorisations at the POS: kept in the journal at sync, presented to the card at its next
verified insertion (after the card's own steps 1-7 and terminal authentication, before the member step).

Presented here, each checked by the card itself (central's signature, its own id, a serial strictly above
the last one it took):

- SUPERSEDE (AUTHORISE): the card was replaced; it turns SUPERSEDED for good and this insertion is refused
  (``card-blocked``). Presented first, even to a card central's register blacklists.
- TOP_UP (a DEBIT carrying the authorisation: a TOP_UP record of ``value`` paise on ``scheme``, reference =
  the authorisation's serial, member 0), through the same write-ahead journal as every debit. Needs a
  terminal certificate holding the TOP_UP right (the card checks it); otherwise not presented.
- SYNC_ACK (AUTHORISE): resets the offline risk limits once central holds every record up to a counter
  (docs/card-layout.md). The POS does not even try one that is for another card, already used (serial not
  above the card's), or older than what the card holds (counter not above its synced counter); one whose
  counter is above the card's own counter cannot be right and is journalled as refused.

TOP_UPs and SYNC_ACKs go in increasing serial order (a lower serial is refused once a higher one is used);
of several SYNC_ACKs only the highest serial is presented, a lower one only if the card refuses it. RENEWAL
is kept but not presented. Wire bytes are the card's own format (``cardsvc.beneficiary.protocol``); this
module builds none.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from cardsvc.beneficiary.errors import BeneficiaryCardError
from cardsvc.beneficiary.protocol import AuthKind, Authorisation, CardStatus
from cardsvc.beneficiary.session import BeneficiarySession, OfflineState
from cardsvc.card.transport import CardError
from cardsvc.formats.errors import FormatError
from cardsvc.formats.profile import card_chr
from cardsvc.formats.transaction import RecordType, TransactionRecord
from cardsvc.pki.rights import Right
from point_of_service.errors import TransactionError
from point_of_service.identity import TerminalIdentity
from point_of_service.journal import Journal, hex_id
from point_of_service.reasons import Reason
from point_of_service.services.signin import Clerk

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
    after (``None`` when nothing was presented: the verification's figures still hold), the TOP_UP records
    the card made, and whether the card was superseded."""

    applied: tuple[StoredAuthorisation, ...] = ()
    refused: tuple[tuple[str, str], ...] = ()
    limits: OfflineState | None = None
    top_ups: tuple[TransactionRecord, ...] = ()
    superseded: bool = False

    @property
    def limits_renewed(self) -> bool:
        return any(a.kind == "sync_ack" for a in self.applied)


PRESENTED = frozenset({AuthKind.SYNC_ACK, AuthKind.TOP_UP, AuthKind.SUPERSEDE})


def card_authorisations_for(
    journal: Journal, card_id: int, status: CardStatus, *, now: int
) -> tuple[list[Candidate], list[tuple[str, str]]]:
    """The stored authorisations worth presenting to this card now, in increasing serial order, and those
    refused without asking the card (id, why). Used, older or expired ones are skipped silently."""
    wanted = hex_id(card_id)
    chr_ = card_chr(card_id)
    schemes = {w.scheme_id for w in status.wallets}
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
        if auth.kind not in PRESENTED or auth.serial <= status.auth_serial:
            continue  # RENEWAL is not presented here; used serials would be refused (6985)
        if auth.kind is AuthKind.SYNC_ACK:
            if auth.value <= status.synced_counter:
                continue  # the card already holds a newer acknowledgement
            if auth.value > status.counter:
                refused.append(
                    (stored.id, f"acknowledges counter {auth.value} but the card is at {status.counter}")
                )
                continue
        if auth.kind is AuthKind.TOP_UP and auth.scheme_id not in schemes:
            refused.append((stored.id, f"tops up scheme {auth.scheme_id}, which is not on the card"))
            continue
        candidates.append(Candidate(stored, auth))
    candidates.sort(key=lambda c: c.auth.serial)
    return candidates, refused


class _Presenter:
    """One insertion's presentation of authorisations, journalled as it goes."""

    def __init__(
        self, session: BeneficiarySession, journal: Journal, *, card_id: int, now: int, operator: str | None
    ) -> None:
        self.session, self.journal, self.card_id = session, journal, card_id
        self.now, self.operator = now, operator
        self.refused: list[tuple[str, str]] = []
        self.applied: list[StoredAuthorisation] = []

    def not_presented(self, items: Iterable[tuple[str, str]]) -> None:
        for auth_id, why in items:
            self.refused.append((auth_id, why))
            self.journal.log(EVENT, at=self.now, outcome="refused", operator=self.operator,
                             card_id=self.card_id, reason="not-presented",
                             detail={"id": auth_id, "why": why})  # fmt: skip

    def card_refused(self, c: Candidate, why: str) -> None:
        self.refused.append((c.stored.id, f"the card refused it: {why}"))
        self.journal.log(EVENT, at=self.now, outcome="refused", operator=self.operator, card_id=self.card_id,
                         reason="card-refused", detail={"id": c.stored.id, "kind": c.stored.kind,
                                                        "serial": c.auth.serial, "why": why})  # fmt: skip

    def done(self, c: Candidate, detail: dict[str, Any]) -> None:
        self.applied.append(c.stored)
        what = {"id": c.stored.id, "kind": c.stored.kind, "serial": c.auth.serial}
        self.journal.log(EVENT, at=self.now, operator=self.operator, card_id=self.card_id,
                         detail={**what, **detail})  # fmt: skip

    def authorise(self, c: Candidate) -> bool:
        """AUTHORISE (SYNC_ACK, SUPERSEDE); False when the card refused it."""
        try:
            self.session.authorise(c.auth)
        except (CardError, BeneficiaryCardError) as exc:
            self.card_refused(c, str(exc))
            return False
        return True

    def acknowledge(self, c: Candidate) -> bool:
        if not self.authorise(c):
            return False
        limits = self.session.offline_limits()
        self.done(c, {"synced_counter": limits.synced_counter, "counter": limits.counter,
                      "since_sync": [limits.count, limits.amount],
                      "offline_limits": [limits.max_count, limits.max_amount]})  # fmt: skip
        return True


def present_supersede(
    session: BeneficiarySession, journal: Journal, *, card_id: int, status: CardStatus, now: int,
    operator: str | None = None,
) -> AppliedAuthorisations:  # fmt: skip
    """Present central's SUPERSEDE for this card, if one is kept: the card turns SUPERSEDED for good (the
    caller then refuses the insertion)."""
    candidates, _ = card_authorisations_for(journal, card_id, status, now=now)
    presenter = _Presenter(session, journal, card_id=card_id, now=now, operator=operator)
    for c in reversed([c for c in candidates if c.auth.kind is AuthKind.SUPERSEDE]):
        if presenter.authorise(c):
            presenter.done(c, {"lifecycle": "superseded"})
            return AppliedAuthorisations(tuple(presenter.applied), tuple(presenter.refused), superseded=True)
    return AppliedAuthorisations((), tuple(presenter.refused))


def apply_card_authorisations(
    session: BeneficiarySession,
    journal: Journal,
    *,
    card_id: int,
    card_key: bytes,
    status: CardStatus,
    now: int,
    identity: TerminalIdentity,
    clerk: Clerk,
    rng: Callable[[int], bytes] = os.urandom,
) -> AppliedAuthorisations:
    """Present this card's kept TOP_UPs and its best SYNC_ACK, in increasing serial order; journal what
    happened. A TOP_UP interrupted by a pulled card stays a pending intent (recovered at the next
    insertion) and raises :class:`~point_of_service.errors.TransactionError` (``card-removed``)."""
    from point_of_service.services.transactions import journalled_debit

    candidates, refused = card_authorisations_for(journal, card_id, status, now=now)
    presenter = _Presenter(session, journal, card_id=card_id, now=now, operator=clerk.chr)
    presenter.not_presented(refused)
    acks = [c for c in candidates if c.auth.kind is AuthKind.SYNC_ACK]
    best = max((c.auth.serial for c in acks), default=0)
    skipped: list[Candidate] = []
    used = status.auth_serial
    top_ups: list[TransactionRecord] = []
    may_top_up = bool(identity.certificate.rights & Right.TOP_UP)
    for c in candidates:
        if c.auth.serial <= used or c.auth.kind is AuthKind.SUPERSEDE:
            continue
        if c.auth.kind is AuthKind.SYNC_ACK:
            if c.auth.serial < best:
                skipped.append(c)  # a higher one says more; this one only if the card refuses that
                continue
            if presenter.acknowledge(c):
                used = c.auth.serial
                continue
            for lower in reversed(skipped):
                if lower.auth.serial > used and presenter.acknowledge(lower):
                    used = lower.auth.serial
                    break
            continue
        if not may_top_up:
            presenter.not_presented(
                [(c.stored.id, f"terminal {identity.chr} does not hold the TOP_UP right")]
            )
            continue
        try:
            outcome = journalled_debit(
                session, journal=journal, identity=identity, clerk=clerk, card_id=card_id, card_key=card_key,
                member=0, record_type=RecordType.TOP_UP, amount=c.auth.value, now=now,
                scheme_id=c.auth.scheme_id, reference=c.auth.serial, context={"authorisation": c.stored.id},
                rng=rng, authorisation=c.auth,
            )  # fmt: skip
        except TransactionError as exc:
            if exc.reason is Reason.CARD_REMOVED:
                raise
            presenter.card_refused(c, exc.detail)
            continue
        used = c.auth.serial
        top_ups.append(outcome.record)
        record = outcome.record
        presenter.done(c, {"scheme": c.auth.scheme_id, "amount": c.auth.value, "counter": record.counter,
                           "balance_after": record.balance_after})  # fmt: skip
    limits = session.offline_limits() if presenter.applied else None
    return AppliedAuthorisations(tuple(presenter.applied), tuple(presenter.refused), limits, tuple(top_ups))


__all__ = [
    "AUTHORISATIONS_KEY", "PRESENTED", "AppliedAuthorisations", "Audience", "StoredAuthorisation",
    "apply_card_authorisations", "card_authorisations_for", "present_supersede", "store_authorisations",
    "stored_authorisations",
]  # fmt: skip
