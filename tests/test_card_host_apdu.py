"""APDU wire format, card limits from the ATR / EF.ATR, and SW -> typed errors."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cardsvc.card.apdu import CardLimits, CommandApdu, ResponseApdu
from cardsvc.card.atr import AtrInfo, limits_from_extended_length_info
from cardsvc.card.errors import (
    ApduError,
    ApduTooLongError,
    AuthBlockedError,
    CardFileNotFoundError,
    NotEnoughMemoryError,
    ProtocolError,
    SecurityStatusError,
    WrongPinError,
    error_for_sw,
    raise_for_sw,
)
from cardsvc.card.iso import SW, sw_name
from cardsvc.tlv import Tlv


@pytest.mark.parametrize(
    ("apdu", "wire"),
    [
        (CommandApdu(0, 0x84, 0, 0), "00840000"),  # case 1
        (CommandApdu(0, 0x84, 0, 0, le=8), "0084000008"),  # case 2S
        (CommandApdu(0, 0xB0, 0, 0, le=256), "00B0000000"),  # Le 256 encodes as 00
        (CommandApdu(0, 0xA4, 4, 0, b"\xa0\x00"), "00A4040002A000"),  # case 3S
        (CommandApdu(0, 0xA4, 4, 0, b"\xa0\x00", 256), "00A4040002A00000"),  # case 4S
        (CommandApdu(0, 0xB0, 0, 0, le=8192), "00B00000002000"),  # case 2E
        (CommandApdu(0, 0xB0, 0, 0, le=65536), "00B00000000000"),  # Le 65536 encodes as 0000
    ],
)
def test_encode_picks_the_short_form_unless_needed(apdu: CommandApdu, wire: str) -> None:
    assert apdu.encode(CardLimits.extended()).hex().upper() == wire
    assert CommandApdu.decode(bytes.fromhex(wire)) == apdu


def test_extended_case_4_encoding() -> None:
    apdu = CommandApdu(0, 0xD6, 0, 0, bytes(300), le=1000)
    wire = apdu.encode(CardLimits.extended())
    assert wire[:7] == bytes.fromhex("00D6000000012C") and wire[-2:] == bytes.fromhex("03E8")
    assert len(wire) == 4 + 3 + 300 + 2
    assert CommandApdu.decode(wire) == apdu


def test_a_short_only_card_refuses_an_apdu_that_needs_extended_length() -> None:
    with pytest.raises(ApduTooLongError, match="needs extended length"):
        CommandApdu(0, 0xD6, 0, 0, bytes(300)).encode(CardLimits.short())


@given(
    cla=st.integers(0, 255),
    ins=st.integers(0, 255),
    data=st.binary(max_size=700),
    le=st.integers(0, 65536),
)
def test_decode_inverts_encode(cla: int, ins: int, data: bytes, le: int) -> None:
    apdu = CommandApdu(cla, ins, 1, 2, data, le)
    assert CommandApdu.decode(apdu.encode(CardLimits.extended())) == apdu


def test_decode_rejects_inconsistent_lc() -> None:
    with pytest.raises(ProtocolError, match="Lc 5"):
        CommandApdu.decode(bytes.fromhex("00D6000005AABB"))


def test_response_families() -> None:
    assert ResponseApdu.decode(bytes.fromhex("AABB9000")) == ResponseApdu(b"\xaa\xbb", 0x9000)
    assert ResponseApdu(b"", 0x6100).bytes_available == 256
    assert ResponseApdu(b"", 0x6C10).correct_le == 16
    with pytest.raises(ProtocolError, match="no status word"):
        ResponseApdu.decode(b"\x90")


# --- status words -> errors -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sw", "cls"),
    [
        (0x6982, SecurityStatusError),
        (0x6983, AuthBlockedError),
        (0x6A82, CardFileNotFoundError),
        (0x6A84, NotEnoughMemoryError),
        (0x6F00, ApduError),
        (0x6999, ApduError),
    ],
)
def test_status_words_map_to_typed_errors(sw: int, cls: type[ApduError]) -> None:
    err = error_for_sw(sw)
    assert type(err) is cls and err.sw == sw


def test_wrong_pin_carries_attempts_remaining() -> None:
    with pytest.raises(WrongPinError) as info:
        raise_for_sw(0x63C2)
    assert info.value.attempts_remaining == 2
    assert "2 attempt(s) remaining" in str(info.value)


def test_error_text_names_the_status_word() -> None:
    assert str(error_for_sw(0x6A82)) == "card returned FILE_NOT_FOUND (6A82)"
    assert "UNKNOWN_SW (6999)" in str(error_for_sw(0x6999))
    assert sw_name(0x6110) == "BYTES_AVAILABLE 16 (6110)"
    raise_for_sw(SW.OK)  # no error


# --- limits -----------------------------------------------------------------------------------------


def _atr(historical: bytes) -> bytes:
    # TS, T0 (TD1 present, K historical bytes), TD1 = T=1, then historical bytes, then TCK
    body = bytes([0x3B, 0x80 | len(historical), 0x01]) + historical
    tck = 0
    for b in body[1:]:
        tck ^= b
    return body + bytes([tck])


def test_atr_card_capabilities_announce_extended_length_and_chaining() -> None:
    info = AtrInfo.parse(_atr(bytes.fromhex("80 73 00 00 E0")))
    assert info.protocols == {1}
    assert info.extended_length and info.command_chaining and info.extended_info_in_ef_atr
    assert info.limits() == CardLimits.extended()


def test_atr_without_capabilities_means_short_apdus() -> None:
    info = AtrInfo.parse(bytes.fromhex("3B 02 14 50"))
    assert info.extended_length is None
    assert info.limits() == CardLimits.short()


def test_atr_short_only_card_without_chaining() -> None:
    limits = AtrInfo.parse(_atr(bytes.fromhex("80 73 00 00 00"))).limits()
    assert not limits.extended_length and not limits.command_chaining


def test_truncated_atr_is_refused() -> None:
    with pytest.raises(ProtocolError, match="historical"):
        AtrInfo.parse(bytes.fromhex("3B 05 14"))


def test_ef_atr_extended_length_info_narrows_limits() -> None:
    ef_atr = Tlv(0x7F66, Tlv(0x02, (1024 + 9).to_bytes(2, "big")) + Tlv(0x02, (2048 + 2).to_bytes(2, "big")))
    limits = limits_from_extended_length_info(CardLimits.extended(), ef_atr)
    assert (limits.max_command_data, limits.max_response_data) == (1024, 2048)
    assert limits.extended_length


def test_ef_atr_without_7f66_keeps_limits() -> None:
    base = CardLimits.short()
    assert limits_from_extended_length_info(base, Tlv(0x47, b"\x00\x00\x00")) is base


def test_repr_never_shows_a_pin_or_sensitive_data() -> None:
    assert "313233" not in repr(CommandApdu(0, 0x20, 0, 0x81, b"123456"))
    assert "<6 bytes redacted>" in repr(CommandApdu(0, 0x20, 0, 0x81, b"123456"))
    assert "CAFE" not in repr(CommandApdu(0, 0xD6, 0, 0, b"\xca\xfe", sensitive=True))
    assert "CAFE" in repr(CommandApdu(0, 0xD6, 0, 0, b"\xca\xfe"))
