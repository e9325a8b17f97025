"""BER-TLV (ISO/IEC 7816-4 annex D, the subset cards use) as one value type for every format module.

Why one home: card files, FCP templates, CV certificates and EF.ATR all carry BER-TLV. Parsing it in one
place means one set of bounds checks and one definition of multi-byte tags (``7F49``, ``5F20``) and long
lengths (``81 xx``, ``82 xx xx``).

Two modes. The default is lenient where ISO 7816-4 allows it (00/FF padding between objects is skipped,
a long length form may be wider than needed), for what cards answer. ``strict=True`` is for signed objects
(CV certificates, revocation lists, ledgers), where one value must have exactly one encoding so that
what is hashed and signed cannot be re-encoded by someone else: lengths in the shortest form, no padding
(a 00 or FF where a tag should start is an error), tags of at most 3 bytes, and every byte consumed.
:func:`strict_codec` gives the strict functions raising a format module's own error type.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import NamedTuple

__all__ = [
    "StrictCodec",
    "Tlv",
    "TlvError",
    "encode_length",
    "encode_tag",
    "expect_tags",
    "iter_tlvs",
    "parse_single",
    "parse_tlvs",
    "strict_codec",
    "tlv",
    "tlv_dict",
]

_MAX_LENGTH_BYTES = 3  # lengths up to 16 MB: far beyond any card, refuses garbage early
_MAX_TAG_BYTES = 4
_MAX_STRICT_TAG_BYTES = 3  # ISO 7816-4 tag fields are 1-3 bytes
_PADDING = (0x00, 0xFF)


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


def _read_tag(data: bytes, pos: int, strict: bool = False) -> tuple[int, int]:
    if pos >= len(data):
        raise TlvError("truncated TLV: missing tag")
    start = pos
    first = data[pos]
    if strict and first in _PADDING:
        raise TlvError(f"byte {first:02X} at offset {pos} where a tag must start (no padding in strict TLV)")
    longest = _MAX_STRICT_TAG_BYTES if strict else _MAX_TAG_BYTES
    pos += 1
    if first & 0x1F == 0x1F:
        while True:
            if pos >= len(data):
                raise TlvError(f"truncated TLV: multi-byte tag starting {first:02X} at offset {start}")
            b = data[pos]
            pos += 1
            if not b & 0x80:
                break
            if pos - start >= longest:
                raise TlvError(f"tag at offset {start} is longer than {longest} bytes")
    return int.from_bytes(data[start:pos], "big"), pos


def _read_length(data: bytes, pos: int, strict: bool = False) -> tuple[int, int]:
    if pos >= len(data):
        raise TlvError("truncated TLV: missing length")
    first = data[pos]
    pos += 1
    if first < 0x80:
        return first, pos
    n = first & 0x7F
    if n == 0:
        raise TlvError(f"unsupported TLV length byte 80 at offset {pos - 1}: indefinite length not allowed")
    if n > _MAX_LENGTH_BYTES:
        raise TlvError(f"unsupported TLV length byte {first:02X} at offset {pos - 1}: uses too many bytes")
    if pos + n > len(data):
        raise TlvError(f"truncated TLV: length field {first:02X} needs {n} more bytes")
    length = int.from_bytes(data[pos : pos + n], "big")
    if strict and length < (0x80 if n == 1 else 1 << (8 * (n - 1))):
        raise TlvError(f"non-minimal length {data[pos - 1 : pos + n].hex().upper()} at offset {pos - 1}: "
                       "strict TLV needs the shortest form")
    return length, pos + n


def _split_one(data: bytes, pos: int, strict: bool = False) -> tuple[int, int, int]:
    """Return (tag, value_start, value_end) of the TLV at ``pos``."""
    tag, pos = _read_tag(data, pos, strict)
    length, pos = _read_length(data, pos, strict)
    end = pos + length
    if end > len(data):
        raise TlvError(f"truncated TLV: tag {tag:X} announces {length} bytes, {len(data) - pos} present")
    return tag, pos, end


class Tlv(bytes):
    """One encoded BER-TLV, as bytes, with ``tag``, ``length`` and ``value`` views.

    ``Tlv(0x5F20, b"NAME")`` builds one; ``Tlv(encoded)`` parses exactly one (trailing bytes are an error);
    ``parse_tlvs`` splits a concatenation. ``Tlv(encoded, strict=True)`` applies the strict rules, and so
    do its :meth:`children`.
    """

    _tag: int
    _value_offset: int
    _strict: bool

    def __new__(cls, tag_or_data: int | bytes, value: bytes | None = None, *, strict: bool = False) -> Tlv:
        if isinstance(tag_or_data, int):
            body = bytes(value or b"")
            raw = encode_tag(tag_or_data) + encode_length(len(body)) + body
        else:
            if value is not None:
                raise TypeError("Tlv(encoded) takes no value; use Tlv(tag, value) to build")
            raw = bytes(tag_or_data)
        tag, start, end = _split_one(raw, 0, strict)
        if end != len(raw):
            raise TlvError(f"{len(raw) - end} trailing bytes after TLV with tag {tag:X}")
        self = super().__new__(cls, raw)
        self._tag = tag
        self._value_offset = start
        self._strict = strict
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
    def encoded(self) -> bytes:
        """The whole TLV as plain bytes (tag, length, value)."""
        return bytes(self)

    @property
    def constructed(self) -> bool:
        """Bit 6 of the first tag byte: the value is itself a sequence of TLVs."""
        first = self._tag.to_bytes(max(1, (self._tag.bit_length() + 7) // 8), "big")[0]
        return bool(first & 0x20)

    def children(self) -> list[Tlv]:
        """The TLVs inside a constructed value (strict when this one was parsed strictly)."""
        return parse_tlvs(self.value, strict=self._strict)

    def __repr__(self) -> str:
        return f"Tlv(tag=0x{self._tag:02X}, value={self.value.hex().upper() or '-'})"

    @classmethod
    def unpack(cls, tag: int, data: bytes) -> bytes:
        """Parse one TLV that must carry ``tag``; return its value. Says which tag was found instead."""
        tlv = cls(data)
        if tlv.tag != tag:
            raise TlvError(f"expected tag {tag:X}, found {tlv.tag:X}")
        return tlv.value


def iter_tlvs(data: bytes, *, strict: bool = False) -> Iterator[Tlv]:
    """Yield the TLVs of a concatenation, skipping 00/FF padding bytes between them (ISO 7816-4 D.1);
    ``strict``: no padding, shortest lengths, and the objects must fill ``data`` exactly."""
    pos = 0
    data = bytes(data)
    while pos < len(data):
        if not strict and data[pos] in _PADDING:
            pos += 1
            continue
        _tag, _start, end = _split_one(data, pos, strict)
        yield Tlv(data[pos:end], strict=strict)
        pos = end


def parse_tlvs(data: bytes, *, strict: bool = False) -> list[Tlv]:
    """All TLVs of a concatenation, in order."""
    return list(iter_tlvs(data, strict=strict))


def tlv(tag: int, value: bytes) -> bytes:
    """Encode one TLV as plain bytes (shortest length form, so it is also strict)."""
    return bytes(Tlv(tag, value))


def parse_single(data: bytes, expected_tag: int, *, strict: bool = True) -> Tlv:
    """Exactly one TLV carrying ``expected_tag`` and filling all of ``data`` (strict by default: it is
    what signed objects are read with). Says which tag was found instead."""
    data = bytes(data)
    tag, _start, end = _split_one(data, 0, strict)
    if tag != expected_tag:
        raise TlvError(f"expected tag {expected_tag:X}, found {tag:X}")
    if end != len(data):
        raise TlvError(f"{len(data) - end} trailing bytes after tag {expected_tag:X}")
    return Tlv(data, strict=strict)


def expect_tags(items: Sequence[Tlv], tags: Sequence[int], where: str) -> list[bytes]:
    """Check ``items`` carry exactly ``tags`` in that order (a record's fixed layout); return their values."""
    found = [t.tag for t in items]
    if found != list(tags):
        want = " ".join(f"{t:X}" for t in tags)
        got = " ".join(f"{t:X}" for t in found)
        raise TlvError(f"{where}: expected tags [{want}], found [{got}]")
    return [t.value for t in items]


class StrictCodec(NamedTuple):
    """The strict functions, raising a format module's own error (see :func:`strict_codec`)."""

    expect_sequence: Callable[[Sequence[Tlv], Sequence[int], str], list[bytes]]
    parse_all: Callable[[bytes], list[Tlv]]
    parse_single: Callable[[bytes, int], Tlv]
    tlv: Callable[[int, bytes], bytes]


def strict_codec(error: Callable[[str], Exception] = TlvError) -> StrictCodec:
    """Strict TLV for one format module, every :class:`TlvError` re-raised as ``error(message)``.

    Why: a format module (e.g. cardsvc.pki, whose callers catch its ``FormatError``) keeps its own error
    type while the encoding rules live here only::

        expect_sequence, parse_all, parse_single, tlv = strict_codec(FormatError)
    """

    def expect_sequence(items: Sequence[Tlv], tags: Sequence[int], where: str) -> list[bytes]:
        try:
            return expect_tags(items, tags, where)
        except TlvError as exc:
            raise error(str(exc)) from None

    def parse_all(data: bytes) -> list[Tlv]:
        try:
            return parse_tlvs(data, strict=True)
        except TlvError as exc:
            raise error(str(exc)) from None

    def parse_single_(data: bytes, expected_tag: int) -> Tlv:
        try:
            return parse_single(data, expected_tag, strict=True)
        except TlvError as exc:
            raise error(str(exc)) from None

    def tlv_(tag: int, value: bytes) -> bytes:
        try:
            return tlv(tag, value)
        except TlvError as exc:
            raise error(str(exc)) from None

    return StrictCodec(expect_sequence, parse_all, parse_single_, tlv_)


def tlv_dict(data: bytes | Iterable[Tlv]) -> dict[int, bytes]:
    """Tag -> value for a flat sequence of TLVs (a later duplicate tag replaces an earlier one)."""
    tlvs = parse_tlvs(data) if isinstance(data, bytes | bytearray) else data
    return {t.tag: t.value for t in tlvs}
