"""Settlement: per facility and period, the claims payable and the claims held with their reasons.

A claim is a SETTLE record (discharge: the final amount the card released to the hospital, in paise) made at
the facility within the period ``[start, end)`` (record time, unix seconds). It is payable when its record
was verified with the card's REGISTERED key and nothing open holds it; otherwise it is held, with every
reason:

- any open flag on the card (clone, gap, balance, chain, policy period, duplicate enrolment, ...);
- any open flag about the record's terminal (``revoked_terminal``, or a terminal finding with no card): every
  claim made through that terminal is held until staff review it; any open flag naming the facility
  itself with no card (package-mix outlier, ...);
- the terminal or the operator revoked at or before the record's time;
- the record verified only with a key its batch presented, neither registered by the card's camp nor
  certified by a card chain to the root;
- the admission (BLOCK) it closes has not been uploaded.

A run is recorded once per facility and period (UNIQUE): running it again returns the recorded run, so a
facility is never paid twice for one period. Reconciliation runs first, so the flags are current.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cardsvc.central.errors import MalformedError, NotFoundError
from cardsvc.central.models import Facility, Operator, SettlementRun, Terminal, TransactionRow
from cardsvc.central.services.chunks import in_chunks
from cardsvc.central.services.fallbacks import override_verifications
from cardsvc.central.services.flags import OpenFlag, open_flags
from cardsvc.central.services.ingest import KeySource
from cardsvc.central.services.reconcile import FlagKind, reconcile
from cardsvc.formats.transaction import RecordType

CHUNK = 1000
CSV_COLUMNS = (
    "facility_id", "period_start", "period_end", "card_id", "counter", "time", "package", "amount_paise",
    "status", "reasons",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Claim:
    card_id: str
    counter: int
    time: int
    package: int | None
    amount_paise: int
    reasons: tuple[str, ...]
    #: how the member was verified when it was not by fingerprint (a supervised override at the discharge or
    #: at the admission it closes: services/fallbacks.py); listed, it holds nothing by itself
    verification: str | None = None

    @property
    def payable(self) -> bool:
        return not self.reasons

    def to_json(self) -> dict[str, Any]:
        verification = {} if self.verification is None else {"verification": self.verification}
        return {
            "card_id": self.card_id, "counter": self.counter, "time": self.time, "package": self.package,
            "amount_paise": self.amount_paise, "status": "payable" if self.payable else "held",
            "reasons": list(self.reasons), **verification,
        }  # fmt: skip


@dataclass(frozen=True, slots=True)
class Settlement:
    """One facility's settlement for one period (recorded or a preview)."""

    facility_id: int
    period_start: int
    period_end: int
    claims: tuple[Claim, ...]
    run_id: int | None = None
    created_at: int | None = None

    @property
    def payable(self) -> list[Claim]:
        return [c for c in self.claims if c.payable]

    @property
    def held(self) -> list[Claim]:
        return [c for c in self.claims if not c.payable]

    @property
    def payable_paise(self) -> int:
        return sum(c.amount_paise for c in self.payable)

    @property
    def held_paise(self) -> int:
        return sum(c.amount_paise for c in self.held)

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id, "facility_id": self.facility_id, "period_start": self.period_start,
            "period_end": self.period_end, "created_at": self.created_at,
            "payable_count": len(self.payable), "payable_paise": self.payable_paise,
            "held_count": len(self.held), "held_paise": self.held_paise,
            "claims": [c.to_json() for c in self.claims],
        }  # fmt: skip

    def to_csv(self) -> str:
        """One line per claim (amounts in paise); held claims list their reasons separated by ``; ``."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        for c in self.claims:
            writer.writerow([
                self.facility_id, self.period_start, self.period_end, c.card_id, c.counter, c.time,
                "" if c.package is None else c.package, c.amount_paise, "payable" if c.payable else "held",
                "; ".join(c.reasons),
            ])  # fmt: skip
        return out.getvalue()


def _check_period(facility_id: int, start: int, end: int) -> None:
    if end <= start:
        raise MalformedError("bad_period", f"period end {end} is not after its start {start}")
    if facility_id < 0:
        raise MalformedError("bad_facility", f"facility id {facility_id} is negative")


def compute_settlement(session: Session, facility_id: int, start: int, end: int) -> Settlement:
    """The claims of a facility for ``[start, end)`` and why any is held (nothing recorded)."""
    _check_period(facility_id, start, end)
    if session.get(Facility, facility_id) is None:
        raise NotFoundError("unknown_facility", f"facility {facility_id} is not registered")
    settles = (
        session.execute(
            select(TransactionRow)
            .where(
                TransactionRow.facility_id == facility_id,
                TransactionRow.record_type == RecordType.SETTLE,
                TransactionRow.time >= start,
                TransactionRow.time < end,
            )
            .order_by(TransactionRow.time, TransactionRow.card_id, TransactionRow.counter)
        )
        .scalars()
        .all()
    )
    card_ids = sorted({r.card_id for r in settles})
    terminal_ids = sorted({r.terminal_id for r in settles})
    by_card: defaultdict[str, list[OpenFlag]] = defaultdict(list)
    terminal_flags: defaultdict[str, list[OpenFlag]] = defaultdict(list)
    for card_chunk in in_chunks(card_ids, CHUNK):
        for flag in open_flags(session, card_ids=card_chunk):
            by_card[str(flag.card_id)].append(flag)
    for terminal_chunk in in_chunks(terminal_ids, CHUNK):
        for flag in open_flags(session, terminal_ids=terminal_chunk):
            if flag.kind == FlagKind.REVOKED_TERMINAL or flag.card_id is None:  # about the terminal itself
                terminal_flags[str(flag.terminal_id)].append(flag)  # repeats are dropped per claim below
    facility_flags = [
        f for f in open_flags(session, facility_id=facility_id, card_ids=None) if f.card_id is None
    ]
    blocks: dict[tuple[str, int], int] = {}
    if card_ids:
        for card_id, counter, reference in session.execute(
            select(TransactionRow.card_id, TransactionRow.counter, TransactionRow.reference).where(
                TransactionRow.card_id.in_(card_ids), TransactionRow.record_type == RecordType.BLOCK
            )
        ):
            blocks[(card_id, counter)] = reference
    terminals = dict(session.execute(select(Terminal.id, Terminal.revoked_at)).all())
    operators = dict(session.execute(select(Operator.id, Operator.revoked_at)).all())
    overrides = override_verifications(session, card_ids)
    claims = []
    for r in settles:
        reasons = [f.reason() for f in by_card.get(r.card_id, [])]
        reasons += [f.reason() for f in terminal_flags.get(r.terminal_id, [])]
        reasons += [f.reason() for f in facility_flags]
        t_revoked, o_revoked = terminals.get(r.terminal_id), operators.get(r.operator_id)
        if t_revoked is not None and r.time >= t_revoked:
            reasons.append(f"revoked_terminal (terminal {r.terminal_id} revoked at {t_revoked})")
        if o_revoked is not None and r.time >= o_revoked:
            reasons.append(f"revoked_operator (operator {r.operator_id} revoked at {o_revoked})")
        if r.key_source not in (KeySource.REGISTERED, KeySource.CERTIFIED):
            reasons.append(f"unregistered_card (card {r.card_id}: its camp has not arrived)")
        package = blocks.get((r.card_id, r.reference))
        if package is None:
            reasons.append(f"block_not_uploaded (card {r.card_id} admission counter {r.reference})")
        override = overrides.get((r.card_id, r.counter)) or overrides.get((r.card_id, r.reference))
        claims.append(Claim(r.card_id, r.counter, r.time, package, r.amount, tuple(dict.fromkeys(reasons)),
                            None if override is None else override.describe()))  # fmt: skip
    return Settlement(facility_id, start, end, tuple(claims))


def _of(run: SettlementRun) -> Settlement:
    claims = tuple(
        Claim(
            c["card_id"],
            c["counter"],
            c["time"],
            c["package"],
            c["amount_paise"],
            tuple(c["reasons"]),
            c.get("verification"),
        )
        for c in run.claims
    )
    return Settlement(run.facility_id, run.period_start, run.period_end, claims, run.id, run.created_at)


def find_settlement(session: Session, facility_id: int, start: int, end: int) -> Settlement | None:
    run = session.execute(
        select(SettlementRun).where(
            SettlementRun.facility_id == facility_id,
            SettlementRun.period_start == start,
            SettlementRun.period_end == end,
        )
    ).scalar_one_or_none()
    return None if run is None else _of(run)


def settlement_runs(session: Session, facility_id: int | None = None) -> list[Settlement]:
    """Recorded runs, newest period first (for the screens)."""
    query = select(SettlementRun).order_by(SettlementRun.period_start.desc(), SettlementRun.facility_id)
    if facility_id is not None:
        query = query.where(SettlementRun.facility_id == facility_id)
    return [_of(r) for r in session.execute(query).scalars()]


def run_settlement(
    session: Session, facility_id: int, start: int, end: int, *, now: int, reconcile_first: bool = True
) -> tuple[Settlement, bool]:
    """Record the settlement of a facility for a period, once. Returns (settlement, newly_recorded)."""
    _check_period(facility_id, start, end)
    held = find_settlement(session, facility_id, start, end)
    if held is not None:
        return held, False
    if reconcile_first:
        reconcile(session, now)
    settlement = compute_settlement(session, facility_id, start, end)
    run = SettlementRun(
        facility_id=facility_id, period_start=start, period_end=end, created_at=now,
        payable_count=len(settlement.payable), payable_paise=settlement.payable_paise,
        held_count=len(settlement.held), held_paise=settlement.held_paise,
        claims=[c.to_json() for c in settlement.claims],
    )  # fmt: skip
    session.add(run)
    try:
        session.commit()
    except IntegrityError:  # a concurrent run of the same facility and period won
        session.rollback()
        held = find_settlement(session, facility_id, start, end)
        assert held is not None
        return held, False
    return _of(run), True
