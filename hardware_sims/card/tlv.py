"""BER-TLV for the card side: the shared codec (:mod:`cardsvc.tlv`) with card errors and card limits.

Why a thin adapter and not a second codec: one set of bounds checks for host and card. What it adds is the
card's view: a malformed object is a command error (``IsoError`` 6A80, not a ``TlvError``), tags are at most
two bytes, and values come back as ``(tag, value)`` pairs.
"""

from __future__ import annotations

from cardsvc.tlv import TlvError, iter_tlvs
from cardsvc.tlv import encode_length as _encode_length
from cardsvc.tlv import tlv as _tlv

from .errors import IsoError
from .iso import SW

_MAX_CARD_TAG = 0xFFFF  # 1-2 byte tags only (e.g. 0x7F49)


def encode_length(n: int) -> bytes:
    """BER definite length: 0-127 short form, else 81 xx / 82 xxxx / 83 xxxxxx."""
    return _encode_length(n)


def tlv(tag: int, value: bytes) -> bytes:
    """One TLV; ``tag`` up to two bytes (e.g. 0x7F49)."""
    return _tlv(tag, value)


def encode_uint(value: int) -> bytes:
    """Minimal unsigned big-endian value of an ASN.1 INTEGER (leading 00 if the top bit is set)."""
    raw = value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big")
    return b"\x00" + raw if raw[0] & 0x80 else raw


def parse(data: bytes) -> list[tuple[int, bytes]]:
    """Parse a sequence of TLVs (00/FF padding skipped); a malformed one raises IsoError(6A80)."""
    out: list[tuple[int, bytes]] = []
    try:
        for item in iter_tlvs(data):
            if item.tag > _MAX_CARD_TAG:
                raise IsoError(SW.WRONG_DATA, f"tag {item.tag:X}: only 1-2 byte tags are supported")
            out.append((item.tag, item.value))
    except TlvError as exc:
        raise IsoError(SW.WRONG_DATA, str(exc)) from None
    return out


def find(data: bytes, tag: int) -> bytes | None:
    """Value of the first TLV with ``tag`` at the top level, or None."""
    for t, v in parse(data):
        if t == tag:
            return v
    return None
