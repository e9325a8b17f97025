"""Open findings and staff review: what holds a claim or an authorisation, and how staff clear it.

A flag is *open* until staff resolve it (``resolve_flag``: who cleared it and why). Flags that describe a
state later uploads may cure (gaps, FKO count mismatches, ...) are recomputed by every reconciliation run,
so resolving one of those lasts until the next run finds it again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from cardsvc.central.errors import ConflictError, NotFoundError
from cardsvc.central.models import FlagRow, TransactionRow


@dataclass(frozen=True, slots=True)
class OpenFlag:
    """A finding as the screens and the settlement show it."""

    id: int
    kind: str
    card_id: str | None
    facility_id: int | None
    terminal_id: str | None
    details: dict[str, Any]
    created_at: int

    def reason(self) -> str:
        """One line naming what was found and where (for held claims and refusals)."""
        where = [
            f"card {self.card_id}" if self.card_id else "",
            f"facility {self.facility_id}" if self.facility_id is not None else "",
            f"terminal {self.terminal_id}" if self.terminal_id else "",
        ]
        counter = self.details.get("counter")
        extra = f" counter {counter}" if counter is not None else ""
        return f"{self.kind} (flag {self.id}: {', '.join(w for w in where if w)}{extra})"

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "card_id": self.card_id,
            "facility_id": self.facility_id,
            "terminal_id": self.terminal_id,
            "details": self.details,
            "created_at": self.created_at,
        }


def _of(row: FlagRow) -> OpenFlag:
    return OpenFlag(row.id, row.kind, row.card_id, row.facility_id, row.terminal_id, dict(row.details),
                    row.created_at)  # fmt: skip


def open_flags(
    session: Session,
    *,
    card_ids: Sequence[str] | None = None,
    facility_id: int | None = None,
    kinds: Sequence[str] | None = None,
    terminal_ids: Sequence[str] | None = None,
) -> list[OpenFlag]:
    """Unresolved flags, oldest first; optionally only those on some cards, touching a facility (naming
    it, or on a card used there), of some kinds, or naming some terminals (filters combine with AND)."""
    query = select(FlagRow).where(FlagRow.resolved_at.is_(None)).order_by(FlagRow.id)
    if card_ids is not None:
        query = query.where(FlagRow.card_id.in_(card_ids))
    if facility_id is not None:
        used_here = select(TransactionRow.card_id).where(TransactionRow.facility_id == facility_id).distinct()
        query = query.where(or_(FlagRow.facility_id == facility_id, FlagRow.card_id.in_(used_here)))
    if kinds is not None:
        query = query.where(FlagRow.kind.in_(kinds))
    if terminal_ids is not None:
        query = query.where(FlagRow.terminal_id.in_(terminal_ids))
    return [_of(r) for r in session.execute(query).scalars()]


def resolve_flag(session: Session, flag_id: int, *, by: str, note: str, now: int) -> OpenFlag:
    """Staff review: clear a finding (recorded with who and why); it then holds nothing."""
    if not note.strip() or not by.strip():
        raise ConflictError("resolution_incomplete", "a resolution needs the reviewer and a note")
    row = session.get(FlagRow, flag_id)
    if row is None:
        raise NotFoundError("unknown_flag", f"flag {flag_id} does not exist")
    if row.resolved_at is not None:
        raise ConflictError("already_resolved", f"flag {flag_id} was resolved at {row.resolved_at}")
    row.resolved_at = now
    row.resolution = f"{by}: {note}"[:200]
    session.commit()
    return _of(row)
