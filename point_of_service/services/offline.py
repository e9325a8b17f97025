"""The journal's offline summary for the clerk (``pos status``) and the screens: how long since the last
sync, what waits for central, and per card served the records not yet at central and the card's offline
limits as last read (at a verification, or right after central's sync acknowledgement reset them), with
whether a downloaded acknowledgement waits for the card's next insertion.

Read-only over the journal: no card, no network.
"""

from __future__ import annotations

from dataclasses import dataclass

from cardsvc.beneficiary.protocol import AuthKind, Authorisation
from cardsvc.beneficiary.session import OfflineState
from cardsvc.formats.errors import FormatError
from point_of_service.journal import Event, Journal, hex_id
from point_of_service.services.authorisations import Audience, stored_authorisations
from point_of_service.services.sync import OfflineStatus, offline_status


@dataclass(frozen=True)
class CardOffline:
    """One card this terminal served."""

    card_id: int
    unsent_records: int  # records not yet acknowledged by central
    unsent_paise: int  # what they debited
    oldest_unsent: int | None  # time of the oldest of them
    limits: OfflineState | None  # the card's offline limits when last read (None: never read here)
    read_at: int | None
    renewed: bool  # that reading was right after central's sync acknowledgement reset the limits
    ack_waiting: int | None  # counter of a downloaded acknowledgement above that reading's, not yet presented


@dataclass(frozen=True)
class OfflineSummary:
    status: OfflineStatus
    cards: tuple[CardOffline, ...]


def _reading(event: Event) -> OfflineState | None:
    """The card's limits recorded by a ``verify-card`` or an applied SYNC_ACK ``authorisation`` event."""
    d = event.detail
    try:
        count, amount = (int(x) for x in d["since_sync"])
        max_count, max_amount = (int(x) for x in d["offline_limits"])
    except (KeyError, TypeError, ValueError):
        return None
    synced = int(d.get("synced_counter", 0))
    return OfflineState(max_count, max_amount, count, amount, synced, int(d.get("counter", synced)))


def _last_reading(journal: Journal, card_id: int) -> tuple[OfflineState | None, int | None, bool]:
    for event in reversed(journal.events(card_id=card_id, limit=200)):
        if event.outcome != "ok":
            continue
        renewed = event.kind == "authorisation" and event.detail.get("kind") == "sync_ack"
        if event.kind == "verify-card" or renewed:
            limits = _reading(event)
            if limits is not None:
                return limits, event.at, renewed
    return None, None, False


def _waiting(journal: Journal, now: int) -> dict[str, int]:
    """Card id -> the highest counter a downloaded, unexpired SYNC_ACK acknowledges."""
    out: dict[str, int] = {}
    for stored in stored_authorisations(journal):
        if stored.audience != Audience.CARD or stored.kind != "sync_ack" or stored.not_after < now:
            continue
        try:
            auth = Authorisation.parse(stored.wire)
        except FormatError:
            continue
        if auth.kind is AuthKind.SYNC_ACK:
            out[stored.card_id] = max(out.get(stored.card_id, 0), auth.value)
    return out


def offline_summary(journal: Journal, now: int) -> OfflineSummary:
    """Everything ``pos status`` shows, for any screen."""
    waiting = _waiting(journal, now)
    cards: list[CardOffline] = []
    for card_id in sorted({r.card_id for r in journal.records()}):
        count, paise, oldest = journal.card_offline_exposure(card_id)
        limits, read_at, renewed = _last_reading(journal, card_id)
        ack = waiting.get(hex_id(card_id))
        synced = limits.synced_counter if limits is not None else 0
        cards.append(CardOffline(card_id, count, paise, oldest if count else None, limits, read_at, renewed,
                                 ack if ack is not None and ack > synced else None))  # fmt: skip
    return OfflineSummary(offline_status(journal, now), tuple(cards))


__all__ = ["CardOffline", "OfflineSummary", "offline_summary"]
