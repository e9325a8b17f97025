"""Tearing: pull the simulated card at every persistent write (and every step) of a multi-file update,
a PIN try and a key generation; every run must leave the old or the new state, never a mix."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import pytest

from hardware_sims.card.apps.generic import (
    CARD_AUTH_KEY,
    EF_BIG,
    EF_PUBLIC,
    GENERIC_AID,
    INS_ATOMIC_UPDATE,
    PIN_REF,
    encode_updates,
)
from hardware_sims.card.cardos import SimulatedCard
from hardware_sims.card.errors import CardTorn
from hardware_sims.card.faults import FaultInjector
from tests.fixtures.cardsim import send

OLD_PUBLIC, NEW_PUBLIC = b"old profile", b"NEW PROFILE"
OLD_BIG, NEW_BIG = b"old balance 30000", b"new balance 29500"


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A personalised card with known contents, copied for each tear run."""
    path = tmp_path_factory.mktemp("template")
    card = SimulatedCard.with_default_filesystem(path, rng=random.Random(5))
    card.power_on()
    _login(card)
    updates = encode_updates([(EF_PUBLIC, 0, OLD_PUBLIC), (EF_BIG, 100, OLD_BIG)])
    assert send(card, INS_ATOMIC_UPDATE, 0, 0, updates, cla=0x80)[1] == 0x9000
    card.power_off()
    return path


def _login(card: SimulatedCard) -> None:
    assert send(card, 0xA4, 0x04, 0x0C, GENERIC_AID)[1] == 0x9000
    assert send(card, 0x20, 0x00, PIN_REF, b"123456")[1] == 0x9000


def _fresh(template: Path, dest: Path) -> tuple[SimulatedCard, FaultInjector]:
    shutil.copytree(template, dest)
    faults = FaultInjector()
    card = SimulatedCard.with_default_filesystem(dest, faults=faults, rng=random.Random(5))
    card.power_on()
    return card, faults


def _contents(card: SimulatedCard) -> tuple[bytes, bytes]:
    send(card, 0xA4, 0x04, 0x0C, GENERIC_AID)
    send(card, 0xA4, 0x02, 0x0C, EF_PUBLIC.to_bytes(2, "big"))
    public = send(card, 0xB0, 0, 0, ne=len(OLD_PUBLIC))[0]
    send(card, 0xA4, 0x02, 0x0C, EF_BIG.to_bytes(2, "big"))
    big = send(card, 0xB0, 0, 100, ne=len(OLD_BIG))[0]
    return public, big


def _multi_file_update(card: SimulatedCard) -> bytes:
    data = encode_updates([(EF_PUBLIC, 0, NEW_PUBLIC), (EF_BIG, 100, NEW_BIG)])
    return card.transmit(bytes([0x80, INS_ATOMIC_UPDATE, 0, 0, len(data)]) + data)


def _tear_runs(template: Path, tmp_path: Path, action, *, by: str, torn_write: bool = False):
    """Count the writes/steps of ``action`` once, then run it once per tear point; yields each torn card."""
    card, faults = _fresh(template, tmp_path / "count")
    _login(card)
    faults.reset_counters()
    action(card)
    total = faults.writes if by == "writes" else faults.steps
    assert total > 0
    for n in range(1, total + 1):
        card, faults = _fresh(template, tmp_path / f"run{n}")
        _login(card)
        if by == "writes":
            faults.arm(after_writes=n, torn_write=torn_write)
        else:
            faults.arm(at_step=n)
        with pytest.raises(CardTorn):
            action(card)
        assert not card.powered
        card.power_on()  # recovery
        yield n, total, card


@pytest.mark.parametrize("torn_write", [False, True], ids=["lost-write", "half-write"])
def test_multi_file_update_torn_at_every_write(template: Path, tmp_path: Path, torn_write: bool) -> None:
    seen = set()
    for n, total, card in _tear_runs(template, tmp_path, _multi_file_update, by="writes",
                                     torn_write=torn_write):
        state = _contents(card)
        assert state in ((OLD_PUBLIC, OLD_BIG), (NEW_PUBLIC, NEW_BIG)), f"write {n}/{total}: mixed {state}"
        seen.add(state[0])
    assert seen == {OLD_PUBLIC, NEW_PUBLIC}, "tearing early must keep old data, late must keep new"


def test_multi_file_update_torn_at_every_step(template: Path, tmp_path: Path) -> None:
    for n, total, card in _tear_runs(template, tmp_path, _multi_file_update, by="steps"):
        state = _contents(card)
        expected_new = n == total  # only after the response is ready has the transaction committed
        expected = (NEW_PUBLIC, NEW_BIG) if expected_new else (OLD_PUBLIC, OLD_BIG)
        assert state == expected, f"step {n}/{total}"


def _wrong_pin(card: SimulatedCard) -> bytes:
    send(card, 0x20, 0xFF, PIN_REF)  # forget the verification of _login
    return card.transmit(bytes.fromhex("0020008106") + b"000000")


def _tries(card: SimulatedCard) -> int:
    send(card, 0xA4, 0x04, 0x0C, GENERIC_AID)
    return send(card, 0x20, 0x00, PIN_REF)[1] & 0x0F


@pytest.mark.parametrize("torn_write", [False, True], ids=["lost-write", "half-write"])
def test_pin_try_torn_at_every_write_never_gives_a_free_try(template: Path, tmp_path: Path,
                                                            torn_write: bool) -> None:
    outcomes = []
    for _n, _total, card in _tear_runs(template, tmp_path, _wrong_pin, by="writes", torn_write=torn_write):
        outcomes.append(_tries(card))
    assert set(outcomes) <= {3, 2}
    assert outcomes[-1] == 2 and outcomes[0] == 3


def _wrong_pin_only(card: SimulatedCard) -> bytes:
    return card.transmit(bytes.fromhex("0020008106") + b"000000")


def test_pin_counter_is_persisted_before_the_comparison(template: Path, tmp_path: Path) -> None:
    fired_at = []
    for _n, _total, card in _tear_runs(template, tmp_path, _wrong_pin_only, by="steps"):
        fired = card.faults.step_labels[-1]
        fired_at.append(fired)
        tries = _tries(card)
        if fired in ("PIN counter decremented", "PIN compared", "response ready"):
            assert tries == 2, f"torn at {fired!r}: the try must already be counted"
        else:
            assert tries == 3, f"torn at {fired!r}: before the try nothing was compared"
    assert fired_at == ["command received", "PIN counter decremented", "PIN compared", "response ready"]


def _right_pin(card: SimulatedCard) -> bytes:
    send(card, 0x20, 0xFF, PIN_REF)
    return card.transmit(bytes.fromhex("0020008106") + b"123456")


def test_right_pin_torn_at_every_write_leaves_full_or_one_less(template: Path, tmp_path: Path) -> None:
    for n, total, card in _tear_runs(template, tmp_path, _right_pin, by="writes"):
        assert _tries(card) in (3, 2), f"write {n}/{total}"
        assert send(card, 0x20, 0x00, PIN_REF)[1] != 0x9000, "verification is RAM state, lost with power"


def _generate(card: SimulatedCard) -> bytes:
    return card.transmit(bytes([0x00, 0x47, 0x80, CARD_AUTH_KEY, 0x00]))


def test_key_generation_torn_at_every_write(template: Path, tmp_path: Path) -> None:
    sws = set()
    for _n, _total, card in _tear_runs(template, tmp_path, _generate, by="writes", torn_write=True):
        _login(card)
        _, sw = send(card, 0x47, 0x81, CARD_AUTH_KEY, ne=256)
        sws.add(sw)
        assert sw in (0x6984, 0x9000)
        if sw == 0x9000:
            sig, sw2 = send(card, 0x88, 0, CARD_AUTH_KEY, b"challenge", ne=256)
            assert sw2 == 0x9000 and len(sig) == 64
    assert sws == {0x6984, 0x9000}
