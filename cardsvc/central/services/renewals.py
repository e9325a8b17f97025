"""The card register follows renewals: a renewal central authorised and the card committed moves the card's
policy period and cover in ``cards``; the periods before it stay in ``card_periods``.

Central learns that a renewal was committed from the card's own RENEWAL records (the station uploads them
in a transactions batch; COMMIT RENEWAL writes one per scheme, ``reference`` = the RENEW_POLICY serial). A
renewal is applied when the card's ledger holds a RENEWAL record whose reference is the serial of a
RENEW_POLICY authorisation central issued FOR THAT CARD (``authorisations``, audience card): the period
and covers are the authorisation's, not the record's. Applied once per (card, serial) (UNIQUE in
``card_periods``): the same records ingested again, or a second reconciliation, change nothing. The current
period is the renewal whose first RENEWAL record is latest on the card's ledger (a card only renews forward).

A RENEWAL record with no card authorisation of that serial (RENEW_POLICY or RENEWAL) does not move the
register; reconciliation flags it (``unauthorised_renewal``, :func:`unmatched_renewals`). A split's lowering
of the original card is a SPLIT record (its own type, never a new year): a RENEWAL record answering a SPLIT
authorisation is the old encoding and is flagged like any other unauthorised renewal. Cards whose
camp has not arrived are applied by the next reconciliation once it has.

Called after ingest of a transactions batch holding RENEWAL records (services/ingest.py) and at the start
of every reconciliation (services/reconcile.py).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime

from sqlalchemy import func, select, tuple_
from sqlalchemy.orm import Session

from cardsvc.beneficiary.protocol import Authorisation
from cardsvc.central.models import AuthorisationRow, Card, CardPeriod, TransactionRow
from cardsvc.central.services.chunks import in_chunks
from cardsvc.formats.errors import FormatError
from cardsvc.formats.transaction import RecordType

log = logging.getLogger(__name__)  # card ids, serials and dates only

DAY = 86_400
#: card authorisations a RENEWAL record may answer (reference = serial): renewal of the policy year, a new
#: balance (a split's lowering is a SPLIT record, not a RENEWAL)
RENEWAL_KINDS = ("renew_policy", "renewal")
#: the card authorisation a SPLIT record answers (reference = serial)
SPLIT_KINDS = ("split",)


@dataclass(frozen=True, slots=True, order=True)
class RenewalSeen:
    """The first RENEWAL record of one (card, reference) on central's ledger."""

    card_id: str
    reference: int
    counter: int
    time: int


@dataclass(frozen=True, slots=True)
class AppliedRenewal:
    """A renewal that moved the register: card, serial, the new period (inclusive, unix) and cover."""

    card_id: str
    serial: int
    policy_start: int
    policy_end: int
    cover_paise: int


@dataclass(frozen=True, slots=True)
class PeriodWindow:
    """A period reconciliation uses: the camp's (serial 0) or a renewal's, from its RENEWAL counter on."""

    serial: int
    start: int
    end: int  # inclusive (23:59:59 of the last day)
    counter: int | None


def day_start(d: date) -> int:
    return int(datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp())


def renewals_seen(
    session: Session, card_ids: Sequence[str] | None = None, record_type: RecordType = RecordType.RENEWAL
) -> list[RenewalSeen]:
    """Every (card, reference) of the stored RENEWAL (or ``record_type``) records with its first counter and
    time."""
    query = (
        select(TransactionRow.card_id, TransactionRow.reference, func.min(TransactionRow.counter),
               func.min(TransactionRow.time))
        .where(TransactionRow.record_type == int(record_type))
        .group_by(TransactionRow.card_id, TransactionRow.reference)
    )  # fmt: skip
    if card_ids is None:
        rows: Iterable[tuple[str, int, int, int]] = session.execute(query)
    else:
        rows = [
            row
            for chunk in in_chunks(sorted(set(card_ids)))
            for row in session.execute(query.where(TransactionRow.card_id.in_(chunk)))
        ]
    return sorted(RenewalSeen(*row) for row in rows)


def _authorisations(
    session: Session, seen: Sequence[RenewalSeen], kinds: Sequence[str] = RENEWAL_KINDS
) -> dict[tuple[str, int], AuthorisationRow]:
    """Central's card authorisations (of the ``kinds`` a record answers: a RENEWAL's by default) by
    (card, serial)."""
    out: dict[tuple[str, int], AuthorisationRow] = {}
    pairs = sorted({(s.card_id, s.reference) for s in seen})
    for chunk in in_chunks(pairs):
        query = select(AuthorisationRow).where(
            AuthorisationRow.audience == "card",
            AuthorisationRow.kind.in_(kinds),
            tuple_(AuthorisationRow.card_id, AuthorisationRow.serial).in_(chunk),
        )
        out.update(((r.card_id, r.serial), r) for r in session.execute(query).scalars())
    return out


def unmatched_renewals(session: Session, seen: Sequence[RenewalSeen] | None = None) -> list[RenewalSeen]:
    """RENEWAL records answering no card authorisation central issued for the card (by serial)."""
    seen = renewals_seen(session) if seen is None else seen
    known = _authorisations(session, seen)
    return [s for s in seen if (s.card_id, s.reference) not in known]


def unmatched_splits(session: Session) -> list[RenewalSeen]:
    """SPLIT records answering no SPLIT authorisation central issued for the card (by serial): a cover
    lowering central never asked for (a card writes SPLIT only under central's signature, so this is a
    forged or foreign record, or an authorisation lost from central's store)."""
    seen = renewals_seen(session, record_type=RecordType.SPLIT)
    known = _authorisations(session, seen, SPLIT_KINDS)
    return [s for s in seen if (s.card_id, s.reference) not in known]


def apply_renewals(session: Session, now: int, card_ids: Sequence[str] | None = None) -> list[AppliedRenewal]:
    """Move the register of every card (or of ``card_ids``) with a committed, authorised renewal not yet
    applied. Flushes; the caller commits. Returns the renewals applied now (none on a second call)."""
    seen = renewals_seen(session, card_ids)
    if not seen:
        return []
    applied_pairs = _applied(session, sorted({s.card_id for s in seen}))
    fresh = [s for s in seen if (s.card_id, s.reference) not in applied_pairs]
    if not fresh:
        return []
    auths = _authorisations(session, fresh)
    by_card: dict[str, list[tuple[RenewalSeen, AuthorisationRow]]] = {}
    for s in fresh:
        auth = auths.get((s.card_id, s.reference))
        if auth is not None and auth.kind == "renew_policy":
            by_card.setdefault(s.card_id, []).append((s, auth))
    applied: list[AppliedRenewal] = []
    for card_id, renewals in sorted(by_card.items()):
        locked = select(Card).where(Card.card_id == card_id).with_for_update()
        card = session.execute(locked).scalar_one_or_none()
        if card is None:
            continue  # camp not arrived: the next reconciliation applies it
        applied.extend(_apply(session, card, renewals, now))
    session.flush()
    return applied


def _apply(
    session: Session, card: Card, renewals: list[tuple[RenewalSeen, AuthorisationRow]], now: int
) -> list[AppliedRenewal]:
    """Keep the camp's period, add each renewal's, and set the card row to the current one."""
    applied: list[AppliedRenewal] = []
    history = {p.serial: p for p in session.execute(
        select(CardPeriod).where(CardPeriod.card_id == card.card_id)).scalars()}  # fmt: skip
    if 0 not in history:  # the camp's period, kept before the register first moves
        history[0] = CardPeriod(
            card_id=card.card_id, serial=0, policy_start=card.policy_start, policy_end=card.policy_end,
            scheme_id=card.scheme_id, cover_paise=card.cover_paise, schemes=card.schemes, recorded_at=now,
        )  # fmt: skip
        session.add(history[0])
    for seen, auth in renewals:
        if seen.reference in history:
            continue
        try:
            parsed = Authorisation.parse(bytes(auth.wire))
        except FormatError:
            log.warning("card %s: stored renew_policy authorisation %s does not parse", card.card_id, auth.id)
            continue
        if parsed.policy is None or not parsed.covers:
            continue
        first, last = parsed.policy
        covers = dict(parsed.covers)
        scheme = card.scheme_id if card.scheme_id in covers else min(covers)
        period = CardPeriod(
            card_id=card.card_id, serial=seen.reference, policy_start=day_start(first),
            policy_end=day_start(last) + DAY - 1, scheme_id=scheme, cover_paise=covers[scheme],
            schemes=[{"scheme_id": s, "cover_paise": c} for s, c in sorted(covers.items())],
            authorisation_id=auth.id, counter=seen.counter, committed_at=seen.time, recorded_at=now,
        )  # fmt: skip
        session.add(period)
        history[seen.reference] = period
        log.info("card %s renewed (serial %d): policy %s to %s", card.card_id, seen.reference, first, last)
        applied.append(AppliedRenewal(card.card_id, seen.reference, period.policy_start, period.policy_end,
                                      period.cover_paise))  # fmt: skip
    current = max(history.values(), key=lambda p: (p.counter or 0, p.serial))
    card.policy_start, card.policy_end = current.policy_start, current.policy_end
    card.scheme_id, card.cover_paise, card.schemes = current.scheme_id, current.cover_paise, current.schemes
    return applied


def _applied(session: Session, card_ids: Sequence[str]) -> set[tuple[str, int]]:
    out: set[tuple[str, int]] = set()
    for chunk in in_chunks(card_ids):
        query = select(CardPeriod.card_id, CardPeriod.serial).where(CardPeriod.card_id.in_(chunk))
        out.update((c, s) for c, s in session.execute(query))
    return out


def period_windows(session: Session) -> dict[str, list[PeriodWindow]]:
    """Every renewed card's periods (the camp's first, then by counter) as reconciliation uses them."""
    out: dict[str, list[PeriodWindow]] = {}
    query = select(CardPeriod.card_id, CardPeriod.serial, CardPeriod.policy_start, CardPeriod.policy_end,
                   CardPeriod.counter).order_by(CardPeriod.card_id, CardPeriod.serial)  # fmt: skip
    for card_id, serial, start, end, counter in session.execute(query):
        out.setdefault(card_id, []).append(PeriodWindow(serial, start, end, counter))
    return out


def camp_period(session: Session, card_ids: Sequence[str]) -> dict[str, CardPeriod]:
    """The camp's period (serial 0) of renewed cards: their scheme and cover before the first renewal."""
    out: dict[str, CardPeriod] = {}
    for chunk in in_chunks(sorted(card_ids)):
        query = select(CardPeriod).where(CardPeriod.serial == 0, CardPeriod.card_id.in_(chunk))
        out.update((p.card_id, p) for p in session.execute(query).scalars())
    return out
