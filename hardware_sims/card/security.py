"""PIN objects and on-card key pairs, kept in persistent memory.

``pin.<scope>.<ref>``: max tries, tries left, min/max length, PUK reference, reset rule, value.
``key.<scope>.<ref>``: algorithm, rules (use/generate), private scalar and public point once generated.
The private scalar never leaves this module except to sign; nothing here logs values.
"""

from __future__ import annotations

import hmac
import struct
from dataclasses import dataclass, field, replace

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import serialization as _ser
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, decode_dss_signature

from . import access
from .access import AccessCondition, Op
from .errors import StateDirError
from .store import PersistentStore

ALG_EC_P256 = 0x01
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


@dataclass(frozen=True)
class PinObject:
    """A PIN (or PUK): its retry counter is persistent and decremented before every comparison."""

    ref: int
    value: bytes = field(repr=False)
    max_tries: int = 3
    tries_left: int = 3
    min_length: int = 4
    max_length: int = 16
    puk_ref: int = 0  # 0: no PUK can unblock it
    reset_rule: AccessCondition = access.NEVER  # who may reset it without the PUK (2C P1=02/03)

    @property
    def blocked(self) -> bool:
        return self.tries_left == 0

    def matches(self, candidate: bytes) -> bool:
        return hmac.compare_digest(self.value, candidate)

    def encode(self) -> bytes:
        head = struct.pack(">BBBBB", self.max_tries, self.tries_left, self.min_length, self.max_length,
                           self.puk_ref)
        rule = self.reset_rule.encode()
        return head + bytes([len(rule)]) + rule + self.value

    @classmethod
    def decode(cls, ref: int, raw: bytes) -> PinObject:
        try:
            max_tries, tries_left, min_len, max_len, puk_ref = struct.unpack_from(">BBBBB", raw)
            n = raw[5]
            rule = access.decode(raw[6:6 + n])
            value = raw[6 + n:]
        except (struct.error, IndexError) as exc:
            raise StateDirError(f"damaged PIN object {ref:#04x}") from exc
        return cls(ref, value, max_tries, tries_left, min_len, max_len, puk_ref, rule)


@dataclass(frozen=True)
class KeyObject:
    """A P-256 key pair slot; empty until GENERATE ASYMMETRIC KEY PAIR fills it."""

    ref: int
    rules: dict[Op, AccessCondition]
    private: bytes = b""  # 32-byte scalar
    public: bytes = b""  # 65-byte uncompressed point

    @property
    def generated(self) -> bool:
        return bool(self.private)

    def rule(self, op: Op) -> AccessCondition:
        return self.rules.get(op, access.NEVER)

    def encode(self) -> bytes:
        rules = access.encode_rules(self.rules)
        return (bytes([ALG_EC_P256]) + struct.pack(">H", len(rules)) + rules + bytes([len(self.private)])
                + self.private + self.public)

    @classmethod
    def decode(cls, ref: int, raw: bytes) -> KeyObject:
        try:
            if raw[0] != ALG_EC_P256:
                raise StateDirError(f"key {ref:#04x}: unknown algorithm {raw[0]:#04x}")
            (n,) = struct.unpack_from(">H", raw, 1)
            rules = access.decode_rules(raw[3:3 + n])
            pos = 3 + n
            plen = raw[pos]
            private = raw[pos + 1:pos + 1 + plen]
            public = raw[pos + 1 + plen:]
        except (struct.error, IndexError) as exc:
            raise StateDirError(f"damaged key object {ref:#04x}") from exc
        return cls(ref, rules, private, public)

    def __repr__(self) -> str:  # never show the private scalar
        return f"KeyObject(ref={self.ref:#04x}, generated={self.generated})"

    def generate(self, random_bytes: bytes) -> KeyObject:
        """A new P-256 pair from 32+ random bytes (the caller's injected RNG)."""
        d = int.from_bytes(random_bytes, "big") % (P256_ORDER - 1) + 1
        priv = ec.derive_private_key(d, ec.SECP256R1())
        public = priv.public_key().public_bytes(
            encoding=_ser.Encoding.X962, format=_ser.PublicFormat.UncompressedPoint)
        return replace(self, private=d.to_bytes(32, "big"), public=public)

    def sign_data(self, data: bytes) -> bytes:
        """ECDSA P-256 over SHA-256(data), raw r||s (64 bytes), deterministic (RFC 6979)."""
        return self._sign(data, ec.ECDSA(hashes.SHA256(), deterministic_signing=True))

    def sign_digest(self, digest: bytes) -> bytes:
        """ECDSA P-256 over a 32-byte SHA-256 digest computed by the terminal, raw r||s."""
        return self._sign(digest, ec.ECDSA(Prehashed(hashes.SHA256()), deterministic_signing=True))

    def _sign(self, data: bytes, algorithm: ec.ECDSA) -> bytes:
        priv = ec.derive_private_key(int.from_bytes(self.private, "big"), ec.SECP256R1())
        r, s = decode_dss_signature(priv.sign(data, algorithm))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")



def pin_key(scope: str, ref: int) -> str:
    return f"pin.{scope}.{ref:02X}"


def key_key(scope: str, ref: int) -> str:
    return f"key.{scope}.{ref:02X}"


class SecurityObjects:
    """Reads and writes PIN and key objects in the store."""

    def __init__(self, store: PersistentStore) -> None:
        self.store = store

    def pin(self, scope: str, ref: int) -> PinObject | None:
        raw = self.store.get(pin_key(scope, ref))
        return None if raw is None else PinObject.decode(ref, raw)

    def put_pin(self, scope: str, pin: PinObject) -> None:
        self.store.put(pin_key(scope, pin.ref), pin.encode())

    def key(self, scope: str, ref: int) -> KeyObject | None:
        raw = self.store.get(key_key(scope, ref))
        return None if raw is None else KeyObject.decode(ref, raw)

    def put_key(self, scope: str, key: KeyObject) -> None:
        self.store.put(key_key(scope, key.ref), key.encode())
