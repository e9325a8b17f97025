"""BER-TLV (ISO/IEC 7816-4 annex D, the subset cards use) as one value type for every format module.

Why one home: card files, FCP templates, CV certificates and EF.ATR all carry BER-TLV. Parsing it in one
place means one set of bounds checks and one definition of multi-byte tags (``7F49``, ``5F20``) and long
lengths (``81 xx``, ``82 xx xx``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

__all__ = ["Tlv", "TlvError", "encode_length", "encode_tag", "iter_tlvs", "parse_tlvs", "tlv_dict"]

_MAX_LENGTH_BYTES = 3  # lengths up to 16 MB: far beyond any card, refuses garbage early


class TlvError(ValueError):
    """The bytes are not well-formed BER-TLV (truncated, indefinite length, oversize)."""


def encode_tag(tag: int) -> bytes:
    """Tag number as its BER bytes (``0x7F49`` -> ``7F 49``); the tag is stored as its own encoding."""
    if tag < 0:
        raise TlvError(f"tag must not be negative: {tag}")
    raw = tag.to_bytes(max(1, (tag.bit_length() + 7) // 8), "big")
    _check_tag_bytes(raw)
    return raw


def _check_tag_bytes(raw: bytes) -> None:
    multi = raw[0] & 0x1F == 0x1F
    if not multi and len(raw) != 1:
        raise TlvError(f"tag {raw.hex().upper()}: first byte does not announce a multi-byte tag")
    if multi:
        if len(raw) < 2:
            raise TlvError(f"tag {raw.hex().upper()}: multi-byte tag without subsequent bytes")
        for i, b in enumerate(raw[1:], start=1):
            last = i == len(raw) - 1
            if bool(b & 0x80) == last:
                raise TlvError(f"tag {raw.hex().upper()}: continuation bits are inconsistent")


def encode_length(length: int) -> bytes:
    """Definite length in the shortest BER form (``7F``, ``81 80``, ``82 01 00`` ...)."""
    if length < 0:
        raise TlvError(f"length must not be negative: {length}")
    if length < 0x80:
        return bytes([length])
    raw = length.to_bytes((length.bit_length() + 7) // 8, "big")
    if len(raw) > _MAX_LENGTH_BYTES:
        raise TlvError(f"length {length} is too large for a card TLV")
    return bytes([0x80 | len(raw)]) + raw


def _read_tag(data: bytes, pos: int) -> tuple[int, int]:
    if pos >= len(data):
        raise TlvError("truncated TLV: missing tag")
    start = pos
    first = data[pos]
    pos += 1
    if first & 0x1F == 0x1F:
        while True:
            if pos >= len(data):
                raise TlvError(f"truncated TLV: multi-byte tag starting {first:02X} at offset {start}")
            b = data[pos]
            pos += 1
            if not b & 0x80:
                break
            if pos - start > 4:
                raise TlvError(f"tag at offset {start} is longer than 4 bytes")
    return int.from_bytes(data[start:pos], "big"), pos


def _read_length(data: bytes, pos: int) -> tuple[int, int]:
    if pos >= len(data):
        raise TlvError("truncated TLV: missing length")
    first = data[pos]
    pos += 1
    if first < 0x80:
        return first, pos
    n = first & 0x7F
    if n == 0:
        raise TlvError(f"indefinite length (80) at offset {pos - 1} is not allowed on cards")
    if n > _MAX_LENGTH_BYTES:
        raise TlvError(f"length field {first:02X} at offset {pos - 1} uses too many bytes")
    if pos + n > len(data):
        raise TlvError(f"truncated TLV: length field {first:02X} needs {n} more bytes")
    return int.from_bytes(data[pos : pos + n], "big"), pos + n


def _split_one(data: bytes, pos: int) -> tuple[int, int, int]:
    """Return (tag, value_start, value_end) of the TLV at ``pos``."""
    tag, pos = _read_tag(data, pos)
    length, pos = _read_length(data, pos)
    end = pos + length
    if end > len(data):
        raise TlvError(f"truncated TLV: tag {tag:X} announces {length} bytes, {len(data) - pos} present")
    return tag, pos, end


class Tlv(bytes):
    """One encoded BER-TLV, as bytes, with ``tag``, ``length`` and ``value`` views.

    ``Tlv(0x5F20, b"NAME")`` builds one; ``Tlv(encoded)`` parses exactly one (trailing bytes are an error);
    ``parse_tlvs`` splits a concatenation.
    """

    _tag: int
    _value_offset: int

    def __new__(cls, tag_or_data: int | bytes, value: bytes | None = None) -> Tlv:
        if isinstance(tag_or_data, int):
            body = bytes(value or b"")
            raw = encode_tag(tag_or_data) + encode_length(len(body)) + body
        else:
            if value is not None:
                raise TypeError("Tlv(encoded) takes no value; use Tlv(tag, value) to build")
            raw = bytes(tag_or_data)
        tag, start, end = _split_one(raw, 0)
        if end != len(raw):
            raise TlvError(f"{len(raw) - end} trailing bytes after TLV with tag {tag:X}")
        self = super().__new__(cls, raw)
        self._tag = tag
        self._value_offset = start
        return self

    @property
    def tag(self) -> int:
        """Tag number as its BER bytes read big-endian (``0x7F49``)."""
        return self._tag

    @property
    def value(self) -> bytes:
        return bytes(self[self._value_offset :])

    @property
    def length(self) -> int:
        return len(self) - self._value_offset

    @property
    def constructed(self) -> bool:
        """Bit 6 of the first tag byte: the value is itself a sequence of TLVs."""
        first = self._tag.to_bytes(max(1, (self._tag.bit_length() + 7) // 8), "big")[0]
        return bool(first & 0x20)

    def children(self) -> list[Tlv]:
        """The TLVs inside a constructed value."""
        return parse_tlvs(self.value)

    def __repr__(self) -> str:
        return f"Tlv(tag=0x{self._tag:02X}, value={self.value.hex().upper() or '-'})"

    @classmethod
    def unpack(cls, tag: int, data: bytes) -> bytes:
        """Parse one TLV that must carry ``tag``; return its value. Says which tag was found instead."""
        tlv = cls(data)
        if tlv.tag != tag:
            raise TlvError(f"expected tag {tag:X}, found {tlv.tag:X}")
        return tlv.value


def iter_tlvs(data: bytes) -> Iterator[Tlv]:
    """Yield the TLVs of a concatenation, skipping 00/FF padding bytes between them (ISO 7816-4 D.1)."""
    pos = 0
    data = bytes(data)
    while pos < len(data):
        if data[pos] in (0x00, 0xFF):
            pos += 1
            continue
        _tag, _start, end = _split_one(data, pos)
        yield Tlv(data[pos:end])
        pos = end


def parse_tlvs(data: bytes) -> list[Tlv]:
    """All TLVs of a concatenation, in order."""
    return list(iter_tlvs(data))


def tlv_dict(data: bytes | Iterable[Tlv]) -> dict[int, bytes]:
    """Tag -> value for a flat sequence of TLVs (a later duplicate tag replaces an earlier one)."""
    tlvs = parse_tlvs(data) if isinstance(data, bytes | bytearray) else data
    return {t.tag: t.value for t in tlvs}
