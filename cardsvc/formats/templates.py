"""Fingerprint templates sealed to central for de-duplication across camps (one home for this format).

A camp station seals the compact card-format templates (ISO/IEC 19794-2 compact, 3 bytes a minutia; never
images) of one card to central's de-duplication public key, so only central can open them, and only in
memory. Sealed box, version 1, all integers big-endian::

    version (1) = 0x01 | ephemeral P-256 point (65, uncompressed) | nonce (12) | AES-256-GCM ciphertext + tag

Key: HKDF-SHA256(ECDH(ephemeral, central), salt = none, info = ``cardsvc-dedup-v1`` || central's point),
32 bytes; associated data: ``cardsvc-dedup-v1`` || card id (8 bytes), so a box cannot be moved to another
card. A fresh ephemeral key and nonce per card: central stores the box as received (encrypted at rest).

Plaintext: entries of ``member_index (1) | finger_position (1) | length (2) | compact minutiae (length)``.

Pure: no I/O; randomness injected (``rng``).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from cardsvc.formats.errors import FieldValueError, FormatError
from cardsvc.pki.errors import PkiError
from cardsvc.pki.signer import load_public_point, point_of

SEALED_VERSION: Final = 1
DOMAIN: Final = b"cardsvc-dedup-v1"
POINT_LENGTH: Final = 65
NONCE_LENGTH: Final = 12
TAG_LENGTH: Final = 16
HEADER_LENGTH: Final = 1 + POINT_LENGTH + NONCE_LENGTH
MAX_TEMPLATES: Final = 10  # 5 members x 2 fingers
MAX_TEMPLATE_BYTES: Final = 3 * 255
MAX_SEALED: Final = HEADER_LENGTH + TAG_LENGTH + MAX_TEMPLATES * (4 + MAX_TEMPLATE_BYTES)
_ENTRY = struct.Struct(">BBH")


class StoredTemplateLike(Protocol):
    """What :func:`from_stored` reads of a stored template (read-only: frozen dataclasses qualify)."""

    @property
    def member_index(self) -> int: ...

    @property
    def finger_position(self) -> int: ...

    @property
    def compact(self) -> bytes: ...


class SealError(FormatError):
    """A sealed box that is malformed, addressed to another key or card, or altered (one opaque error)."""


@dataclass(frozen=True, slots=True)
class CampTemplate:
    """One finger of one member, in the compact card format (what the card stores)."""

    member_index: int
    finger_position: int
    minutiae: bytes

    def __post_init__(self) -> None:
        if not 0 <= self.member_index <= 4:
            raise FieldValueError(f"template member_index {self.member_index} is outside 0..4")
        if not 0 <= self.finger_position <= 10:
            raise FieldValueError(f"template finger_position {self.finger_position} is outside 0..10")
        if not self.minutiae or len(self.minutiae) % 3 or len(self.minutiae) > MAX_TEMPLATE_BYTES:
            raise FieldValueError(
                f"template of member {self.member_index} finger {self.finger_position}: compact minutiae "
                f"must be 3 to {MAX_TEMPLATE_BYTES} bytes in whole 3-byte minutiae, got {len(self.minutiae)}"
            )


def from_stored(stored: Iterable[StoredTemplateLike]) -> list[CampTemplate]:
    """The card's own templates (``cardsvc.formats.profile.StoredTemplate``: what the station wrote to the
    card) as camp templates to seal; the compact bytes are the same."""
    return [CampTemplate(t.member_index, t.finger_position, bytes(t.compact)) for t in stored]


def encode_templates(templates: Sequence[CampTemplate]) -> bytes:
    if not 1 <= len(templates) <= MAX_TEMPLATES:
        raise FieldValueError(f"a card seals 1 to {MAX_TEMPLATES} templates, got {len(templates)}")
    keys = [(t.member_index, t.finger_position) for t in templates]
    if len(set(keys)) != len(keys):
        raise FieldValueError("a (member, finger) pair appears twice among the templates")
    return b"".join(_ENTRY.pack(t.member_index, t.finger_position, len(t.minutiae)) + t.minutiae
                    for t in templates)  # fmt: skip


def decode_templates(data: bytes) -> tuple[CampTemplate, ...]:
    out: list[CampTemplate] = []
    pos = 0
    while pos < len(data):
        if pos + _ENTRY.size > len(data):
            raise FieldValueError("sealed templates: truncated entry header")
        member, finger, length = _ENTRY.unpack_from(data, pos)
        pos += _ENTRY.size
        if pos + length > len(data):
            raise FieldValueError("sealed templates: truncated minutiae")
        out.append(CampTemplate(member, finger, bytes(data[pos : pos + length])))
        pos += length
    if not 1 <= len(out) <= MAX_TEMPLATES:
        raise FieldValueError(f"a card seals 1 to {MAX_TEMPLATES} templates, got {len(out)}")
    return tuple(out)


def _key(shared: bytes, recipient_point: bytes) -> bytes:
    return HKDF(hashes.SHA256(), 32, salt=None, info=DOMAIN + recipient_point).derive(shared)


def _aad(card_id: int) -> bytes:
    return DOMAIN + card_id.to_bytes(8, "big")


def seal_templates(
    recipient: ec.EllipticCurvePublicKey,
    card_id: int,
    templates: Sequence[CampTemplate],
    *,
    rng: Callable[[int], bytes] = os.urandom,
) -> bytes:
    """What a station does: seal one card's templates to central's de-duplication key."""
    ephemeral = ec.derive_private_key(int.from_bytes(rng(40), "big") % (_ORDER - 1) + 1, ec.SECP256R1())
    nonce = rng(NONCE_LENGTH)
    key = _key(ephemeral.exchange(ec.ECDH(), recipient), point_of(recipient))
    body = AESGCM(key).encrypt(nonce, encode_templates(templates), _aad(card_id))
    return bytes([SEALED_VERSION]) + point_of(ephemeral.public_key()) + nonce + body


def check_sealed(sealed: bytes, where: str = "templates") -> None:
    """Shape checks a receiver can make without the key (size, version, point on the curve)."""
    if not HEADER_LENGTH + TAG_LENGTH < len(sealed) <= MAX_SEALED:
        raise FieldValueError(
            f"{where}: a sealed box is {HEADER_LENGTH + TAG_LENGTH + 1} to {MAX_SEALED} bytes"
        )
    if sealed[0] != SEALED_VERSION:
        raise FieldValueError(f"{where}: sealed box version {sealed[0]} is not supported (known: 1)")
    try:
        load_public_point(sealed[1 : 1 + POINT_LENGTH])
    except PkiError:
        raise FieldValueError(f"{where}: the ephemeral key is not a P-256 point") from None


def open_templates(
    private_key: ec.EllipticCurvePrivateKey, card_id: int, sealed: bytes
) -> tuple[CampTemplate, ...]:
    """What central does, in memory only: raises :class:`SealError` for any failure (opaque)."""
    try:
        check_sealed(sealed)
        ephemeral = load_public_point(sealed[1 : 1 + POINT_LENGTH])
        nonce = sealed[1 + POINT_LENGTH : HEADER_LENGTH]
        key = _key(private_key.exchange(ec.ECDH(), ephemeral), point_of(private_key.public_key()))
        plain = AESGCM(key).decrypt(nonce, sealed[HEADER_LENGTH:], _aad(card_id))
        return decode_templates(plain)
    except (InvalidTag, ValueError, FormatError, PkiError):
        raise SealError(
            f"the sealed templates of card {card_id:016x} cannot be opened with this key"
        ) from None


_ORDER: Final = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
