"""Minimal BER-TLV (ISO 7816-4 / BER) for the PKI formats: pure functions, no I/O.

Private to cardsvc.pki until the shared cardsvc/tlv.py lands; only what certificates and revocation lists
need: multi-byte tags, definite lengths up to 16 MiB (revocation lists grow large), constructed
values parsed on demand.
"""

from __future__ import annotations

from dataclasses import dataclass

from cardsvc.pki.errors import FormatError


@dataclass(frozen=True)
class Tlv:
    """One decoded TLV: ``tag`` as an int (e.g. 0x7F21), ``value`` the raw value bytes."""

    tag: int
    value: bytes

    @property
    def constructed(self) -> bool:
        """Bit 6 of the first tag byte marks a constructed value (its value is more TLVs)."""
        first = self.tag.to_bytes(_tag_len(self.tag), "big")[0]
        return bool(first & 0x20)

    def children(self) -> list[Tlv]:
        return parse_all(self.value)

    @property
    def encoded(self) -> bytes:
        """The whole TLV again (tag, minimal length, value)."""
        return tlv(self.tag, self.value)


def _tag_len(tag: int) -> int:
    return max(1, (tag.bit_length() + 7) // 8)


def encode_tag(tag: int) -> bytes:
    return tag.to_bytes(_tag_len(tag), "big")


def encode_length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    if n <= 0xFF:
        return bytes([0x81, n])
    if n <= 0xFFFF:
        return bytes([0x82]) + n.to_bytes(2, "big")
    if n <= 0xFFFFFF:
        return bytes([0x83]) + n.to_bytes(3, "big")
    raise FormatError(f"TLV value of {n} bytes is too long for these formats (max 16 MiB)")


def tlv(tag: int, value: bytes) -> bytes:
    """Encode one TLV."""
    return encode_tag(tag) + encode_length(len(value)) + value


def parse_one(data: bytes, offset: int = 0) -> tuple[Tlv, int]:
    """Parse the TLV starting at ``offset``; return it and the offset just after it."""
    n = len(data)
    if offset >= n:
        raise FormatError("truncated TLV: no tag")
    start = offset
    first = data[offset]
    offset += 1
    if first & 0x1F == 0x1F:
        while True:
            if offset >= n:
                raise FormatError("truncated TLV: multi-byte tag")
            b = data[offset]
            offset += 1
            if not b & 0x80:
                break
            if offset - start > 3:
                raise FormatError("TLV tag longer than 3 bytes")
    tag = int.from_bytes(data[start:offset], "big")
    if offset >= n:
        raise FormatError(f"truncated TLV: no length for tag {tag:X}")
    lb = data[offset]
    offset += 1
    if lb < 0x80:
        length = lb
    elif lb in (0x81, 0x82, 0x83):
        k = lb - 0x80
        if offset + k > n:
            raise FormatError(f"truncated TLV: length of tag {tag:X}")
        length = int.from_bytes(data[offset : offset + k], "big")
        if length < (0x80 if k == 1 else 1 << (8 * (k - 1))):
            raise FormatError(f"non-minimal length encoding for tag {tag:X}")
        offset += k
    else:
        raise FormatError(f"unsupported TLV length byte {lb:02X} for tag {tag:X}")
    if offset + length > n:
        raise FormatError(f"truncated TLV: tag {tag:X} declares {length} bytes, {n - offset} present")
    return Tlv(tag, bytes(data[offset : offset + length])), offset + length


def parse_all(data: bytes) -> list[Tlv]:
    """Parse a concatenation of TLVs that must exactly fill ``data``."""
    out: list[Tlv] = []
    offset = 0
    while offset < len(data):
        item, offset = parse_one(data, offset)
        out.append(item)
    return out


def parse_single(data: bytes, expected_tag: int) -> Tlv:
    """Parse exactly one TLV of ``expected_tag`` filling all of ``data`` (no trailing bytes)."""
    item, end = parse_one(data)
    if item.tag != expected_tag:
        raise FormatError(f"expected tag {expected_tag:X}, found {item.tag:X}")
    if end != len(data):
        raise FormatError(f"{len(data) - end} trailing bytes after tag {expected_tag:X}")
    return item


def expect_sequence(items: list[Tlv], tags: list[int], where: str) -> list[bytes]:
    """Check ``items`` carry exactly ``tags`` in that order; return their values."""
    found = [t.tag for t in items]
    if found != tags:
        want = " ".join(f"{t:X}" for t in tags)
        got = " ".join(f"{t:X}" for t in found)
        raise FormatError(f"{where}: expected tags [{want}], found [{got}]")
    return [t.value for t in items]
