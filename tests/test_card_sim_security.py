"""Simulated card: PIN objects, on-card key pairs, signatures, access conditions per key."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, encode_dss_signature

from hardware_sims.card import tlv
from hardware_sims.card.apps.generic import CARD_AUTH_KEY, GENERIC_AID, PIN_REF, PUK_REF, SIGNING_KEY
from hardware_sims.card.cardos import SimulatedCard
from tests.fixtures.cardsim import send

VERIFY, CHANGE, RESET_RC, GENERATE, MSE, INT_AUTH, PSO = 0x20, 0x24, 0x2C, 0x47, 0x22, 0x88, 0x2A


def select_app(card: SimulatedCard) -> None:
    assert send(card, 0xA4, 0x04, 0x0C, GENERIC_AID)[1] == 0x9000


def verify(card: SimulatedCard, pin: bytes | None = b"123456", ref: int = PIN_REF) -> int:
    return send(card, VERIFY, 0x00, ref, pin or b"")[1]


def public_key(point: bytes) -> ec.EllipticCurvePublicKey:
    return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)


def raw_to_der(sig: bytes) -> bytes:
    assert len(sig) == 64
    return encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))


def generate(card: SimulatedCard, ref: int) -> bytes:
    data, sw = send(card, GENERATE, 0x80, ref, ne=256)
    assert sw == 0x9000
    (tag, value), = tlv.parse(data)
    assert tag == 0x7F49
    point = tlv.find(value, 0x86)
    assert point is not None and len(point) == 65 and point[0] == 0x04
    return point


# ---------------------------------------------------------------- PIN
def test_wrong_pins_count_down_and_block_across_restarts(sim_card: SimulatedCard) -> None:
    select_app(sim_card)
    assert verify(sim_card, None) == 0x63C3  # status query
    assert verify(sim_card, None) == 0x63C3, "a status query must not burn a try"
    assert verify(sim_card, b"000000") == 0x63C2
    restarted = SimulatedCard.with_default_filesystem(sim_card.state_dir)
    restarted.power_on()
    select_app(restarted)
    assert verify(restarted, None) == 0x63C2, "the retry counter is persistent"
    assert verify(restarted, b"111111") == 0x63C1
    assert verify(restarted, b"222222") == 0x63C0
    assert verify(restarted, b"123456") == 0x6983, "blocked: even the right PIN is refused"
    assert verify(restarted, None) == 0x6983


def test_right_pin_restores_the_counter_and_verification_is_ram_only(sim_card: SimulatedCard) -> None:
    select_app(sim_card)
    assert verify(sim_card, b"999999") == 0x63C2
    assert verify(sim_card) == 0x9000
    assert verify(sim_card, None) == 0x9000
    sim_card.reset()
    select_app(sim_card)
    assert verify(sim_card, None) == 0x63C3
    assert verify(sim_card) == 0x9000
    assert send(sim_card, VERIFY, 0xFF, PIN_REF)[1] == 0x9000  # log out
    assert verify(sim_card, None) == 0x63C3


def test_bad_pin_length_is_refused_without_burning_a_try(sim_card: SimulatedCard) -> None:
    select_app(sim_card)
    assert verify(sim_card, b"12") == 0x6A80
    assert verify(sim_card, None) == 0x63C3


def test_change_pin_then_unblock_with_the_puk(sim_card: SimulatedCard) -> None:
    select_app(sim_card)
    assert send(sim_card, CHANGE, 0, PIN_REF, b"000000" + b"2468")[1] == 0x63C2
    assert send(sim_card, CHANGE, 0, PIN_REF, b"123456" + b"2468")[1] == 0x9000
    assert verify(sim_card, b"123456") == 0x63C2
    assert verify(sim_card, b"123456") == 0x63C1
    assert verify(sim_card, b"123456") == 0x63C0
    assert send(sim_card, RESET_RC, 0x00, PIN_REF, b"00000000" + b"1357")[1] == 0x63C9  # wrong PUK
    assert send(sim_card, RESET_RC, 0x00, PIN_REF, b"12345678" + b"1357")[1] == 0x9000
    assert verify(sim_card, b"1357") == 0x9000
    assert verify(sim_card, None, ref=PUK_REF) == 0x63CA, "right PUK restored the PUK counter"


def test_reset_without_puk_needs_the_admin_right(sim_card: SimulatedCard) -> None:
    select_app(sim_card)
    assert send(sim_card, RESET_RC, 0x02, PIN_REF, b"7777")[1] == 0x6982
    sim_card.session.grant_terminal_rights("admin")
    assert send(sim_card, RESET_RC, 0x02, PIN_REF, b"7777")[1] == 0x9000
    assert verify(sim_card, b"7777") == 0x9000


# ---------------------------------------------------------------- keys
def test_generate_needs_the_pin_and_returns_only_the_public_key(sim_card: SimulatedCard) -> None:
    select_app(sim_card)
    assert send(sim_card, GENERATE, 0x80, CARD_AUTH_KEY, ne=256)[1] == 0x6982
    assert send(sim_card, GENERATE, 0x81, CARD_AUTH_KEY, ne=256)[1] == 0x6984  # not generated yet
    verify(sim_card)
    data, sw = send(sim_card, GENERATE, 0x80, CARD_AUTH_KEY, ne=256)
    assert sw == 0x9000
    assert send(sim_card, GENERATE, 0x81, CARD_AUTH_KEY, ne=256) == (data, 0x9000)
    key = sim_card.objects.key("3F00.DF01", CARD_AUTH_KEY)
    assert key is not None and len(key.private) == 32
    assert key.private not in data and key.private.hex() not in repr(key)


def test_internal_authenticate_proves_the_chip_without_a_pin(sim_card: SimulatedCard) -> None:
    select_app(sim_card)
    verify(sim_card)
    point = generate(sim_card, CARD_AUTH_KEY)
    sim_card.reset()
    select_app(sim_card)
    challenge = bytes(range(16))
    sig, sw = send(sim_card, INT_AUTH, 0x00, CARD_AUTH_KEY, challenge, ne=256)
    assert sw == 0x9000
    public_key(point).verify(raw_to_der(sig), challenge, ec.ECDSA(hashes.SHA256()))
    with pytest.raises(InvalidSignature):
        public_key(point).verify(raw_to_der(sig), challenge[::-1], ec.ECDSA(hashes.SHA256()))
    assert send(sim_card, INT_AUTH, 0x00, 0x00, challenge, ne=256)[1] == 0x6985  # no key chosen by MSE
    assert send(sim_card, MSE, 0x41, 0xA4, bytes([0x84, 1, CARD_AUTH_KEY]))[1] == 0x9000
    sig2, sw = send(sim_card, INT_AUTH, 0x00, 0x00, challenge, ne=256)
    assert sw == 0x9000 and sig2 == sig  # RFC 6979: deterministic


def test_pso_signature_needs_the_pin_and_an_mse_key(sim_card: SimulatedCard) -> None:
    select_app(sim_card)
    verify(sim_card)
    point = generate(sim_card, SIGNING_KEY)
    sim_card.reset()
    select_app(sim_card)
    digest = hashlib.sha256(b"debit 500 rupees").digest()
    assert send(sim_card, PSO, 0x9E, 0x9A, digest, ne=256)[1] == 0x6985
    assert send(sim_card, MSE, 0x41, 0xB6, bytes([0x84, 1, SIGNING_KEY]))[1] == 0x9000
    assert send(sim_card, PSO, 0x9E, 0x9A, digest, ne=256)[1] == 0x6982
    verify(sim_card)
    sig, sw = send(sim_card, PSO, 0x9E, 0x9A, digest, ne=256)
    assert sw == 0x9000
    public_key(point).verify(raw_to_der(sig), digest, ec.ECDSA(Prehashed(hashes.SHA256())))
    assert send(sim_card, MSE, 0x41, 0xB6, bytes([0x84, 1, 0x09]))[1] == 0x6A88  # no such key


def test_short_le_gets_the_signature_through_get_response(sim_card: SimulatedCard) -> None:
    select_app(sim_card)
    verify(sim_card)
    generate(sim_card, CARD_AUTH_KEY)
    first, sw = send(sim_card, INT_AUTH, 0x00, CARD_AUTH_KEY, b"abcd", ne=40)
    assert (len(first), sw) == (40, 0x6118)
    rest, sw = send(sim_card, 0xC0, 0, 0, ne=0x18)
    assert sw == 0x9000 and len(first + rest) == 64


def test_keys_survive_a_restart(tmp_path: Path) -> None:
    card = SimulatedCard.with_default_filesystem(tmp_path)
    card.power_on()
    select_app(card)
    verify(card)
    point = generate(card, CARD_AUTH_KEY)
    again = SimulatedCard.with_default_filesystem(tmp_path)
    again.power_on()
    select_app(again)
    sig, sw = send(again, INT_AUTH, 0x00, CARD_AUTH_KEY, b"fresh", ne=256)
    assert sw == 0x9000
    public_key(point).verify(raw_to_der(sig), b"fresh", ec.ECDSA(hashes.SHA256()))
