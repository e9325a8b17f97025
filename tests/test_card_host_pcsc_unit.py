"""PC/SC adapter error mapping with pyscard's scard calls faked (pytest-mock): no pcscd needed."""

from __future__ import annotations

from typing import Any

import pytest

from cardsvc.card import pcsc
from cardsvc.card.apdu import CommandApdu, ResponseApdu
from cardsvc.card.apdulog import format_response
from cardsvc.card.pcsc import PcscCode, PcscConnection, pcsc_error
from cardsvc.card.transport import (
    CardBusyError,
    CardRemovedError,
    CardResetError,
    CardWaitTimeoutError,
    NoReaderError,
    TransportError,
)


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        (0x80100069, CardRemovedError),  # SCARD_W_REMOVED_CARD
        (0x80100016, CardRemovedError),  # SCARD_E_NOT_TRANSACTED
        (0x8010000C, CardRemovedError),  # SCARD_E_NO_SMARTCARD (NoCardException)
        (0x80100068, CardResetError),  # SCARD_W_RESET_CARD
        (0x80100067, CardResetError),  # SCARD_W_UNPOWERED_CARD
        (0x8010000B, CardBusyError),  # SCARD_E_SHARING_VIOLATION
        (0x80100009, NoReaderError),
        (0x8010000A, CardWaitTimeoutError),
        (0x8010001D, TransportError),
    ],
)
def test_pcsc_codes_map_to_one_error_per_meaning(code: int, cls: type[Exception]) -> None:
    err = pcsc_error(code, "sending")
    assert type(err) is cls
    assert f"0x{code:08X}" in str(err)


def test_reset_is_a_kind_of_removal_so_one_handler_catches_both() -> None:
    assert isinstance(pcsc_error(PcscCode.W_RESET_CARD, "x"), CardRemovedError)


def test_negative_hresults_from_32_bit_builds_are_understood() -> None:
    assert isinstance(pcsc_error(0x80100069 - (1 << 32), "x"), CardRemovedError)


def _fake_connected(mocker: Any) -> PcscConnection:
    mocker.patch.object(pcsc.scard, "SCardEstablishContext", return_value=(0, 1))
    mocker.patch.object(pcsc.scard, "SCardListReaders", return_value=(0, ["Virtual PCD 00 00"]))
    mocker.patch.object(pcsc.scard, "SCardConnect", return_value=(0, 99, pcsc.scard.SCARD_PROTOCOL_T1))
    mocker.patch.object(pcsc.scard, "SCardDisconnect", return_value=0)
    mocker.patch.object(pcsc.scard, "SCardReleaseContext", return_value=0)
    present = pcsc.scard.SCARD_STATE_PRESENT | 1 << 16
    mocker.patch.object(
        pcsc.scard, "SCardGetStatusChange", return_value=(0, [("Virtual PCD 00 00", present, [0x3B, 0])])
    )
    return PcscConnection("Virtual PCD")


def test_connect_by_prefix_and_transmit(mocker: Any) -> None:
    conn = _fake_connected(mocker)
    assert conn.reader == "Virtual PCD 00 00"
    transmit = mocker.patch.object(pcsc.scard, "SCardTransmit", return_value=(0, [0x01, 0x90, 0x00]))
    assert conn.send_and_receive(b"\x00\x84\x00\x00\x01") == (b"\x01", 0x9000)
    assert transmit.call_args.args[2] == [0x00, 0x84, 0x00, 0x00, 0x01]
    conn.close()
    pcsc.scard.SCardDisconnect.assert_called_once_with(99, pcsc.scard.SCARD_LEAVE_CARD)


def test_no_valid_response_means_card_removed(mocker: Any) -> None:
    conn = _fake_connected(mocker)
    mocker.patch.object(pcsc.scard, "SCardTransmit", return_value=(0, [0x90]))
    with pytest.raises(CardRemovedError, match="no valid response"):
        conn.send_and_receive(b"\x00\x84\x00\x00\x08")


def test_transmit_failure_is_typed(mocker: Any) -> None:
    conn = _fake_connected(mocker)
    mocker.patch.object(pcsc.scard, "SCardTransmit", return_value=(0x80100068, []))
    with pytest.raises(CardResetError, match="authenticate again"):
        conn.send_and_receive(b"\x00\x84\x00\x00\x08")


def test_unknown_reader_names_the_readers_present(mocker: Any) -> None:
    _fake_connected(mocker)
    with pytest.raises(NoReaderError, match="Virtual PCD 00 00"):
        PcscConnection("Gemalto")
    with pytest.raises(NoReaderError, match="no reader at index 3"):
        PcscConnection(3)


def test_sharing_violation_on_connect(mocker: Any) -> None:
    _fake_connected(mocker)
    mocker.patch.object(pcsc.scard, "SCardConnect", return_value=(0x8010000B, 0, 0))
    with pytest.raises(CardBusyError):
        PcscConnection(0, exclusive=True)
    pcsc.scard.SCardReleaseContext.assert_called()  # no leaked context


def test_closed_connection_refuses_to_send(mocker: Any) -> None:
    conn = _fake_connected(mocker)
    conn.close()
    conn.close()  # idempotent
    with pytest.raises(TransportError, match="closed"):
        conn.send_and_receive(b"\x00\x84\x00\x00\x08")


def test_long_responses_are_cut_in_the_log() -> None:
    text = format_response(CommandApdu(0, 0xB0, 0, 0, le=8192), ResponseApdu(bytes(8192), 0x9000))
    assert "(8192 bytes)" in text and len(text) < 1000


def test_reconnect_after_removal_waits_for_a_new_insertion(mocker: Any) -> None:
    conn = _fake_connected(mocker)  # connected at reader event 1
    reader = "Virtual PCD 00 00"
    same, empty, new = (
        pcsc.scard.SCARD_STATE_PRESENT | 1 << 16,
        pcsc.scard.SCARD_STATE_EMPTY | 2 << 16,
        pcsc.scard.SCARD_STATE_PRESENT | 3 << 16,
    )
    status = mocker.patch.object(
        pcsc.scard,
        "SCardGetStatusChange",
        side_effect=[(0, [(reader, s, [])]) for s in (same, empty, new, new)],
    )
    conn.reconnect(wait=1)
    assert status.call_count == 4  # stale "present" (event 1) and "empty" were not taken for the new card
    assert pcsc.scard.SCardConnect.call_count == 2


def test_vpcd_lock_makes_a_second_user_wait_and_names_the_holder(tmp_path: Any, monkeypatch: Any) -> None:
    import os

    from cardsvc.card.pcscd import LOCK_HELD_ENV, PcscdUnavailableError, VpcdLock

    monkeypatch.delenv(LOCK_HELD_ENV, raising=False)
    first, second = VpcdLock(tmp_path / "vpcd.lock"), VpcdLock(tmp_path / "vpcd.lock")
    first.acquire(timeout=1)
    nested = VpcdLock(tmp_path / "vpcd.lock")
    nested.acquire(timeout=0.1)  # same process (or a child): shares the lock, no wait
    nested.release()
    assert os.environ[LOCK_HELD_ENV] == str(os.getpid())
    monkeypatch.delenv(LOCK_HELD_ENV)  # now look like another process
    messages: list[str] = []
    with pytest.raises(PcscdUnavailableError, match=f"pid {os.getpid()}"):
        second.acquire(timeout=0.3, on_wait=messages.append)
    assert messages and "waiting for another user" in messages[0]
    first.release()
    second.acquire(timeout=1)
    second.release()
