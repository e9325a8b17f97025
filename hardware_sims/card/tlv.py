"""Minimal BER-TLV (ISO 7816-4) encoding and parsing for the card side: 1-2 byte tags, definite lengths."""

from __future__ import annotations

from .errors import IsoError
from .iso import SW


def encode_length(n: int) -> bytes:
    """BER definite length: 0-127 short form, else 81 xx / 82 xxxx / 83 xxxxxx."""
    if n < 0x80:
        return bytes([n])
    if n <= 0xFF:
        return bytes([0x81, n])
    if n <= 0xFFFF:
        return bytes([0x82]) + n.to_bytes(2, "big")
    return bytes([0x83]) + n.to_bytes(3, "big")


def tlv(tag: int, value: bytes) -> bytes:
    """One TLV; ``tag`` up to two bytes (e.g. 0x7F49)."""
    tag_bytes = tag.to_bytes(2, "big") if tag > 0xFF else bytes([tag])
    return tag_bytes + encode_length(len(value)) + value


def encode_uint(value: int) -> bytes:
    """Minimal unsigned big-endian value of an ASN.1 INTEGER (leading 00 if the top bit is set)."""
    raw = value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big")
    return b"\x00" + raw if raw[0] & 0x80 else raw


def parse(data: bytes) -> list[tuple[int, bytes]]:
    """Parse a sequence of TLVs; a malformed one raises IsoError(6A80)."""
    out: list[tuple[int, bytes]] = []
    pos = 0
    while pos < len(data):
        if data[pos] in (0x00, 0xFF):  # padding between objects
            pos += 1
            continue
        tag = data[pos]
        pos += 1
        if tag & 0x1F == 0x1F:
            if pos >= len(data):
                raise IsoError(SW.WRONG_DATA, "truncated tag")
            tag = (tag << 8) | data[pos]
            if data[pos] & 0x80:
                raise IsoError(SW.WRONG_DATA, "tags longer than two bytes are not supported")
            pos += 1
        if pos >= len(data):
            raise IsoError(SW.WRONG_DATA, f"TLV {tag:X} has no length")
        first = data[pos]
        pos += 1
        if first < 0x80:
            length = first
        elif 0x81 <= first <= 0x83:
            n = first & 0x7F
            if pos + n > len(data):
                raise IsoError(SW.WRONG_DATA, f"TLV {tag:X} length truncated")
            length = int.from_bytes(data[pos:pos + n], "big")
            pos += n
        else:
            raise IsoError(SW.WRONG_DATA, f"TLV {tag:X} has an unsupported length byte {first:02X}")
        if pos + length > len(data):
            raise IsoError(SW.WRONG_DATA, f"TLV {tag:X} value truncated ({length} announced)")
        out.append((tag, data[pos:pos + length]))
        pos += length
    return out


def find(data: bytes, tag: int) -> bytes | None:
    """Value of the first TLV with ``tag`` at the top level, or None."""
    for t, v in parse(data):
        if t == tag:
            return v
    return None
