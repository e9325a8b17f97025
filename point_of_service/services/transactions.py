"""Every value-changing action goes through :func:`journalled_debit` (flows: :meth:`Till.transact`; central's
top-ups: services/authorisations.py): write-ahead intent in the journal,
ONE card DEBIT command (the card checks and lowers its balance, counts, logs and signs), then the card's
record in the journal. The card, not the terminal, is the authority on balances and counters.

Crash and tear safety: the intent (with the terminal's nonce and the counter the card had) is committed
before the DEBIT is sent. If the card is pulled or the terminal dies before the record is journalled, the
intent stays *pending*; on the next insertion :func:`recover_card` reads the card's counter and log: a
record matching the intent (same type, amount, reference, operator, member and the request's time, which
the card signs) completes it; no such record means the card never debited and the intent is abandoned.
Nothing is ever sent to the card twice for one intent, so one debit or none, never two.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cardsvc.beneficiary.errors import BalanceError, BeneficiaryCardError, OfflineLimitError
from cardsvc.beneficiary.protocol import Authorisation, CardStatus
from cardsvc.beneficiary.session import BeneficiarySession
from cardsvc.card.errors import ApduError
from cardsvc.card.transport import CardRemovedError, TransportError
from cardsvc.formats.errors import FormatError as RecordFormatError
from cardsvc.formats.transaction import RecordType, TransactionRecord
from cardsvc.pki.errors import PkiError
from cardsvc.pki.rights import Right
from point_of_service.errors import PosError, TransactionError
from point_of_service.identity import TerminalIdentity
from point_of_service.journal import Intent, Journal
from point_of_service.reasons import Reason
from point_of_service.services.signin import Clerk

if TYPE_CHECKING:
    from point_of_service.services.verification import CardVisit

NONCE_BYTES = 16


@dataclass(frozen=True)
class Outcome:
    """A completed card transaction: the card's signed record."""

    record: TransactionRecord
    recovered: int = 0  # interrupted earlier intents completed or abandoned first


@dataclass(frozen=True)
class Recovery:
    completed: tuple[TransactionRecord, ...]
    abandoned: tuple[str, ...]
    records_added: int


@contextmanager
def card_io() -> Iterator[None]:
    """Card I/O outside the DEBIT itself: a pulled card or a card error becomes the clerk's reason."""
    try:
        yield
    except (CardRemovedError, TransportError) as exc:
        raise TransactionError(Reason.CARD_REMOVED, str(exc)) from None
    except (ApduError, BeneficiaryCardError, PkiError) as exc:
        raise TransactionError(Reason.CARD_ERROR, str(exc)) from None


def _matches(intent: Intent, record: TransactionRecord, terminal_id: int) -> bool:
    return (
        record.record_type == intent.record_type
        and record.amount == intent.amount
        and record.reference == intent.reference
        and record.member_index == intent.member
        and record.time == intent.request_time
        and record.operator_id == int(intent.context.get("operator_id", -1))
        and record.terminal_id == terminal_id
        and record.counter > intent.counter_before
    )


def recover_card(
    session: BeneficiarySession,
    journal: Journal,
    *,
    card_id: int,
    card_key: bytes,
    terminal_id: int,
    now: int,
    counter: int | None = None,
) -> Recovery:
    """Complete the journal from the card: its log since the last journalled record, then pending intents."""
    pending = journal.pending_intents(card_id)
    last = journal.last_record(card_id)
    if counter is None:
        counter = session.status().counter
    starts = [i.counter_before + 1 for i in pending] + ([last.counter + 1] if last else [])
    start = min(starts or [1])
    records: list[TransactionRecord] = []
    if counter >= start:
        records = session.read_log(start, card_key=card_key)
    completed: list[TransactionRecord] = []
    abandoned: list[str] = []
    added = 0
    with journal.transaction():
        for record in records:
            added += journal.add_record(record, card_key)
        for intent in pending:
            match = next((r for r in records if _matches(intent, r, terminal_id)), None)
            if match is not None:
                _apply_effects(journal, intent, match)
                journal.resolve_intent(intent.nonce, status="done", at=now, counter=match.counter)
                journal.log(
                    "recover",
                    at=now,
                    operator=intent.operator,
                    card_id=card_id,
                    member=intent.member,
                    detail={"nonce": intent.nonce, "counter": match.counter, "result": "completed"},
                )
                completed.append(match)
            else:
                seen_all = counter <= intent.counter_before or (
                    bool(records) and records[0].counter <= intent.counter_before + 1
                )
                # every record after the intent was read and none is it: the card never debited. Otherwise
                # the records have left the card's cyclic log: central, which gets every record, decides.
                status, result = (
                    ("abandoned", "card never debited")
                    if seen_all
                    else ("unknown", "record left the card's log; central reconciles")
                )
                journal.resolve_intent(intent.nonce, status=status, at=now)
                journal.log(
                    "recover",
                    at=now,
                    outcome="ok" if seen_all else "unresolved",
                    operator=intent.operator,
                    card_id=card_id,
                    member=intent.member,
                    detail={"nonce": intent.nonce, "result": result},
                )
                abandoned.append(intent.nonce)
    return Recovery(tuple(completed), tuple(abandoned), added)


def collect_unanswered(
    session: BeneficiarySession,
    journal: Journal,
    *,
    card_id: int,
    card_key: bytes,
    status: CardStatus,
    now: int,
    operator: str,
) -> tuple[TransactionRecord, ...]:
    """Journal the records the card made by itself and no terminal was answered with (status 8E: a held
    renewal's RENEWAL records, made at the card's first command of the new year), so the next sync uploads
    them. READ LOG (each record's card signature verified) only when the card shows such records and the
    journal lacks one still in the card's log: no APDU otherwise. Returns the records newly journalled;
    :class:`TransactionError` when the card is pulled or a record does not verify."""
    if status.unanswered is None:
        return ()
    first, last = status.unanswered
    first = max(first, status.counter - status.log_capacity + 1)  # older ones left the cyclic log
    if first > last or journal.held_counters(card_id, first, last) >= set(range(first, last + 1)):
        return ()
    try:
        with card_io():
            records = session.read_log(first, card_key=card_key, to_counter=last)
    except RecordFormatError as exc:
        raise TransactionError(Reason.CARD_ERROR, f"card record refused: {exc}") from None
    with journal.transaction():
        added = tuple(r for r in records if journal.add_record(r, card_key))
        journal.log(
            "card-records",
            at=now,
            operator=operator,
            card_id=card_id,
            detail={"first": first, "last": last, "added": [r.counter for r in added]},
        )
    return added


def _apply_effects(journal: Journal, intent: Intent, record: TransactionRecord) -> None:
    """What the flow does after the card answered (also run by recovery)."""
    if record.record_type is RecordType.BLOCK:
        journal.open_admission(
            record.card_id,
            record.counter,
            record.reference,
            int(intent.context.get("catalogue_version", 0)),
            record.amount,
            record.member_index,
        )
    elif record.record_type in (RecordType.SETTLE, RecordType.RELEASE):
        status = "settled" if record.record_type is RecordType.SETTLE else "cancelled"
        journal.close_admission(record.card_id, record.reference, status=status, closed_by=record.counter)


#: A hook tests use to "kill" the terminal between the card's answer and the journal write.
AfterCard = Callable[[TransactionRecord], None]


@dataclass(frozen=True)
class Till:
    """Who makes card transactions, where and when: what every flow (hospital, paypoint) passes on."""

    journal: Journal
    identity: TerminalIdentity
    clerk: Clerk
    now: int
    rng: Callable[[int], bytes] = os.urandom
    after_card: AfterCard | None = None

    def transact(
        self,
        visit: CardVisit,
        record_type: RecordType,
        amount: int,
        *,
        scheme_id: int,
        reference: int = 0,
        context: dict[str, object] | None = None,
    ) -> Outcome:
        """One card transaction for the visit's verified member (fingerprint or override), with the clerk's
        right for it; journalled before and after the card (:func:`journalled_debit`)."""
        from point_of_service.services.verification import require_member

        member = require_member(visit)
        clerk = self.clerk
        fallback = "override" if visit.member_verified_by == "override" else None
        needed = Right.PROOF_OF_LIFE if record_type is RecordType.PROOF_OF_LIFE else Right.DEBIT
        if not clerk.may(needed):
            raise TransactionError(Reason.MISSING_RIGHT, f"{clerk.chr} lacks {needed.name}")
        return journalled_debit(
            visit.session, journal=self.journal, identity=self.identity, clerk=clerk, card_id=visit.card_id,
            card_key=visit.card_key, member=member, record_type=record_type, amount=amount, now=self.now,
            scheme_id=scheme_id, reference=reference, context=context, rng=self.rng,
            after_card=self.after_card, fallback=fallback,
        )  # fmt: skip


def journalled_debit(
    session: BeneficiarySession,
    *,
    journal: Journal,
    identity: TerminalIdentity,
    clerk: Clerk,
    card_id: int,
    card_key: bytes,
    member: int,
    record_type: RecordType,
    amount: int,
    now: int,
    scheme_id: int = 1,
    reference: int = 0,
    context: dict[str, object] | None = None,
    rng: Callable[[int], bytes] = os.urandom,
    after_card: AfterCard | None = None,
    authorisation: Authorisation | None = None,
    fallback: str | None = None,
) -> Outcome:
    """The one write-ahead DEBIT: earlier interrupted intents of the card recovered first, the intent
    committed, ONE card command (with central's ``authorisation`` for a TOP_UP), the record journalled."""
    recovered = 0
    with card_io():
        if journal.pending_intents(card_id):
            r = recover_card(session, journal, card_id=card_id, card_key=card_key,
                             terminal_id=_terminal_ref(identity), now=now)  # fmt: skip
            recovered = len(r.completed) + len(r.abandoned)
            if journal.pending_intents(card_id):
                raise TransactionError(
                    Reason.PENDING_RECOVERY, "an interrupted transaction could not be resolved"
                )
        status = session.status()
    nonce = rng(NONCE_BYTES)
    ctx = {"operator_id": clerk.operator_id, "scheme_id": scheme_id, **(context or {})}
    journal.add_intent(
        nonce=nonce.hex(),
        created=now,
        card_id=card_id,
        record_type=record_type,
        amount=amount,
        reference=reference,
        member=member,
        operator=clerk.chr,
        counter_before=status.counter,
        request_time=now,
        context=ctx,
    )
    try:
        record = session.debit(
            record_type,
            scheme_id=scheme_id,
            amount=amount,
            time=now,
            operator_id=clerk.operator_id,
            facility_id=identity.facility_id,
            reference=reference,
            member_index=member,
            nonce=nonce,
            card_key=card_key,
            authorisation=authorisation,
        )
    except (CardRemovedError, TransportError) as exc:
        # outcome unknown: the intent stays pending until the card comes back
        journal.log(
            "transaction",
            at=now,
            outcome="interrupted",
            operator=clerk.chr,
            card_id=card_id,
            member=member,
            reason=Reason.CARD_REMOVED.value,
            detail={"nonce": nonce.hex()},
        )
        raise TransactionError(Reason.CARD_REMOVED, str(exc)) from None
    except (BalanceError, OfflineLimitError, ApduError, BeneficiaryCardError, PkiError) as exc:
        reason = _reason_for(exc)
        with journal.transaction():
            journal.resolve_intent(nonce.hex(), status="abandoned", at=now)
            journal.log(
                "transaction",
                at=now,
                outcome="refused",
                operator=clerk.chr,
                card_id=card_id,
                member=member,
                reason=reason.value,
                detail={"type": record_type.name, "amount": amount, "why": str(exc)},
            )
        raise TransactionError(reason, str(exc)) from None
    if after_card is not None:
        after_card(record)
    intent = journal.intent(nonce.hex())
    assert intent is not None
    with journal.transaction():
        journal.add_record(record, card_key, intent=nonce.hex())
        _apply_effects(journal, intent, record)
        journal.resolve_intent(nonce.hex(), status="done", at=now, counter=record.counter)
        journal.log(
            "transaction",
            at=now,
            operator=clerk.chr,
            card_id=card_id,
            member=member,
            fallback=fallback,
            detail={
                "type": record_type.name,
                "amount": amount,
                "counter": record.counter,
                "balance_after": record.balance_after,
                "reference": reference,
            },
        )
    return Outcome(record, recovered)


def _reason_for(exc: Exception) -> Reason:
    if isinstance(exc, BalanceError):
        return Reason.INSUFFICIENT_BALANCE
    if isinstance(exc, OfflineLimitError):
        return Reason.OFFLINE_LIMIT_REACHED
    if isinstance(exc, ApduError) and exc.sw == 0x6A88:
        return Reason.NO_OPEN_ADMISSION
    return Reason.CARD_ERROR


def _terminal_ref(identity: TerminalIdentity) -> int:
    from point_of_service.identity import reference_id

    return reference_id(identity.chr)


def check_amount(amount: int) -> None:
    if not 0 < amount <= 0xFFFFFFFF:
        raise PosError(Reason.AMOUNT_INVALID, f"amount {amount} paise")
