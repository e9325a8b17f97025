"""The transaction record: fixed layout, strict parsing, the card's signature, the balance rules."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cardsvc.central.testing import p256_key
from cardsvc.formats.errors import FieldValueError, RecordLengthError, SignatureError, UnsupportedVersionError
from cardsvc.formats.transaction import (
    GENESIS_PREV_HASH,
    RECORD_LENGTH,
    SIGNED_LENGTH,
    RecordType,
    TransactionRecord,
    expected_balance,
)

KEY = p256_key(random.Random(7))
OTHER_KEY = p256_key(random.Random(8))


def make(**fields: object) -> TransactionRecord:
    values: dict[str, object] = dict(
        record_type=RecordType.BLOCK, card_id=0x0102030405060708, counter=5, scheme_id=1, amount=1_500_000,
        balance_after=1_500_000, time=1_800_000_000, terminal_id=0x1111, operator_id=0x2222, facility_id=42,
        reference=707, member_index=2, prev_hash=b"\x01" * 8,
    )  # fmt: skip
    values.update(fields)
    return TransactionRecord(**values)  # type: ignore[arg-type]


def test_layout_is_fixed_big_endian_and_documented_size() -> None:
    record = make().signed_with(KEY)
    raw = record.encode()
    assert len(raw) == RECORD_LENGTH == 124 and SIGNED_LENGTH == 60
    assert raw[0] == 1 and raw[1] == RecordType.BLOCK
    assert raw[2:10] == bytes.fromhex("0102030405060708")
    assert raw[10:14] == (5).to_bytes(4, "big")
    assert raw[52:60] == b"\x01" * 8 and raw[60:] == record.signature


def test_round_trip_and_verify() -> None:
    record = make().signed_with(KEY)
    parsed = TransactionRecord.parse(record.encode())
    assert parsed == record
    parsed.verify(KEY.public_key())


def test_every_single_byte_change_breaks_the_signature() -> None:
    raw = bytearray(make().signed_with(KEY).encode())
    for position in (1, 5, 12, 20, 30, 45, 55, 59, 70, 123):
        tampered = bytearray(raw)
        tampered[position] ^= 0x01
        try:
            record = TransactionRecord.parse(bytes(tampered))
        except FieldValueError:
            continue  # e.g. the type byte became unknown: refused even earlier
        with pytest.raises(SignatureError):
            record.verify(KEY.public_key())


def test_another_cards_key_does_not_verify() -> None:
    with pytest.raises(SignatureError):
        make().signed_with(KEY).verify(OTHER_KEY.public_key())


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (b"", RecordLengthError),
        (bytes([1]) * 123, RecordLengthError),
        (bytes([1]) * 125, RecordLengthError),
        (bytes([2]) + bytes(123), UnsupportedVersionError),
        (bytes([1, 99]) + bytes(122), FieldValueError),
    ],
)
def test_parse_is_strict(raw: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        TransactionRecord.parse(raw)


def test_counter_zero_and_member_out_of_range_refused() -> None:
    with pytest.raises(FieldValueError, match="counter"):
        make(counter=0)
    with pytest.raises(FieldValueError, match="member_index"):
        make(member_index=5)
    with pytest.raises(FieldValueError, match="amount"):
        make(amount=-1)


@given(
    record_type=st.sampled_from(list(RecordType)),
    card_id=st.integers(0, 2**64 - 1),
    counter=st.integers(1, 2**32 - 1),
    amount=st.integers(0, 2**32 - 1),
    time=st.integers(0, 2**32 - 1),
    facility=st.integers(0, 2**32 - 1),
    prev=st.binary(min_size=8, max_size=8),
    signature=st.binary(min_size=64, max_size=64),
)
def test_any_valid_record_round_trips(
    record_type: RecordType, card_id: int, counter: int, amount: int, time: int, facility: int, prev: bytes,
    signature: bytes,
) -> None:  # fmt: skip
    record = make(
        record_type=record_type, card_id=card_id, counter=counter, amount=amount, time=time,
        facility_id=facility, prev_hash=prev, signature=signature,
    )  # fmt: skip
    assert TransactionRecord.parse(record.encode()) == record


def test_chain_link_is_first_8_bytes_of_sha256() -> None:
    import hashlib

    record = make(prev_hash=GENESIS_PREV_HASH).signed_with(KEY)
    assert record.link() == hashlib.sha256(record.encode()).digest()[:8]


@pytest.mark.parametrize(
    ("kind", "amount", "blocked", "expected"),
    [
        (RecordType.BLOCK, 500, None, 9_500),
        (RecordType.CASH, 500, None, 9_500),
        (RecordType.SETTLE, 400, 500, 10_100),
        (RecordType.SETTLE, 400, None, None),
        (RecordType.RELEASE, 500, 500, 10_500),
        (RecordType.PROOF_OF_LIFE, 0, None, 10_000),
        (RecordType.TOP_UP, 700, None, 10_700),
        (RecordType.RENEWAL, 3_000_000, None, 3_000_000),
        (RecordType.SPLIT, 4_000, None, 6_000),  # the amount lowered, not the balance left
    ],
)
def test_balance_rules(kind: RecordType, amount: int, blocked: int | None, expected: int | None) -> None:
    assert expected_balance(replace(make(), record_type=kind, amount=amount), 10_000, blocked) == expected


@given(raw=st.binary(min_size=124, max_size=124))
def test_any_124_bytes_either_parse_and_round_trip_or_are_refused(raw: bytes) -> None:
    from cardsvc.formats.errors import FormatError

    try:
        record = TransactionRecord.parse(raw)
    except FormatError:
        return
    assert record.encode() == raw


@given(raw=st.binary(min_size=124, max_size=124).map(lambda b: bytes([1, 1 + b[1] % 7]) + b[2:]))
def test_fast_unpack_agrees_with_the_dataclass(raw: bytes) -> None:
    from cardsvc.formats.errors import FormatError
    from cardsvc.formats.transaction import unpack_fields

    try:
        fields = unpack_fields(raw)
    except FormatError:
        with pytest.raises(FormatError):
            TransactionRecord.parse(raw)
        return
    assert TransactionRecord.parse(raw).signed_part() == raw[:60]
    assert fields[3] == TransactionRecord.parse(raw).counter
