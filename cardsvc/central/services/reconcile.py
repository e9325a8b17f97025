"""Reconciliation v1: rebuild every card's ledger from its counter and flag what does not add up.

A full pass over the stored records (columns only, no ORM objects). Findings become rows in ``flags``; a
finding already recorded is not repeated (``dedup_key``), and findings that describe a state which later
uploads may cure (gaps, FKO count mismatches) are replaced on every run. Thresholds are in
:class:`ReconcilePolicy` and documented in docs/central.md.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NamedTuple

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from cardsvc.central.models import (
    AuthorisationRow,
    Card,
    Facility,
    FkoLedgerRow,
    FlagRow,
    Operator,
    Terminal,
    TransactionRow,
)
from cardsvc.central.services.chunks import in_chunks
from cardsvc.central.services.fallbacks import override_rate_flags
from cardsvc.central.services.ingest import KeySource, insert_ignore
from cardsvc.central.services.renewals import (
    PeriodWindow,
    apply_renewals,
    camp_period,
    period_windows,
    unmatched_renewals,
    unmatched_splits,
)
from cardsvc.formats.batch import load_public_key
from cardsvc.formats.errors import SignatureError
from cardsvc.formats.transaction import (
    GENESIS_PREV_HASH,
    PREV_HASH_LENGTH,
    SIGNED_LENGTH,
    RecordType,
    verify_raw_signature,
)

log = logging.getLogger(__name__)


class FlagKind(StrEnum):
    DUPLICATE_COUNTER = "duplicate_counter"  # same card and counter, different content: clone or replay
    COUNTER_GAP = "counter_gap"  # counters missing: records not yet uploaded (or withheld)
    BALANCE_MISMATCH = "balance_mismatch"  # balance_after does not follow from the previous record
    CHAIN_BREAK = "chain_break"  # prev_hash is not the hash of the previous record
    OUTSIDE_POLICY = "outside_policy"  # used outside the card's policy period
    IMPOSSIBLE_TRAVEL = "impossible_travel"  # same card at distant facilities within hours
    PACKAGE_MIX_OUTLIER = "package_mix_outlier"  # a facility's package share far above its peers
    REVOKED_TERMINAL = "revoked_terminal"  # record made by a terminal after its revocation
    REVOKED_OPERATOR = "revoked_operator"  # record made by an operator after their revocation
    FKO_COUNT_MISMATCH = "fko_count_mismatch"  # FKO ledger read-back differs from uploaded camps
    UNREGISTERED_CARD = "unregistered_card"  # records of a card no camp has reported
    FORGED_RECORD = "forged_record"  # verified with a presented key that is not the card's registered one
    DUPLICATE_ENROLMENT = "duplicate_enrolment"  # a finger matches another card's (services/dedup.py)
    OVERRIDE_RATE = "override_rate"  # an operator overrides fingerprints unusually often (fallbacks.py)
    UNAUTHORISED_RENEWAL = "unauthorised_renewal"  # a RENEWAL record answering no authorisation of central's
    UNAUTHORISED_SPLIT = "unauthorised_split"  # a SPLIT record answering no SPLIT authorisation of central's


#: Findings about a state that later uploads may cure: recomputed from scratch on each run.
STATEFUL = (
    FlagKind.COUNTER_GAP,
    FlagKind.FKO_COUNT_MISMATCH,
    FlagKind.UNREGISTERED_CARD,
    FlagKind.PACKAGE_MIX_OUTLIER,
    FlagKind.OVERRIDE_RATE,
)


@dataclass(frozen=True, slots=True)
class ReconcilePolicy:
    """Thresholds. Travel: flag when at least ``min_distance_km`` apart and faster than ``max_speed_kmh``."""

    min_distance_km: float = 100.0
    max_speed_kmh: float = 60.0
    mix_min_claims: int = 30  # a facility (and its peers) need this many admissions to be judged
    mix_min_z: float = 4.0  # share z-score against the pooled peer share
    mix_min_excess: float = 0.10  # and at least 10 percentage points above the peers
    max_listed: int = 20  # at most this many ids/counters listed in one flag's details


@dataclass(frozen=True, slots=True)
class Flag:
    kind: FlagKind
    details: dict[str, Any]
    card_id: str | None = None
    facility_id: int | None = None
    terminal_id: str | None = None

    def dedup_key(self) -> str:
        identity = [self.kind.value, self.card_id, self.facility_id, self.terminal_id, self.details]
        return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


@dataclass
class ReconcileReport:
    cards: int = 0
    records: int = 0
    flags: Counter[str] = field(default_factory=Counter)
    new_flags: int = 0

    def to_json(self) -> dict[str, Any]:
        flags = dict(sorted(self.flags.items()))
        return {"cards": self.cards, "records": self.records, "flags": flags, "new_flags": self.new_flags}


class _CampCard(NamedTuple):
    """A renewed card as its records are first judged: the camp's period, scheme and cover."""

    card_id: str
    policy_start: int
    policy_end: int
    cover_paise: int
    fko_id: str
    scheme_id: int
    schemes: list[Any] | None


class _Rec(NamedTuple):
    """One stored record as the reconciliation reads it (a plain tuple: this loop runs over every record)."""

    card_id: str
    counter: int
    content_hash: bytes
    record_type: int
    amount: int
    balance_after: int
    time: int
    terminal_id: str
    operator_id: str
    facility_id: int
    reference: int
    prev_hash: bytes
    key_source: str
    scheme_id: int


_COLUMNS = (
    TransactionRow.card_id,
    TransactionRow.counter,
    TransactionRow.content_hash,
    TransactionRow.record_type,
    TransactionRow.amount,
    TransactionRow.balance_after,
    TransactionRow.time,
    TransactionRow.terminal_id,
    TransactionRow.operator_id,
    TransactionRow.facility_id,
    TransactionRow.reference,
    TransactionRow.prev_hash,
    TransactionRow.key_source,
    TransactionRow.scheme_id,
)


def reconcile(session: Session, now: int, policy: ReconcilePolicy | None = None) -> ReconcileReport:
    """Run every check over everything stored; record new findings; return what was found."""
    policy = policy or ReconcilePolicy()
    apply_renewals(session, now)  # the register follows renewals committed on cards (services/renewals.py)
    cards: dict[str, Any] = {
        c.card_id: c
        for c in session.execute(
            select(
                Card.card_id,
                Card.policy_start,
                Card.policy_end,
                Card.cover_paise,
                Card.fko_id,
                Card.scheme_id,
                Card.schemes,
            )
        ).all()
    }
    terminal_revoked = dict(
        session.execute(
            select(Terminal.id, Terminal.revoked_at).where(Terminal.revoked_at.is_not(None))
        ).all()
    )
    operator_revoked = dict(
        session.execute(
            select(Operator.id, Operator.revoked_at).where(Operator.revoked_at.is_not(None))
        ).all()
    )
    places = {
        f.id: (f.latitude, f.longitude)
        for f in session.execute(select(Facility.id, Facility.latitude, Facility.longitude)).all()
    }

    report = ReconcileReport()
    flags: list[Flag] = list(_settle_presented_keys(session))
    mix: defaultdict[int, Counter[int]] = defaultdict(Counter)
    ledger: defaultdict[str, list[_Rec]] = defaultdict(list)
    for rec in _stored_records(session):
        ledger[rec.card_id].append(rec)
        if rec.record_type == RecordType.BLOCK:
            mix[rec.facility_id][rec.reference] += 1
        report.records += 1
    report.cards = len(ledger)

    periods = period_windows(session)
    years = _year_renewals(session)
    for card_id, camp in camp_period(session, sorted(periods)).items():
        if card_id in cards:  # a renewed card: its records are judged from the camp's period and cover on
            cards[card_id] = _CampCard(
                card_id, camp.policy_start, camp.policy_end, camp.cover_paise, cards[card_id].fko_id,
                camp.scheme_id, camp.schemes,
            )  # fmt: skip
    for card_id, records in ledger.items():
        card = cards.get(card_id)
        flags.extend(
            _card_checks(card_id, records, card, policy, periods.get(card_id, ()), years.get(card_id, ()))
        )
        flags.extend(_actor_checks(card_id, records, terminal_revoked, operator_revoked))
        flags.extend(_travel_checks(card_id, records, places, policy))
        if card is None and any(r.key_source == KeySource.PRESENTED for r in records):
            flags.append(Flag(FlagKind.UNREGISTERED_CARD, {"records": len(records)}, card_id=card_id))
    flags.extend(_package_mix(mix, policy))
    flags.extend(_fko_counts(session, policy))
    flags.extend(override_rate_flags(session))
    flags.extend(
        Flag(
            FlagKind.UNAUTHORISED_RENEWAL, {"counter": u.counter, "reference": u.reference}, card_id=u.card_id
        )
        for u in unmatched_renewals(session)
    )
    flags.extend(
        Flag(FlagKind.UNAUTHORISED_SPLIT, {"counter": u.counter, "reference": u.reference}, card_id=u.card_id)
        for u in unmatched_splits(session)
    )

    session.execute(delete(FlagRow).where(FlagRow.kind.in_([k.value for k in STATEFUL])))
    _withdraw_cured(session, flags, sorted(periods))
    before = session.execute(select(func.count()).select_from(FlagRow)).scalar_one()
    rows = {
        f.dedup_key(): {
            "kind": f.kind.value,
            "card_id": f.card_id,
            "facility_id": f.facility_id,
            "terminal_id": f.terminal_id,
            "details": f.details,
            "created_at": now,
            "dedup_key": f.dedup_key(),
        }
        for f in flags
    }
    insert_ignore(session, FlagRow.__table__, [rows[k] for k in sorted(rows)], ["dedup_key"])
    after = session.execute(select(func.count()).select_from(FlagRow)).scalar_one()
    session.commit()
    report.flags.update(f.kind.value for f in flags)
    report.new_flags = after - before
    return report


def _stored_records(session: Session) -> Iterator[_Rec]:
    """Every stored record, by card, counter and hash, straight from the DB-API cursor in the session's
    transaction. The ORM's per-row processing was a third of a run over 20,000 records, and psycopg2's
    bytea parsing most of the rest: the two hashes travel as hex text (``encode`` / ``hex``)."""
    hexed = "encode({}, 'hex')" if session.get_bind().dialect.name == "postgresql" else "hex({})"
    names = ", ".join(
        hexed.format(column.key) if column.key in ("content_hash", "prev_hash") else column.key
        for column in _COLUMNS
    )
    order = "card_id, counter, content_hash"
    dbapi = session.connection().connection.dbapi_connection
    assert dbapi is not None
    cursor = dbapi.cursor()
    make, unhex = _Rec._make, bytes.fromhex
    try:
        cursor.execute(f"SELECT {names} FROM {TransactionRow.__tablename__} ORDER BY {order}")
        while rows := cursor.fetchmany(5_000):
            for row in rows:
                yield make((*row[:2], unhex(row[2]), *row[3:11], unhex(row[11]), *row[12:]))
    finally:
        cursor.close()


def _settle_presented_keys(session: Session) -> Iterable[Flag]:
    """Records first verified with a key only the batch presented (their camp had not arrived): now that
    the card is registered, check them with the registered key. Genuine ones become ``registered``; the
    others are forgeries, flagged (and left out of nothing: staff decide)."""
    query = (
        select(
            TransactionRow.id,
            TransactionRow.card_id,
            TransactionRow.counter,
            TransactionRow.raw,
            Card.public_key,
        )
        .join(Card, Card.card_id == TransactionRow.card_id)
        .where(TransactionRow.key_source == KeySource.PRESENTED)
    )
    genuine: list[int] = []
    keys: dict[bytes, Any] = {}
    for row_id, card_id, counter, raw, public_key in session.execute(query):
        raw, public_key = bytes(raw), bytes(public_key)
        key = keys.get(public_key)
        if key is None:
            key = keys[public_key] = load_public_key(public_key)
        try:
            verify_raw_signature(key, raw[:SIGNED_LENGTH], raw[SIGNED_LENGTH:])
        except SignatureError:
            yield Flag(
                FlagKind.FORGED_RECORD,
                {"counter": counter, "content_hash": hashlib.sha256(raw).hexdigest()},
                card_id=card_id,
            )
            continue
        genuine.append(row_id)
    for chunk in in_chunks(genuine, 1000):
        session.execute(
            update(TransactionRow).where(TransactionRow.id.in_(chunk)).values(key_source=KeySource.REGISTERED)
        )


def _year_renewals(session: Session) -> dict[str, set[int]]:
    """The serials of the policy-year renewals (RENEW_POLICY) central authorised, by card: a RENEWAL
    record answering one of them starts a new policy year on the card (a SPLIT record never does: it lowers
    the cover, docs/formats.md)."""
    out: defaultdict[str, set[int]] = defaultdict(set)
    query = select(AuthorisationRow.card_id, AuthorisationRow.serial).where(
        AuthorisationRow.audience == "card", AuthorisationRow.kind == "renew_policy"
    )
    for card_id, serial in session.execute(query):
        out[card_id].add(int(serial))
    return out


def _withdraw_cured(session: Session, flags: Sequence[Flag], renewed: Sequence[str]) -> None:
    """An open ``outside_policy`` finding on a renewed card that this run no longer makes (the renewal's
    records arrived after the new year's records were judged) is withdrawn; resolved ones stay."""
    if not renewed:
        return
    current = {f.dedup_key() for f in flags if f.kind is FlagKind.OUTSIDE_POLICY}
    for chunk in in_chunks(renewed):
        stale = [
            row_id
            for row_id, key in session.execute(
                select(FlagRow.id, FlagRow.dedup_key).where(
                    FlagRow.kind == FlagKind.OUTSIDE_POLICY.value,
                    FlagRow.resolved_at.is_(None),
                    FlagRow.card_id.in_(chunk),
                )
            )
            if key not in current
        ]
        if stale:
            session.execute(delete(FlagRow).where(FlagRow.id.in_(stale)))


def _card_checks(
    card_id: str,
    records: list[_Rec],
    card: Any,
    policy: ReconcilePolicy,
    periods: Sequence[PeriodWindow] = (),
    year_renewals: Iterable[int] = (),
) -> Iterable[Flag]:
    """Counter duplicates and gaps, chain links, balance arithmetic and the policy period of one card.

    ``periods``: a renewed card's periods (services/renewals.py); ``card`` then carries the camp's period
    and cover. A renewal's period counts from its first RENEWAL record on (``counter``).
    ``year_renewals``: the serials of the card's RENEW_POLICY authorisations; a BLOCK before a RENEWAL
    record answering one is of the previous year: its SETTLE or RELEASE leaves the balance as it is
    (docs/card-layout.md, "Renewal camps before the year starts")."""
    by_counter: defaultdict[int, list[_Rec]] = defaultdict(list)
    for rec in records:
        by_counter[rec.counter].append(rec)
    for counter, versions in sorted(by_counter.items()):
        if len(versions) > 1:
            yield Flag(
                FlagKind.DUPLICATE_COUNTER,
                {
                    "counter": counter,
                    "versions": len(versions),
                    "content_hashes": sorted(v.content_hash.hex() for v in versions),
                },
                card_id=card_id,
            )
    highest = max(by_counter)
    missing = [c for c in range(1, highest + 1) if c not in by_counter]
    if missing:
        yield Flag(
            FlagKind.COUNTER_GAP,
            {"missing": len(missing), "counters": missing[: policy.max_listed], "highest": highest},
            card_id=card_id,
        )

    blocks: dict[int, int] = {}
    earlier: set[int] = set()  # blocks opened in a policy year a later RENEWAL record replaced
    unsure: set[int] = set()  # blocks opened before an unknown record: their year cannot be told
    years = set(year_renewals)
    previous: _Rec | None = None
    windows: list[tuple[int, int]] = [] if card is None else [(card.policy_start, card.policy_end)]
    renewals = {p.counter: (p.start, p.end + 1) for p in periods if p.serial and p.counter is not None}
    balances = starting_balances(card)  # one balance per scheme on the card; unknown ones are absent
    for counter in range(1, highest + 1):
        found = by_counter.get(counter)
        if found is None or len(found) > 1:
            previous, balances = None, {}  # unknown or ambiguous: every balance restarts after it
            unsure.update(blocks)
            continue
        rec = found[0]
        if counter == 1 and rec.prev_hash != GENESIS_PREV_HASH:
            yield Flag(FlagKind.CHAIN_BREAK, {"counter": 1, "reason": "first record not at genesis"}, card_id)
        elif previous is not None and rec.prev_hash != previous.content_hash[:PREV_HASH_LENGTH]:
            yield Flag(FlagKind.CHAIN_BREAK, {"counter": counter, "reason": "prev_hash mismatch"}, card_id)
        closes = rec.reference if rec.record_type in (RecordType.SETTLE, RecordType.RELEASE) else None
        if closes in unsure:
            expected: int | None = None
        elif closes in earlier:  # the previous year's hold pays it; nothing comes back to this wallet
            expected = balances.get(rec.scheme_id)
            held = blocks.get(closes, 0)
            if rec.record_type == RecordType.SETTLE and rec.amount > held:
                yield Flag(
                    FlagKind.BALANCE_MISMATCH,
                    {"counter": counter, "reason": "settles more than the previous year's hold",
                     "held": held, "amount": rec.amount},
                    card_id=card_id,
                )  # fmt: skip
        else:
            expected = _expected(rec, balances.get(rec.scheme_id), blocks)
        if expected is not None and expected != rec.balance_after:
            yield Flag(
                FlagKind.BALANCE_MISMATCH,
                {"counter": counter, "expected": expected, "reported": rec.balance_after},
                card_id=card_id,
            )
        if rec.record_type == RecordType.BLOCK:
            blocks[counter] = rec.amount
        renewal = rec.record_type == RecordType.RENEWAL
        if renewal and rec.reference in years:
            earlier.update(blocks)  # a new policy year: every block opened so far is of an earlier one
        if renewal and counter in renewals:
            windows.append(renewals[counter])  # committed on the card: the authorised period counts
        authorised = renewal or rec.record_type == RecordType.SPLIT  # central set it: not a use of cover
        if card is not None and not authorised and not any(start <= rec.time < end for start, end in windows):
            in_force = list(windows[-1]) if len(windows) == 1 else [windows[-1][0], windows[-1][1] - 1]
            yield Flag(
                FlagKind.OUTSIDE_POLICY,
                {"counter": counter, "time": rec.time, "policy": in_force},
                card_id=card_id,
                facility_id=rec.facility_id,
            )
        previous = rec
        balances[rec.scheme_id] = rec.balance_after


def starting_balances(card: Any) -> dict[int, int]:
    """Each scheme's cover as the camp reported it (``schemes``, else its one scheme); the balance before a
    card's first record of a scheme is that cover. A scheme the camp did not report starts unknown (its
    first record sets it)."""
    if card is None:
        return {}
    if card.schemes:
        return {int(s["scheme_id"]): int(s["cover_paise"]) for s in card.schemes}
    return {int(card.scheme_id): int(card.cover_paise)}


def _expected(rec: _Rec, balance: int | None, blocks: dict[int, int]) -> int | None:
    if balance is None:
        return None
    kind = rec.record_type
    if kind in (RecordType.BLOCK, RecordType.CASH):
        return balance - rec.amount
    if kind == RecordType.SETTLE:
        held = blocks.get(rec.reference)
        return None if held is None else balance + held - rec.amount
    if kind == RecordType.RELEASE:
        held = blocks.get(rec.reference)
        return None if held is None else balance + held
    if kind == RecordType.PROOF_OF_LIFE:
        return balance
    if kind == RecordType.TOP_UP:
        return balance + rec.amount
    if kind == RecordType.SPLIT:  # a cover lowering, never a new year: replayed like a debit
        return balance - rec.amount
    return rec.amount  # RENEWAL


def _actor_checks(
    card_id: str, records: list[_Rec], terminals: dict[str, int | None], operators: dict[str, int | None]
) -> Iterable[Flag]:
    for rec in records:
        revoked = terminals.get(rec.terminal_id)
        if revoked is not None and rec.time >= revoked:
            yield Flag(
                FlagKind.REVOKED_TERMINAL,
                {"counter": rec.counter, "time": rec.time, "revoked_at": revoked},
                card_id=card_id,
                facility_id=rec.facility_id,
                terminal_id=rec.terminal_id,
            )
        revoked = operators.get(rec.operator_id)
        if revoked is not None and rec.time >= revoked:
            yield Flag(
                FlagKind.REVOKED_OPERATOR,
                {"counter": rec.counter, "time": rec.time, "revoked_at": revoked},
                card_id=card_id,
                facility_id=rec.facility_id,
                terminal_id=rec.terminal_id,
            )


def distance_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Great-circle distance (haversine, mean Earth radius)."""
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * 6371.0088 * math.asin(math.sqrt(min(1.0, h)))


def _travel_checks(
    card_id: str, records: list[_Rec], places: dict[int, tuple[float, float]], policy: ReconcilePolicy
) -> Iterable[Flag]:
    """Consecutive uses (by time) at facilities too far apart for the time between them."""
    timeline = sorted(records, key=lambda r: (r.time, r.counter))
    for first, second in itertools.pairwise(timeline):
        if first.facility_id == second.facility_id:
            continue
        a, b = places.get(first.facility_id), places.get(second.facility_id)
        if a is None or b is None:
            continue
        km = distance_km(a, b)
        hours = (second.time - first.time) / 3600
        if km >= policy.min_distance_km and km > policy.max_speed_kmh * hours:
            yield Flag(
                FlagKind.IMPOSSIBLE_TRAVEL,
                {
                    "counters": [first.counter, second.counter],
                    "facilities": [first.facility_id, second.facility_id],
                    "km": round(km, 1),
                    "hours": round(hours, 2),
                },
                card_id=card_id,
                facility_id=second.facility_id,
            )


def _package_mix(mix: dict[int, Counter[int]], policy: ReconcilePolicy) -> Iterable[Flag]:
    """A facility whose share of one package is far above the pooled share of all other facilities."""
    totals: Counter[int] = Counter()
    for counts in mix.values():
        totals.update(counts)
    grand = sum(totals.values())
    for facility_id, counts in sorted(mix.items()):
        n = sum(counts.values())
        peers = grand - n
        if n < policy.mix_min_claims or peers < policy.mix_min_claims:
            continue
        for package, count in sorted(counts.items()):
            share = count / n
            peer_share = (totals[package] - count) / peers
            floor = max(peer_share, 0.5 / peers)  # a package peers never use still has some uncertainty
            z = (share - floor) / math.sqrt(floor * (1 - floor) / n) if floor < 1 else 0.0
            if z >= policy.mix_min_z and share - peer_share >= policy.mix_min_excess:
                yield Flag(
                    FlagKind.PACKAGE_MIX_OUTLIER,
                    {
                        "package": package,
                        "share": round(share, 4),
                        "peer_share": round(peer_share, 4),
                        "z": round(z, 1),
                        "admissions": n,
                    },
                    facility_id=facility_id,
                )


def _fko_counts(session: Session, policy: ReconcilePolicy) -> Iterable[Flag]:
    """Each FKO's ledger (union of its read-backs) against the cards camps reported under that FKO."""
    ledgers: defaultdict[str, set[str]] = defaultdict(set)
    signed: set[str] = set()  # FKOs with at least one read-back carrying the officer card's own signature
    query = select(FkoLedgerRow.fko_id, FkoLedgerRow.activated, FkoLedgerRow.officer_verified)
    for fko_id, activated, officer_verified in session.execute(query):
        ledgers[fko_id].update(activated)
        if officer_verified is not None:
            signed.add(fko_id)
    for fko_id, on_ledger in sorted(ledgers.items()):
        uploaded = set(session.execute(select(Card.card_id).where(Card.fko_id == fko_id)).scalars())
        if on_ledger != uploaded:
            yield Flag(
                FlagKind.FKO_COUNT_MISMATCH,
                {
                    "ledger": len(on_ledger),
                    "uploaded": len(uploaded),
                    "not_uploaded": sorted(on_ledger - uploaded)[: policy.max_listed],
                    "not_on_ledger": sorted(uploaded - on_ledger)[: policy.max_listed],
                    "officer_signed": fko_id in signed,
                },
                terminal_id=None,
                card_id=None,
            )
