"""A small generic application for tests: a few files with different access rules, a PIN and PUK, two key
slots, and proprietary commands: ATOMIC UPDATE (several files in one transaction), CREATE EF, and ECHO
(long commands and long answers, to exercise chaining and GET RESPONSE).
"""

from __future__ import annotations

import hashlib
import struct

from ..access import ALWAYS, NEVER, Op, Pin, TerminalRight
from ..apdu import CommandApdu
from ..application import Application, CardServices, Response
from ..errors import IsoError
from ..iso import SW
from ..security import PinObject

GENERIC_AID = bytes.fromhex("F05253425953494D01")
"""'\\xF0RSBYSIM\\x01': proprietary RID range F0."""

PIN_REF = 0x81
PUK_REF = 0x82
CARD_AUTH_KEY = 0x01  # INTERNAL AUTHENTICATE: usable by anyone (copy detection needs no PIN)
SIGNING_KEY = 0x02  # PSO COMPUTE DIGITAL SIGNATURE: needs the PIN

EF_PUBLIC = 0x0101  # read ALWAYS, update PIN
EF_PROTECTED = 0x0102  # read TERMINAL_RIGHT(read_protected), update PIN AND TERMINAL_RIGHT(write_protected)
EF_BIG = 0x0103  # read/update ALWAYS, SFI 3 (extended-length and odd-INS tests)
EF_EITHER = 0x0104  # read PIN OR TERMINAL_RIGHT(read_protected); update NEVER

INS_ATOMIC_UPDATE = 0x10
"""CLA 80 INS 10: data = repeated (FID 2 | offset 2 | length 2 | bytes); all files change or none."""
INS_CREATE_EF = 0x12
"""CLA 80 INS 12 (PIN): data = FID 2 | size 3: a new EF, read/update ALWAYS (6A84 when the card is full)."""
INS_ECHO = 0x14
"""CLA 80 INS 14: answers its command data, SHA-256 of it appended (chaining in, GET RESPONSE out, any
length the card takes); P1P2 = 0000. Nothing persistent changes."""

DEFAULT_PIN = b"123456"
DEFAULT_PUK = b"12345678"


class GenericApplication(Application):
    """Test application; ``big_file_size`` lets tests exercise offsets past 32 KB on 64/80 KB cards."""

    aid = GENERIC_AID
    label = "GENERIC TEST"
    df_fid = 0xDF01

    def __init__(
        self, *, big_file_size: int = 4096, pin: bytes = DEFAULT_PIN, puk: bytes = DEFAULT_PUK
    ) -> None:
        self.big_file_size = big_file_size
        self._pin = pin
        self._puk = puk

    def install(self, card: CardServices) -> None:
        card.create_ef(self, EF_PUBLIC, 256, {Op.READ: ALWAYS, Op.UPDATE: Pin(PIN_REF)}, sfi=1)
        card.create_ef(self, EF_PROTECTED, 1024, {
            Op.READ: TerminalRight("read_protected"),
            Op.UPDATE: Pin(PIN_REF) & TerminalRight("write_protected")}, sfi=2)
        card.create_ef(self, EF_BIG, self.big_file_size, {Op.READ: ALWAYS, Op.UPDATE: ALWAYS}, sfi=3)
        card.create_ef(self, EF_EITHER, 64, {Op.READ: Pin(PIN_REF) | TerminalRight("read_protected"),
                                             Op.UPDATE: NEVER}, content=b"either")
        card.create_pin(self, PinObject(PUK_REF, self._puk, max_tries=10, tries_left=10, min_length=8,
                                        max_length=8))
        card.create_pin(self, PinObject(PIN_REF, self._pin, max_tries=3, tries_left=3, min_length=4,
                                        max_length=12, puk_ref=PUK_REF, reset_rule=TerminalRight("admin")))
        card.create_key_slot(self, CARD_AUTH_KEY, {Op.USE: ALWAYS, Op.GENERATE: Pin(PIN_REF)})
        card.create_key_slot(self, SIGNING_KEY, {Op.USE: Pin(PIN_REF), Op.GENERATE: Pin(PIN_REF)})

    def process(self, apdu: CommandApdu, card: CardServices) -> Response:
        if apdu.ins == INS_CREATE_EF:
            return self._create_ef(apdu, card)
        if apdu.ins == INS_ECHO:
            if apdu.p1p2 != 0:
                raise IsoError(SW.INCORRECT_P1P2)
            return apdu.data + hashlib.sha256(apdu.data).digest(), SW.OK
        if apdu.ins != INS_ATOMIC_UPDATE:
            return super().process(apdu, card)
        if apdu.p1p2 != 0:
            raise IsoError(SW.INCORRECT_P1P2)
        writes = _parse_updates(apdu.data)
        with card.transaction():
            for i, (fid, offset, data) in enumerate(writes):
                header = card.file(self, fid)
                card.require(header.rule(Op.UPDATE), header.df_scope, f"updating EF {fid:04X}")
                card.write_file(self, fid, offset, data)
                card.checkpoint(f"atomic update: file {i + 1} of {len(writes)} staged")
        return b"", SW.OK

    def _create_ef(self, apdu: CommandApdu, card: CardServices) -> Response:
        card.require(Pin(PIN_REF), card.app_df(self), "creating a file")
        if len(apdu.data) != 5:
            raise IsoError(SW.WRONG_LENGTH, "CREATE EF takes FID (2) and size (3)")
        fid = int.from_bytes(apdu.data[:2], "big")
        size = int.from_bytes(apdu.data[2:], "big")
        if size == 0:
            raise IsoError(SW.WRONG_DATA, "a file needs at least one byte")
        card.create_ef(self, fid, size, {Op.READ: ALWAYS, Op.UPDATE: ALWAYS})
        return b"", SW.OK


def encode_updates(writes: list[tuple[int, int, bytes]]) -> bytes:
    """Command data of ATOMIC UPDATE (used by tests and by hosts of the generic application)."""
    return b"".join(struct.pack(">HHH", fid, off, len(data)) + data for fid, off, data in writes)


def _parse_updates(data: bytes) -> list[tuple[int, int, bytes]]:
    out = []
    pos = 0
    while pos < len(data):
        if pos + 6 > len(data):
            raise IsoError(SW.WRONG_LENGTH, "truncated update header")
        fid, offset, n = struct.unpack_from(">HHH", data, pos)
        chunk = data[pos + 6:pos + 6 + n]
        if len(chunk) != n:
            raise IsoError(SW.WRONG_LENGTH, f"EF {fid:04X}: {n} bytes announced, {len(chunk)} sent")
        out.append((fid, offset, chunk))
        pos += 6 + n
    if not out:
        raise IsoError(SW.WRONG_LENGTH, "no updates")
    return out
