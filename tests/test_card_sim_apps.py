"""The application plug-in interface, exercised by a small wallet application written the way the
beneficiary-card application will be: own DF and files, own persistent object, a proprietary debit command
that needs a terminal right and the PIN, checks and lowers its balance, counts, and signs a record bound to
the terminal's challenge - all in one transaction, torn at every write."""

from __future__ import annotations

import random
import struct
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from hardware_sims.card.access import ALWAYS, NEVER, Op, Pin, TerminalRight
from hardware_sims.card.apdu import CommandApdu
from hardware_sims.card.application import Application, CardServices, Response
from hardware_sims.card.cardos import SimulatedCard
from hardware_sims.card.errors import CardTorn, IsoError
from hardware_sims.card.faults import FaultInjector
from hardware_sims.card.iso import SW
from hardware_sims.card.security import PinObject
from tests.fixtures.cardsim import send

WALLET_AID = bytes.fromhex("F0574C5401")
EF_BALANCE = 0x0201
KEY = 0x01
INS_DEBIT = 0x30


class WalletApplication(Application):
    aid = WALLET_AID
    label = "WALLET"
    df_fid = 0xDF02

    def install(self, card: CardServices) -> None:
        card.create_ef(self, EF_BALANCE, 4, {Op.READ: ALWAYS, Op.UPDATE: NEVER},
                       content=struct.pack(">I", 30000))
        card.create_pin(self, PinObject(0x81, b"4321", max_tries=3, tries_left=3))
        card.create_key_slot(self, KEY, {Op.USE: NEVER, Op.GENERATE: ALWAYS})
        card.store.put(self._counter_key(card), struct.pack(">I", 0))

    def _counter_key(self, card: CardServices) -> str:
        return f"app.{card.app_df(self)}.counter"

    def on_select(self, card: CardServices) -> None:
        card.ram(self)["selected_at"] = card.now()

    def process(self, apdu: CommandApdu, card: CardServices) -> Response:
        if apdu.ins != INS_DEBIT:
            return super().process(apdu, card)
        df = card.app_df(self)
        card.require(Pin(0x81) & TerminalRight("debit"), df, "debit")
        if card.session.challenge is None or len(apdu.data) != 4:
            raise IsoError(SW.CONDITIONS_NOT_SATISFIED, "GET CHALLENGE first; data = amount (4)")
        (amount,) = struct.unpack(">I", apdu.data)
        (balance,) = struct.unpack(">I", card.read_file(self, EF_BALANCE))
        if amount > balance:
            raise IsoError(SW.CONDITIONS_NOT_SATISFIED, "insufficient balance")
        with card.transaction():
            (counter,) = struct.unpack(">I", card.store.get(self._counter_key(card)) or b"")
            card.write_file(self, EF_BALANCE, 0, struct.pack(">I", balance - amount))
            card.checkpoint("balance lowered")
            card.store.put(self._counter_key(card), struct.pack(">I", counter + 1))
            card.checkpoint("counter raised")
        record = struct.pack(">III", amount, balance - amount, counter + 1) + card.session.challenge
        card.session.challenge = None  # one record per challenge
        return record + card.key(self, KEY).sign_data(record), SW.OK


def _card(path: Path, faults: FaultInjector | None = None) -> SimulatedCard:
    card = SimulatedCard(path, applications=[WalletApplication()], faults=faults, rng=random.Random(2),
                         clock=lambda: 1_700_000_000.0)
    card.power_on()
    return card


def _open(card: SimulatedCard) -> None:
    assert send(card, 0xA4, 0x04, 0x0C, WALLET_AID)[1] == 0x9000
    assert send(card, 0x20, 0x00, 0x81, b"4321")[1] == 0x9000
    card.session.grant_terminal_rights("debit")


def _state(card: SimulatedCard) -> tuple[int, int]:
    send(card, 0xA4, 0x04, 0x0C, WALLET_AID)
    send(card, 0xA4, 0x02, 0x0C, EF_BALANCE.to_bytes(2, "big"))
    balance = struct.unpack(">I", send(card, 0xB0, 0, 0, ne=4)[0])[0]
    counter = struct.unpack(">I", card.store.get("app.3F00.DF02.counter") or b"")[0]
    return balance, counter


def test_debit_needs_pin_and_terminal_right_and_a_fresh_challenge(tmp_path: Path) -> None:
    card = _card(tmp_path)
    point = send(card, 0x47, 0x80, KEY, ne=256)[1]  # MF has no key 01
    assert point == 0x6A88
    send(card, 0xA4, 0x04, 0x0C, WALLET_AID)
    pub = send(card, 0x47, 0x80, KEY, ne=256)[0][5:]
    assert card.session.app_ram[WALLET_AID]["selected_at"] == 1_700_000_000.0
    assert send(card, INS_DEBIT, 0, 0, struct.pack(">I", 500), cla=0x80)[1] == 0x6982
    _open(card)
    assert send(card, INS_DEBIT, 0, 0, struct.pack(">I", 500), cla=0x80)[1] == 0x6985  # no challenge
    challenge = send(card, 0x84, 0, 0, ne=8)[0]
    data, sw = send(card, INS_DEBIT, 0, 0, struct.pack(">I", 500), cla=0x80, ne=256)
    assert sw == 0x9000
    record, sig = data[:-64], data[-64:]
    assert record == struct.pack(">III", 500, 29500, 1) + challenge
    der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
    public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), pub)
    public.verify(der, record, ec.ECDSA(hashes.SHA256()))
    again = send(card, INS_DEBIT, 0, 0, struct.pack(">I", 500), cla=0x80)
    assert again[1] == 0x6985, "challenge is single-use"
    assert send(card, 0x99, 0, 0, cla=0x80)[1] == 0x6D00
    assert send(card, 0xB0, 0, 0, ne=4, cla=0x80)[1] == 0x6D00  # CLA 80 goes to the app only
    assert _state(card) == (29500, 1)


def test_debit_torn_at_every_write_keeps_balance_and_counter_together(tmp_path: Path) -> None:
    counting = FaultInjector()
    card = _card(tmp_path / "count", counting)
    send(card, 0xA4, 0x04, 0x0C, WALLET_AID)
    send(card, 0x47, 0x80, KEY, ne=256)
    _open(card)
    send(card, 0x84, 0, 0, ne=8)
    counting.reset_counters()
    send(card, INS_DEBIT, 0, 0, struct.pack(">I", 700), cla=0x80, ne=256)
    total = counting.writes
    assert total == 6  # 2 journal entries, commit, 2 objects, clear
    outcomes = set()
    for n in range(1, total + 1):
        faults = FaultInjector()
        card = _card(tmp_path / f"t{n}", faults)
        send(card, 0xA4, 0x04, 0x0C, WALLET_AID)
        send(card, 0x47, 0x80, KEY, ne=256)
        _open(card)
        send(card, 0x84, 0, 0, ne=8)
        faults.arm(after_writes=n, torn_write=True)
        with pytest.raises(CardTorn):
            send(card, INS_DEBIT, 0, 0, struct.pack(">I", 700), cla=0x80, ne=256)
        card.power_on()
        state = _state(card)
        assert state in ((30000, 0), (29300, 1)), f"write {n}: {state}"
        outcomes.add(state)
    assert outcomes == {(30000, 0), (29300, 1)}
