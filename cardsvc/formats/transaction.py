"""The card's transaction record: the contract between the beneficiary card application and central.

Every debit (and every other value-changing action) is made by the card itself, which returns one fixed-size
record signed with its own P-256 key. Central verifies each record with the card's public key, orders them by
the card's counter and checks the chain of previous-record hashes. The layout is in docs/formats.md.

Pure: no I/O, only ``struct``, ``hashlib`` and pyca/cryptography for the signature.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field, replace
from enum import IntEnum
from typing import Any, Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

from cardsvc.formats.errors import FieldValueError, RecordLengthError, SignatureError, UnsupportedVersionError

FORMAT_VERSION: Final = 1
#: version, type, card id, counter, scheme, amount, balance after, time, terminal, operator, facility,
#: reference, member index, previous-record hash (all big-endian, no padding).
_SIGNED = struct.Struct(">BBQIBIIIQQIIB8s")
SIGNED_LENGTH: Final = _SIGNED.size  # 60
SIGNATURE_LENGTH: Final = 64
RECORD_LENGTH: Final = SIGNED_LENGTH + SIGNATURE_LENGTH  # 124
PREV_HASH_LENGTH: Final = 8
GENESIS_PREV_HASH: Final = bytes(PREV_HASH_LENGTH)
MAX_MEMBER_INDEX: Final = 4  # head, spouse, three dependants

_U8 = 0xFF
_U32 = 0xFFFF_FFFF
_U64 = 0xFFFF_FFFF_FFFF_FFFF


_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())


class RecordType(IntEnum):
    """What the card did. The balance rule of each type is in :func:`expected_balance`."""

    BLOCK = 1  # hospital admission: hold the package amount (reference = package code)
    SETTLE = 2  # discharge: claim the final amount of a block (reference = counter of the BLOCK)
    RELEASE = 3  # cancel a block: the held amount returns (reference = counter of the BLOCK)
    CASH = 4  # cash disbursement at a paypoint
    PROOF_OF_LIFE = 5  # no value change (amount 0)
    TOP_UP = 6  # cover added by an authorisation from central
    RENEWAL = 7  # new policy year: balance set to amount
    SPLIT = 8  # cover moved to a split card (central's SPLIT authorisation): balance lowered by amount


_RECORD_TYPES = frozenset(int(t) for t in RecordType)


def record_hash(raw: bytes) -> bytes:
    """The full SHA-256 of a whole encoded record (signature included): the record's content hash."""
    return hashlib.sha256(raw).digest()


def chain_hash(raw: bytes) -> bytes:
    """The 8-byte link the next record carries: first 8 bytes of SHA-256 of this whole record."""
    return record_hash(raw)[:PREV_HASH_LENGTH]


def _check_range(name: str, value: int, maximum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise FieldValueError(f"{name} must be an int, got {type(value).__name__}")
    if not 0 <= value <= maximum:
        raise FieldValueError(f"{name}={value} is outside 0..{maximum}")


@dataclass(frozen=True, slots=True)
class TransactionRecord:
    """One record from a card's log. ``signature`` is raw r||s (64 bytes) over :meth:`signed_part`."""

    record_type: RecordType
    card_id: int
    counter: int
    scheme_id: int
    amount: int  # paise
    balance_after: int  # paise
    time: int  # unix seconds, supplied by the terminal, bound by the card's signature
    terminal_id: int
    operator_id: int
    facility_id: int
    reference: int
    member_index: int
    prev_hash: bytes = GENESIS_PREV_HASH
    signature: bytes = field(default=bytes(SIGNATURE_LENGTH), repr=False)
    version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        if self.version != FORMAT_VERSION:
            raise UnsupportedVersionError(f"transaction record version {self.version} (known: 1)")
        try:
            object.__setattr__(self, "record_type", RecordType(self.record_type))
        except ValueError:
            raise FieldValueError(f"record_type={self.record_type} is not a known RecordType") from None
        for name, maximum in (
            ("card_id", _U64),
            ("counter", _U32),
            ("scheme_id", _U8),
            ("amount", _U32),
            ("balance_after", _U32),
            ("time", _U32),
            ("terminal_id", _U64),
            ("operator_id", _U64),
            ("facility_id", _U32),
            ("reference", _U32),
            ("member_index", MAX_MEMBER_INDEX),
        ):
            _check_range(name, getattr(self, name), maximum)
        if self.counter == 0:
            raise FieldValueError("counter=0: card counters start at 1")
        if not isinstance(self.prev_hash, bytes) or len(self.prev_hash) != PREV_HASH_LENGTH:
            raise FieldValueError(f"prev_hash must be {PREV_HASH_LENGTH} bytes")
        if not isinstance(self.signature, bytes) or len(self.signature) != SIGNATURE_LENGTH:
            raise FieldValueError(f"signature must be {SIGNATURE_LENGTH} bytes (raw r||s)")

    def signed_part(self) -> bytes:
        """The 60 bytes the card signs: every field before the signature."""
        return _SIGNED.pack(
            self.version,
            self.record_type,
            self.card_id,
            self.counter,
            self.scheme_id,
            self.amount,
            self.balance_after,
            self.time,
            self.terminal_id,
            self.operator_id,
            self.facility_id,
            self.reference,
            self.member_index,
            self.prev_hash,
        )

    def encode(self) -> bytes:
        """The 124-byte wire form: signed part then signature."""
        return self.signed_part() + self.signature

    @classmethod
    def parse(cls, raw: bytes) -> TransactionRecord:
        """Strictly parse one record; raises a :class:`~cardsvc.formats.errors.FormatError` subclass."""
        if not isinstance(raw, bytes | bytearray | memoryview):
            raise FieldValueError(f"record must be bytes, got {type(raw).__name__}")
        raw = bytes(raw)
        fields = unpack_fields(raw)
        return cls(
            version=fields[0],
            record_type=fields[1],
            card_id=fields[2],
            counter=fields[3],
            scheme_id=fields[4],
            amount=fields[5],
            balance_after=fields[6],
            time=fields[7],
            terminal_id=fields[8],
            operator_id=fields[9],
            facility_id=fields[10],
            reference=fields[11],
            member_index=fields[12],
            prev_hash=fields[13],
            signature=raw[SIGNED_LENGTH:],
        )

    def signed_with(self, private_key: ec.EllipticCurvePrivateKey) -> TransactionRecord:
        """A copy signed with ``private_key`` (what the card does; used by simulators and tests)."""
        return replace(self, signature=sign_raw(private_key, self.signed_part()))

    def verify(self, card_public_key: ec.EllipticCurvePublicKey) -> None:
        """Raise :class:`SignatureError` unless the card's key signed this record."""
        verify_raw_signature(card_public_key, self.signed_part(), self.signature)

    def content_hash(self) -> bytes:
        """SHA-256 of the whole encoded record: identifies this exact record across uploads."""
        return record_hash(self.encode())

    def link(self) -> bytes:
        """The ``prev_hash`` the card's next record must carry."""
        return chain_hash(self.encode())


def unpack_fields(raw: bytes) -> tuple[Any, ...]:
    """The 14 signed fields of a record, checked as strictly as :meth:`TransactionRecord.parse`.

    The fast path for bulk ingest: a fixed-width unpack cannot overflow a field, so only the version, the
    type, the counter and the member index need checking here.
    """
    if raw[:1] and raw[0] != FORMAT_VERSION:
        raise UnsupportedVersionError(f"transaction record version {raw[0]} (known: {FORMAT_VERSION})")
    if len(raw) != RECORD_LENGTH:
        raise RecordLengthError(f"transaction record is {len(raw)} bytes, expected {RECORD_LENGTH}")
    fields = _SIGNED.unpack_from(raw)
    if fields[1] not in _RECORD_TYPES:
        raise FieldValueError(f"record_type={fields[1]} is not a known RecordType")
    if fields[3] == 0:
        raise FieldValueError("counter=0: card counters start at 1")
    if fields[12] > MAX_MEMBER_INDEX:
        raise FieldValueError(f"member_index={fields[12]} is outside 0..{MAX_MEMBER_INDEX}")
    return fields


def verify_raw_signature(public_key: ec.EllipticCurvePublicKey, message: bytes, signature: bytes) -> None:
    """Verify a raw r||s P-256 signature over SHA-256(message); raise :class:`SignatureError` if it fails."""
    if len(signature) != SIGNATURE_LENGTH:
        raise SignatureError("signature has the wrong length")
    r = int.from_bytes(signature[:32], "big")
    s = int.from_bytes(signature[32:], "big")
    try:
        public_key.verify(encode_dss_signature(r, s), message, _ECDSA_SHA256)
    except (InvalidSignature, ValueError):
        raise SignatureError("signature does not verify") from None


def sign_raw(private_key: ec.EllipticCurvePrivateKey, message: bytes) -> bytes:
    """Sign SHA-256(message) with P-256; raw r||s (64 bytes) is the whole project's convention."""
    r, s = decode_dss_signature(private_key.sign(message, _ECDSA_SHA256))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def expected_balance(
    record: TransactionRecord, previous_balance: int, blocked_amount: int | None
) -> int | None:
    """The balance the card must report after ``record``, or None when it cannot be known.

    ``blocked_amount`` is the amount of the BLOCK a SETTLE or RELEASE refers to (None if unknown).
    """
    kind = record.record_type
    if kind in (RecordType.BLOCK, RecordType.CASH):
        return previous_balance - record.amount
    if kind is RecordType.SETTLE:
        return None if blocked_amount is None else previous_balance + blocked_amount - record.amount
    if kind is RecordType.RELEASE:
        return None if blocked_amount is None else previous_balance + blocked_amount
    if kind is RecordType.PROOF_OF_LIFE:
        return previous_balance
    if kind is RecordType.TOP_UP:
        return previous_balance + record.amount
    if kind is RecordType.SPLIT:
        return previous_balance - record.amount
    return record.amount  # RENEWAL: the new year's cover
