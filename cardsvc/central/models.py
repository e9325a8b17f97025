"""Typed SQLAlchemy 2.0 models of the central store (SQLite embedded, PostgreSQL in production).

Conventions: 8-byte identifiers (cards, terminals, operators, FKOs) are stored as 16 lower-case hex digits,
as they appear in JSON; times are unix seconds (BigInteger), the same unit the card records carry. The schema
itself is created only by the Alembic migrations in ``migrations/`` (kept in step with these classes).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

#: BIGINT on PostgreSQL; INTEGER on SQLite, where only INTEGER PRIMARY KEY auto-increments.
BigId = BigInteger().with_variant(Integer(), "sqlite")
HEX_ID = 16

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class TerminalStatus(StrEnum):
    ACTIVE = "active"
    REVOKED = "revoked"


class Facility(Base):
    """A hospital or paypoint; coordinates feed the impossible-travel check."""

    __tablename__ = "facilities"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    name: Mapped[str] = mapped_column(String(200))
    district: Mapped[str] = mapped_column(String(200))
    latitude: Mapped[float] = mapped_column(Float)
    longitude: Mapped[float] = mapped_column(Float)


class Terminal(Base):
    """A registered terminal and the P-256 key it signs requests and batches with."""

    __tablename__ = "terminals"
    id: Mapped[str] = mapped_column(String(HEX_ID), primary_key=True)
    public_key: Mapped[bytes] = mapped_column(LargeBinary)  # SEC1 point (the leaf's, when certified)
    #: CV certificates from below the root down to the terminal, base64 (cardsvc.pki); None: a plain key
    certificate_chain: Mapped[list[Any] | None] = mapped_column(JSON)
    facility_id: Mapped[int | None] = mapped_column(ForeignKey("facilities.id"))
    status: Mapped[str] = mapped_column(String(16), default=TerminalStatus.ACTIVE)
    registered_at: Mapped[int] = mapped_column(BigInteger)
    revoked_at: Mapped[int | None] = mapped_column(BigInteger)


class Operator(Base):
    """A facility operator (clerk) known by the id on their officer card."""

    __tablename__ = "operators"
    id: Mapped[str] = mapped_column(String(HEX_ID), primary_key=True)
    facility_id: Mapped[int | None] = mapped_column(ForeignKey("facilities.id"))
    revoked_at: Mapped[int | None] = mapped_column(BigInteger)


class Card(Base):
    """A beneficiary card as reported by its camp: household, cover, policy period, public key."""

    __tablename__ = "cards"
    card_id: Mapped[str] = mapped_column(String(HEX_ID), primary_key=True)
    household_id: Mapped[str] = mapped_column(String(200))
    district: Mapped[str] = mapped_column(String(200), index=True)
    scheme_id: Mapped[int] = mapped_column(SmallInteger)
    policy_start: Mapped[int] = mapped_column(BigInteger)
    policy_end: Mapped[int] = mapped_column(BigInteger)
    cover_paise: Mapped[int] = mapped_column(BigInteger)
    public_key: Mapped[bytes] = mapped_column(LargeBinary)
    fko_id: Mapped[str] = mapped_column(String(HEX_ID), index=True)
    members: Mapped[list[Any]] = mapped_column(JSON)
    batch_id: Mapped[int] = mapped_column(ForeignKey("batches.id"))
    revoked_at: Mapped[int | None] = mapped_column(BigInteger)
    #: every scheme on the card with its cover ``[{scheme_id, cover_paise}]`` when the camp reported them
    schemes: Mapped[list[Any] | None] = mapped_column(JSON)
    #: earlier periods, oldest first (empty until the card is renewed): services/renewals.py
    periods: Mapped[list[CardPeriod]] = relationship(
        primaryjoin="Card.card_id == foreign(CardPeriod.card_id)", order_by="CardPeriod.serial",
        viewonly=True, lazy="select",
    )  # fmt: skip


class CardPeriod(Base):
    """One policy period of a renewed card, kept as history. ``cards`` holds the CURRENT period (scheme,
    cover, schemes, start and end); once a renewal is committed on the card, the camp's period (serial 0)
    and each renewal (its RENEW_POLICY serial, the RENEWAL records' ``reference``) are rows here, so
    reconciliation and settlement still judge old-year records by the old year. services/renewals.py.

    Times as in ``cards``: from 00:00:00 UTC of the first day to 23:59:59 of the last (the camp's values
    as the camp sent them)."""

    __tablename__ = "card_periods"
    __table_args__ = (UniqueConstraint("card_id", "serial", name="uq_card_periods_card_serial"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    card_id: Mapped[str] = mapped_column(String(HEX_ID))
    serial: Mapped[int] = mapped_column(BigInteger)  # 0: the camp's period
    policy_start: Mapped[int] = mapped_column(BigInteger)
    policy_end: Mapped[int] = mapped_column(BigInteger)
    scheme_id: Mapped[int] = mapped_column(SmallInteger)
    cover_paise: Mapped[int] = mapped_column(BigInteger)
    schemes: Mapped[list[Any] | None] = mapped_column(JSON)
    #: the RENEW_POLICY authorisation (None: the camp's period)
    authorisation_id: Mapped[str | None] = mapped_column(String(HEX_ID))
    #: the counter of the renewal's first RENEWAL record: records after it may use this period
    counter: Mapped[int | None] = mapped_column(BigInteger)
    committed_at: Mapped[int | None] = mapped_column(BigInteger)  # that record's time
    recorded_at: Mapped[int] = mapped_column(BigInteger)  # when central moved the register


class BatchRow(Base):
    """An accepted upload, raw bytes kept; the content hash makes uploads idempotent."""

    __tablename__ = "batches"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    content_hash: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    terminal_id: Mapped[str] = mapped_column(String(HEX_ID), index=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    created: Mapped[int] = mapped_column(BigInteger)
    received_at: Mapped[int] = mapped_column(BigInteger)
    uploaded_by: Mapped[str] = mapped_column(String(HEX_ID))
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    item_count: Mapped[int] = mapped_column(Integer)
    new_items: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default="accepted")


class TransactionRow(Base):
    """One verified card record: raw bytes and every parsed field."""

    __tablename__ = "transactions"
    __table_args__ = (
        UniqueConstraint("card_id", "counter", "content_hash", name="uq_transactions_card_counter_hash"),
        Index("ix_transactions_facility_type", "facility_id", "record_type"),
    )
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    card_id: Mapped[str] = mapped_column(String(HEX_ID))
    counter: Mapped[int] = mapped_column(BigInteger)
    content_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    record_type: Mapped[int] = mapped_column(SmallInteger)
    scheme_id: Mapped[int] = mapped_column(SmallInteger)
    amount: Mapped[int] = mapped_column(BigInteger)
    balance_after: Mapped[int] = mapped_column(BigInteger)
    time: Mapped[int] = mapped_column(BigInteger)
    terminal_id: Mapped[str] = mapped_column(String(HEX_ID))
    operator_id: Mapped[str] = mapped_column(String(HEX_ID))
    facility_id: Mapped[int] = mapped_column(BigInteger)
    reference: Mapped[int] = mapped_column(BigInteger)
    member_index: Mapped[int] = mapped_column(SmallInteger)
    prev_hash: Mapped[bytes] = mapped_column(LargeBinary(8))
    key_source: Mapped[str] = mapped_column(String(16))  # "registered" | "presented"
    batch_id: Mapped[int] = mapped_column(ForeignKey("batches.id"))


class FkoLedgerRow(Base):
    """One FKO card's ledger as read back after a camp."""

    __tablename__ = "fko_ledgers"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("batches.id"))
    fko_id: Mapped[str] = mapped_column(String(HEX_ID), index=True)
    activated: Mapped[list[Any]] = mapped_column(JSON)
    #: what central checked of the officer card's own signature (services/ledgers.py): chain | signature
    officer_verified: Mapped[str | None] = mapped_column(String(16))


class FlagRow(Base):
    """A reconciliation finding for staff to review. ``dedup_key`` keeps re-runs from repeating it."""

    __tablename__ = "flags"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32), index=True)
    card_id: Mapped[str | None] = mapped_column(String(HEX_ID))
    facility_id: Mapped[int | None] = mapped_column(BigInteger)
    terminal_id: Mapped[str | None] = mapped_column(String(HEX_ID))
    details: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[int] = mapped_column(BigInteger)
    dedup_key: Mapped[str] = mapped_column(String(64), unique=True)
    #: set when staff reviewed the finding and cleared it: a resolved flag holds no claim or authorisation
    resolved_at: Mapped[int | None] = mapped_column(BigInteger)
    resolution: Mapped[str | None] = mapped_column(String(200))


class Package(Base):
    """A hospital package in the catalogue; a price change is a new version, old ones stay."""

    __tablename__ = "packages"
    __table_args__ = (UniqueConstraint("code", "version", name="uq_packages_code_version"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    code: Mapped[int] = mapped_column(BigInteger)
    version: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(200))
    price_paise: Mapped[int] = mapped_column(BigInteger)
    valid_from: Mapped[int] = mapped_column(BigInteger)
    category: Mapped[str] = mapped_column(String(60), server_default="general")


class NonceRow(Base):
    """Request nonces seen recently, per terminal: a second use is a replay."""

    __tablename__ = "nonces"
    terminal_id: Mapped[str] = mapped_column(String(HEX_ID), primary_key=True)
    nonce: Mapped[str] = mapped_column(String(64), primary_key=True)
    seen_at: Mapped[int] = mapped_column(BigInteger, index=True)


class SealedTemplates(Base):
    """A camp card's fingerprint templates for de-duplication, as the station sealed them to central's key.

    The sealed box (cardsvc/formats/templates.py: ECDH P-256 + HKDF + AES-GCM, a fresh key and nonce per
    card, the card id bound as associated data) is what is stored: encrypted at rest, opened only in memory
    by the de-duplication search. Never images.
    """

    __tablename__ = "sealed_templates"
    card_id: Mapped[str] = mapped_column(String(HEX_ID), primary_key=True)
    district: Mapped[str] = mapped_column(String(200), index=True)
    sealed: Mapped[bytes] = mapped_column(LargeBinary)
    received_at: Mapped[int] = mapped_column(BigInteger)
    searched_at: Mapped[int | None] = mapped_column(BigInteger)


class SettlementRun(Base):
    """One settlement of one facility for one period: recorded once (idempotent per facility + period)."""

    __tablename__ = "settlement_runs"
    __table_args__ = (
        UniqueConstraint("facility_id", "period_start", "period_end", name="uq_settlement_runs_period"),
    )
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    facility_id: Mapped[int] = mapped_column(BigInteger)
    period_start: Mapped[int] = mapped_column(BigInteger)
    period_end: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[int] = mapped_column(BigInteger)
    payable_count: Mapped[int] = mapped_column(Integer)
    payable_paise: Mapped[int] = mapped_column(BigInteger)
    held_count: Mapped[int] = mapped_column(Integer)
    held_paise: Mapped[int] = mapped_column(BigInteger)
    claims: Mapped[list[Any]] = mapped_column(JSON)


class AuthorisationRow(Base):
    """A signed authorisation central issued (station: renew/split/replace; card: top-up/renewal/...)."""

    __tablename__ = "authorisations"
    id: Mapped[str] = mapped_column(String(HEX_ID), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    card_id: Mapped[str] = mapped_column(String(HEX_ID), index=True)
    district: Mapped[str] = mapped_column(String(200), index=True)
    audience: Mapped[str] = mapped_column(String(16))  # "station" | "card"
    serial: Mapped[int] = mapped_column(BigInteger)
    issued_at: Mapped[int] = mapped_column(BigInteger)
    not_after: Mapped[int] = mapped_column(BigInteger)
    wire: Mapped[bytes] = mapped_column(LargeBinary)
    #: open flags on the card when issued (a de-duplication flag blocks instead; see services/authorise.py)
    marks: Mapped[list[Any]] = mapped_column(JSON)


class PublishedList(Base):
    """A signed list central published (revocations, catalogue): a new version only when content changes."""

    __tablename__ = "published_lists"
    __table_args__ = (UniqueConstraint("kind", "version", name="uq_published_lists_kind_version"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))
    version: Mapped[int] = mapped_column(BigInteger)
    issued_at: Mapped[int] = mapped_column(BigInteger)
    content_hash: Mapped[str] = mapped_column(String(64))
    wire: Mapped[bytes] = mapped_column(LargeBinary)


class FallbackRow(Base):
    """A fallback a terminal journalled (another finger, another member, supervised override), uploaded in a
    ``fallbacks`` batch; stored once per terminal and content (``content_hash``). services/fallbacks.py."""

    __tablename__ = "fallbacks"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    content_hash: Mapped[str] = mapped_column(String(64), unique=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("batches.id"))
    terminal_id: Mapped[str] = mapped_column(String(HEX_ID), index=True)
    facility_id: Mapped[int | None] = mapped_column(BigInteger)
    event: Mapped[int] = mapped_column(BigInteger)  # the terminal's journal event number
    at: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(24))  # another-finger | another-member | supervised-override
    card_id: Mapped[str] = mapped_column(String(HEX_ID), index=True)
    member: Mapped[int] = mapped_column(SmallInteger)
    operator_id: Mapped[str] = mapped_column(String(HEX_ID), index=True)
    supervisor_id: Mapped[str | None] = mapped_column(String(HEX_ID))
    reason: Mapped[str | None] = mapped_column(String(40))
    note: Mapped[str | None] = mapped_column(String(200))
    #: card counters of the records made on the strength of this verification
    records: Mapped[list[Any]] = mapped_column(JSON)
