"""Batch verification of raw r||s P-256 signatures, inline and on worker processes: the first bad one."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest

from cardsvc.central.testing import p256_key
from cardsvc.formats.transaction import sign_raw
from cardsvc.pki.batchverify import BatchVerifier, Triple, first_invalid
from cardsvc.pki.signer import point_of


def _triples(n: int, seed: int = 1) -> list[Triple]:
    rng = random.Random(seed)
    keys = [p256_key(rng) for _ in range(3)]
    out: list[Triple] = []
    for i in range(n):
        key = keys[i % 3]
        message = rng.randbytes(40)
        out.append((point_of(key.public_key()), message, sign_raw(key, message)))
    return out


def _forge(triples: list[Triple], index: int) -> list[Triple]:
    point, message, signature = triples[index]
    changed = list(triples)
    changed[index] = (point, message[:-1] + bytes([message[-1] ^ 1]), signature)
    return changed


@pytest.fixture(scope="module")
def workers() -> Iterator[BatchVerifier]:
    verifier = BatchVerifier(2, min_parallel=4, job_size=3)
    yield verifier
    verifier.shutdown()


def test_first_invalid_names_the_first_bad_triple() -> None:
    good = _triples(9)
    assert first_invalid(good) is None
    assert first_invalid(_forge(_forge(good, 7), 4)) == 4
    bad_point = list(good)
    bad_point[2] = (b"\x04" + bytes(64), *good[2][1:])  # not a point on the curve
    assert first_invalid(bad_point) == 2
    swapped = list(good)
    swapped[5] = (good[0][0] if good[5][0] != good[0][0] else good[1][0], *good[5][1:])  # another key
    assert first_invalid(swapped) == 5


def _first_bad(verifier: BatchVerifier, triples: list[Triple]) -> int | None:
    for start, _end, pending in verifier.jobs(triples):
        bad = pending.result()
        if bad is not None:
            return start + bad
    return None


def test_jobs_on_worker_processes_find_the_same_index(workers: BatchVerifier) -> None:
    good = _triples(10, seed=2)
    assert workers.parallel_for(len(good))
    jobs = workers.jobs(good)
    assert [(s, e) for s, e, _ in jobs] == [(0, 3), (3, 6), (6, 9), (9, 10)]
    assert _first_bad(workers, good) is None
    assert _first_bad(workers, _forge(good, 7)) == 7
    assert _first_bad(workers, _forge(_forge(good, 9), 1)) == 1


def test_small_batches_and_one_worker_verify_inline() -> None:
    good = _triples(5, seed=3)
    inline = BatchVerifier(1, job_size=2)
    assert not inline.parallel_for(10_000)
    assert _first_bad(inline, _forge(good, 3)) == 3
    few = BatchVerifier(4, min_parallel=100, job_size=2)
    assert not few.parallel_for(len(good))
    assert _first_bad(few, _forge(good, 0)) == 0 and few._pool is None  # no process was started
    with pytest.raises(ValueError):
        BatchVerifier(2, job_size=0)
