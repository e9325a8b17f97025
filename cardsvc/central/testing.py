"""Simulated field parts for tests and the benchmark: a card that signs records, a terminal that uploads.

Not used by the service itself. The card here only models the record-making rules of the transaction
format (counter, balance, chain, signature); the real card OS simulator lives in hardware_sims/card.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from cardsvc.central.services.auth import sign_request
from cardsvc.central.services.terminals import public_key_bytes
from cardsvc.formats.batch import Batch, BatchKind, CampCard, Gender, Item, Member, TransactionItem
from cardsvc.formats.transaction import GENESIS_PREV_HASH, RecordType, TransactionRecord, expected_balance

DEFAULT_COVER = 3_000_000  # Rs 30,000 in paise


def p256_key(rng: random.Random) -> ec.EllipticCurvePrivateKey:
    """A P-256 private key drawn from ``rng`` (deterministic tests; never for real keys)."""
    return ec.derive_private_key(rng.randrange(1, 2**255), ec.SECP256R1())


@dataclass
class SimCard:
    """A beneficiary card's log: makes correctly chained, signed records the way the card must."""

    card_id: int
    key: ec.EllipticCurvePrivateKey
    balance: int = DEFAULT_COVER
    counter: int = 0
    link: bytes = GENESIS_PREV_HASH
    blocks: dict[int, int] = field(default_factory=dict)
    log: list[TransactionRecord] = field(default_factory=list)

    @classmethod
    def new(cls, card_id: int, rng: random.Random, cover: int = DEFAULT_COVER) -> SimCard:
        return cls(card_id=card_id, key=p256_key(rng), balance=cover)

    @property
    def public_key(self) -> bytes:
        return public_key_bytes(self.key.public_key())

    def transact(
        self, record_type: RecordType, amount: int, time: int, terminal_id: int, operator_id: int,
        facility_id: int, reference: int = 0, member_index: int = 0, **overrides: Any,
    ) -> TransactionRecord:  # fmt: skip
        """Make the next record; ``overrides`` forge fields after the honest values are computed."""
        draft = TransactionRecord(
            record_type=record_type, card_id=self.card_id, counter=self.counter + 1, scheme_id=1,
            amount=amount, balance_after=0, time=time, terminal_id=terminal_id, operator_id=operator_id,
            facility_id=facility_id, reference=reference, member_index=member_index, prev_hash=self.link,
        )  # fmt: skip
        links_block = record_type in (RecordType.SETTLE, RecordType.RELEASE)
        blocked = self.blocks.get(reference) if links_block else None
        balance = expected_balance(draft, self.balance, blocked)
        if balance is None or balance < 0:
            raise ValueError(f"card {self.card_id:016x} cannot do {record_type.name} of {amount}")
        record = replace(draft, **{"balance_after": balance, **overrides}).signed_with(self.key)
        self.counter = record.counter
        self.balance = record.balance_after
        self.link = record.link()
        if record_type is RecordType.BLOCK:
            self.blocks[record.counter] = amount
        self.log.append(record)
        return record

    def items(self, records: list[TransactionRecord] | None = None) -> list[TransactionItem]:
        chosen = self.log if records is None else records
        return [TransactionItem(r.encode(), self.public_key) for r in chosen]

    def camp_card(
        self, district: str, policy_start: int, policy_end: int, fko_id: int, household: str | None = None,
        members: tuple[Member, ...] = (Member(Gender.FEMALE, 1980), Member(Gender.MALE, 1978)),
    ) -> CampCard:  # fmt: skip
        return CampCard(
            card_id=self.card_id, household_id=household or f"HH-{self.card_id:x}", district=district,
            scheme_id=1, policy_start=policy_start, policy_end=policy_end, cover_paise=DEFAULT_COVER,
            card_key=self.public_key, fko_id=fko_id, members=members,
        )  # fmt: skip


@dataclass
class SimTerminal:
    """A field terminal: signs batches and API requests with its P-256 key."""

    terminal_id: int
    key: ec.EllipticCurvePrivateKey
    seq: int = 0

    @classmethod
    def new(cls, terminal_id: int, rng: random.Random) -> SimTerminal:
        return cls(terminal_id=terminal_id, key=p256_key(rng))

    def batch(self, kind: BatchKind, items: Sequence[Item], created: int, seq: int | None = None) -> bytes:
        """The signed wire document of a new batch."""
        if seq is None:
            self.seq += 1
            seq = self.seq
        return Batch(kind, self.terminal_id, seq, created, tuple(items)).sign(self.key).encode()

    def headers(
        self, method: str, path: str, body: bytes, now: int, nonce: str | None = None
    ) -> dict[str, str]:
        return sign_request(self.key, self.terminal_id, method, path, body, now, nonce)


@dataclass
class FixedClock:
    """An injectable clock (``CLOCK`` config) that moves only when a test says so."""

    now: float

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
