"""Authorisations central signs for the field: what a station or a card checks offline before acting.

Two audiences, each with its format's one home (reused, not redefined here):

- stations (``enrolment_station.authorisation``, canonical JSON): RENEW a card for a new policy year,
  issue a SPLIT card for a migrant member, REPLACE a lost card;
- cards (``cardsvc.beneficiary.protocol.Authorisation``, TLV, checked by the card itself): TOP_UP a scheme,
  RENEWAL (new balance), SUPERSEDE (the card was replaced), SYNC_ACK (central holds every record up to a
  counter: the card resets its offline limits), SPLIT (lower a scheme's balance by the cover a split card
  takes), RENEW_POLICY (open the card's profile and certificate for a new policy period and cover).
  ``serial`` strictly increases per card.

A renewal or a split is one station authorisation plus the card authorisations the chip itself checks:
:func:`issue_renewal` (station RENEW + card RENEW_POLICY, the same period and cover) and :func:`issue_split`
(station SPLIT + one card SPLIT per scheme, lowering the original card by what the split card carries).

Signed with :class:`~cardsvc.central.services.publish.CentralKey`. Open findings reach the card's next
authorisation: an open ``duplicate_enrolment`` flag (the person may be enrolled twice) BLOCKS every
authorisation except SUPERSEDE until staff review it; any other open flag on the card is recorded in the
authorisation's ``marks`` and shown to whoever fetches it.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cardsvc.central.errors import ConflictError, MalformedError, NotFoundError
from cardsvc.central.models import AuthorisationRow, Card, Facility, Terminal, TransactionRow
from cardsvc.central.services.flags import OpenFlag, open_flags
from cardsvc.central.services.publish import CentralKey
from cardsvc.central.services.reconcile import FlagKind
from cardsvc.central.services.terminals import revoke_card
from cardsvc.formats.batch import id_hex
from cardsvc.formats.profile import card_chr

DAY = 86_400
DEFAULT_VALIDITY = 30 * DAY
MAX_LISTED = 200


class Audience(StrEnum):
    STATION = "station"
    CARD = "card"


class StationKind(StrEnum):
    RENEW = "renew"
    SPLIT = "split"
    REPLACE = "replace"


class CardKind(StrEnum):
    TOP_UP = "top_up"
    RENEWAL = "renewal"
    SUPERSEDE = "supersede"
    SYNC_ACK = "sync_ack"
    SPLIT = "split"
    RENEW_POLICY = "renew_policy"


@dataclass(frozen=True, slots=True)
class IssuedAuthorisation:
    """What ``GET /api/v1/authorisations`` lists: the signed bytes and what central knew when signing."""

    id: str
    kind: str
    audience: Audience
    card_id: str
    issued_at: int
    not_after: int
    wire: bytes
    marks: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "kind": self.kind, "audience": self.audience.value, "card_id": self.card_id,
            "issued_at": self.issued_at, "not_after": self.not_after,
            "wire": base64.b64encode(self.wire).decode("ascii"), "marks": list(self.marks),
        }  # fmt: skip


def _card(session: Session, card_id: str) -> Card:
    card = session.get(Card, card_id)
    if card is None:
        raise NotFoundError("unknown_card", f"card {card_id} is not registered (its camp has not arrived)")
    return card


def _gate(session: Session, card_id: str, what: str, *, blockable: bool) -> tuple[str, ...]:
    """Refuse while a duplicate-enrolment finding is open; otherwise return the open findings as marks."""
    flags: list[OpenFlag] = open_flags(session, card_ids=[card_id])
    duplicates = [f for f in flags if f.kind == FlagKind.DUPLICATE_ENROLMENT]
    if duplicates and blockable:
        raise ConflictError(
            "card_under_review",
            f"{what} for card {card_id} refused: possible duplicate enrolment under review "
            f"({'; '.join(f.reason() for f in duplicates)})",
        )
    return tuple(f.reason() for f in flags)


def _store(session: Session, issued: IssuedAuthorisation, district: str, serial: int) -> IssuedAuthorisation:
    session.add(AuthorisationRow(
        id=issued.id, kind=issued.kind, card_id=issued.card_id, district=district,
        audience=issued.audience.value, serial=serial, issued_at=issued.issued_at,
        not_after=issued.not_after, wire=issued.wire, marks=list(issued.marks),
    ))  # fmt: skip
    session.commit()
    return issued


def _day(t: int) -> date:
    return datetime.fromtimestamp(t, UTC).date()


def issue_station_authorisation(
    session: Session,
    key: CentralKey,
    kind: StationKind,
    card_id: str,
    *,
    now: int,
    members: Sequence[int] | None = None,
    policy: tuple[int, int] | None = None,
    schemes: Sequence[tuple[int, int]] | None = None,
    validity: int = DEFAULT_VALIDITY,
    rng: Callable[[int], bytes] = os.urandom,
) -> IssuedAuthorisation:
    """Sign a renewal, split card or replacement of ``card_id`` for a station (checked offline there).

    Defaults come from the card's camp: all members (split: pass the migrant member indexes), the camp's
    scheme and cover, and for RENEW the next policy year. REPLACE also blacklists the old card from now.
    """
    from enrolment_station.authorisation import (
        AuthKind,
        SchemeGrant,
        StationAuthorisation,
        sign_authorisation,
    )

    card = _card(session, card_id)
    marks = _gate(session, card_id, f"{kind.value} authorisation", blockable=True)
    indexes = tuple(members) if members is not None else tuple(range(len(card.members)))
    if not indexes or any(not 0 <= m < len(card.members) for m in indexes):
        raise MalformedError("bad_members", f"members {list(indexes)} are not members of card {card_id}")
    if kind is StationKind.SPLIT and len(indexes) == len(card.members):
        raise MalformedError("bad_members", "a split card carries some members, not all")
    if policy is None:
        year = card.policy_end - card.policy_start
        policy = (card.policy_end, card.policy_end + year) if kind is StationKind.RENEW else (
            card.policy_start, card.policy_end)  # fmt: skip
    grants = tuple(SchemeGrant(s, c) for s, c in (schemes or [(card.scheme_id, card.cover_paise)]))
    auth = StationAuthorisation(
        auth_id=rng(8).hex(), kind=AuthKind(kind.value), household_id=card.household_id,
        card_id=card_chr(int(card_id, 16)), issued=now, not_after=now + validity,
        policy_start=_day(policy[0]), policy_end=_day(policy[1] - 1), schemes=grants, members=indexes,
        signer=key.chr,
    )  # fmt: skip
    signed = sign_authorisation(auth, key.signer, key.chain)
    if kind is StationKind.REPLACE:
        revoke_card(session, int(card_id, 16), now)
    issued = IssuedAuthorisation(auth.auth_id, kind.value, Audience.STATION, card_id, now, now + validity,
                                 signed.encode(), marks)  # fmt: skip
    return _store(session, issued, card.district, 0)


def held_counter(session: Session, card_id: str) -> int:
    """The highest counter up to which central holds every record of the card (0: none from 1 on)."""
    counters = session.execute(
        select(TransactionRow.counter).where(TransactionRow.card_id == card_id).distinct()
        .order_by(TransactionRow.counter)
    ).scalars()  # fmt: skip
    held = 0
    for c in counters:
        if c != held + 1:
            break
        held = c
    return held


def issue_card_authorisation(
    session: Session,
    key: CentralKey,
    kind: CardKind,
    card_id: str,
    *,
    now: int,
    scheme_id: int | None = None,
    value: int | None = None,
    validity: int = DEFAULT_VALIDITY,
    policy: tuple[int, int] | None = None,
    covers: Sequence[tuple[int, int]] | None = None,
) -> IssuedAuthorisation:
    """Sign an authorisation the card itself checks (TOP_UP: ``value`` paise added; RENEWAL: ``value`` the
    new balance; SUPERSEDE; SYNC_ACK: the counter central holds, computed here; SPLIT: ``value`` paise of
    ``scheme_id`` moved to a split card; RENEW_POLICY: ``policy`` (unix start, end exclusive; default the
    next year) and ``covers`` (scheme, paise; default every scheme of the card at its camp cover))."""
    from cardsvc.beneficiary.protocol import AuthKind, Authorisation
    from cardsvc.beneficiary.session import sign_authorisation

    card = _card(session, card_id)
    marks = _gate(session, card_id, f"{kind.value} authorisation", blockable=kind is not CardKind.SUPERSEDE)
    scheme = card.scheme_id if scheme_id is None else scheme_id
    period: tuple[date, date] | None = None
    granted: tuple[tuple[int, int], ...] = ()
    if kind is CardKind.SYNC_ACK:
        value = held_counter(session, card_id)
    elif kind is CardKind.SUPERSEDE:
        value = 0
    elif kind is CardKind.RENEW_POLICY:
        start, end = policy or _next_year(card)
        period, granted = (_day(start), _day(end - 1)), _covers(card, covers)
        scheme, value = 0, 0
    elif value is None or not 0 < value <= 0xFFFF_FFFF:
        raise MalformedError("bad_value", f"a {kind.value} needs a value of 1..2^32-1 paise, got {value}")
    last = session.execute(
        select(func.max(AuthorisationRow.serial)).where(
            AuthorisationRow.card_id == card_id, AuthorisationRow.audience == Audience.CARD.value
        )
    ).scalar_one()
    serial = (last or 0) + 1
    unsigned = Authorisation(
        AuthKind[kind.name], card_chr(int(card_id, 16)), serial, scheme, value, policy=period, covers=granted
    )
    signed = sign_authorisation(key.signer, unsigned, key.chain[0] if key.chain else None)
    auth_id = hashlib.sha256(f"card-auth:{card_id}:{serial}".encode()).hexdigest()[:16]
    issued = IssuedAuthorisation(
        auth_id, kind.value, Audience.CARD, card_id, now, now + validity, signed.encode(), marks
    )
    return _store(session, issued, card.district, serial)


def _next_year(card: Card) -> tuple[int, int]:
    return card.policy_end, card.policy_end + (card.policy_end - card.policy_start)


def _card_covers(card: Card) -> list[tuple[int, int]]:
    if card.schemes:
        return [(int(s["scheme_id"]), int(s["cover_paise"])) for s in card.schemes]
    return [(card.scheme_id, card.cover_paise)]


def _covers(card: Card, covers: Sequence[tuple[int, int]] | None) -> tuple[tuple[int, int], ...]:
    out = tuple(sorted(covers if covers is not None else _card_covers(card)))
    ids = [s for s, _ in out]
    if not out or len(out) > 4 or len(set(ids)) != len(ids) or any(not 0 < c <= 0xFFFF_FFFF for _, c in out):
        raise MalformedError("bad_covers", f"covers {list(out)}: 1-4 schemes, once each, 1..2^32-1 paise")
    return out


@dataclass(frozen=True, slots=True)
class ReissueAuthorisations:
    """A renewal or a split: the station's authorisation and the card authorisations its chip checks."""

    station: IssuedAuthorisation
    cards: tuple[IssuedAuthorisation, ...]


def issue_renewal(
    session: Session,
    key: CentralKey,
    card_id: str,
    *,
    now: int,
    policy: tuple[int, int] | None = None,
    covers: Sequence[tuple[int, int]] | None = None,
    validity: int = DEFAULT_VALIDITY,
    rng: Callable[[int], bytes] = os.urandom,
) -> ReissueAuthorisations:
    """Renew ``card_id`` for a new policy year (default: the year after its current one, every scheme at
    its camp cover): the station RENEW and the card RENEW_POLICY grant the same period and cover."""
    card = _card(session, card_id)
    period = policy or _next_year(card)
    granted = _covers(card, covers)
    station = issue_station_authorisation(
        session, key, StationKind.RENEW, card_id, now=now, policy=period, schemes=granted, validity=validity,
        rng=rng,
    )  # fmt: skip
    chip = issue_card_authorisation(
        session,
        key,
        CardKind.RENEW_POLICY,
        card_id,
        now=now,
        policy=period,
        covers=granted,
        validity=validity,
    )
    return ReissueAuthorisations(station, (chip,))


def issue_split(
    session: Session,
    key: CentralKey,
    card_id: str,
    *,
    now: int,
    members: Sequence[int],
    covers: Sequence[tuple[int, int]] | None = None,
    validity: int = DEFAULT_VALIDITY,
    rng: Callable[[int], bytes] = os.urandom,
) -> ReissueAuthorisations:
    """A split card for ``members`` of ``card_id`` carrying ``covers`` (default: each scheme's camp cover in
    proportion to the members moved), and one card SPLIT per scheme lowering the original card by as much."""
    card = _card(session, card_id)
    moved = covers
    if moved is None:
        share = len(members), max(1, len(card.members))
        moved = [(s, c * share[0] // share[1]) for s, c in _card_covers(card)]
    granted = _covers(card, moved)
    station = issue_station_authorisation(
        session, key, StationKind.SPLIT, card_id, now=now, members=members, schemes=granted,
        validity=validity, rng=rng,
    )  # fmt: skip
    chips = tuple(
        issue_card_authorisation(
            session, key, CardKind.SPLIT, card_id, now=now, scheme_id=s, value=c, validity=validity
        )
        for s, c in granted
    )
    return ReissueAuthorisations(station, chips)


def authorisations_for(
    session: Session, terminal_id: str, *, now: int, card_ids: Sequence[str] = ()
) -> list[IssuedAuthorisation]:
    """Unexpired authorisations for the asking terminal: the cards it names, and every card of its
    facility's district (a terminal without a facility sees only the cards it names)."""
    if len(card_ids) > MAX_LISTED:
        raise MalformedError("too_many_cards", f"at most {MAX_LISTED} cards per request")
    district = session.execute(
        select(Facility.district)
        .join(Terminal, Terminal.facility_id == Facility.id)
        .where(Terminal.id == terminal_id)
    ).scalar_one_or_none()
    query = select(AuthorisationRow).where(AuthorisationRow.not_after >= now)
    wanted = AuthorisationRow.card_id.in_(list(card_ids))
    query = query.where(wanted | (AuthorisationRow.district == district) if district else wanted)
    rows = session.execute(query.order_by(AuthorisationRow.issued_at, AuthorisationRow.id)).scalars()
    return [
        IssuedAuthorisation(
            r.id,
            r.kind,
            Audience(r.audience),
            r.card_id,
            r.issued_at,
            r.not_after,
            bytes(r.wire),
            tuple(r.marks),
        )
        for r in rows
    ]


__all__ = [
    "Audience", "CardKind", "IssuedAuthorisation", "ReissueAuthorisations", "StationKind",
    "authorisations_for", "held_counter", "id_hex", "issue_card_authorisation", "issue_renewal",
    "issue_split", "issue_station_authorisation",
]  # fmt: skip
