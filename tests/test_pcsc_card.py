"""The host stack through the REAL PC/SC path: pcscd + vpcd + pyscard, simulated cards as vpcd clients.

Every test here uses the ``serve_card`` fixture (tests/fixtures/pcsc.py); under CI they fail rather than
skip if pcscd cannot run.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from cardsvc.card.apdu import CardLimits
from cardsvc.card.errors import SecurityStatusError
from cardsvc.card.pcsc import Disposition, PcscConnection, list_readers, wait_for_card
from cardsvc.card.session import ApplicationSession, Iso7816Session
from cardsvc.card.transport import (
    CardBusyError,
    CardRemovedError,
    CardResetError,
    CardWaitTimeoutError,
    CountingConnection,
)
from tests.fixtures.pcsc import BIG_FILE_SIZE, ServedCard

pytestmark = pytest.mark.pcsc

GENERIC_AID = bytes.fromhex("F05253425953494D01")  # hardware_sims.card.apps.generic
PIN_REF = 0x81
DEFAULT_PIN = b"123456"
EF_PUBLIC, EF_BIG = 0x0101, 0x0103
INS_ATOMIC_UPDATE = 0x10
INS_ECHO = 0x14  # answers its data + SHA-256 of it
SHORT_ONLY = {"max_command_apdu": 4 + 1 + 255 + 1, "max_response_apdu": 256 + 2}
ServeCard = Callable[..., ServedCard]


class GenericSession(ApplicationSession):
    AID = GENERIC_AID


def test_reader_listed_and_atr_matches_the_card(pcsc_card: ServedCard) -> None:
    assert pcsc_card.reader in list_readers()
    assert wait_for_card(pcsc_card.reader, timeout=2) == pcsc_card.reader
    with PcscConnection(pcsc_card.reader) as conn:
        assert conn.atr == pcsc_card.card.atr


def test_select_read_update_through_pcsc(pcsc_card: ServedCard) -> None:
    with PcscConnection(pcsc_card.reader, exclusive=True) as pcsc:
        conn = CountingConnection(pcsc)
        session = GenericSession(conn)
        assert session.limits.extended_length
        session.select_file(EF_BIG)
        new = bytes((i * 13) & 0xFF for i in range(3000))
        session.update_binary(new, offset=1000)
        before = conn.count
        content = session.read_binary(length=BIG_FILE_SIZE)
        assert conn.count - before == 1  # one extended READ BINARY for 8 KB
        assert content[1000:4000] == new and len(content) == BIG_FILE_SIZE
        session.verify_pin(DEFAULT_PIN, PIN_REF)
        session.update_binary(b"written through pcscd", file_id=EF_PUBLIC)
        assert session.read_binary(EF_PUBLIC).startswith(b"written through pcscd")


def test_short_apdu_card_61xx_and_many_apdus(serve_card: ServeCard) -> None:
    served = serve_card(**SHORT_ONLY)
    with PcscConnection(served.reader) as pcsc:
        conn = CountingConnection(pcsc)
        session = Iso7816Session(conn)
        session.read_limits()
        assert session.limits == CardLimits.short(command_chaining=True)  # the ATR announces chaining
        # SELECT without Le: the card keeps its FCI behind 61xx; pcscd (T=1) leaves GET RESPONSE to us.
        fci = session.protocol.send_apdu(0, 0xA4, 0x04, 0x00, GENERIC_AID)
        assert fci[0] == 0x6F and GENERIC_AID in fci
        assert conn.sent[-2][1] == 0xA4 and conn.sent[-1][1] == 0xC0
        data = bytes(range(256)) * 3
        session.update_binary(data, file_id=EF_BIG, offset=10)
        before = conn.count
        assert session.read_binary(EF_BIG)[10:778] == data
        assert conn.count - before == 1 + BIG_FILE_SIZE // 256
        assert all(len(apdu) <= 261 for apdu in conn.sent)


def test_6cxx_reissues_with_the_cards_le(serve_card: ServeCard) -> None:
    # The simulator answers 6Cxx for a short Le longer than a fixed-length answer (GET DATA, GET CHALLENGE).
    served = serve_card(max_challenge=16, **SHORT_ONLY)
    with PcscConnection(served.reader) as pcsc:
        conn = CountingConnection(pcsc)
        session = GenericSession(conn, read_card_limits=False, limits=CardLimits.short())
        before = conn.count
        info = session.protocol.send_apdu(0, 0xCA, 0x7F, 0x66, le=200)
        assert info[:2] == b"\x7f\x66"
        assert conn.count - before == 2 and conn.sent[-2][-1] == 200 and conn.sent[-1][-1] == len(info)
        before = conn.count
        assert len(session.protocol.send_apdu(0, 0x84, 0, 0, le=32)) == 16  # the card's longest challenge
        assert conn.count - before == 2 and conn.sent[-1][-1] == 16


def test_command_chaining_and_class_80_get_response_through_pcsc(serve_card: ServeCard) -> None:
    # A short-APDU card announcing chaining in its ATR: 1 KB goes in as chained links, the long answer of
    # the proprietary command comes back through GET RESPONSE sent in class 80.
    served = serve_card(**SHORT_ONLY)
    payload = bytes((7 * i) & 0xFF for i in range(1024))
    with PcscConnection(served.reader) as pcsc:
        conn = CountingConnection(pcsc)
        session = GenericSession(conn)
        assert session.limits == CardLimits.short(command_chaining=True)
        before = conn.count
        answer = session.protocol.send_apdu(0x80, INS_ECHO, 0, 0, payload, le=256)
        assert answer == payload + hashlib.sha256(payload).digest()
        wire = conn.sent[before:]
        assert [apdu[:2].hex() for apdu in wire] == ["9014"] * 4 + ["8014"] + ["80c0"] * 4
        assert all(len(apdu) <= 261 for apdu in wire)
        record = b"".join(n.to_bytes(2, "big") for n in (EF_BIG, 100, 700)) + payload[:700]
        session.protocol.send_apdu(0x80, INS_ATOMIC_UPDATE, 0, 0, record)
        assert [apdu[0] for apdu in conn.sent[-3:]] == [0x90, 0x90, 0x80]  # 706 bytes: 255 + 255 + 196
        assert session.read_binary(EF_BIG, offset=100, length=700) == payload[:700]


def test_exclusive_mode_keeps_a_second_client_out(pcsc_card: ServedCard) -> None:
    with PcscConnection(pcsc_card.reader, exclusive=True) as owner:
        GenericSession(owner)
        with pytest.raises(CardBusyError, match="SHARING_VIOLATION"):
            PcscConnection(pcsc_card.reader)
    with PcscConnection(pcsc_card.reader) as later:  # released: others get in again
        GenericSession(later)


def test_another_clients_reset_is_reported_and_pin_must_be_given_again(pcsc_card: ServedCard) -> None:
    with PcscConnection(pcsc_card.reader) as conn:
        session = GenericSession(conn)
        session.verify_pin(DEFAULT_PIN, PIN_REF)
        other = PcscConnection(pcsc_card.reader, disposition=Disposition.RESET)
        other.close()
        with pytest.raises(CardResetError):
            session.pin_status(PIN_REF)
        conn.reconnect()
        session = GenericSession(conn)
        assert not session.pin_status(PIN_REF).verified


def test_power_cycle_clears_ram_state(pcsc_card: ServedCard) -> None:
    with PcscConnection(pcsc_card.reader) as conn:
        session = GenericSession(conn)
        session.verify_pin(DEFAULT_PIN, PIN_REF)
        session.update_binary(b"before", file_id=EF_PUBLIC)
        conn.power_cycle()
        session = GenericSession(conn)
        assert not session.pin_status(PIN_REF).verified
        with pytest.raises(SecurityStatusError):
            session.update_binary(b"after", file_id=EF_PUBLIC)
        assert session.read_binary(EF_PUBLIC).startswith(b"before")  # persistent memory survives


def test_card_pulled_mid_command_then_recovered_on_reinsertion(serve_card: ServeCard) -> None:
    # 8 KB at 20 KB/s takes about 0.4 s on the contact interface. The card is pulled while it is sending the
    # read's answer: from inside the card's own transfer, not by a timer a busy machine could run too late.
    pull = threading.Event()
    servers: list[Any] = []

    def transfer(seconds: float) -> None:
        if pull.is_set():
            pull.clear()
            servers[0].remove()
        time.sleep(seconds)

    served = serve_card(byte_rate=20_000, sleep=transfer)
    servers.append(served.server)
    with PcscConnection(served.reader) as conn:
        session = GenericSession(conn)
        session.select_file(EF_BIG)
        pull.set()
        with pytest.raises(CardRemovedError):
            session.read_binary(length=BIG_FILE_SIZE)
        assert not pull.is_set(), "the card was pulled during the read"
        with pytest.raises(CardRemovedError):
            GenericSession(conn)  # still out
        served.server.insert()
        conn.reconnect(wait=10)
        session = GenericSession(conn)
        assert len(session.read_binary(EF_PUBLIC)) == 256


def test_waiting_for_a_card_times_out_with_a_clear_error(pcsc_card: ServedCard) -> None:
    pcsc_card.remove()
    start = time.monotonic()
    with pytest.raises(CardWaitTimeoutError, match="no card inserted"):
        wait_for_card(pcsc_card.reader, timeout=0.3)
    assert time.monotonic() - start < 5
    pcsc_card.insert()
    assert wait_for_card(pcsc_card.reader, timeout=5) == pcsc_card.reader


def test_card_removed_between_commands(pcsc_card: ServedCard, pcsc_connection: PcscConnection) -> None:
    session = GenericSession(pcsc_connection)
    pcsc_card.remove()
    with pytest.raises(CardRemovedError):
        session.get_challenge(8)


# --- third-party PC/SC clients see the same reader and card ---------------------------------------------


def _run(args: list[str], timeout: float = 20) -> str:
    out = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
    return out.stdout + out.stderr


def _reader_index(reader: str) -> int:
    return list_readers().index(reader)


def test_opensc_tool_lists_reader_and_reads_atr(pcsc_card: ServedCard) -> None:
    listing = _run(["opensc-tool", "-l"])
    assert "Virtual PCD 00 00" in listing
    index = str(_reader_index(pcsc_card.reader))
    atr = _run(["opensc-tool", "-r", index, "-a"])
    assert pcsc_card.card.atr.hex(":") in atr.lower()


def test_opensc_tool_sends_an_apdu(pcsc_card: ServedCard) -> None:
    index = str(_reader_index(pcsc_card.reader))
    select = "00:A4:04:00:09:" + GENERIC_AID.hex(":").upper()
    out = _run(["opensc-tool", "-r", index, "-s", select])
    assert re.search(r"SW1=0x90, SW2=0x00|SW1=0x61", out), out


def test_pcsc_scan_sees_reader_and_card(pcsc_card: ServedCard) -> None:
    out = _run(["pcsc_scan", "-n", "-t", "2"], timeout=30)
    assert pcsc_card.reader in out
    assert pcsc_card.card.atr.hex(" ").upper() in out
