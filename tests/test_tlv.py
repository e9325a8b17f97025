"""BER-TLV value type: the encoding every format module relies on."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cardsvc.tlv import Tlv, TlvError, encode_length, parse_tlvs, tlv_dict


def test_multi_byte_tag_and_long_length_are_encoded_per_ber() -> None:
    t = Tlv(0x7F49, bytes(300))
    assert t[:5] == bytes.fromhex("7F4982012C")
    assert (t.tag, t.length, t.value) == (0x7F49, 300, bytes(300))


@pytest.mark.parametrize(
    ("length", "encoded"),
    [(0, "00"), (0x7F, "7F"), (0x80, "8180"), (0xFF, "81FF"), (0x100, "820100"), (0xFFFF, "82FFFF")],
)
def test_length_uses_shortest_form(length: int, encoded: str) -> None:
    assert encode_length(length).hex().upper() == encoded


def test_parse_sequence_with_two_byte_tag_and_padding() -> None:
    data = bytes.fromhex("5F2003414243 00 FF 8002 8001")
    tlvs = parse_tlvs(data)
    assert [t.tag for t in tlvs] == [0x5F20, 0x80]
    assert tlv_dict(data) == {0x5F20: b"ABC", 0x80: b"\x80\x01"}


def test_constructed_children() -> None:
    fcp = Tlv(0x62, Tlv(0x80, b"\x20\x00") + Tlv(0x83, b"\x01\x01"))
    assert fcp.constructed
    assert tlv_dict(fcp.value)[0x83] == b"\x01\x01"
    assert [c.tag for c in fcp.children()] == [0x80, 0x83]


@pytest.mark.parametrize(
    ("hexdata", "complaint"),
    [
        ("5F", "multi-byte tag"),
        ("8005AABB", "announces 5 bytes"),
        ("8080", "indefinite"),
        ("8181", "needs 1 more"),
        ("80850000000001", "too many bytes"),
    ],
)
def test_malformed_input_is_refused_with_reason(hexdata: str, complaint: str) -> None:
    with pytest.raises(TlvError, match=complaint):
        parse_tlvs(bytes.fromhex(hexdata))


def test_single_tlv_refuses_trailing_bytes() -> None:
    with pytest.raises(TlvError, match="trailing"):
        Tlv(bytes.fromhex("800101FF"))


def test_unpack_names_the_tag_found() -> None:
    assert Tlv.unpack(0x80, Tlv(0x80, b"x")) == b"x"
    with pytest.raises(TlvError, match="expected tag 81, found 80"):
        Tlv.unpack(0x81, Tlv(0x80, b"x"))


_tags = st.sampled_from([0x01, 0x53, 0x80, 0x9F1F, 0x5F20, 0x7F49, 0x7F66, 0x5F8101, 0xBF0C])


@given(st.lists(st.tuples(_tags, st.binary(max_size=600)), max_size=6))
def test_round_trip(items: list[tuple[int, bytes]]) -> None:
    encoded = b"".join(Tlv(tag, value) for tag, value in items)
    assert [(t.tag, t.value) for t in parse_tlvs(encoded)] == items
