"""Access conditions: who may read, update, use or generate what.

Conditions are small immutable objects combined with AND/OR and evaluated against the RAM session
(:class:`SecurityStatus`). They are persisted with the object they protect, and shown in FCP tag 86, in
one compact byte encoding defined here (documented in docs/card-os.md):

    00                      ALWAYS
    FF                      NEVER
    10 ref                  PIN(ref) verified in this session (ref scoped to the file's DF)
    20 len name(ascii)      TERMINAL_RIGHT(name) granted by terminal authentication in this session
    30 n <n conditions>     ALL of (AND)
    31 n <n conditions>     ANY of (OR)
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from enum import IntEnum

from .errors import StateDirError


@dataclass
class SecurityStatus:
    """The RAM part of security: what has been proven since the last power-up or reset."""

    verified_pins: set[tuple[str, int]] = field(default_factory=set)
    terminal_rights: set[str] = field(default_factory=set)

    def clear(self) -> None:
        self.verified_pins.clear()
        self.terminal_rights.clear()


class AccessCondition(ABC):
    """A predicate over the security status; ``scope`` is the DF path the protected object lives in."""

    @abstractmethod
    def satisfied(self, status: SecurityStatus, scope: str) -> bool: ...

    @abstractmethod
    def encode(self) -> bytes: ...

    def __and__(self, other: AccessCondition) -> AccessCondition:
        return AllOf((self, other))

    def __or__(self, other: AccessCondition) -> AccessCondition:
        return AnyOf((self, other))


@dataclass(frozen=True)
class Always(AccessCondition):
    def satisfied(self, status: SecurityStatus, scope: str) -> bool:
        return True

    def encode(self) -> bytes:
        return b"\x00"

    def __str__(self) -> str:
        return "ALWAYS"


@dataclass(frozen=True)
class Never(AccessCondition):
    def satisfied(self, status: SecurityStatus, scope: str) -> bool:
        return False

    def encode(self) -> bytes:
        return b"\xff"

    def __str__(self) -> str:
        return "NEVER"


def pin_scope(ref: int, df_scope: str) -> str:
    """Global PIN references (b8 = 0) live in the MF; local ones (b8 = 1) in the application's DF."""
    if ref & 0x80:
        return df_scope
    return "3F00"


@dataclass(frozen=True)
class Pin(AccessCondition):
    ref: int

    def satisfied(self, status: SecurityStatus, scope: str) -> bool:
        return (pin_scope(self.ref, scope), self.ref) in status.verified_pins

    def encode(self) -> bytes:
        return bytes([0x10, self.ref])

    def __str__(self) -> str:
        return f"PIN({self.ref:#04x})"


@dataclass(frozen=True)
class TerminalRight(AccessCondition):
    name: str

    def satisfied(self, status: SecurityStatus, scope: str) -> bool:
        return self.name in status.terminal_rights

    def encode(self) -> bytes:
        raw = self.name.encode("ascii")
        return bytes([0x20, len(raw)]) + raw

    def __str__(self) -> str:
        return f"TERMINAL_RIGHT({self.name})"


@dataclass(frozen=True)
class AllOf(AccessCondition):
    parts: tuple[AccessCondition, ...]

    def satisfied(self, status: SecurityStatus, scope: str) -> bool:
        return all(p.satisfied(status, scope) for p in self.parts)

    def encode(self) -> bytes:
        return bytes([0x30, len(self.parts)]) + b"".join(p.encode() for p in self.parts)

    def __str__(self) -> str:
        return "(" + " AND ".join(map(str, self.parts)) + ")"


@dataclass(frozen=True)
class AnyOf(AccessCondition):
    parts: tuple[AccessCondition, ...]

    def satisfied(self, status: SecurityStatus, scope: str) -> bool:
        return any(p.satisfied(status, scope) for p in self.parts)

    def encode(self) -> bytes:
        return bytes([0x31, len(self.parts)]) + b"".join(p.encode() for p in self.parts)

    def __str__(self) -> str:
        return "(" + " OR ".join(map(str, self.parts)) + ")"


ALWAYS = Always()
NEVER = Never()


def decode(raw: bytes) -> AccessCondition:
    """Inverse of encode(); the whole input must be one condition."""
    cond, pos = _decode_at(raw, 0)
    if pos != len(raw):
        raise StateDirError(f"trailing bytes after access condition {raw.hex()}")
    return cond


def decode_prefix(raw: bytes, pos: int) -> tuple[AccessCondition, int]:
    """Decode one condition starting at ``pos``; returns it and the position after it."""
    return _decode_at(raw, pos)


def _decode_at(raw: bytes, pos: int) -> tuple[AccessCondition, int]:
    try:
        kind = raw[pos]
        if kind == 0x00:
            return ALWAYS, pos + 1
        if kind == 0xFF:
            return NEVER, pos + 1
        if kind == 0x10:
            return Pin(raw[pos + 1]), pos + 2
        if kind == 0x20:
            n = raw[pos + 1]
            name = raw[pos + 2:pos + 2 + n]
            if len(name) != n:
                raise IndexError
            return TerminalRight(name.decode("ascii")), pos + 2 + n
        if kind in (0x30, 0x31):
            count = raw[pos + 1]
            pos += 2
            parts = []
            for _ in range(count):
                part, pos = _decode_at(raw, pos)
                parts.append(part)
            return (AllOf(tuple(parts)) if kind == 0x30 else AnyOf(tuple(parts))), pos
    except (IndexError, UnicodeDecodeError) as exc:
        raise StateDirError(f"truncated access condition {raw.hex()}") from exc
    raise StateDirError(f"unknown access condition kind {kind:#04x}")


class Op(IntEnum):
    """Operations an access rule can govern."""

    READ = 0x01
    UPDATE = 0x02
    USE = 0x20  # use a key (INTERNAL AUTHENTICATE, PSO)
    GENERATE = 0x21  # (re)generate a key pair
    RESET = 0x30  # reset a PIN's retry counter without the PUK


def encode_rules(rules: dict[Op, AccessCondition]) -> bytes:
    """Rules as op byte + condition, concatenated (FCP tag 86 and persistent headers)."""
    return b"".join(bytes([op]) + cond.encode() for op, cond in sorted(rules.items()))


def decode_rules(raw: bytes) -> dict[Op, AccessCondition]:
    rules: dict[Op, AccessCondition] = {}
    pos = 0
    while pos < len(raw):
        op = Op(raw[pos])
        cond, pos = decode_prefix(raw, pos + 1)
        rules[op] = cond
    return rules
