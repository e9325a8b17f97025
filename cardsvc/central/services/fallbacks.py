"""Fallbacks and supervised overrides uploaded by terminals (``fallbacks`` batches, docs/formats.md).

A POS accepts a member after a fingerprint mismatch by another finger, another member of the household, or
a supervisor's override with a reason; each is journalled at the terminal and uploaded in its own signed
batch kind. Central stores each once (``content_hash``: the terminal and the item's canonical JSON, so the
same fallback in two batches is one row) and makes them visible where money is decided:

- settlement lists a claim whose verification was a supervised override (at the discharge, or at the
  admission it closes) with who overrode and why (:func:`override_verifications`);
- reconciliation flags an operator whose override rate is unusual against the other operators
  (:func:`override_rate_flags`, ``override_rate``; the thresholds are :class:`OverridePolicy`). The flag
  names the operator and the facility in its details but holds no claim: staff review it.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cardsvc.central.models import FallbackRow, Terminal, TransactionRow
from cardsvc.central.services.chunks import in_chunks
from cardsvc.formats.batch import FallbackItem, FallbackKind, canonical_json, id_hex

CHUNK: Final = 1000


def content_hash(terminal_id: str, item: FallbackItem) -> str:
    """The idempotency key of one uploaded fallback: its terminal and its canonical JSON."""
    return hashlib.sha256(terminal_id.encode("ascii") + b":" + canonical_json(item.to_json())).hexdigest()


def fallback_rows(
    session: Session, items: Sequence[FallbackItem], terminal_id: str, batch_id: int
) -> list[dict[str, Any]]:
    """Insert rows for ``items`` of a batch from ``terminal_id`` (the facility is the terminal's)."""
    facility = session.execute(select(Terminal.facility_id).where(Terminal.id == terminal_id)).scalar()
    rows: dict[str, dict[str, Any]] = {}
    for item in items:
        key = content_hash(terminal_id, item)
        rows[key] = {
            "content_hash": key,
            "batch_id": batch_id,
            "terminal_id": terminal_id,
            "facility_id": facility,
            "event": item.event,
            "at": item.at,
            "kind": item.kind.value,
            "card_id": id_hex(item.card_id),
            "member": item.member,
            "operator_id": id_hex(item.operator_id),
            "supervisor_id": None if item.supervisor_id is None else id_hex(item.supervisor_id),
            "reason": item.reason or None,
            "note": item.note or None,
            "records": list(item.records),
        }
    return [rows[k] for k in sorted(rows)]


def store_fallbacks(session: Session, items: Sequence[FallbackItem], terminal_id: str, batch_id: int) -> int:
    """Store the fallbacks not already held (ON CONFLICT DO NOTHING on the content hash); returns how many
    are new. Runs inside the caller's transaction (ingest commits)."""
    from cardsvc.central.services.ingest import insert_ignore

    rows = fallback_rows(session, items, terminal_id, batch_id)
    insert_ignore(session, FallbackRow.__table__, rows, ["content_hash"])
    session.flush()
    count = select(func.count()).select_from(FallbackRow).where(FallbackRow.batch_id == batch_id)
    return int(session.execute(count).scalar_one())


@dataclass(frozen=True, slots=True)
class Override:
    """A supervised override as settlement shows it beside a claim."""

    operator_id: str
    supervisor_id: str
    reason: str
    note: str
    at: int

    def describe(self) -> str:
        return (
            f"supervised override ({self.reason}) by supervisor {self.supervisor_id} for operator "
            f"{self.operator_id} at {self.at}: {self.note}"
        )


def override_verifications(session: Session, card_ids: Sequence[str]) -> dict[tuple[str, int], Override]:
    """(card id, record counter) -> the supervised override the record was made under, for these cards."""
    out: dict[tuple[str, int], Override] = {}
    ids = sorted(set(card_ids))
    for chunk in in_chunks(ids, CHUNK):
        query = select(FallbackRow).where(
            FallbackRow.card_id.in_(chunk),
            FallbackRow.kind == FallbackKind.OVERRIDE.value,
        )
        for row in session.execute(query.order_by(FallbackRow.at, FallbackRow.id)).scalars():
            override = Override(
                row.operator_id, str(row.supervisor_id), str(row.reason), str(row.note), row.at
            )
            for counter in row.records:
                out[(row.card_id, int(counter))] = override
    return out


@dataclass(frozen=True, slots=True)
class OverridePolicy:
    """An operator is flagged with at least ``min_overrides`` overrides, an override rate (overrides per
    record the operator made, or per fallback of any kind when those are more) of at least ``min_rate``,
    and at least ``peer_factor`` times the pooled rate of every other operator."""

    min_overrides: int = 5
    min_rate: float = 0.2
    peer_factor: float = 3.0


def override_rate_flags(session: Session, policy: OverridePolicy | None = None) -> list[Any]:
    """``override_rate`` findings (reconcile.Flag), one per operator whose override rate is unusual."""
    from cardsvc.central.services.reconcile import Flag, FlagKind

    policy = policy or OverridePolicy()
    overrides: Counter[str] = Counter()
    fallbacks: Counter[str] = Counter()
    facilities: dict[str, Counter[int]] = {}
    query = select(FallbackRow.operator_id, FallbackRow.kind, FallbackRow.facility_id)
    for operator_id, kind, facility_id in session.execute(query):
        fallbacks[operator_id] += 1
        if kind != FallbackKind.OVERRIDE.value:
            continue
        overrides[operator_id] += 1
        if facility_id is not None:
            facilities.setdefault(operator_id, Counter())[int(facility_id)] += 1
    if not overrides:
        return []
    made = Counter(
        dict(
            session.execute(
                select(TransactionRow.operator_id, func.count()).group_by(TransactionRow.operator_id)
            ).all()
        )
    )
    operators = set(overrides) | set(made)
    base = {o: max(made[o], fallbacks[o]) for o in operators}
    total_overrides, total_base = sum(overrides.values()), sum(base.values())
    flags: list[Any] = []
    for operator_id in sorted(overrides):
        count, verifications = overrides[operator_id], base[operator_id]
        rate = count / verifications
        peers_base = total_base - verifications
        peer_rate = (total_overrides - count) / peers_base if peers_base else 0.0
        if count < policy.min_overrides or rate < policy.min_rate or rate < policy.peer_factor * peer_rate:
            continue
        where = facilities.get(operator_id, Counter()).most_common(1)
        flags.append(
            Flag(
                FlagKind.OVERRIDE_RATE,
                {
                    "operator_id": operator_id,
                    "facility_id": where[0][0] if where else None,
                    "overrides": count,
                    "records": made[operator_id],
                    "rate": round(rate, 3),
                    "peer_rate": round(peer_rate, 3),
                },
            )
        )
    return flags


__all__ = [
    "Override", "OverridePolicy", "content_hash", "fallback_rows", "override_rate_flags",
    "override_verifications", "store_fallbacks",
]  # fmt: skip
