"""Append-only, hash-chained audit log of every key-management action (JSON lines).

Each line is one entry::

    {"seq": 3, "time": "2026-11-23T12:00:00Z", "actor": "asha", "action": "district.add",
     "subject": "INDKMA-PATNA1", "details": {...}, "prev_hash": "<hex of entry 2's hash>",
     "hash": "<sha256 of this entry without hash/sig/signer>", "signer": "INROOT00001", "sig": "<r||s hex>"}

``hash`` covers every other field except ``sig`` and ``signer`` (so an entry may be signed after hashing);
``prev_hash`` of the first entry is 64 zeros. Editing, deleting, inserting or reordering any entry breaks the
chain at that entry, and :func:`verify_log` names it. ``sig`` (optional) is the acting key's signature over
``hash``, so even a rewrite of the whole tail is caught where entries were signed. Details never hold PINs,
passphrases, private keys or templates: only references and key fingerprints.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cardsvc.pki.errors import AuditError, AuditTamperedError, PkiError
from cardsvc.pki.signer import Signer, verify_signature

GENESIS = "0" * 64
_FORBIDDEN_KEYS = ("pin", "passphrase", "password", "private", "secret", "template")
_HASHED_FIELDS = ("seq", "time", "actor", "action", "subject", "details", "prev_hash")


def _canonical(obj: Mapping[str, Any]) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def entry_hash(entry: Mapping[str, Any]) -> str:
    return hashlib.sha256(_canonical({k: entry[k] for k in _HASHED_FIELDS})).hexdigest()


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _check_details(details: Mapping[str, Any], path: str = "details") -> None:
    for key, value in details.items():
        if any(word in key.lower() for word in _FORBIDDEN_KEYS):
            raise AuditError(
                f"refusing to log {path}.{key}: secrets and templates never go into the audit log"
            )
        if isinstance(value, Mapping):
            _check_details(value, f"{path}.{key}")


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    time: str
    actor: str
    action: str
    subject: str
    details: dict[str, Any]
    prev_hash: str
    hash: str
    signer: str | None = None
    sig: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {k: getattr(self, k) for k in (*_HASHED_FIELDS, "hash")}
        if self.sig is not None:
            out["signer"] = self.signer
            out["sig"] = self.sig
        return out


class AuditLog:
    """The log file. Appends are O_APPEND + fsync; the head is re-read from the file before each append."""

    def __init__(self, path: Path, *, now: Callable[[], datetime] = _utc_now) -> None:
        self.path = path
        self._now = now

    def entries(self) -> Iterator[dict[str, Any]]:
        """Raw entries in file order (parsing only; :func:`verify_log` checks them)."""
        if not self.path.exists():
            return
        with self.path.open("rb") as f:
            for lineno, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError:
                    raise AuditTamperedError(f"line {lineno} is not JSON", index=lineno - 1) from None
                if not isinstance(obj, dict):
                    raise AuditTamperedError(f"line {lineno} is not a JSON object", index=lineno - 1)
                yield obj

    def head(self) -> tuple[int, str]:
        """(last seq, last hash): write it into the ceremony record; a later log must extend it."""
        return self._head()

    def _head(self) -> tuple[int, str]:
        seq, head = 0, GENESIS
        for obj in self.entries():
            seq, head = int(obj.get("seq", seq + 1)), str(obj.get("hash", ""))
        return seq, head

    def append(
        self,
        *,
        actor: str,
        action: str,
        subject: str,
        details: Mapping[str, Any] | None = None,
        signer: Signer | None = None,
        signer_ref: str | None = None,
    ) -> AuditEntry:
        """Append one entry; if ``signer`` is given, sign its hash (``signer_ref`` names the key's CHR)."""
        details = dict(details or {})
        _check_details(details)
        seq, head = self._head()
        fields: dict[str, Any] = {
            "seq": seq + 1,
            "time": self._now().astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "actor": actor,
            "action": action,
            "subject": subject,
            "details": details,
            "prev_hash": head,
        }
        json.dumps(fields)  # fail before writing if a detail is not JSON-serialisable
        h = entry_hash(fields)
        sig = signer.sign(bytes.fromhex(h)).hex() if signer is not None else None
        entry = AuditEntry(**fields, hash=h, signer=signer_ref if sig else None, sig=sig)
        line = _canonical(entry.to_json()) + b"\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)
        return entry


def verify_log(log: AuditLog, *, public_keys: Mapping[str, bytes] | None = None) -> int:
    """Check the whole chain; return the number of entries. Raise AuditTamperedError naming the first bad one.

    ``public_keys`` maps a signer reference (CHR) to its public point; a signed entry whose signer is unknown
    or whose signature fails is tampered.
    """
    prev = GENESIS
    count = 0
    for index, obj in enumerate(log.entries()):
        seq = obj.get("seq")
        where = f"entry {index + 1} (seq {seq}, action {obj.get('action')!r})"
        missing = [k for k in (*_HASHED_FIELDS, "hash") if k not in obj]
        if missing:
            raise AuditTamperedError(f"{where} lacks {', '.join(missing)}", index=index)
        if seq != index + 1:
            raise AuditTamperedError(f"{where}: sequence number should be {index + 1}", index=index)
        if obj["prev_hash"] != prev:
            raise AuditTamperedError(
                f"{where}: prev_hash does not match the entry before (deleted, inserted or reordered)",
                index=index,
            )
        if entry_hash(obj) != obj["hash"]:
            raise AuditTamperedError(f"{where}: content does not match its hash (edited)", index=index)
        if "sig" in obj:
            signer = obj.get("signer")
            point = (public_keys or {}).get(str(signer))
            if point is None:
                raise AuditTamperedError(f"{where}: signed by unknown key {signer!r}", index=index)
            try:
                verify_signature(point, bytes.fromhex(obj["hash"]), bytes.fromhex(obj["sig"]))
            except (PkiError, ValueError):
                raise AuditTamperedError(
                    f"{where}: signature by {signer} does not verify", index=index
                ) from None
        prev = obj["hash"]
        count += 1
    return count
