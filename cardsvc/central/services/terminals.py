"""Terminals, facilities, operators: registration, revocation and the terminal-key lookup.

Key lookup is behind :class:`TerminalDirectory` so that, when ``cardsvc.pki`` lands, the terminal's CV
certificate chain (to the root) can be checked instead of trusting a raw key registered here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select
from sqlalchemy.orm import Session

from cardsvc.central.errors import AuthenticationError, ConflictError, NotFoundError
from cardsvc.central.models import Facility, Operator, Terminal, TerminalStatus
from cardsvc.formats.batch import id_hex, load_public_key
from cardsvc.pki.signer import point_of


@dataclass(frozen=True, slots=True)
class TerminalInfo:
    """What authentication and ingest need to know about a terminal."""

    id: str
    public_key: ec.EllipticCurvePublicKey
    facility_id: int | None
    revoked_at: int | None

    def revoked_by(self, when: int) -> bool:
        return self.revoked_at is not None and when >= self.revoked_at


class TerminalDirectory(Protocol):
    """Find a terminal's verified public key; raise AuthenticationError('unknown_terminal') if none."""

    def lookup(self, terminal_id: str) -> TerminalInfo: ...


class DbTerminalDirectory:
    """Terminal keys registered in the database (plain P-256 keys until the PKI's CV certificates)."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def lookup(self, terminal_id: str) -> TerminalInfo:
        row = self.session.get(Terminal, terminal_id)
        if row is None:
            raise AuthenticationError("unknown_terminal", f"terminal {terminal_id} is not registered")
        return TerminalInfo(
            id=row.id,
            public_key=load_public_key(row.public_key, f"key of terminal {terminal_id}"),
            facility_id=row.facility_id,
            revoked_at=row.revoked_at,
        )


def public_key_bytes(key: ec.EllipticCurvePublicKey) -> bytes:
    """The uncompressed SEC1 point (65 bytes) we store and carry in batches."""
    return point_of(key)


def add_facility(
    session: Session, facility_id: int, name: str, district: str, latitude: float, longitude: float
) -> Facility:
    if not -90 <= latitude <= 90 or not -180 <= longitude <= 180:
        raise ValueError(f"facility {facility_id}: coordinates ({latitude}, {longitude}) are not on Earth")
    facility = Facility(id=facility_id, name=name, district=district, latitude=latitude, longitude=longitude)
    session.add(facility)
    return facility


def register_terminal(
    session: Session, terminal_id: int, public_key: ec.EllipticCurvePublicKey, now: int,
    facility_id: int | None = None,
) -> Terminal:  # fmt: skip
    """Register a terminal's key; a second registration of the same id is a conflict."""
    hex_id = id_hex(terminal_id)
    if session.get(Terminal, hex_id) is not None:
        raise ConflictError("terminal_exists", f"terminal {hex_id} is already registered")
    terminal = Terminal(
        id=hex_id,
        public_key=public_key_bytes(public_key),
        facility_id=facility_id,
        status=TerminalStatus.ACTIVE,
        registered_at=now,
        revoked_at=None,
    )
    session.add(terminal)
    return terminal


def revoke_terminal(session: Session, terminal_id: int, now: int) -> Terminal:
    """Revoke from ``now`` on: its requests are refused and records it makes later are flagged."""
    terminal = session.get(Terminal, id_hex(terminal_id))
    if terminal is None:
        raise NotFoundError("unknown_terminal", f"terminal {id_hex(terminal_id)} is not registered")
    if terminal.revoked_at is None:
        terminal.status = TerminalStatus.REVOKED
        terminal.revoked_at = now
    return terminal


def add_operator(session: Session, operator_id: int, facility_id: int | None = None) -> Operator:
    operator = Operator(id=id_hex(operator_id), facility_id=facility_id, revoked_at=None)
    session.add(operator)
    return operator


def revoke_operator(session: Session, operator_id: int, now: int) -> Operator:
    operator = session.get(Operator, id_hex(operator_id))
    if operator is None:
        operator = add_operator(session, operator_id)
    if operator.revoked_at is None:
        operator.revoked_at = now
    return operator


def revocation_list(session: Session) -> dict[str, list[dict[str, object]]]:
    """Revoked terminals, operators and cards (signing the list waits for cardsvc.pki)."""
    from cardsvc.central.models import Card

    terminals = session.execute(
        select(Terminal.id, Terminal.revoked_at).where(Terminal.revoked_at.is_not(None)).order_by(Terminal.id)
    ).all()
    operators = session.execute(
        select(Operator.id, Operator.revoked_at).where(Operator.revoked_at.is_not(None)).order_by(Operator.id)
    ).all()
    cards = session.execute(
        select(Card.card_id, Card.revoked_at).where(Card.revoked_at.is_not(None)).order_by(Card.card_id)
    ).all()
    return {
        "terminals": [{"id": t, "revoked_at": at} for t, at in terminals],
        "operators": [{"id": o, "revoked_at": at} for o, at in operators],
        "cards": [{"id": c, "revoked_at": at} for c, at in cards],
    }


def revoke_card(session: Session, card_id: int, now: int) -> None:
    """Blacklist a card (lost, replaced, cloned) from ``now`` on; published in the revocation lists."""
    from cardsvc.central.models import Card

    card = session.get(Card, id_hex(card_id))
    if card is None:
        raise NotFoundError("unknown_card", f"card {id_hex(card_id)} is not registered")
    if card.revoked_at is None:
        card.revoked_at = now
