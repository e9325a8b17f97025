"""Simulated card: ATR, file system commands, extended and odd-INS forms, GET CHALLENGE, bad input."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from hardware_sims.card import tlv
from hardware_sims.card.apps.generic import (
    EF_BIG,
    EF_PROTECTED,
    EF_PUBLIC,
    GENERIC_AID,
    INS_CREATE_EF,
    PIN_REF,
    GenericApplication,
)
from hardware_sims.card.cardos import SimulatedCard
from hardware_sims.card.errors import CardNotPowered
from tests.fixtures.cardsim import send

SELECT, READ, READ_ODD, UPDATE, UPDATE_ODD = 0xA4, 0xB0, 0xB1, 0xD6, 0xD7


def select_app(card: SimulatedCard) -> None:
    assert send(card, SELECT, 0x04, 0x0C, GENERIC_AID)[1] == 0x9000


def select_ef(card: SimulatedCard, fid: int) -> int:
    return send(card, SELECT, 0x02, 0x0C, fid.to_bytes(2, "big"))[1]


def verify_pin(card: SimulatedCard, pin: bytes = b"123456") -> int:
    return send(card, 0x20, 0x00, PIN_REF, pin)[1]


def make_card(tmp_path: Path, **kwargs) -> SimulatedCard:
    apps = [GenericApplication(big_file_size=kwargs.pop("big", 4096))]
    card = SimulatedCard(tmp_path / "c", applications=apps, rng=random.Random(7), **kwargs)
    card.power_on()
    return card


# ---------------------------------------------------------------- ATR and limits
def test_atr_is_well_formed_and_advertises_extended_length(sim_card: SimulatedCard) -> None:
    atr = sim_card.power_on()
    assert atr[0] == 0x3B
    hist_len = atr[1] & 0x0F
    hist = atr[4:4 + hist_len]
    checksum = 0
    for b in atr[1:]:
        checksum ^= b
    assert checksum == 0, "TCK must make the XOR of T0..TCK zero"
    assert hist[0] == 0x80 and bytes([0x73, 0xF4, 0x21, 0xE0]) in hist  # chaining, extended, EF.ATR info


@pytest.mark.parametrize(("max_cmd", "max_resp", "chaining", "caps3"),
                         [(65544, 65538, True, 0xE0), (65544, 65538, False, 0x60), (261, 258, True, 0x80),
                          (261, 258, False, 0x00)])
def test_card_publishes_its_apdu_limits(tmp_path: Path, max_cmd: int, max_resp: int, chaining: bool,
                                        caps3: int) -> None:
    card = make_card(tmp_path, max_command_apdu=max_cmd, max_response_apdu=max_resp,
                     supports_chaining=chaining)
    assert bytes([0x73, 0xF4, 0x21, caps3]) in card.atr
    hist = send(card, 0xCA, 0x5F, 0x52, ne=256)[0]
    assert bytes([0x73, 0xF4, 0x21, caps3]) in hist  # GET DATA 5F52 says the same as the ATR
    assert send(card, SELECT, 0x00, 0x0C, b"\x2f\x01")[1] == 0x9000
    data, sw = send(card, READ, 0, 0, ne=256)
    assert sw == 0x6282
    (tag, value), = tlv.parse(data)
    assert tag == 0x7F66
    (_, cmd), (_, resp) = tlv.parse(value)
    assert (int.from_bytes(cmd, "big"), int.from_bytes(resp, "big")) == (max_cmd, max_resp)
    assert send(card, 0xCA, 0x7F, 0x66, ne=256)[0] == data


def test_ef_dir_lists_the_installed_application(sim_card: SimulatedCard) -> None:
    send(sim_card, SELECT, 0x00, 0x0C, b"\x2f\x00")
    data, _ = send(sim_card, READ, 0, 0, ne=256)
    (tag, value), = tlv.parse(data)
    assert tag == 0x61 and tlv.find(value, 0x4F) == GENERIC_AID


# ---------------------------------------------------------------- SELECT
def test_select_forms(sim_card: SimulatedCard) -> None:
    data, sw = send(sim_card, SELECT, 0x04, 0x04, GENERIC_AID[:5], ne=256)  # partial DF name, FCP
    assert sw == 0x9000 and tlv.find(tlv.parse(data)[0][1], 0x84) == GENERIC_AID
    data, sw = send(sim_card, SELECT, 0x02, 0x04, b"\x01\x03", ne=256)
    fcp = tlv.parse(data)[0][1]
    assert int.from_bytes(tlv.find(fcp, 0x80) or b"", "big") == 4096
    assert send(sim_card, SELECT, 0x03, 0x0C)[1] == 0x9000  # parent of the app DF: MF
    assert send(sim_card, SELECT, 0x08, 0x0C, b"\xdf\x01\x01\x01")[1] == 0x9000  # path from MF
    assert send(sim_card, READ, 0, 0, ne=1)[1] == 0x9000
    assert send(sim_card, SELECT, 0x00, 0x0C, b"\x3f\x00")[1] == 0x9000


def test_failed_select_reports_6a82_and_keeps_the_current_file(sim_card: SimulatedCard) -> None:
    select_app(sim_card)
    assert select_ef(sim_card, EF_PUBLIC) == 0x9000
    assert select_ef(sim_card, 0x7777) == 0x6A82
    assert send(sim_card, SELECT, 0x04, 0x0C, b"\xa0\x00\x00\x00\x99")[1] == 0x6A82
    assert send(sim_card, READ, 0, 0, ne=4)[1] == 0x9000


def test_select_without_le_announces_the_fci_with_61xx(sim_card: SimulatedCard) -> None:
    data, sw = send(sim_card, SELECT, 0x04, 0x00, GENERIC_AID)
    assert data == b"" and sw >> 8 == 0x61
    fci, sw2 = send(sim_card, 0xC0, 0, 0, ne=sw & 0xFF)
    assert sw2 == 0x9000 and fci[0] == 0x6F and len(fci) == sw & 0xFF


# ---------------------------------------------------------------- READ / UPDATE BINARY
def test_update_then_read_survives_a_power_cycle_and_a_new_process(sim_card: SimulatedCard) -> None:
    select_app(sim_card)
    select_ef(sim_card, EF_BIG)
    assert send(sim_card, UPDATE, 0x00, 0x10, b"hello card")[1] == 0x9000
    sim_card.power_off()
    sim_card.power_on()
    assert send(sim_card, READ, 0, 0x10, ne=10)[1] == 0x6986, "selection must not survive power-off"
    restarted = SimulatedCard.with_default_filesystem(sim_card.state_dir)
    restarted.power_on()
    select_app(restarted)
    assert send(restarted, READ, 0x80 | 3, 0x10, ne=10) == (b"hello card", 0x9000)  # by SFI


def test_extended_read_and_write_of_4_kb_in_one_apdu(sim_card: SimulatedCard) -> None:
    select_app(sim_card)
    select_ef(sim_card, EF_BIG)
    blob = bytes(random.Random(1).randbytes(4096))
    assert send(sim_card, UPDATE, 0, 0, blob)[1] == 0x9000
    assert send(sim_card, READ, 0, 0, ne=65536) == (blob, 0x6282)  # Le 000000: 65536 asked, 4096 in file
    assert send(sim_card, READ, 0, 0, ne=4096, extended=True) == (blob, 0x9000)


def test_short_reads_and_end_of_file(sim_card: SimulatedCard) -> None:
    select_app(sim_card)
    select_ef(sim_card, EF_BIG)
    assert len(send(sim_card, READ, 0, 0, ne=256)[0]) == 256
    data, sw = send(sim_card, READ, 0x0F, 0xF0, ne=256)  # offset 4080: 16 bytes left
    assert (len(data), sw) == (16, 0x6282)
    assert send(sim_card, READ, 0x10, 0x00, ne=1)[1] == 0x6B00  # offset 4096 == size
    assert send(sim_card, UPDATE, 0x0F, 0xFF, b"ab")[1] == 0x6A84  # would overflow the file


def test_response_buffer_limit_is_honoured(tmp_path: Path) -> None:
    card = make_card(tmp_path, max_command_apdu=1024 + 9, max_response_apdu=1024 + 2)
    select_app(card)
    select_ef(card, EF_BIG)
    data, sw = send(card, READ, 0, 0, ne=4096)
    assert (len(data), sw) == (1024, 0x9000)
    assert send(card, UPDATE, 0, 0, b"x" * 1100)[1] == 0x6700, "command longer than the card's buffer"


def test_odd_ins_reaches_offsets_past_32k_on_an_80k_card(tmp_path: Path) -> None:
    card = make_card(tmp_path, capacity=80 * 1024, big=40 * 1024)
    select_app(card)
    offset = 35000
    payload = b"past-32K" * 100
    cmd = tlv.tlv(0x54, offset.to_bytes(3, "big")) + tlv.tlv(0x53, payload)
    assert send(card, UPDATE_ODD, 0x01, 0x03, cmd)[1] == 0x9000  # P1P2 = file id 0103
    data, sw = send(card, READ_ODD, 0x00, 0x00, tlv.tlv(0x54, offset.to_bytes(3, "big")), ne=65536)
    assert sw == 0x6282  # the rest of the file is shorter than 65536
    (tag, value), = tlv.parse(data)
    assert tag == 0x53 and value[:len(payload)] == payload and len(value) == 40 * 1024 - offset
    data, sw = send(card, READ_ODD, 0x00, 0x00, tlv.tlv(0x54, offset.to_bytes(3, "big")), ne=104)
    assert sw == 0x9000 and data == tlv.tlv(0x53, payload[:102])
    data, sw = send(card, READ_ODD, 0x00, 0x03, tlv.tlv(0x54, (40 * 1024 - 5).to_bytes(3, "big")), ne=256)
    assert sw == 0x6282 and tlv.parse(data)[0][1] == bytes(5)  # by short EF id 3, end of file
    assert send(card, READ_ODD, 0x00, 0x00, b"\x54\x00", ne=256)[1] == 0x6A80  # empty offset DO


def test_file_access_conditions(sim_card: SimulatedCard) -> None:
    select_app(sim_card)
    select_ef(sim_card, EF_PROTECTED)
    assert send(sim_card, READ, 0, 0, ne=16)[1] == 0x6982
    sim_card.session.grant_terminal_rights("read_protected")
    assert send(sim_card, READ, 0, 0, ne=16)[1] == 0x9000
    assert send(sim_card, UPDATE, 0, 0, b"x")[1] == 0x6982  # needs PIN AND write right
    assert verify_pin(sim_card) == 0x9000
    assert send(sim_card, UPDATE, 0, 0, b"x")[1] == 0x6982
    sim_card.session.grant_terminal_rights("write_protected")
    assert send(sim_card, UPDATE, 0, 0, b"x")[1] == 0x9000
    sim_card.session.grant_terminal_rights(terminal_id=b"TERM-0001")
    assert sim_card.session.terminal_id == b"TERM-0001"
    sim_card.reset()
    assert sim_card.session.terminal_id is None
    select_app(sim_card)
    select_ef(sim_card, EF_PROTECTED)
    assert send(sim_card, READ, 0, 0, ne=16)[1] == 0x6982, "terminal rights must not survive a reset"


def test_either_condition(sim_card: SimulatedCard) -> None:
    select_app(sim_card)
    assert select_ef(sim_card, 0x0104) == 0x9000
    assert send(sim_card, READ, 0, 0, ne=6)[1] == 0x6982
    verify_pin(sim_card)
    assert send(sim_card, READ, 0, 0, ne=6) == (b"either", 0x9000)
    assert send(sim_card, UPDATE, 0, 0, b"x")[1] == 0x6982  # NEVER


def test_card_full_answers_6a84_and_keeps_its_files(tmp_path: Path) -> None:
    card = make_card(tmp_path)
    select_app(card)
    verify_pin(card)
    free = card.store.free()
    half = (free // 2).to_bytes(3, "big")
    assert send(card, INS_CREATE_EF, 0, 0, b"\x02\x01" + half, cla=0x80)[1] == 0x9000
    assert send(card, INS_CREATE_EF, 0, 0, b"\x02\x02" + half, cla=0x80)[1] == 0x6A84
    assert select_ef(card, 0x0202) == 0x6A82
    assert select_ef(card, 0x0201) == 0x9000


# ---------------------------------------------------------------- GET CHALLENGE
def test_get_challenge_works_in_any_state_and_is_fresh(tmp_path: Path) -> None:
    card = make_card(tmp_path)
    first, sw = send(card, 0x84, 0, 0, ne=8)  # nothing selected, nothing verified
    assert sw == 0x9000 and len(first) == 8
    assert card.session.challenge == first
    second, _ = send(card, 0x84, 0, 0, ne=32)
    assert len(second) == 32 and second[:8] != first
    assert send(card, 0x84, 0, 0)[1] == 0x6700  # no Le
    assert send(card, 0x84, 1, 0, ne=8)[1] == 0x6A86
    card.reset()
    assert card.session.challenge is None


# ---------------------------------------------------------------- malformed input
@pytest.mark.parametrize(("apdu", "sw"), [
    ("", 0x6700),
    ("00", 0x6700),
    ("00A404", 0x6700),
    ("00A4040009F052", 0x6700),  # Lc=9, 2 bytes follow
    ("00A404000200", 0x6700),  # extended marker, truncated
    ("00B0000000000201", 0x6700),  # extended Lc=2, 1 byte follows
    ("00D6000000000001", 0x6700),  # extended Lc=0
    ("00D60000000003AABB", 0x6700),  # extended Lc=3, 2 bytes
    ("A0A40000023F00", 0x6E00),  # unknown class
    ("FFA40000023F00", 0x6E00),
    ("0CA40000023F00", 0x6882),  # secure messaging
    ("01A40000023F00", 0x6881),  # logical channel
    ("0050000000", 0x6D00),  # unknown INS
    ("80100000", 0x6E00),  # proprietary class, no application selected
    ("00A40500023F00", 0x6A86),  # SELECT P1
    ("00A40001023F00", 0x6A86),  # SELECT P2 occurrence
    ("00A400000101", 0x6700),  # 1-byte FID
    ("00B0000010", 0x6986),  # no current EF
    ("00D60000", 0x6986),  # no current EF (checked before data)
    ("00C0000010", 0x6985),  # nothing to get
    ("0020000A", 0x6A88),  # no such PIN
    ("002A9E9A0100", 0x6700),  # digest of wrong length
    ("00CA010100", 0x6A88),  # unknown data object
])
def test_malformed_apdus_get_iso_status_words(sim_card: SimulatedCard, apdu: str, sw: int) -> None:
    response = sim_card.transmit(bytes.fromhex(apdu))
    assert response == sw.to_bytes(2, "big"), f"{apdu}: got {response.hex()}"


def test_unpowered_card_refuses_apdus(tmp_path: Path) -> None:
    card = SimulatedCard.with_default_filesystem(tmp_path)
    with pytest.raises(CardNotPowered):
        card.transmit(b"\x00\xa4\x00\x00")


def test_byte_rate_model_charges_every_byte(tmp_path: Path) -> None:
    slept: list[float] = []
    card = SimulatedCard.with_default_filesystem(tmp_path, byte_rate=10_000.0, sleep=slept.append)
    card.power_on()
    select_app(card)
    select_ef(card, EF_BIG)
    slept.clear()
    send(card, READ, 0, 0, ne=4096)
    # 7-byte command + 4096 data + 2 SW at 10,000 bytes/s
    assert slept == [pytest.approx((7 + 4096 + 2) / 10_000)]
    assert card.link_seconds >= slept[0]


def test_selecting_outside_the_application_leaves_it(sim_card: SimulatedCard) -> None:
    select_app(sim_card)
    assert send(sim_card, 0x10, 0, 0, b"", cla=0x80)[1] == 0x6700  # the application answers (no updates)
    assert send(sim_card, SELECT, 0x00, 0x0C, b"\x2f\x00")[1] == 0x9000  # EF.DIR under the MF
    assert send(sim_card, 0x10, 0, 0, b"", cla=0x80)[1] == 0x6E00
    assert send(sim_card, SELECT, 0x08, 0x0C, b"\xdf\x01\x01\x01")[1] == 0x9000  # back in by path
    assert sim_card.session.current_app is not None
    assert send(sim_card, 0x20, 0x00, PIN_REF)[1] == 0x63C3  # local PIN 81 reachable again
