"""The card's ATR and the extended-length information it advertises.

ATR = 3B, T0 (TD1 present, K historical bytes), TD1 = 80 (TD2 follows, T=0), TD2 = 01 (T=1), historical
bytes, TCK. Historical bytes: category 80 (compact-TLV), then

    31 F8        card service data: select by full/partial DF name, EF.DIR and EF.ATR/INFO hold BER-TLV
                 objects, read with READ BINARY, card has an MF
    73 F4 21 xx  card capabilities: selection by DF name, partial name, path, FID, SFI; data unit 1 byte;
                 xx (ISO 7816-4 table 119, third software function byte): 80 command chaining,
                 40 extended Lc/Le, 20 extended-length info in EF.ATR/INFO
    82 90 00     status indicator: SW 9000

Limits are in DO 7F66 { 02 max command APDU bytes, 02 max response APDU bytes } in EF.ATR/INFO (2F01)
and answered by GET DATA 7F66.
"""

from __future__ import annotations

from . import tlv
from .iso import Tag

SHORT_COMMAND_MAX = 4 + 1 + 255 + 1
SHORT_RESPONSE_MAX = 256 + 2


CAPS3_COMMAND_CHAINING = 0x80
CAPS3_EXTENDED_LENGTH = 0x40
CAPS3_EXTENDED_INFO_IN_EF_ATR = 0x20


def card_capabilities_byte3(extended: bool, chaining: bool = False) -> int:
    """Third byte of the card capabilities: what the host reads to choose APDU forms (cardsvc/card/atr.py)."""
    caps3 = CAPS3_EXTENDED_LENGTH | CAPS3_EXTENDED_INFO_IN_EF_ATR if extended else 0x00
    return caps3 | (CAPS3_COMMAND_CHAINING if chaining else 0x00)


def historical_bytes(extended: bool, chaining: bool = False) -> bytes:
    caps3 = card_capabilities_byte3(extended, chaining)
    return bytes([0x80, 0x31, 0xF8, 0x73, 0xF4, 0x21, caps3, 0x82, 0x90, 0x00])


def build_atr(extended: bool, chaining: bool = False) -> bytes:
    hist = historical_bytes(extended, chaining)
    body = bytes([0x80 | len(hist), 0x80, 0x01]) + hist
    tck = 0
    for b in body:
        tck ^= b
    return b"\x3b" + body + bytes([tck])


def extended_length_info(max_command: int, max_response: int) -> bytes:
    """DO 7F66: the largest command and response APDU (bytes, including header/SW) the card handles."""
    return tlv.tlv(Tag.EXTENDED_LENGTH_INFO,
                   tlv.tlv(Tag.INTEGER, tlv.encode_uint(max_command))
                   + tlv.tlv(Tag.INTEGER, tlv.encode_uint(max_response)))
