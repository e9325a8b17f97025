"""Command APDU parsing on the card side (ISO 7816-3/-4 cases 1-4, short and extended)."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import IsoError
from .iso import SW


@dataclass(frozen=True)
class CommandApdu:
    """A parsed command. ``ne`` is the number of expected response bytes (0 when Le is absent)."""

    cla: int
    ins: int
    p1: int
    p2: int
    data: bytes
    ne: int
    extended: bool

    @property
    def p1p2(self) -> int:
        return (self.p1 << 8) | self.p2


def parse_command(raw: bytes, *, max_command: int, extended_allowed: bool) -> CommandApdu:
    """Parse one command APDU; length errors raise IsoError(6700)."""
    n = len(raw)
    if n < 4:
        raise IsoError(SW.WRONG_LENGTH, f"APDU of {n} bytes is shorter than a header")
    if n > max_command:
        raise IsoError(SW.WRONG_LENGTH, f"APDU of {n} bytes exceeds the card's {max_command}-byte buffer")
    cla, ins, p1, p2 = raw[0], raw[1], raw[2], raw[3]
    if n == 4:
        return CommandApdu(cla, ins, p1, p2, b"", 0, False)
    b5 = raw[4]
    if n == 5:
        return CommandApdu(cla, ins, p1, p2, b"", b5 or 256, False)
    if b5 != 0:
        lc = b5
        if n == 5 + lc:
            return CommandApdu(cla, ins, p1, p2, raw[5:], 0, False)
        if n == 6 + lc:
            return CommandApdu(cla, ins, p1, p2, raw[5:5 + lc], raw[-1] or 256, False)
        raise IsoError(SW.WRONG_LENGTH, f"Lc={lc} does not match the {n - 5} bytes that follow")
    # extended length: 00 then two bytes
    if not extended_allowed:
        raise IsoError(SW.WRONG_LENGTH, "extended length is not supported by this card")
    if n == 6:
        raise IsoError(SW.WRONG_LENGTH, "truncated extended length field")
    if n == 7:
        le = int.from_bytes(raw[5:7], "big")
        return CommandApdu(cla, ins, p1, p2, b"", le or 65536, True)
    lc = int.from_bytes(raw[5:7], "big")
    if lc == 0:
        raise IsoError(SW.WRONG_LENGTH, "extended Lc of zero")
    if n == 7 + lc:
        return CommandApdu(cla, ins, p1, p2, raw[7:], 0, True)
    if n == 9 + lc:
        le = int.from_bytes(raw[-2:], "big")
        return CommandApdu(cla, ins, p1, p2, raw[7:7 + lc], le or 65536, True)
    raise IsoError(SW.WRONG_LENGTH, f"extended Lc={lc} does not match the {n - 7} bytes that follow")


def build_command(cla: int, ins: int, p1: int, p2: int, data: bytes = b"", ne: int = 0,
                  *, extended: bool | None = None) -> bytes:
    """Encode a command APDU (tests, benchmarks and demo scripts drive the simulator with it).

    ``extended`` None picks the short form when data and Ne fit in it.
    """
    if extended is None:
        extended = len(data) > 255 or ne > 256
    header = bytes([cla, ins, p1, p2])
    if not extended:
        body = (bytes([len(data)]) + data) if data else b""
        le = bytes([ne & 0xFF]) if ne else b""
        return header + body + le
    body = (b"\x00" + len(data).to_bytes(2, "big") + data) if data else b""
    le = b""
    if ne:
        le = (ne & 0xFFFF).to_bytes(2, "big")
        if not data:
            le = b"\x00" + le
    return header + body + le
