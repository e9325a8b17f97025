"""Fuzzing the simulated card: random and structured-but-wrong APDUs never crash it or corrupt its memory.

Also fuzzed: command chains (whole, interrupted, oversized, broken links) and GET RESPONSE sequences in
both classes, with a model of what the card must answer (a stateful hypothesis machine), and the vpcd
serving loop fed malformed frames and a card that raises.
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from hardware_sims.card import iso
from hardware_sims.card.apdu import build_command
from hardware_sims.card.apps.generic import GENERIC_AID
from hardware_sims.card.cardos import SimulatedCard
from hardware_sims.card.filesystem import FileHeader
from hardware_sims.card.security import KeyObject, PinObject
from hardware_sims.card.vpcd import VpcdCardServer
from tests.test_card_sim_vpcd import FakeVpcd

KNOWN_INS = [int(i) for i in iso.INS] + [0x10, 0x12, 0x14, 0x00, 0xFF, 0x61, 0x6C]
SANE_SW_FAMILIES = {0x90, 0x61, 0x62, 0x63, 0x65, 0x67, 0x68, 0x69, 0x6A, 0x6B, 0x6C, 0x6D, 0x6E}
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
    st.sampled_from([0x00, 0x80, 0x0C, 0x10, 0x90, 0x01, 0x84, 0xA0, 0xFF]),
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


# ---------------------------------------------------------------- chains and GET RESPONSE, with a model
SHORT_ONLY = {"max_command_apdu": 4 + 1 + 255 + 1, "max_response_apdu": 256 + 2}
ECHO = 0x14
_CHAINABLE_INS = [ECHO, ECHO, 0x10, 0xD6, 0xA4, 0xB0, 0x20, 0x88]


def _sw(response: bytes) -> int:
    return int.from_bytes(response[-2:], "big")


class ChainAndResponseMachine(RuleBasedStateMachine):
    """Random interleavings of chained links, GET RESPONSE (class 00 and 80), other commands and resets
    on a short-APDU card. The model knows what is waiting behind 61xx and what a chain has gathered, so the
    bytes coming back are checked, not just the status words."""

    card_dir: Path

    def __init__(self) -> None:
        super().__init__()
        self.card = SimulatedCard.with_default_filesystem(self.card_dir, rng=random.Random(9), **SHORT_ONLY)
        self.card.power_on()
        self._select()
        self.waiting = b""  # what GET RESPONSE must still deliver
        self.waiting_cla = 0x00
        self.chain: tuple[int, int, int] | None = None  # (class, INS, P1P2) of the chain in progress
        self.chained = b""

    def _select(self) -> None:
        select = b"\x00\xa4\x04\x0c" + bytes([len(GENERIC_AID)]) + GENERIC_AID
        assert self.card.transmit(select) == b"\x90\x00"

    def _send(self, apdu: bytes) -> bytes:
        response = self.card.transmit(apdu)
        assert len(response) >= 2, apdu.hex()
        assert response[-2] in SANE_SW_FAMILIES, f"{apdu.hex()} -> {response.hex()}"
        return response

    @rule(cla=st.sampled_from([0x80, 0x00]), ins=st.sampled_from(_CHAINABLE_INS),
          p2=st.sampled_from([0, 0, 1]), data=st.binary(max_size=255))
    def chained_link(self, cla: int, ins: int, p2: int, data: bytes) -> None:
        response = self._send(build_command(cla | 0x10, ins, 0, p2, data))
        header = (cla, ins, p2)
        self.waiting = b""
        if self.chain is not None and self.chain != header:
            assert _sw(response) == 0x6883, "a different link must interrupt the chain"
            self.chain, self.chained = None, b""
            return
        if len(self.chained) + len(data) > self.card.max_chained_data:
            assert _sw(response) == 0x6700
            self.chain, self.chained = None, b""
            return
        assert response == b"\x90\x00"
        self.chain = header
        self.chained += data

    @rule(data=st.binary(max_size=255), le=st.sampled_from([1, 16, 100, 255, 256]))
    def last_echo_link(self, data: bytes, le: int) -> None:
        response = self._send(build_command(0x80, ECHO, 0, 0, data, le))
        if self.chain not in (None, (0x80, ECHO, 0)):
            assert _sw(response) == 0x6883
            self.chain, self.chained, self.waiting = None, b"", b""
            return
        whole = self.chained + data
        self.chain, self.chained = None, b""
        answer = whole + hashlib.sha256(whole).digest()
        body, sw = response[:-2], _sw(response)
        assert body == answer[:len(body)] and len(body) == min(le, len(answer))
        if len(answer) > le:
            assert sw >> 8 == 0x61
            self.waiting, self.waiting_cla = answer[le:], 0x80
        else:
            assert sw == 0x9000
            self.waiting = b""

    @rule(cla=st.sampled_from([0x00, 0x80]), le=st.sampled_from([1, 32, 200, 255, 256]),
          p1p2=st.sampled_from([0, 0, 0, 0x0100]))
    def get_response(self, cla: int, le: int, p1p2: int) -> None:
        response = self._send(build_command(cla, 0xC0, p1p2 >> 8, p1p2 & 0xFF, b"", le))
        body, sw = response[:-2], _sw(response)
        if self.chain is not None:
            assert sw == 0x6883
            self.chain, self.chained, self.waiting = None, b"", b""
            return
        is_get_response = cla == 0x00 or (self.waiting and self.waiting_cla == 0x80)
        if not is_get_response:
            assert sw == 0x6D00  # the generic application has no INS C0
            self.waiting = b""
            return
        if p1p2:
            assert sw == 0x6A86  # refused, and the data stays waiting
            return
        if not self.waiting:
            assert sw == 0x6985
            return
        if len(self.waiting) < le < 256:
            assert sw == 0x6C00 | len(self.waiting)  # wrong Le: still waiting
            return
        assert body == self.waiting[:le]
        self.waiting = self.waiting[len(body):]
        assert sw == (0x9000 if not self.waiting else 0x6100 | min(len(self.waiting), 256) & 0xFF)

    @rule(apdu=structured)
    def other_command(self, apdu: bytes) -> None:
        response = self._send(apdu)
        if self.chain is not None and len(apdu) >= 4 and _sw(response) != 0x6700:
            head = (apdu[0] & ~0x10 & 0xFF, apdu[1], apdu[3])
            if head != self.chain or apdu[2] != 0:
                assert _sw(response) in (0x6883, 0x6E00, 0x6882, 0x6881), response.hex()
        # the model no longer knows what is waiting or chained: resynchronise with a reset
        self.card.reset()
        self._select()
        self.chain, self.chained, self.waiting = None, b"", b""

    @rule()
    def power_cycle(self) -> None:
        self.card.power_off()
        self.card.power_on()
        assert self.card.session.chain is None and not self.card.session.pending_response
        self._select()
        self.chain, self.chained, self.waiting = None, b"", b""

    @invariant()
    def ram_matches_the_model(self) -> None:
        chain = self.card.session.chain
        assert (chain is None) == (self.chain is None)
        if chain is not None:
            assert bytes(chain.data) == self.chained
        assert self.card.session.pending_response == self.waiting

    def teardown(self) -> None:
        _assert_consistent(self.card)
        self.card.power_off()


def test_chains_and_get_response_sequences_follow_the_model(tmp_path_factory) -> None:
    ChainAndResponseMachine.card_dir = tmp_path_factory.mktemp("chaincard")
    run_state_machine_as_test(ChainAndResponseMachine, settings=settings(
        max_examples=60, stateful_step_count=30, deadline=None))


# ---------------------------------------------------------------- the vpcd serving loop
class _RaisingCard:
    """A card (or test wrapper) with a bug: raises on the APDUs it does not like."""

    def __init__(self, inner: SimulatedCard) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def transmit(self, apdu: bytes) -> bytes:
        if apdu[:1] == b"\xee":
            raise RuntimeError("card bug")
        if apdu[:1] == b"\xef":
            return b""  # no status word at all
        return self.inner.transmit(apdu)


frames = st.one_of(
    st.binary(min_size=2, max_size=300),  # APDU-sized garbage
    structured,
    st.sampled_from([b"\x00", b"\x01", b"\x02", b"\x03", b"\x04", b"\x7f", b"", b"\xee\x00\x00\x00",
                     b"\xef\x00\x00\x00", b"\x90\x14\x00\x00\x01A", b"\x80\xc0\x00\x00\x10"]),
)


def test_vpcd_loop_survives_any_frame_and_a_card_that_raises(tmp_path_factory) -> None:
    card = SimulatedCard.with_default_filesystem(tmp_path_factory.mktemp("vpcdfuzz"), rng=random.Random(4),
                                                 **SHORT_ONLY)
    vpcd = FakeVpcd()
    try:
        with VpcdCardServer(_RaisingCard(card), port=vpcd.port, min_out_time=0.0) as server:  # type: ignore[arg-type]
            vpcd.accept()

            @settings(max_examples=60, deadline=None)
            @given(st.lists(frames, min_size=1, max_size=12))
            def exchange(batch: list[bytes]) -> None:
                for frame in batch:
                    vpcd.send(frame)
                    if len(frame) >= 2:
                        answer = vpcd.recv()
                        assert len(answer) >= 2 and answer[-2] in SANE_SW_FAMILIES | {0x6F}, answer.hex()
                        if frame[:1] in (b"\xee", b"\xef"):
                            assert answer == b"\x6f\x00"
                    elif frame == b"\x04":
                        assert vpcd.recv() == card.atr

            exchange()
            # a frame cut short by the reader going away: the loop reconnects and serves again
            assert vpcd.conn is not None
            vpcd.conn.sendall(b"\x01\x00" + b"\x00\xa4")
            vpcd.conn.close()
            vpcd.accept()
            vpcd.send(b"\x04")
            assert vpcd.recv() == card.atr
            assert vpcd.transmit(b"\x00\x84\x00\x00\x08")[-2:] == b"\x90\x00"
            assert server.connections == 2
    finally:
        vpcd.close()
    _assert_consistent(card)
