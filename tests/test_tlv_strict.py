"""Strict BER-TLV (signed objects): one encoding per value, and the format module's own error type."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cardsvc.pki.cvc import CvCertificate
from cardsvc.pki.errors import FormatError
from cardsvc.tlv import Tlv, TlvError, expect_tags, parse_single, parse_tlvs, strict_codec, tlv

_tags = st.sampled_from([0x06, 0x42, 0x53, 0x86, 0x5F20, 0x5F37, 0x7F21, 0x7F49, 0x7F4E, 0x5F8101])


@pytest.mark.parametrize(
    ("hexdata", "complaint"),
    [
        ("428105" + "41" * 5, "non-minimal length 8105"),  # 5 fits the short form
        ("42820005" + "41" * 5, "non-minimal length 820005"),
        ("4282007F" + "41" * 0x7F, "non-minimal"),  # 0x7F fits 1 byte
        ("4283000100" + "41" * 0x100, "non-minimal"),  # 0x100 fits 82 0100
        ("420141 00", "byte 00 at offset 3 where a tag must start"),
        ("FF 420141", "byte FF at offset 0"),
        ("5F818101 00", "longer than 3 bytes"),
        ("4280", "unsupported TLV length byte 80"),
        ("4205414141", "truncated"),
    ],
)
def test_strict_refuses_what_lenient_parsing_tolerates_or_cannot_read(hexdata: str, complaint: str) -> None:
    data = bytes.fromhex(hexdata)
    with pytest.raises(TlvError, match=complaint):
        parse_tlvs(data, strict=True)


def test_lenient_mode_still_accepts_padding_and_wide_lengths() -> None:
    data = bytes.fromhex("428105" + "41" * 5 + "00FF" + "5301AA")
    assert [(t.tag, t.value) for t in parse_tlvs(data)] == [(0x42, b"A" * 5), (0x53, b"\xaa")]


def test_strict_children_are_strict_too() -> None:
    outer = Tlv(0x7F4E, bytes.fromhex("4201AA 00"), strict=True)  # the outer encoding itself is fine
    with pytest.raises(TlvError, match="byte 00"):
        outer.children()
    assert Tlv(0x7F4E, bytes.fromhex("4201AA 00")).children()[0].value == b"\xaa"  # lenient parent


def test_single_object_must_fill_the_data_and_carry_the_tag() -> None:
    raw = tlv(0x7F21, tlv(0x42, b"x"))
    assert parse_single(raw, 0x7F21).children()[0].value == b"x"
    with pytest.raises(TlvError, match="expected tag 7F4E, found 7F21"):
        parse_single(raw, 0x7F4E)
    with pytest.raises(TlvError, match="2 trailing bytes after tag 7F21"):
        parse_single(raw + b"\x00\x00", 0x7F21)


def test_expect_tags_names_both_layouts() -> None:
    items = parse_tlvs(tlv(0x42, b"a") + tlv(0x53, b"b"), strict=True)
    assert expect_tags(items, [0x42, 0x53], "body") == [b"a", b"b"]
    with pytest.raises(TlvError, match=r"body: expected tags \[42 5F20\], found \[42 53\]"):
        expect_tags(items, [0x42, 0x5F20], "body")


def test_codec_raises_the_format_modules_error() -> None:
    expect_sequence, parse_all, parse_single_, encode = strict_codec(FormatError)
    with pytest.raises(FormatError, match=r"\[format\] non-minimal"):
        parse_all(bytes.fromhex("428101") + b"A")
    with pytest.raises(FormatError, match="expected tag 7F21"):
        parse_single_(encode(0x42, b""), 0x7F21)
    with pytest.raises(FormatError, match="expected tags"):
        expect_sequence(parse_all(encode(0x42, b"")), [0x53], "x")
    with pytest.raises(FormatError, match="too large"):
        encode(0x42, bytes(1 << 24))


def test_a_certificate_with_a_re_encoded_length_is_refused() -> None:
    """The point of strictness: a signed body cannot be re-encoded (same values, other bytes) unnoticed."""
    with pytest.raises(FormatError, match="non-minimal"):
        CvCertificate.parse(bytes.fromhex("7F21 8103") + tlv(0x42, b"x"))


@given(st.lists(st.tuples(_tags, st.binary(max_size=400)), max_size=5))
def test_strict_round_trip_and_agreement_with_lenient(items: list[tuple[int, bytes]]) -> None:
    encoded = b"".join(tlv(tag, value) for tag, value in items)
    strict = parse_tlvs(encoded, strict=True)
    assert [(t.tag, t.value) for t in strict] == items
    assert strict == parse_tlvs(encoded)  # well-formed input reads the same in both modes
    assert b"".join(t.encoded for t in strict) == encoded


@given(st.binary(max_size=40))
def test_strict_accepts_only_what_it_would_encode_again(data: bytes) -> None:
    """Anything strict parsing accepts re-encodes to the very same bytes (one encoding per value)."""
    try:
        items = parse_tlvs(data, strict=True)
    except TlvError:
        return
    assert b"".join(tlv(t.tag, t.value) for t in items) == data
