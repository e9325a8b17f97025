"""Journaled persistent memory of the simulated card: atomic transactions under tearing."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hardware_sims.card.errors import CardTorn, MemoryFullError
from hardware_sims.card.faults import FaultInjector
from hardware_sims.card.store import PersistentStore


def _store(path: Path, faults: FaultInjector | None = None, capacity: int = 32 * 1024) -> PersistentStore:
    store = PersistentStore(path, capacity=capacity, faults=faults)
    store.open()
    return store


OLD = {"ef.a": b"A" * 100, "ef.b": b"B" * 50, "ef.c": b"C" * 10}


def _change(store: PersistentStore) -> None:
    with store.transaction():
        store.put("ef.a", b"a" * 120)
        store.put("ef.b", b"b" * 50)
        store.delete("ef.c")
        store.put("ef.d", b"d" * 7)


NEW = {"ef.a": b"a" * 120, "ef.b": b"b" * 50, "ef.d": b"d" * 7}


def _count_writes(tmp_path: Path) -> int:
    faults = FaultInjector()
    store = _store(tmp_path / "count", faults)
    for k, v in OLD.items():
        store.put(k, v)
    faults.reset_counters()
    _change(store)
    return faults.writes


def test_transaction_commits_and_survives_restart(tmp_path: Path) -> None:
    store = _store(tmp_path)
    for k, v in OLD.items():
        store.put(k, v)
    _change(store)
    assert _store(tmp_path).snapshot() == NEW


def test_multi_object_transaction_takes_journal_commit_apply_and_clear_writes(tmp_path: Path) -> None:
    # 4 journal entries + commit + 4 applies + journal clear
    assert _count_writes(tmp_path) == 10


@pytest.mark.parametrize("torn_write", [False, True], ids=["lost-write", "half-write"])
def test_tear_at_every_write_leaves_old_or_new_state(tmp_path: Path, torn_write: bool) -> None:
    total = _count_writes(tmp_path)
    outcomes = []
    for n in range(1, total + 1):
        faults = FaultInjector()
        store = _store(tmp_path / f"t{n}", faults)
        for k, v in OLD.items():
            store.put(k, v)
        faults.arm(after_writes=n, torn_write=torn_write)
        with pytest.raises(CardTorn):
            _change(store)
        state = _store(tmp_path / f"t{n}").snapshot()  # power-up in a new "process"
        assert state in (OLD, NEW), f"tear at write {n} left a mixed state"
        outcomes.append(state == NEW)
    # before the commit record is complete: old; from then on: new
    assert outcomes == [False] * 5 + [True] * (total - 5)


def test_tear_during_recovery_is_recovered_by_the_next_power_up(tmp_path: Path) -> None:
    faults = FaultInjector()
    store = _store(tmp_path, faults)
    for k, v in OLD.items():
        store.put(k, v)
    faults.arm(after_writes=7)  # after the commit record, in the middle of applying
    with pytest.raises(CardTorn):
        _change(store)
    faults.arm(after_writes=2, torn_write=True)  # tear the redo as well
    with pytest.raises(CardTorn):
        _store(tmp_path, faults)
    assert _store(tmp_path).snapshot() == NEW


def test_aborted_transaction_writes_nothing(tmp_path: Path) -> None:
    faults = FaultInjector()
    store = _store(tmp_path, faults)
    store.put("ef.a", b"1")
    faults.reset_counters()
    with pytest.raises(RuntimeError), store.transaction():
        store.put("ef.a", b"2")
        assert store.get("ef.a") == b"2"  # reads see pending writes
        raise RuntimeError("application refused")
    assert faults.writes == 0
    assert store.get("ef.a") == b"1"


def test_full_card_refuses_the_whole_transaction(tmp_path: Path) -> None:
    store = _store(tmp_path)
    free = store.free()
    store.put("ef.a", b"x" * 100)
    with pytest.raises(MemoryFullError) as err, store.transaction():
        store.put("ef.b", b"y" * 100)
        store.put("ef.c", b"z" * free)
    assert err.value.sw == 0x6A84
    assert store.keys() == ["ef.a"]
    assert _store(tmp_path).keys() == ["ef.a"]


@pytest.mark.parametrize(("capacity", "low", "high"), [(32, 18, 22), (64, 42, 50), (80, 55, 65)])
def test_usable_memory_matches_the_card_budget(tmp_path: Path, capacity: int, low: int, high: int) -> None:
    store = _store(tmp_path, capacity=capacity * 1024)
    assert low * 1024 <= store.usable <= high * 1024


def test_stale_commit_of_an_older_transaction_never_completes_a_torn_one(tmp_path: Path) -> None:
    faults = FaultInjector()
    store = _store(tmp_path, faults)
    store.put("ef.a", b"0" * 8)
    store.put("ef.b", b"0" * 8)
    with store.transaction():  # leaves a long journal behind (cleared by zeroing its first byte)
        store.put("ef.a", b"1" * 8)
        store.put("ef.b", b"1" * 8)
    store.put("ef.b", b"2" * 8)
    # next transaction writes the same first entry as the older one, then dies before its commit record
    faults.arm(after_writes=2)
    with pytest.raises(CardTorn), store.transaction():
        store.put("ef.a", b"1" * 8)
        store.put("ef.c", b"x" * 8)
    assert _store(tmp_path).snapshot() == {"ef.a": b"1" * 8, "ef.b": b"2" * 8}, "older ef.b=1 came back"


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(garbage=st.binary(max_size=200), keep=st.integers(0, 60))
def test_any_damaged_journal_recovers_to_a_consistent_state(tmp_path: Path, garbage: bytes,
                                                             keep: int) -> None:
    """A journal cut anywhere, or overwritten with anything, is either redone completely or ignored."""
    path = tmp_path / f"j{len(garbage)}-{keep}-{abs(hash(garbage))}"
    faults = FaultInjector()
    store = _store(path, faults)
    for k, v in OLD.items():
        store.put(k, v)
    faults.arm(after_writes=6)  # journal complete (entries + commit), objects not yet written
    with pytest.raises(CardTorn):
        _change(store)
    journal = path / "journal.bin"
    raw = journal.read_bytes()
    journal.write_bytes(raw[:keep] + garbage)
    assert _store(path).snapshot() in (OLD, NEW)


def test_an_application_too_big_for_the_card_is_reported_at_power_up(tmp_path: Path) -> None:
    from hardware_sims.card.apps.generic import GenericApplication
    from hardware_sims.card.cardos import SimulatedCard
    from hardware_sims.card.errors import PersonalisationError

    card = SimulatedCard(tmp_path, applications=[GenericApplication(big_file_size=40 * 1024)])
    with pytest.raises(PersonalisationError, match=r"GENERIC TEST.*32768-byte card"):
        card.power_on()
    assert not card.powered
