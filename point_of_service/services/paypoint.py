"""Paypoint flow: cash disbursement against a scheme's entitlement on the card, and proof of life for
pensioners (a zero-amount record the card signs: who, where, when)."""

from __future__ import annotations

import os
from collections.abc import Callable

from cardsvc.formats.transaction import RecordType
from point_of_service.errors import TransactionError
from point_of_service.identity import TerminalIdentity
from point_of_service.journal import Journal
from point_of_service.reasons import Reason
from point_of_service.services.signin import Clerk
from point_of_service.services.transactions import AfterCard, Outcome, Till, card_io, check_amount
from point_of_service.services.verification import CardVisit


def entitlement(visit: CardVisit, scheme_id: int) -> int:
    """What the scheme's wallet on the card still holds (paise)."""
    with card_io():
        wallets = visit.session.status().wallets
    for wallet in wallets:
        if wallet.scheme_id == scheme_id:
            return wallet.balance
    raise TransactionError(Reason.SCHEME_NOT_ON_CARD, f"card {visit.card_chr} has no scheme {scheme_id}")


def disburse(
    visit: CardVisit,
    *,
    scheme_id: int,
    amount: int,
    journal: Journal,
    identity: TerminalIdentity,
    clerk: Clerk,
    now: int,
    rng: Callable[[int], bytes] = os.urandom,
    after_card: AfterCard | None = None,
) -> Outcome:
    check_amount(amount)
    available = entitlement(visit, scheme_id)
    if amount > available:
        raise TransactionError(Reason.ENTITLEMENT_EXCEEDED, f"{amount} paise asked, {available} available")
    till = Till(journal, identity, clerk, now, rng, after_card)
    return till.transact(visit, RecordType.CASH, amount, scheme_id=scheme_id)


def proof_of_life(
    visit: CardVisit,
    *,
    scheme_id: int,
    journal: Journal,
    identity: TerminalIdentity,
    clerk: Clerk,
    now: int,
    rng: Callable[[int], bytes] = os.urandom,
    after_card: AfterCard | None = None,
) -> Outcome:
    entitlement(visit, scheme_id)
    till = Till(journal, identity, clerk, now, rng, after_card)
    return till.transact(visit, RecordType.PROOF_OF_LIFE, 0, scheme_id=scheme_id)
