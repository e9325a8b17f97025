"""Verify many raw r||s ECDSA P-256 signatures at once, spread over worker processes.

pyca/cryptography keeps the GIL while OpenSSL verifies, so threads do not verify in parallel; processes do.
Central's ingest splits each batch's records into jobs of :data:`JOB_SIZE` (:meth:`BatchVerifier.jobs`)
and builds its rows while the jobs run. A large batch (:data:`MIN_PARALLEL` records or more) goes to the
worker processes, all jobs submitted at once; a small one, or any batch on a one-CPU machine, is verified
in the calling thread, each job when its answer is first asked for (so the caller can interleave it with
other work, e.g. a COPY in another thread). Workers are spawned, not forked (servers have threads): a
script that ingests large batches needs the usual ``if __name__ == "__main__":`` guard.

A job is ``(point, message, signature)`` triples, the point being the signer's 65-byte uncompressed P-256
point (:func:`cardsvc.pki.signer.load_public_point`); its answer is the index of the first triple that does
not verify, or None. Workers hold no key material of their own and log nothing.
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Protocol

from cryptography.hazmat.primitives.asymmetric import ec

from cardsvc.formats.errors import SignatureError
from cardsvc.formats.transaction import verify_raw_signature
from cardsvc.pki.errors import FormatError
from cardsvc.pki.signer import load_public_point

Triple = tuple[bytes, bytes, bytes]

#: records per job (about 170 KB pickled for a worker): large enough that inter-process traffic is noise
JOB_SIZE = 500
#: batches with fewer triples than this are verified in the calling thread
MIN_PARALLEL = 2 * JOB_SIZE


def first_invalid(triples: Sequence[Triple]) -> int | None:
    """Index of the first (point, message, signature) that does not verify; None when all do.

    A point that is not an uncompressed P-256 point counts as not verifying. Key objects are made once per
    distinct point.
    """
    keys: dict[bytes, ec.EllipticCurvePublicKey] = {}
    for index, (point, message, signature) in enumerate(triples):
        key = keys.get(point)
        if key is None:
            try:
                key = keys[point] = load_public_point(point)
            except FormatError:
                return index
        try:
            verify_raw_signature(key, message, signature)
        except SignatureError:
            return index
    return None


class Pending(Protocol):
    """A job's answer: the first bad index within the job, or None (a ``Future`` is one)."""

    def result(self) -> int | None: ...


class _Inline:
    """A job verified in the calling thread when its answer is first asked for."""

    def __init__(self, triples: Sequence[Triple]) -> None:
        self._triples: Sequence[Triple] | None = triples
        self._answer: int | None = None

    def result(self) -> int | None:
        if self._triples is not None:
            self._answer, self._triples = first_invalid(self._triples), None
        return self._answer


class BatchVerifier:
    """Verification jobs on ``workers`` processes (spawned on first use, kept for the process's life).

    ``workers <= 1`` verifies inline. Submitting never blocks; the answer is read from the pending job.
    """

    def __init__(self, workers: int, *, min_parallel: int = MIN_PARALLEL, job_size: int = JOB_SIZE) -> None:
        if job_size < 1:
            raise ValueError(f"job_size must be at least 1, got {job_size}")
        self.workers = max(1, workers)
        self.min_parallel = min_parallel
        self.job_size = job_size
        self._pool: ProcessPoolExecutor | None = None
        self._pid = 0  # the process that started the pool: a forked child (a server worker) starts its own
        self._lock = threading.Lock()

    def _executor(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None or self._pid != os.getpid():
                context = multiprocessing.get_context("spawn")
                self._pool = ProcessPoolExecutor(self.workers, mp_context=context)
                self._pid = os.getpid()
            return self._pool

    def warm(self) -> None:
        """Start the workers now (each imports cryptography once), e.g. while a server starts."""
        if self.workers > 1:
            pool = self._executor()
            for future in [pool.submit(first_invalid, []) for _ in range(self.workers)]:
                future.result()

    def parallel_for(self, count: int) -> bool:
        return self.workers > 1 and count >= self.min_parallel

    def submit(self, triples: Sequence[Triple], *, parallel: bool = True) -> Pending:
        """One job: on a worker (a Future), or inline, verified when its result is first asked for."""
        if not parallel or self.workers <= 1:
            return _Inline(triples)
        future: Future[int | None] = self._executor().submit(first_invalid, list(triples))
        return future

    def jobs(self, triples: Sequence[Triple]) -> list[tuple[int, int, Pending]]:
        """``triples`` split into jobs of ``job_size``: ``(start, end, pending)``, each answer's index
        relative to ``start``. On the workers from ``min_parallel`` triples on, else inline."""
        size, total = self.job_size, len(triples)
        parallel = self.parallel_for(total)
        return [
            (start, min(start + size, total), self.submit(triples[start : start + size], parallel=parallel))
            for start in range(0, total, size)
        ]

    def shutdown(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None and self._pid == os.getpid():
            pool.shutdown(wait=True, cancel_futures=True)


def default_workers() -> int:
    """One worker per CPU this process may use (at most 8); 1 means inline."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(8, cpus))


_shared: BatchVerifier | None = None
_shared_lock = threading.Lock()


def shared_verifier() -> BatchVerifier:
    """The process-wide verifier (``CARDSVC_VERIFY_WORKERS`` sets the worker count; 1: inline)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            configured = os.environ.get("CARDSVC_VERIFY_WORKERS", "").strip()
            workers = int(configured) if configured.isdigit() else default_workers()
            if multiprocessing.parent_process() is not None:
                workers = 1  # a worker (or any child process) never starts workers of its own
            _shared = BatchVerifier(workers)
            atexit.register(_shared.shutdown)
        return _shared


__all__ = [
    "JOB_SIZE",
    "MIN_PARALLEL",
    "BatchVerifier",
    "Pending",
    "default_workers",
    "first_invalid",
    "shared_verifier",
]
