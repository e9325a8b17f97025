"""Reading the card's limits from its ATR (ISO/IEC 7816-3 and 7816-4 clause 12) and EF.ATR (2F01).

Why: real cards differ (short-only, 1-3 KB extended, chaining or not). The historical bytes' card
capabilities (compact-TLV tag 7) say whether extended Lc/Le and command chaining are supported and whether
EF.ATR holds the exact sizes (DO 7F66); the host uses those instead of assuming 64 KB APDUs.
"""

from __future__ import annotations

from dataclasses import dataclass

from cardsvc.card.apdu import EXTENDED_MAX_LC, EXTENDED_MAX_LE, CardLimits
from cardsvc.card.errors import ProtocolError
from cardsvc.card.iso import Tag
from cardsvc.tlv import Tlv, TlvError, parse_tlvs

# ISO 7816-4 table 119, third software function byte of the card capabilities
_CAP3_CHAINING = 0x80
_CAP3_EXTENDED_LENGTH = 0x40
_CAP3_EXTENDED_INFO_IN_EF_ATR = 0x20

# Wire overhead of an extended case-4 command (header 4, Lc 3, Le 2) and of a response (SW 2)
_EXT_COMMAND_OVERHEAD = 9
_SW_LEN = 2


@dataclass(frozen=True)
class AtrInfo:
    """The parts of an ATR the host acts on."""

    atr: bytes
    protocols: frozenset[int]
    historical: bytes
    compact_tlv: dict[int, bytes]
    command_chaining: bool | None
    extended_length: bool | None
    extended_info_in_ef_atr: bool

    @classmethod
    def parse(cls, atr: bytes) -> AtrInfo:
        """Split an ATR into interface bytes, historical bytes and the compact-TLV objects they hold."""
        atr = bytes(atr)
        if len(atr) < 2 or atr[0] not in (0x3B, 0x3F):
            raise ProtocolError(f"not an ATR (TS must be 3B or 3F): {atr.hex().upper()}")
        k = atr[1] & 0x0F
        y = atr[1] >> 4
        pos = 2
        protocols: set[int] = set()
        while True:
            present = [bool(y & bit) for bit in (1, 2, 4, 8)]  # TA TB TC TD
            pos += sum(present[:3])
            if not present[3]:
                break
            if pos >= len(atr):
                raise ProtocolError(f"ATR truncated in interface bytes: {atr.hex().upper()}")
            td = atr[pos]
            pos += 1
            protocols.add(td & 0x0F)
            y = td >> 4
        if not protocols:
            protocols.add(0)
        historical = atr[pos : pos + k]
        if len(historical) != k:
            raise ProtocolError(f"ATR announces {k} historical bytes, {len(historical)} present")
        compact = _parse_historical(historical)
        caps = compact.get(0x7, b"")
        cap3 = caps[2] if len(caps) >= 3 else None
        return cls(
            atr=atr,
            protocols=frozenset(protocols),
            historical=historical,
            compact_tlv=compact,
            command_chaining=None if cap3 is None else bool(cap3 & _CAP3_CHAINING),
            extended_length=None if cap3 is None else bool(cap3 & _CAP3_EXTENDED_LENGTH),
            extended_info_in_ef_atr=cap3 is not None and bool(cap3 & _CAP3_EXTENDED_INFO_IN_EF_ATR),
        )

    def limits(self) -> CardLimits:
        """Limits the ATR alone supports: extended 64 KB if announced (EF.ATR may narrow it), else short."""
        chaining = True if self.command_chaining is None else self.command_chaining
        if self.extended_length:
            return CardLimits(True, EXTENDED_MAX_LC, EXTENDED_MAX_LE, chaining)
        return CardLimits.short(command_chaining=chaining)


def _parse_historical(hist: bytes) -> dict[int, bytes]:
    """Compact-TLV objects of the historical bytes (category 00 or 80); other categories give none."""
    if not hist:
        return {}
    category = hist[0]
    if category == 0x00:
        body = hist[1:-3] if len(hist) >= 4 else b""  # last three bytes: status indicator
    elif category == 0x80:
        body = hist[1:]
    else:
        return {}
    out: dict[int, bytes] = {}
    pos = 0
    while pos < len(body):
        tag, length = body[pos] >> 4, body[pos] & 0x0F
        value = body[pos + 1 : pos + 1 + length]
        if len(value) != length:
            break  # tolerate junk: keep what parsed
        out[tag] = value
        pos += 1 + length
    return out


def limits_from_extended_length_info(base: CardLimits, ef_atr: bytes) -> CardLimits:
    """Narrow ``base`` with DO 7F66 found in EF.ATR content (two INTEGERs: max command / response APDU).

    Returns ``base`` unchanged when EF.ATR carries no 7F66.
    """
    try:
        tlvs = parse_tlvs(ef_atr)
    except TlvError as exc:
        raise ProtocolError(f"EF.ATR is not BER-TLV: {exc}") from exc
    info = next((t for t in tlvs if t.tag == Tag.EXTENDED_LENGTH_INFO), None)
    if info is None:
        return base
    ints = [int.from_bytes(t.value, "big") for t in Tlv(info).children() if t.tag == Tag.INTEGER]
    if len(ints) < 2:
        raise ProtocolError(f"DO 7F66 holds {len(ints)} integers, 2 expected")
    max_command_apdu, max_response_apdu = ints[0], ints[1]
    extended = max_command_apdu > 4 + 1 + 255 + 1 or max_response_apdu > 256 + _SW_LEN or base.extended_length
    if extended:
        lc = max(1, min(EXTENDED_MAX_LC, max_command_apdu - _EXT_COMMAND_OVERHEAD))
        le = max(1, min(EXTENDED_MAX_LE, max_response_apdu - _SW_LEN))
    else:
        lc = max(1, min(255, max_command_apdu - 6))
        le = max(1, min(256, max_response_apdu - _SW_LEN))
    return CardLimits(extended, lc, le, base.command_chaining)
