"""Journaled persistent memory (the card's simulated EEPROM).

Layout of the state directory::

    objects/<key>   one file per persistent object (file contents, file headers, PIN objects, keys)
    journal.bin     write-ahead journal: entry records, then one commit record

A transaction is written as: one journal entry per changed object, a commit record (with the entry count
and a CRC over the entries), then each object file in place, then the journal is cleared (its first byte
zeroed). Every one of those steps is one *persistent write*, counted (and possibly torn: only a prefix of
the bytes lands) by the :class:`FaultInjector`. Writes go in place (no truncate-and-rewrite), like EEPROM
pages. Entries and commit carry an 8-byte transaction nonce, so stale bytes of an older, longer journal
can never complete a newer one. Recovery on power-up: a journal with a valid commit record is redone
(idempotent: whole objects are rewritten); anything else is discarded. So a tear at any write leaves the
old state (before the commit record is complete) or the new state (after), never a mix.
"""

from __future__ import annotations

import os
import re
import struct
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import MemoryFullError, StateDirError
from .faults import FaultInjector

OBJECT_OVERHEAD = 16
"""Bytes of allocation overhead counted per persistent object (header, allocation table entry)."""

_KEY_RE = re.compile(r"^[A-Za-z0-9._-]{1,200}$")
_ENTRY = b"E"
_COMMIT = b"C"
_PUT = b"P"
_DELETE = b"D"


def default_os_reserved(capacity: int) -> int:
    """EEPROM taken by the card OS, applet code and the journal: 8 KB + 1/8 of the chip.

    Gives about 20 KB usable on a 32 KB chip, 48 KB on 64 KB and 62 KB on 80 KB (HARDWARE.md budget).
    """
    return 8192 + capacity // 8


class PersistentStore:
    """Key -> bytes map in persistent memory, changed only through atomic transactions."""

    def __init__(self, state_dir: Path, *, capacity: int, os_reserved: int | None = None,
                 faults: FaultInjector | None = None) -> None:
        self.state_dir = Path(state_dir)
        self.capacity = capacity
        self.os_reserved = default_os_reserved(capacity) if os_reserved is None else os_reserved
        if self.os_reserved >= capacity:
            raise ValueError(f"os_reserved {self.os_reserved} leaves no memory on a {capacity}-byte card")
        self.faults = faults if faults is not None else FaultInjector()
        self._objects_dir = self.state_dir / "objects"
        self._journal = self.state_dir / "journal.bin"
        self._cache: dict[str, bytes] = {}
        self._pending: dict[str, bytes | None] | None = None
        self._depth = 0
        self._loaded = False

    # ------------------------------------------------------------------ power-up
    def open(self) -> None:
        """Recover the journal and load every object (called on each power-up)."""
        self._objects_dir.mkdir(parents=True, exist_ok=True)
        self._pending = None
        self._depth = 0
        self._loaded = False
        self._recover()
        cache: dict[str, bytes] = {}
        for path in self._objects_dir.iterdir():
            if not _KEY_RE.match(path.name):
                raise StateDirError(f"unexpected file {path} in the card's state directory")
            cache[path.name] = path.read_bytes()
        self._cache = cache
        self._loaded = True

    def _recover(self) -> None:
        if not self._journal.exists():
            return
        raw = self._journal.read_bytes()
        if raw[:1] not in (_ENTRY, _COMMIT):
            return  # cleared
        entries = _parse_committed_journal(raw)
        if entries is not None:
            for key, value in entries.items():
                self._apply(key, value)
        self._clear_journal()

    # ------------------------------------------------------------------ reads
    @property
    def usable(self) -> int:
        """Bytes available to files, PINs and keys on an empty card."""
        return self.capacity - self.os_reserved

    def used(self) -> int:
        """Bytes taken now (objects plus per-object overhead), counting pending writes."""
        return _footprint(self._view())

    def free(self) -> int:
        """Bytes still available."""
        return self.usable - self.used()

    def get(self, key: str) -> bytes | None:
        """Current value (pending writes of the open transaction included)."""
        self._require_loaded()
        if self._pending is not None and key in self._pending:
            return self._pending[key]
        return self._cache.get(key)

    def keys(self, prefix: str = "") -> list[str]:
        """Sorted keys starting with ``prefix``."""
        self._require_loaded()
        return sorted(k for k in self._view() if k.startswith(prefix))

    def snapshot(self) -> dict[str, bytes]:
        """A copy of the committed state (for tests comparing old/new state)."""
        self._require_loaded()
        return dict(self._cache)

    def _view(self) -> dict[str, bytes]:
        if self._pending is None:
            return self._cache
        view = dict(self._cache)
        for key, value in self._pending.items():
            if value is None:
                view.pop(key, None)
            else:
                view[key] = value
        return view

    def _require_loaded(self) -> None:
        if not self._loaded:
            raise StateDirError("persistent store is not open (card not powered)")

    # ------------------------------------------------------------------ writes
    @contextmanager
    def transaction(self) -> Iterator[PersistentStore]:
        """All put()/delete() inside commit atomically at the outermost exit; an exception discards them.

        Nested transactions join the outer one, so an application can wrap several file updates (each
        itself transactional) into one atomic unit.
        """
        self._require_loaded()
        if self._depth == 0:
            self._pending = {}
        self._depth += 1
        try:
            yield self
        except BaseException:
            self._depth -= 1
            if self._depth == 0:
                self._pending = None
            raise
        self._depth -= 1
        if self._depth == 0:
            pending, self._pending = self._pending, None
            assert pending is not None
            self._commit(pending)

    def put(self, key: str, value: bytes) -> None:
        """Write an object (inside a transaction, or as a one-object transaction)."""
        if not _KEY_RE.match(key):
            raise ValueError(f"bad persistent key {key!r}")
        with self.transaction():
            assert self._pending is not None
            self._pending[key] = bytes(value)

    def delete(self, key: str) -> None:
        """Remove an object (inside a transaction, or as a one-object transaction)."""
        with self.transaction():
            assert self._pending is not None
            self._pending[key] = None

    def _commit(self, pending: dict[str, bytes | None]) -> None:
        changes = {k: v for k, v in pending.items() if self._cache.get(k) != v}
        if not changes:
            return
        view = dict(self._cache)
        for key, value in changes.items():
            if value is None:
                view.pop(key, None)
            else:
                view[key] = value
        needed = _footprint(view)
        if needed > self.usable:
            raise MemoryFullError(needed - _footprint(self._cache), self.usable - _footprint(self._cache))
        nonce = os.urandom(8)
        body = b""
        for key, value in changes.items():
            record = _encode_entry(nonce, key, value)
            self._write(self._journal, record, offset=len(body), what=f"journal entry {key}")
            body += record
        self._write(self._journal, _encode_commit(nonce, len(changes), body), offset=len(body),
                    what="journal commit")
        for key, value in changes.items():
            self._apply(key, value)
        self._clear_journal()

    def _apply(self, key: str, value: bytes | None) -> None:
        path = self._objects_dir / key
        if value is None:
            cut = self.faults.write_cut(0)
            if cut is not None:
                self.faults.die(f"at write {self.faults.writes} (delete {key})")
            path.unlink(missing_ok=True)
            self._cache.pop(key, None)
        else:
            self._write(path, value, offset=0, what=f"object {key}", exact=True)
            self._cache[key] = value

    def _clear_journal(self) -> None:
        self._write(self._journal, b"\x00", offset=0, what="journal clear")

    def _write(self, path: Path, data: bytes, *, offset: int, what: str, exact: bool = False) -> None:
        """One persistent write, in place. ``exact``: the file ends up exactly ``data`` (object files)."""
        cut = self.faults.write_cut(len(data))
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            os.pwrite(fd, data if cut is None else data[:cut], offset)
            if exact and cut is None and os.fstat(fd).st_size > len(data):
                os.ftruncate(fd, len(data))
        finally:
            os.close(fd)
        if cut is not None:
            self.faults.die(f"at write {self.faults.writes} ({what}, {cut} of {len(data)} bytes written)")


def _footprint(objects: dict[str, bytes]) -> int:
    return sum(len(v) + OBJECT_OVERHEAD for v in objects.values())


def _encode_entry(nonce: bytes, key: str, value: bytes | None) -> bytes:
    kb = key.encode("ascii")
    head = _ENTRY + nonce + (_DELETE if value is None else _PUT) + bytes([len(kb)]) + kb
    payload = b"" if value is None else value
    rec = head + struct.pack(">I", len(payload)) + payload
    return rec + struct.pack(">I", zlib.crc32(rec))


def _encode_commit(nonce: bytes, count: int, body: bytes) -> bytes:
    rec = _COMMIT + nonce + struct.pack(">II", count, zlib.crc32(body))
    return rec + struct.pack(">I", zlib.crc32(rec))


def _parse_committed_journal(raw: bytes) -> dict[str, bytes | None] | None:
    """Entries of a journal holding a valid commit record; None if it is incomplete, stale or damaged."""
    entries: dict[str, bytes | None] = {}
    nonce = raw[1:9]
    pos = 0
    count = 0
    while pos < len(raw):
        kind = raw[pos:pos + 1]
        if raw[pos + 1:pos + 9] != nonce or len(nonce) != 8:
            return None
        if kind == _ENTRY:
            try:
                op = raw[pos + 9:pos + 10]
                klen = raw[pos + 10]
                key = raw[pos + 11:pos + 11 + klen].decode("ascii")
                (vlen,) = struct.unpack_from(">I", raw, pos + 11 + klen)
                start = pos + 15 + klen
                end = start + vlen
                (crc,) = struct.unpack_from(">I", raw, end)
            except (IndexError, struct.error, UnicodeDecodeError):
                return None
            if zlib.crc32(raw[pos:end]) != crc or op not in (_PUT, _DELETE) or not _KEY_RE.match(key):
                return None
            entries[key] = None if op == _DELETE else raw[start:end]
            count += 1
            pos = end + 4
        elif kind == _COMMIT:
            rec = raw[pos:pos + 17]
            if len(raw) - pos < 21:
                return None
            n, body_crc = struct.unpack(">II", raw[pos + 9:pos + 17])
            (crc,) = struct.unpack(">I", raw[pos + 17:pos + 21])
            if zlib.crc32(rec) != crc or n != count or zlib.crc32(raw[:pos]) != body_crc:
                return None
            return entries
        else:
            return None
    return None
