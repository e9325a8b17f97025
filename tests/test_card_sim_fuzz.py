"""Fuzzing the simulated card: random and structured-but-wrong APDUs never crash it or corrupt its memory."""

from __future__ import annotations

import random
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hardware_sims.card import iso
from hardware_sims.card.apps.generic import GENERIC_AID
from hardware_sims.card.cardos import SimulatedCard
from hardware_sims.card.filesystem import FileHeader
from hardware_sims.card.security import KeyObject, PinObject

KNOWN_INS = [int(i) for i in iso.INS] + [0x10, 0x12, 0x00, 0xFF, 0x61, 0x6C]
SANE_SW_FAMILIES = {0x90, 0x61, 0x62, 0x63, 0x65, 0x67, 0x68, 0x69, 0x6A, 0x6B, 0x6D, 0x6E}
# Deliberately absent: 0x6F (no precise diagnosis) is what the card answers when a handler crashes.

_CARD_DIR: dict[str, Path] = {}


def _card(tmp_path_factory) -> SimulatedCard:
    if "dir" not in _CARD_DIR:
        _CARD_DIR["dir"] = tmp_path_factory.mktemp("fuzzcard")
    card = SimulatedCard.with_default_filesystem(_CARD_DIR["dir"], rng=random.Random(3),
                                                 max_response_apdu=2048 + 2)
    card.power_on()
    return card


def _assert_consistent(card: SimulatedCard) -> None:
    """Every persistent object decodes and every EF's contents are exactly its declared size."""
    card.power_off()
    card.power_on()  # recovery from the journal must succeed
    store = card.store
    for key in store.keys("fs."):
        header = FileHeader.decode(key[3:], store.get(key) or b"")
        if not header.is_df:
            assert len(store.get(f"bin.{header.path}") or b"") == header.size, header.path
    for key in store.keys("pin."):
        pin = PinObject.decode(0, store.get(key) or b"")
        assert 0 <= pin.tries_left <= pin.max_tries
    for key in store.keys("key."):
        KeyObject.decode(0, store.get(key) or b"")
    assert store.used() <= store.usable
    # security invariants: no terminal right is ever granted here, and 0104 is update NEVER
    assert store.get("bin.3F00.DF01.0102") == bytes(1024), "protected file changed without the right"
    assert (store.get("bin.3F00.DF01.0104") or b"").startswith(b"either"), "NEVER-update file changed"


def _check(card: SimulatedCard, apdu: bytes) -> None:
    response = card.transmit(apdu)
    assert len(response) >= 2
    assert response[-2] in SANE_SW_FAMILIES, f"{apdu.hex()} -> {response.hex()}"


structured = st.builds(
    lambda cla, ins, p1, p2, data, lc_delta, le, ext: _encode(cla, ins, p1, p2, data, lc_delta, le, ext),
    st.sampled_from([0x00, 0x80, 0x0C, 0x10, 0x01, 0x84, 0xA0, 0xFF]),
    st.sampled_from(KNOWN_INS),
    st.integers(0, 255), st.integers(0, 255),
    st.binary(max_size=300),
    st.sampled_from([0, 0, 0, 1, -1, 7]),
    st.one_of(st.none(), st.integers(0, 65536)),
    st.booleans(),
)


def _encode(cla: int, ins: int, p1: int, p2: int, data: bytes, lc_delta: int, le: int | None,
            ext: bool) -> bytes:
    """An APDU whose Lc may lie by ``lc_delta`` and whose Le may be short, extended or absent."""
    head = bytes([cla, ins, p1, p2])
    lc = max(0, len(data) + lc_delta)
    body = b""
    if data:
        body = (b"\x00" + (lc & 0xFFFF).to_bytes(2, "big")) if ext else bytes([lc & 0xFF])
        body += data
    if le is not None:
        body += ((b"" if data else b"\x00") + (le & 0xFFFF).to_bytes(2, "big")) if ext else bytes([le & 0xFF])
    return head + body


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(apdus=st.lists(st.binary(min_size=0, max_size=80), min_size=1, max_size=8))
def test_random_bytes_get_a_status_word(tmp_path_factory, apdus: list[bytes]) -> None:
    card = _card(tmp_path_factory)
    for apdu in apdus:
        _check(card, apdu)
    _assert_consistent(card)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(apdus=st.lists(structured, min_size=1, max_size=6), select_first=st.booleans())
def test_structured_wrong_apdus_get_a_status_word(tmp_path_factory, apdus: list[bytes],
                                                   select_first: bool) -> None:
    card = _card(tmp_path_factory)
    if select_first:
        card.transmit(b"\x00\xa4\x04\x0c" + bytes([len(GENERIC_AID)]) + GENERIC_AID)
        card.transmit(bytes.fromhex("0020008106313233343536"))
    for apdu in apdus:
        _check(card, apdu)
    _assert_consistent(card)
