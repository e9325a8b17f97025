"""Processor stack and ISO session against a fake connection (pytest-mock): one layer, no card."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from cardsvc.card.apdu import CardLimits, CommandApdu
from cardsvc.card.apdulog import TRAFFIC
from cardsvc.card.errors import (
    ApduTooLongError,
    AuthBlockedError,
    CardFileNotFoundError,
    ProtocolError,
    WrongPinError,
)
from cardsvc.card.protocol import SmartCardProtocol
from cardsvc.card.session import ApplicationSession, Iso7816Session
from cardsvc.tlv import Tlv


def fake_connection(mocker: Any, *responses: tuple[bytes, int]) -> Any:
    conn = mocker.Mock(spec=["send_and_receive", "close"])
    conn.send_and_receive.side_effect = list(responses)
    return conn


def sent(conn: Any) -> list[str]:
    return [c.args[0].hex().upper() for c in conn.send_and_receive.call_args_list]


def test_send_apdu_returns_data_on_9000(mocker: Any) -> None:
    conn = fake_connection(mocker, (b"\x01\x02", 0x9000))
    assert SmartCardProtocol(conn).send_apdu(0, 0xCA, 0, 0x6E, le=2) == b"\x01\x02"
    assert sent(conn) == ["00CA006E02"]


def test_61xx_is_collected_with_get_response(mocker: Any) -> None:
    conn = fake_connection(mocker, (b"A" * 256, 0x6100), (b"B" * 256, 0x6110), (b"C" * 16, 0x9000))
    data = SmartCardProtocol(conn).send_apdu(0, 0xB0, 0, 0, le=256)
    assert data == b"A" * 256 + b"B" * 256 + b"C" * 16
    assert sent(conn) == ["00B0000000", "00C0000000", "00C0000010"]


def test_6cxx_reissues_with_the_le_the_card_asks_for(mocker: Any) -> None:
    conn = fake_connection(mocker, (b"", 0x6C08), (b"12345678", 0x9000))
    assert SmartCardProtocol(conn).send_apdu(0, 0x84, 0, 0, le=16) == b"12345678"
    assert sent(conn) == ["0084000010", "0084000008"]


def test_endless_61xx_is_a_protocol_error(mocker: Any) -> None:
    conn = mocker.Mock(spec=["send_and_receive", "close"])
    conn.send_and_receive.return_value = (b"x" * 256, 0x6100)
    with pytest.raises(ProtocolError, match="keeps answering 61xx"):
        SmartCardProtocol(conn).send_apdu(0, 0xB0, 0, 0, le=256)


def test_long_data_is_chained_on_a_short_only_card(mocker: Any) -> None:
    conn = fake_connection(mocker, (b"", 0x9000), (b"", 0x9000), (b"ok", 0x9000))
    data = bytes(range(256)) * 2 + b"xyz"  # 515 bytes: 255 + 255 + 5
    assert SmartCardProtocol(conn, CardLimits.short()).send_apdu(0, 0xDA, 1, 2, data, le=2) == b"ok"
    wires = [c.args[0] for c in conn.send_and_receive.call_args_list]
    assert [w[0] for w in wires] == [0x10, 0x10, 0x00]  # chaining bit on all but the last
    assert [w[4] for w in wires] == [255, 255, 5]
    assert b"".join(w[5 : 5 + w[4]] for w in wires) == data
    assert wires[-1][-1] == 2 and len(wires[0]) == 5 + 255  # Le only on the last link


def test_chain_stops_at_the_first_refused_link(mocker: Any) -> None:
    conn = fake_connection(mocker, (b"", 0x6A84))
    with pytest.raises(Exception, match="NOT_ENOUGH_MEMORY"):
        SmartCardProtocol(conn, CardLimits.short()).send_apdu(0, 0xDA, 0, 0, bytes(600))
    assert conn.send_and_receive.call_count == 1


def test_no_chaining_and_no_extended_refuses_long_data_before_sending(mocker: Any) -> None:
    conn = fake_connection(mocker)
    proto = SmartCardProtocol(conn, CardLimits.short(command_chaining=False))
    with pytest.raises(ApduTooLongError, match="does not support command chaining"):
        proto.send_apdu(0, 0xDA, 0, 0, bytes(300))
    conn.send_and_receive.assert_not_called()


def test_extended_card_gets_one_extended_apdu(mocker: Any) -> None:
    conn = fake_connection(mocker, (b"\x00" * 8192, 0x9000))
    proto = SmartCardProtocol(conn, CardLimits.extended())
    assert len(proto.send_apdu(0, 0xB0, 0, 0, le=8192)) == 8192
    assert sent(conn) == ["00B00000002000"]


def test_le_is_capped_to_the_cards_response_limit(mocker: Any) -> None:
    conn = fake_connection(mocker, (b"\x00" * 1024, 0x9000))
    SmartCardProtocol(conn, CardLimits.extended(1024, 1024)).send_apdu(0, 0xB0, 0, 0, le=8192)
    assert sent(conn) == ["00B00000000400"]


def test_sw_error_carries_name_and_data(mocker: Any) -> None:
    conn = fake_connection(mocker, (b"", 0x6A82))
    with pytest.raises(CardFileNotFoundError, match=r"FILE_NOT_FOUND \(6A82\)"):
        SmartCardProtocol(conn).send_apdu(0, 0xA4, 4, 0, b"\xa0\x00\x00")


def test_push_processor_wraps_the_stack(mocker: Any) -> None:
    conn = fake_connection(mocker, (b"", 0x9000))
    proto = SmartCardProtocol(conn)
    seen: list[CommandApdu] = []

    class Spy:
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        def process(self, apdu: CommandApdu) -> Any:
            seen.append(apdu)
            return self.inner.process(apdu)

    proto.push_processor(Spy)
    proto.limits = CardLimits.extended()  # the wrapper survives a limits change
    proto.send_apdu(0, 0x84, 0, 0)
    assert [a.ins for a in seen] == [0x84]


# --- logging -----------------------------------------------------------------------------------------


def test_traffic_log_shows_apdus_but_never_a_pin(mocker: Any, caplog: pytest.LogCaptureFixture) -> None:
    conn = fake_connection(mocker, (b"", 0x9000), (b"\xca\xfe", 0x9000))
    session = Iso7816Session(conn)
    with caplog.at_level(TRAFFIC, logger="cardsvc.apdu"):
        session.verify_pin("123456")
        session.get_challenge(2)
    text = caplog.text
    assert "31 32 33 34 35 36" not in text and "313233343536" not in text
    assert "00 20 00 80 [6 data bytes redacted]" in text
    assert "00 84 00 00 02" in text and "CA FE OK (9000)" in text
    assert all(r.levelno == TRAFFIC for r in caplog.records)


def test_sensitive_command_hides_its_response_and_get_response_data(
    mocker: Any, caplog: pytest.LogCaptureFixture
) -> None:
    template = bytes.fromhex("464D5200") * 80
    conn = fake_connection(mocker, (template[:256], 0x6140), (template[256:], 0x9000))
    with caplog.at_level(TRAFFIC, logger="cardsvc.apdu"):
        data = SmartCardProtocol(conn).send_apdu(0, 0xB0, 0, 0, le=256, sensitive=True)
    assert data == template
    assert "46 4D 52" not in caplog.text
    assert "[256 data bytes redacted]" in caplog.text and "[64 data bytes redacted]" in caplog.text


def test_traffic_level_is_below_debug() -> None:
    assert TRAFFIC < logging.DEBUG
    assert logging.getLevelName(TRAFFIC) == "TRAFFIC"


# --- ISO session ---------------------------------------------------------------------------------------


def _fcp(size: int) -> bytes:
    return Tlv(0x62, Tlv(0x80, size.to_bytes(2, "big")) + Tlv(0x82, b"\x01"))


def test_read_binary_reads_the_whole_file_in_as_few_apdus_as_allowed(mocker: Any) -> None:
    content = bytes(range(256)) * 3  # 768 bytes
    conn = fake_connection(
        mocker, (_fcp(768), 0x9000), (content[:256], 0x9000), (content[256:512], 0x9000),
        (content[512:], 0x9000),
    )
    assert Iso7816Session(conn, limits=CardLimits.short()).read_binary(0x0101) == content
    assert sent(conn) == ["00A4020402010100", "00B0000000", "00B0010000", "00B0020000"]


def test_read_binary_in_one_extended_apdu(mocker: Any) -> None:
    conn = fake_connection(mocker, (_fcp(8192), 0x9000), (bytes(8192), 0x9000))
    assert len(Iso7816Session(conn, limits=CardLimits.extended()).read_binary(0x0101)) == 8192
    assert sent(conn)[1] == "00B00000002000"


def test_read_binary_without_size_stops_at_end_of_file(mocker: Any) -> None:
    conn = fake_connection(mocker, (b"a" * 256, 0x9000), (b"b" * 10, 0x6282))
    assert Iso7816Session(conn).read_binary() == b"a" * 256 + b"b" * 10


def test_read_beyond_32k_uses_the_offset_data_object(mocker: Any) -> None:
    conn = fake_connection(mocker, (Tlv(0x53, b"zz"), 0x9000))
    assert Iso7816Session(conn).read_binary(offset=0x8000, length=2) == b"zz"
    assert sent(conn) == ["00B10000055403008000" + "06"]  # Le covers the DO 53 header too


def test_update_binary_splits_by_the_cards_command_limit(mocker: Any) -> None:
    conn = fake_connection(mocker, *[(b"", 0x9000)] * 3)
    Iso7816Session(conn, limits=CardLimits.short()).update_binary(bytes(600), offset=10)
    assert [w[:8] for w in sent(conn)] == ["00D6000A", "00D60109", "00D60208"]


def test_verify_pin_reports_attempts_and_blocking(mocker: Any) -> None:
    conn = fake_connection(mocker, (b"", 0x63C2), (b"", 0x6983))
    session = Iso7816Session(conn)
    with pytest.raises(WrongPinError) as info:
        session.verify_pin(b"0000")
    assert info.value.attempts_remaining == 2
    with pytest.raises(AuthBlockedError):
        session.verify_pin(b"0000")


def test_pin_status_query(mocker: Any) -> None:
    conn = fake_connection(mocker, (b"", 0x63C3), (b"", 0x9000), (b"", 0x6983))
    session = Iso7816Session(conn)
    first, second, third = session.pin_status(), session.pin_status(), session.pin_status()
    assert (first.verified, first.attempts_remaining) == (False, 3)
    assert second.verified
    assert third.blocked
    assert sent(conn)[0] == "00200080"


def test_get_challenge_checks_length(mocker: Any) -> None:
    conn = fake_connection(mocker, (b"1234", 0x9000))
    with pytest.raises(ProtocolError, match="4 bytes, 8 asked"):
        Iso7816Session(conn).get_challenge(8)


def test_application_session_reads_ef_atr_then_selects_its_aid(mocker: Any) -> None:
    ef_atr = Tlv(0x7F66, Tlv(0x02, (1024 + 9).to_bytes(2, "big")) + Tlv(0x02, (4096 + 2).to_bytes(2, "big")))
    conn = fake_connection(mocker, (_fcp(len(ef_atr)), 0x9000), (ef_atr, 0x9000), (b"", 0x9000))
    conn.atr = bytes.fromhex("3B8501807300 00E0") + b"\x00"

    class DemoSession(ApplicationSession):
        AID = bytes.fromhex("A0000000031001")

    session = DemoSession(conn)
    assert (session.limits.max_command_data, session.limits.max_response_data) == (1024, 4096)
    assert sent(conn)[0] == "00A4000402" + "2F01" + "00"
    assert sent(conn)[2] == "00A4040007A000000003100100"


def test_limits_from_get_data_when_the_card_has_no_ef_atr(mocker: Any) -> None:
    info = Tlv(0x7F66, Tlv(0x02, (512 + 9).to_bytes(2, "big")) + Tlv(0x02, (1024 + 2).to_bytes(2, "big")))
    conn = fake_connection(mocker, (b"", 0x6A82), (info, 0x9000))
    session = Iso7816Session(conn, limits=CardLimits.extended())
    assert (session.read_limits().max_command_data, session.limits.max_response_data) == (512, 1024)
    assert sent(conn)[1] == "00CA7F6600"


def test_card_without_limit_information_keeps_its_atr_limits(mocker: Any) -> None:
    conn = fake_connection(mocker, (b"", 0x6A82), (b"", 0x6A88))
    session = Iso7816Session(conn)
    assert session.read_limits() == CardLimits.short()


def test_update_beyond_32k_uses_offset_and_discretionary_data_objects(mocker: Any) -> None:
    conn = fake_connection(mocker, (b"", 0x9000), (b"", 0x9000))
    data = bytes(range(250))
    Iso7816Session(conn, limits=CardLimits.short()).update_binary(data, offset=0x8000)
    first, second = (bytes.fromhex(w) for w in sent(conn))
    assert first[:4] == bytes.fromhex("00D70000") and len(first) <= 5 + 255
    body = first[5:]
    assert body[:5] == bytes.fromhex("5403008000") and body[5] == 0x53
    assert Tlv(body[5:]).value + Tlv(second[10:]).value == data
    assert second[5:10] == bytes.fromhex("54030080") + bytes([len(Tlv(body[5:]).value)])


def test_empty_update_sends_nothing(mocker: Any) -> None:
    conn = fake_connection(mocker)
    Iso7816Session(conn).update_binary(b"")
    conn.send_and_receive.assert_not_called()


def test_a_garbled_atr_means_short_apdus(mocker: Any) -> None:
    conn = fake_connection(mocker)
    conn.atr = b"\x99\x01"
    assert Iso7816Session(conn).limits == CardLimits.short()


def test_non_ascii_pin_is_refused_without_echoing_it(mocker: Any) -> None:
    """A mistyped PIN with a non-ASCII character gets a clear error that neither says nor carries the PIN."""
    conn = fake_connection(mocker)
    session = Iso7816Session(conn)
    for call in (lambda: session.verify_pin("12\u00e934"), lambda: session.change_pin("1234", "98\u00e976")):
        with pytest.raises(ValueError, match="must be ASCII") as refused:
            call()
        assert "\u00e9" not in str(refused.value) and "12" not in str(refused.value)
        assert refused.value.__cause__ is None and refused.value.__context__ is None  # no UnicodeEncodeError
    conn.send_and_receive.assert_not_called()  # nothing reached the card
