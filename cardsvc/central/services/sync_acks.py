"""Sync acknowledgements central issues by itself after a transaction batch is ingested.

A card counts its debits since the last acknowledged sync and refuses more once its offline limits are
reached (docs/card-layout.md). Only central can lift them: a SYNC_ACK card authorisation (services/
authorise.py, one home of the format) saying "central holds every record of this card up to counter N".
After every stored ``transactions`` batch, :func:`acknowledge_batch` issues one for each card of the batch
whose ledger at central is contiguous from counter 1 up to N (no gap) when N is above the counter of the
card's last SYNC_ACK: one per card per new contiguous high-water mark, so uploading the same batch again
issues nothing. ``GET /api/v1/authorisations`` serves it; the POS presents it at the card's next insertion.

Never acknowledged (the card keeps its limits, the reason is returned in :class:`AckReport.skipped`):

- a card central does not know (its camp has not arrived) or that is revoked;
- a card with two different records at one counter (a clone or a replay), or an open ``duplicate_counter``
  flag: staff review it first;
- a card under duplicate-enrolment review (authorise.py refuses every authorisation but SUPERSEDE);
- counters past a gap: N stops before the first missing counter (0: nothing to acknowledge).
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cardsvc.beneficiary.protocol import Authorisation
from cardsvc.central.errors import ConflictError, NotFoundError
from cardsvc.central.models import AuthorisationRow, Card, TransactionRow
from cardsvc.central.services.authorise import (
    Audience,
    CardKind,
    IssuedAuthorisation,
    issue_card_authorisation,
)
from cardsvc.central.services.chunks import in_chunks
from cardsvc.central.services.flags import open_flags
from cardsvc.central.services.publish import CentralKey
from cardsvc.central.services.reconcile import FlagKind
from cardsvc.formats.errors import FormatError
from cardsvc.formats.transaction import unpack_fields

log = logging.getLogger(__name__)  # card ids and counters only

CHUNK: Final = 500
#: Open findings that stop central acknowledging a card's records (a clone or replay under review).
BLOCKING_FLAGS: Final = (FlagKind.DUPLICATE_COUNTER, FlagKind.DUPLICATE_ENROLMENT)


@dataclass
class AckReport:
    """What one pass issued, and why the other cards were not acknowledged (card id -> reason)."""

    issued: list[IssuedAuthorisation] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    current: list[str] = field(default_factory=list)  # already acknowledged up to their high-water mark


@dataclass(frozen=True, slots=True)
class _Ledger:
    held: int  # contiguous from 1
    duplicated: int | None  # the first counter with two different records, if any


def card_ids_of_batch(wire: bytes) -> list[str]:
    """The card ids of a stored transactions batch's records (sorted, distinct), read from its wire bytes.

    The batch was parsed and verified by ingest already; this only picks each record's card id (bytes 2-9
    of the record), without building an item per record.
    """
    import base64

    try:
        items = json.loads(wire)["batch"]["items"]
        ids = {f"{unpack_fields(base64.b64decode(item['record']))[2]:016x}" for item in items}
    except (ValueError, KeyError, TypeError, FormatError) as exc:
        raise ValueError(f"not a stored transactions batch: {exc}") from None
    return sorted(ids)


def _ledgers(session: Session, card_ids: Sequence[str]) -> dict[str, _Ledger]:
    versions: defaultdict[str, dict[int, int]] = defaultdict(dict)
    query = (
        select(TransactionRow.card_id, TransactionRow.counter, func.count(TransactionRow.content_hash))
        .where(TransactionRow.card_id.in_(list(card_ids)))
        .group_by(TransactionRow.card_id, TransactionRow.counter)
    )
    for card_id, counter, count in session.execute(query):
        versions[card_id][int(counter)] = int(count)
    out: dict[str, _Ledger] = {}
    for card_id, counts in versions.items():
        held = 0
        while held + 1 in counts:
            held += 1
        duplicated = min((c for c, n in counts.items() if n > 1), default=None)
        out[card_id] = _Ledger(held, duplicated)
    return out


def _acknowledged(session: Session, card_ids: Sequence[str]) -> dict[str, int]:
    """The highest counter each card's earlier SYNC_ACKs acknowledged (0: none)."""
    out: dict[str, int] = {}
    query = select(AuthorisationRow.card_id, AuthorisationRow.wire).where(
        AuthorisationRow.card_id.in_(list(card_ids)),
        AuthorisationRow.kind == CardKind.SYNC_ACK.value,
        AuthorisationRow.audience == Audience.CARD.value,
    )
    for card_id, wire in session.execute(query):
        try:
            value = Authorisation.parse(bytes(wire)).value
        except FormatError:  # never stored by this service; ignore rather than block the card
            continue
        out[card_id] = max(out.get(card_id, 0), value)
    return out


def issue_sync_acks(session: Session, key: CentralKey, card_ids: Iterable[str], *, now: int) -> AckReport:
    """Acknowledge each card's contiguous ledger when it grew since its last SYNC_ACK (idempotent)."""
    report = AckReport()
    wanted = sorted(set(card_ids))
    for chunk in in_chunks(wanted, CHUNK):
        ledgers = _ledgers(session, chunk)
        acked = _acknowledged(session, chunk)
        known = dict(
            session.execute(select(Card.card_id, Card.revoked_at).where(Card.card_id.in_(chunk))).all()
        )
        flagged: dict[str, str] = {}
        kinds = [k.value for k in BLOCKING_FLAGS]
        for flag in open_flags(session, card_ids=chunk, kinds=kinds):
            flagged.setdefault(str(flag.card_id), flag.reason())
        session.rollback()  # end the read transaction before the writes below
        for card_id in chunk:
            why = _why_not(card_id, ledgers.get(card_id), acked.get(card_id, 0), known, flagged)
            if why == "":
                report.current.append(card_id)
                continue
            if why is not None:
                report.skipped[card_id] = why
                continue
            try:
                issued = issue_card_authorisation(session, key, CardKind.SYNC_ACK, card_id, now=now)
            except (ConflictError, NotFoundError) as exc:
                session.rollback()
                report.skipped[card_id] = exc.reason
                continue
            except IntegrityError:  # a concurrent issue took this serial: that one stands
                session.rollback()
                report.skipped[card_id] = "a concurrent authorisation for this card was issued first"
                continue
            report.issued.append(issued)
    if report.issued:
        log.info("sync acknowledgements issued for %d cards (%d skipped)", len(report.issued),
                 len(report.skipped))  # fmt: skip
    return report


def _why_not(
    card_id: str, ledger: _Ledger | None, acked: int, known: dict[str, int | None], flagged: dict[str, str]
) -> str | None:
    """None: acknowledge now; "": already acknowledged up to the high-water mark; else why not."""
    if card_id not in known:
        return "card not registered (its camp has not arrived)"
    if known[card_id] is not None:
        return f"card revoked at {known[card_id]}"
    if ledger is None or ledger.held == 0:
        return "no contiguous records from counter 1"
    if ledger.duplicated is not None:
        return f"two different records at counter {ledger.duplicated} (clone or replay): staff review first"
    if card_id in flagged:
        return f"open finding: {flagged[card_id]}"
    if ledger.held <= acked:
        return ""
    return None


def acknowledge_batch(session: Session, key: CentralKey, wire: bytes, *, now: int) -> AckReport:
    """After a ``transactions`` batch is stored: acknowledge the cards whose records it carried."""
    return issue_sync_acks(session, key, card_ids_of_batch(wire), now=now)


def acknowledge_all(session: Session, key: CentralKey, *, now: int) -> AckReport:
    """Every card with records (a central job, e.g. after staff resolved findings that held acks)."""
    cards = session.execute(select(TransactionRow.card_id).distinct().order_by(TransactionRow.card_id))
    ids = list(cards.scalars())
    session.rollback()
    return issue_sync_acks(session, key, ids, now=now)


__all__ = [
    "BLOCKING_FLAGS", "AckReport", "acknowledge_all", "acknowledge_batch", "card_ids_of_batch",
    "issue_sync_acks",
]  # fmt: skip
