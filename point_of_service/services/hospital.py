"""Hospital flow: admission blocks the package amount on the card (catalogue rate), discharge settles the
final amount and releases the rest, cancellation releases the whole block. Each is one card DEBIT
(point_of_service.services.transactions), so the card's log and the journal keep the same record."""

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
from point_of_service.trust import TrustState

HEALTH_SCHEME = 1


def admit(
    visit: CardVisit,
    *,
    package_code: int,
    journal: Journal,
    identity: TerminalIdentity,
    trust: TrustState,
    clerk: Clerk,
    now: int,
    scheme_id: int = HEALTH_SCHEME,
    rng: Callable[[int], bytes] = os.urandom,
    after_card: AfterCard | None = None,
) -> Outcome:
    """Block the package's rate (current catalogue) on the card; the BLOCK's counter is the admission id."""
    catalogue = trust.current_catalogue()
    package = catalogue.package(package_code)
    return Till(journal, identity, clerk, now, rng, after_card).transact(
        visit, RecordType.BLOCK, package.rate_paise, scheme_id=scheme_id, reference=package.code,
        context={"catalogue_version": catalogue.version, "package": package.name},
    )  # fmt: skip


def _open_block(journal: Journal, visit: CardVisit, admission: int) -> int:
    """The held amount of an open admission (journal first; the card itself has the last word)."""
    held = journal.admission(visit.card_id, admission)
    if held is not None and held.status != "open":
        raise TransactionError(Reason.NO_OPEN_ADMISSION, f"admission {admission} is already {held.status}")
    if held is not None:
        return held.amount
    with card_io():
        wallet_held = sum(w.held for w in visit.session.status().wallets)
    if wallet_held == 0:
        raise TransactionError(
            Reason.NO_OPEN_ADMISSION, f"the card holds no open block (admission {admission})"
        )
    return -1  # made at another terminal: the card checks the reference


def discharge(
    visit: CardVisit,
    *,
    admission: int,
    journal: Journal,
    identity: TerminalIdentity,
    clerk: Clerk,
    now: int,
    final_amount: int | None = None,
    scheme_id: int = HEALTH_SCHEME,
    rng: Callable[[int], bytes] = os.urandom,
    after_card: AfterCard | None = None,
) -> Outcome:
    """Settle admission ``admission`` (its BLOCK counter) at ``final_amount`` (default: the amount held)."""
    held = _open_block(journal, visit, admission)
    amount = held if final_amount is None else final_amount
    if amount < 0:
        raise TransactionError(Reason.AMOUNT_INVALID, "admission made elsewhere: give the final amount")
    check_amount(amount)
    return Till(journal, identity, clerk, now, rng, after_card).transact(
        visit, RecordType.SETTLE, amount, scheme_id=scheme_id, reference=admission
    )


def cancel(
    visit: CardVisit,
    *,
    admission: int,
    journal: Journal,
    identity: TerminalIdentity,
    clerk: Clerk,
    now: int,
    scheme_id: int = HEALTH_SCHEME,
    rng: Callable[[int], bytes] = os.urandom,
    after_card: AfterCard | None = None,
) -> Outcome:
    """Release the whole block of admission ``admission`` (patient left, wrong package)."""
    _open_block(journal, visit, admission)
    return Till(journal, identity, clerk, now, rng, after_card).transact(
        visit, RecordType.RELEASE, 0, scheme_id=scheme_id, reference=admission
    )
