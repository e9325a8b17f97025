"""The host stack against the real simulated card OS, in process (no pcscd): sessions, limits, PINs."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from cardsvc.card.apdu import CardLimits
from cardsvc.card.errors import SecurityStatusError, WrongPinError
from cardsvc.card.inprocess import InProcessConnection
from cardsvc.card.session import ApplicationSession, Iso7816Session
from cardsvc.card.transport import CardConnection, CountingConnection, TransportError
from hardware_sims.card import cardos
from hardware_sims.card.apps import generic

SHORT_ONLY = {"max_command_apdu": 4 + 1 + 255 + 1, "max_response_apdu": 256 + 2}


class GenericSession(ApplicationSession):
    AID = generic.GENERIC_AID


def make_card(tmp_path: Path, **kwargs: object):  # type: ignore[no-untyped-def]
    app = generic.GenericApplication(big_file_size=8192)
    return cardos.SimulatedCard(tmp_path / "card", applications=[app], rng=random.Random(7), **kwargs)


def test_in_process_connection_is_a_card_connection(tmp_path: Path) -> None:
    conn = InProcessConnection(make_card(tmp_path))
    assert isinstance(conn, CardConnection)
    assert conn.atr[0] == 0x3B
    conn.close()
    with pytest.raises(TransportError, match="closed"):
        conn.send_and_receive(b"\x00\x84\x00\x00\x08")


def test_extended_card_reads_8k_in_one_apdu(tmp_path: Path) -> None:
    conn = CountingConnection(InProcessConnection(make_card(tmp_path)))
    session = GenericSession(conn)
    assert session.limits.extended_length and session.limits.max_response_data == 65536
    session.select_file(generic.EF_BIG)
    before = conn.count
    assert len(session.read_binary(length=8192)) == 8192
    assert conn.count - before == 1


def test_short_card_limits_come_from_the_card(tmp_path: Path) -> None:
    conn = CountingConnection(InProcessConnection(make_card(tmp_path, **SHORT_ONLY)))
    session = GenericSession(conn)
    assert session.limits == CardLimits.short(command_chaining=True)
    data = bytes(range(256)) * 4
    session.update_binary(data, file_id=generic.EF_BIG, offset=300)
    before = conn.count
    assert session.read_binary(generic.EF_BIG)[300:1324] == data
    assert conn.count - before == 1 + 32  # SELECT + 32 READ BINARY of 256 bytes


def test_pin_verification_and_power_cycle(tmp_path: Path) -> None:
    conn = InProcessConnection(make_card(tmp_path))
    session = GenericSession(conn)
    pin_ref = generic.PIN_REF
    with pytest.raises(SecurityStatusError):
        session.update_binary(b"hello", file_id=generic.EF_PUBLIC)
    with pytest.raises(WrongPinError) as wrong:
        session.verify_pin(b"999999", pin_ref)
    assert wrong.value.attempts_remaining == 2
    session.verify_pin(generic.DEFAULT_PIN, pin_ref)
    assert session.pin_status(pin_ref).verified
    session.update_binary(b"hello", file_id=generic.EF_PUBLIC)
    conn.power_cycle()
    session = GenericSession(conn)
    status = session.pin_status(pin_ref)
    assert not status.verified and status.attempts_remaining == 3
    assert session.read_binary(generic.EF_PUBLIC)[:5] == b"hello"


def test_get_challenge_is_fresh(tmp_path: Path) -> None:
    session = Iso7816Session(InProcessConnection(make_card(tmp_path)))
    first, second = session.get_challenge(8), session.get_challenge(8)
    assert len(first) == 8 and first != second


@pytest.mark.parametrize("limits", [{}, SHORT_ONLY], ids=["extended", "short"])
def test_offsets_beyond_32k_on_a_64k_card(tmp_path: Path, limits: dict[str, int]) -> None:
    app = generic.GenericApplication(big_file_size=40_000)
    card = cardos.SimulatedCard(tmp_path / "card", capacity=64 * 1024, applications=[app], **limits)
    session = GenericSession(InProcessConnection(card))
    data = bytes((i * 31) & 0xFF for i in range(3000))
    session.update_binary(data, file_id=generic.EF_BIG, offset=35_000)
    assert session.read_binary(generic.EF_BIG, offset=35_000, length=3000) == data
    whole = session.read_binary(generic.EF_BIG)
    assert len(whole) == 40_000 and whole[35_000:38_000] == data
