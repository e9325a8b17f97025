"""Simulated card: command chaining (CLA bit 10), GET RESPONSE in the command's class, 6Cxx; card and host.

The card-level tests drive raw APDUs; the host-level ones run the real processor stack
(cardsvc/card/protocol.py) in process against short-APDU cards. The same paths through pcscd are in
tests/test_pcsc_card.py.
"""

from __future__ import annotations

import hashlib
import random
import subprocess
import sys
from pathlib import Path

import pytest

from cardsvc.card.apdu import CardLimits
from cardsvc.card.atr import AtrInfo
from cardsvc.card.errors import ApduTooLongError, ProtocolError
from cardsvc.card.inprocess import InProcessConnection
from cardsvc.card.session import ApplicationSession
from hardware_sims.card.apdu import build_command
from hardware_sims.card.apps.generic import (
    EF_BIG,
    EF_PUBLIC,
    GENERIC_AID,
    INS_ATOMIC_UPDATE,
    INS_ECHO,
    GenericApplication,
    encode_updates,
)
from hardware_sims.card.cardos import SimulatedCard
from tests.fixtures.cardsim import send
from tests.test_card_sim_vpcd import FakeVpcd

SHORT_ONLY = {"max_command_apdu": 4 + 1 + 255 + 1, "max_response_apdu": 256 + 2}
SELECT, READ = 0xA4, 0xB0


def make_card(tmp_path: Path, **kwargs: object) -> SimulatedCard:
    card = SimulatedCard(tmp_path / "card", applications=[GenericApplication()], rng=random.Random(5),
                         **kwargs)  # type: ignore[arg-type]
    card.power_on()
    return card


def select_app(card: SimulatedCard) -> None:
    assert send(card, SELECT, 0x04, 0x0C, GENERIC_AID)[1] == 0x9000


def links(cla: int, ins: int, data: bytes, size: int = 255, ne: int = 0) -> list[bytes]:
    """The wire APDUs of one chained command: chaining bit on all but the last link."""
    parts = [data[i:i + size] for i in range(0, len(data), size)] or [b""]
    out = [build_command(cla | 0x10, ins, 0, 0, part) for part in parts[:-1]]
    return [*out, build_command(cla, ins, 0, 0, parts[-1], ne)]


def sw_of(response: bytes) -> int:
    return int.from_bytes(response[-2:], "big")


class Recorder:
    """A CardConnection that keeps the wire APDUs it sent (what the host stack really did)."""

    def __init__(self, card: SimulatedCard) -> None:
        self.inner = InProcessConnection(card, power_on=False)
        self.card = card
        self.sent: list[bytes] = []

    @property
    def atr(self) -> bytes:
        return self.card.atr

    def send_and_receive(self, apdu: bytes) -> tuple[bytes, int]:
        self.sent.append(bytes(apdu))
        return self.inner.send_and_receive(apdu)

    def close(self) -> None:
        self.inner.close()


class GenericSession(ApplicationSession):
    AID = GENERIC_AID


# ---------------------------------------------------------------- command chaining, card level
def test_atomic_update_of_1_kb_in_short_links_runs_once_at_the_last_link(tmp_path: Path) -> None:
    card = make_card(tmp_path, **SHORT_ONLY)
    select_app(card)
    payload = bytes((3 * i) & 0xFF for i in range(1000))
    chain = links(0x80, INS_ATOMIC_UPDATE, encode_updates([(EF_BIG, 100, payload)]))
    assert len(chain) == 4 and all(len(apdu) <= 261 for apdu in chain)
    for apdu in chain[:-1]:
        assert card.transmit(apdu) == b"\x90\x00"
        assert card.store.get("bin.3F00.DF01.0103")[100:1100] == bytes(1000), "a link must not run yet"
    assert card.transmit(chain[-1]) == b"\x90\x00"
    assert card.store.get("bin.3F00.DF01.0103")[100:1100] == payload


def test_chained_inter_industry_command_and_the_last_links_le(tmp_path: Path) -> None:
    card = make_card(tmp_path, **SHORT_ONLY)
    assert card.transmit(build_command(0x10, SELECT, 0x04, 0x00, GENERIC_AID[:4])) == b"\x90\x00"
    response = card.transmit(build_command(0x00, SELECT, 0x04, 0x00, GENERIC_AID[4:], ne=256))
    assert sw_of(response) == 0x9000 and GENERIC_AID in response  # FCI of the whole DF name


def test_another_command_inside_a_chain_gets_6883_and_drops_the_chain(tmp_path: Path) -> None:
    card = make_card(tmp_path, **SHORT_ONLY)
    select_app(card)
    first, *_ = links(0x80, INS_ECHO, b"A" * 300)
    assert card.transmit(first) == b"\x90\x00"
    # UPDATE BINARY (by short EF id 3) in the middle: refused, not executed
    assert send(card, 0xD6, 0x83, 0, b"XXXX")[1] == 0x6883
    assert send(card, READ, 0x83, 0, ne=4) == (bytes(4), 0x9000)
    # the chain is gone: the last link alone is a whole command
    data, sw = send(card, INS_ECHO, data=b"tail", ne=256, cla=0x80)
    assert sw == 0x9000 and data == b"tail" + hashlib.sha256(b"tail").digest()


def test_a_link_of_another_instruction_also_interrupts(tmp_path: Path) -> None:
    card = make_card(tmp_path)
    select_app(card)
    assert card.transmit(build_command(0x90, INS_ECHO, 0, 0, b"x")) == b"\x90\x00"
    assert sw_of(card.transmit(build_command(0x90, INS_ATOMIC_UPDATE, 0, 0, b"y"))) == 0x6883
    assert sw_of(card.transmit(build_command(0x80, INS_ECHO, 0, 1, b"z", 256))) == 0x6A86  # fresh command


@pytest.mark.parametrize("how", ["reset", "power"])
def test_reset_and_power_loss_clear_a_chain(tmp_path: Path, how: str) -> None:
    card = make_card(tmp_path)
    select_app(card)
    assert card.transmit(build_command(0x90, INS_ECHO, 0, 0, b"lost")) == b"\x90\x00"
    if how == "reset":
        card.reset()
    else:
        card.power_off()
        card.power_on()
    assert card.session.chain is None
    select_app(card)
    data, sw = send(card, INS_ECHO, data=b"new", ne=256, cla=0x80)
    assert (data[:3], sw) == (b"new", 0x9000)


def test_malformed_link_breaks_the_chain(tmp_path: Path) -> None:
    card = make_card(tmp_path)
    select_app(card)
    assert card.transmit(build_command(0x90, INS_ECHO, 0, 0, b"abc")) == b"\x90\x00"
    assert card.transmit(bytes.fromhex("90140000 05 AABB")) == b"\x67\x00"  # Lc lies
    data, sw = send(card, INS_ECHO, data=b"z", ne=256, cla=0x80)
    assert (data[:1], sw) == (b"z", 0x9000)


def test_chained_data_beyond_the_ram_buffer_is_refused(tmp_path: Path) -> None:
    card = make_card(tmp_path, max_chained_data=600)
    select_app(card)
    chain = links(0x80, INS_ECHO, b"q" * 700)
    assert [sw_of(card.transmit(apdu)) for apdu in chain] == [0x9000, 0x9000, 0x6700]
    assert card.session.chain is None


def test_card_without_chaining_says_so_in_its_atr_and_answers_6884(tmp_path: Path) -> None:
    card = make_card(tmp_path, supports_chaining=False, **SHORT_ONLY)
    assert AtrInfo.parse(card.atr).command_chaining is False
    assert AtrInfo.parse(make_card(tmp_path / "b").atr).command_chaining is True
    select_app(card)
    assert card.transmit(build_command(0x90, INS_ECHO, 0, 0, b"x")) == b"\x68\x84"
    conn = Recorder(card)
    session = GenericSession(conn)
    assert session.limits == CardLimits.short(command_chaining=False)
    before = len(conn.sent)
    with pytest.raises(ApduTooLongError, match="does not support command chaining"):
        session.protocol.send_apdu(0x80, INS_ECHO, 0, 0, bytes(300), le=256)
    assert len(conn.sent) == before, "refused before sending anything"


# ---------------------------------------------------------------- GET RESPONSE
def test_get_response_in_the_proprietary_class_after_a_proprietary_command(tmp_path: Path) -> None:
    card = make_card(tmp_path, **SHORT_ONLY)
    select_app(card)
    data, sw = send(card, INS_ECHO, data=bytes(200), ne=100, cla=0x80)
    assert (len(data), sw) == (100, 0x6100 + 132)  # 200 + 32 digest bytes, 100 sent
    part, sw = send(card, 0xC0, ne=32, cla=0x80)
    assert (part, sw) == (bytes(32), 0x6164)
    part, sw = send(card, 0xC0, ne=100, cla=0x00)  # the inter-industry class works too
    assert (part, sw) == (bytes(68) + hashlib.sha256(bytes(200)).digest(), 0x9000)
    assert send(card, 0xC0, ne=16, cla=0x80)[1] == 0x6D00  # nothing waiting: INS C0 is the application's


def test_waiting_data_survives_a_refused_get_response_but_not_another_command(tmp_path: Path) -> None:
    card = make_card(tmp_path, **SHORT_ONLY)
    select_app(card)
    assert send(card, INS_ECHO, data=b"abc", ne=3, cla=0x80)[1] == 0x6100 + 32
    assert send(card, 0xC0, 0x01, 0x00, ne=32, cla=0x80)[1] == 0x6A86  # bad P1P2: still waiting
    assert send(card, 0xC0, ne=40)[1] == 0x6C20  # Le too long: 6Cxx with what is waiting, still there
    assert send(card, 0xC0, ne=32)[0] == hashlib.sha256(b"abc").digest()
    assert send(card, INS_ECHO, data=b"abc", ne=3, cla=0x80)[1] == 0x6100 + 32
    assert send(card, READ, 0x81, 0, ne=1)[1] == 0x9000  # a different command ...
    assert send(card, 0xC0, ne=32)[1] == 0x6985  # ... dropped the waiting data


def test_proprietary_get_response_is_not_taken_for_inter_industry_waiting_data(tmp_path: Path) -> None:
    card = make_card(tmp_path, **SHORT_ONLY)
    _fci, sw = send(card, SELECT, 0x04, 0x00, GENERIC_AID)  # no Le: FCI waits behind 61xx
    assert sw >> 8 == 0x61
    assert send(card, 0xC0, ne=sw & 0xFF, cla=0x80)[1] == 0x6D00  # class 80 goes to the application
    assert send(card, 0xC0, ne=sw & 0xFF)[1] == 0x6985  # and that was another command


# ---------------------------------------------------------------- 6Cxx
def test_get_data_with_a_wrong_short_le_gets_6cxx_and_le_00_gets_everything(tmp_path: Path) -> None:
    card = make_card(tmp_path, **SHORT_ONLY)
    info, sw = send(card, 0xCA, 0x7F, 0x66, ne=256)
    assert sw == 0x9000 and info[:2] == b"\x7f\x66"
    assert send(card, 0xCA, 0x7F, 0x66, ne=len(info) + 1) == (b"", 0x6C00 + len(info))
    assert send(card, 0xCA, 0x7F, 0x66, ne=len(info)) == (info, 0x9000)
    assert send(card, 0xCA, 0x7F, 0x66, ne=4) == (info[:4], 0x6100 + len(info) - 4)


def test_get_challenge_longer_than_the_card_gives_is_6cxx_and_burns_nothing(tmp_path: Path) -> None:
    card = make_card(tmp_path, max_challenge=16)
    assert send(card, 0x84, ne=32) == (b"", 0x6C10)
    assert card.session.challenge is None
    challenge, sw = send(card, 0x84, ne=16)
    assert sw == 0x9000 and card.session.challenge == challenge and len(challenge) == 16


def test_host_reissues_after_6cxx_from_the_real_card(tmp_path: Path) -> None:
    card = make_card(tmp_path, max_challenge=16, **SHORT_ONLY)
    conn = Recorder(card)
    session = GenericSession(conn)
    before = len(conn.sent)
    info = session.protocol.send_apdu(0x00, 0xCA, 0x7F, 0x66, le=200)
    assert info[:2] == b"\x7f\x66"
    assert [apdu[-1] for apdu in conn.sent[before:]] == [200, len(info)]  # re-issued with the card's Le
    assert len(session.protocol.send_apdu(0x00, 0x84, 0, 0, le=32)) == 16
    with pytest.raises(ProtocolError, match="returned 16 bytes, 32 asked"):
        session.get_challenge(32)


# ---------------------------------------------------------------- the host stack on a short-APDU card
def test_host_chains_1_kb_in_and_gets_the_long_answer_with_class_80_get_response(tmp_path: Path) -> None:
    card = make_card(tmp_path, **SHORT_ONLY)
    conn = Recorder(card)
    session = GenericSession(conn)
    assert session.limits == CardLimits.short(command_chaining=True)
    payload = bytes(random.Random(1).randbytes(1024))
    before = len(conn.sent)
    answer = session.protocol.send_apdu(0x80, INS_ECHO, 0, 0, payload, le=256)
    assert answer == payload + hashlib.sha256(payload).digest()
    wire = conn.sent[before:]
    assert all(len(apdu) <= 261 for apdu in wire)
    assert [apdu[:2].hex() for apdu in wire] == ["9014"] * 4 + ["8014"] + ["80c0"] * 4


def test_host_writes_1_kb_with_one_chained_atomic_update(tmp_path: Path) -> None:
    card = make_card(tmp_path, **SHORT_ONLY)
    conn = Recorder(card)
    session = GenericSession(conn)
    session.verify_pin(b"123456", 0x81)  # EF 0101 is updated under the PIN
    payload = bytes((5 * i + 1) & 0xFF for i in range(1024))
    session.protocol.send_apdu(0x80, INS_ATOMIC_UPDATE, 0, 0,
                               encode_updates([(EF_BIG, 0, payload[:900]), (EF_PUBLIC, 0, payload[900:])]))
    assert session.read_binary(EF_BIG, length=900) == payload[:900]
    assert session.read_binary(EF_PUBLIC)[:124] == payload[900:]


@pytest.mark.parametrize(("flag", "caps3"), [("--chaining", 0xE0), ("--no-chaining", 0x60)])
def test_cli_serves_a_card_with_or_without_chaining(tmp_path: Path, flag: str, caps3: int) -> None:
    vpcd = FakeVpcd()
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "hwsim"), "card", "serve", "--state", str(tmp_path / "cli"),
         "--port", str(vpcd.port), flag], stderr=subprocess.DEVNULL)
    try:
        vpcd.accept()
        vpcd.send(b"\x04")
        assert bytes([0x73, 0xF4, 0x21, caps3]) in vpcd.recv()
        vpcd.send(b"\x01")
        expected = b"\x90\x00" if flag == "--chaining" else b"\x68\x84"
        assert vpcd.transmit(build_command(0x10, SELECT, 0x04, 0x00, GENERIC_AID[:4])) == expected
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        vpcd.close()
