"""The PKI's TLV layer: lengths at every boundary round-trip; sloppy encodings are refused."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cardsvc.pki.errors import FormatError
from cardsvc.tlv import strict_codec

_, parse_all, parse_single, tlv = strict_codec(FormatError)


@pytest.mark.parametrize("n", [0, 0x7F, 0x80, 0xFF, 0x100, 0xFFFF, 0x10000])
def test_lengths_round_trip_at_the_boundaries(n: int) -> None:
    raw = tlv(0x7F71, b"\xaa" * n)
    item = parse_single(raw, 0x7F71)
    assert item.value == b"\xaa" * n and item.constructed


@given(st.lists(st.tuples(st.sampled_from([0x42, 0x5F20, 0x7F49, 0x80, 0x30]), st.binary(max_size=300))))
def test_any_sequence_round_trips(items: list[tuple[int, bytes]]) -> None:
    raw = b"".join(tlv(t, v) for t, v in items)
    assert [(i.tag, i.value) for i in parse_all(raw)] == items


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (bytes.fromhex("428105") + b"x" * 5, "non-minimal"),
        (bytes.fromhex("4205") + b"x" * 4, "truncated"),
        (bytes.fromhex("7F"), "truncated"),
        (bytes.fromhex("4280"), "unsupported TLV length"),
    ],
)
def test_sloppy_encodings_are_refused(raw: bytes, why: str) -> None:
    with pytest.raises(FormatError, match=why):
        parse_all(raw)


def test_trailing_bytes_after_a_single_object_are_refused() -> None:
    with pytest.raises(FormatError, match="1 trailing bytes"):
        parse_single(tlv(0x42, b"ab") + b"\x00", 0x42)
