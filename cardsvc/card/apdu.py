"""Command and response APDUs (ISO/IEC 7816-4 clause 5) and the card limits that decide their form.

One home for the APDU wire format: :class:`CommandApdu` is built and parsed here and nowhere else.
Short form carries at most 255 data bytes and asks for at most 256; extended form up to 65,535 / 65,536.
The form is chosen from the card's :class:`CardLimits` rather than assumed, because many real cards accept
only short APDUs or 1-3 KB extended ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cardsvc.card.errors import ApduTooLongError, ProtocolError
from cardsvc.card.iso import SECRET_DATA_INS, SW, SW1, sw_name

SHORT_MAX_LC = 255
SHORT_MAX_LE = 256
EXTENDED_MAX_LC = 65_535
EXTENDED_MAX_LE = 65_536


@dataclass(frozen=True)
class CardLimits:
    """What the card accepts: extended length or not, largest data fields, command chaining.

    ``max_command_data`` is the largest Lc (data bytes in one command); ``max_response_data`` the largest Ne
    (data bytes in one response, status word excluded). Read from the ATR and EF.ATR (see ``atr.py``).
    """

    extended_length: bool = False
    max_command_data: int = SHORT_MAX_LC
    max_response_data: int = SHORT_MAX_LE
    command_chaining: bool = True

    def __post_init__(self) -> None:
        top_lc = EXTENDED_MAX_LC if self.extended_length else SHORT_MAX_LC
        top_le = EXTENDED_MAX_LE if self.extended_length else SHORT_MAX_LE
        if not 1 <= self.max_command_data <= top_lc:
            raise ValueError(f"max_command_data {self.max_command_data} outside 1..{top_lc}")
        if not 1 <= self.max_response_data <= top_le:
            raise ValueError(f"max_response_data {self.max_response_data} outside 1..{top_le}")

    @classmethod
    def short(cls, *, command_chaining: bool = True) -> CardLimits:
        """A card that takes short APDUs only (the safe default when the card says nothing)."""
        return cls(False, SHORT_MAX_LC, SHORT_MAX_LE, command_chaining)

    @classmethod
    def extended(
        cls, max_command_data: int = EXTENDED_MAX_LC, max_response_data: int = EXTENDED_MAX_LE
    ) -> CardLimits:
        return cls(True, max_command_data, max_response_data, True)


@dataclass(frozen=True, repr=False)
class CommandApdu:
    """One command APDU. ``le`` is the number of response bytes expected (Ne); 0 means none.

    ``sensitive`` marks commands whose data (command and response) must never reach the APDU log:
    PINs are always redacted; sessions set it for keys and fingerprint templates.
    """

    cla: int
    ins: int
    p1: int
    p2: int
    data: bytes = b""
    le: int = 0
    sensitive: bool = field(default=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("cla", "ins", "p1", "p2"):
            value = getattr(self, name)
            if not 0 <= value <= 0xFF:
                raise ValueError(f"{name} must be one byte, got {value}")
        if len(self.data) > EXTENDED_MAX_LC:
            raise ApduTooLongError(f"{len(self.data)} data bytes exceed the 65,535 an APDU can carry")
        if not 0 <= self.le <= EXTENDED_MAX_LE:
            raise ValueError(f"le must be 0..65536, got {self.le}")

    @property
    def needs_extended(self) -> bool:
        """True when the data or Le does not fit the short form."""
        return len(self.data) > SHORT_MAX_LC or self.le > SHORT_MAX_LE

    def encode(self, limits: CardLimits | None = None, *, extended: bool | None = None) -> bytes:
        """Wire bytes. The form is extended only when needed and ``limits`` allow it (or ``extended``)."""
        if extended is None:
            extended = self.needs_extended and (limits is None or limits.extended_length)
        header = bytes([self.cla, self.ins, self.p1, self.p2])
        nc = len(self.data)
        if not extended:
            if self.needs_extended:
                raise ApduTooLongError(
                    f"command {self.ins:02X} with {nc} data bytes and Le {self.le} needs extended length, "
                    "which the card does not accept"
                )
            lc = bytes([nc]) + self.data if nc else b""
            le = bytes([self.le & 0xFF]) if self.le else b""
            return header + lc + le
        lc = b"\x00" + nc.to_bytes(2, "big") + self.data if nc else b""
        if not self.le:
            le = b""
        else:
            le_bytes = (self.le & 0xFFFF).to_bytes(2, "big")
            le = le_bytes if nc else b"\x00" + le_bytes
        return header + lc + le

    @classmethod
    def decode(cls, raw: bytes) -> CommandApdu:
        """Parse wire bytes (any of the 7 ISO cases); the inverse of :meth:`encode`."""
        raw = bytes(raw)
        if len(raw) < 4:
            raise ProtocolError(f"command APDU of {len(raw)} bytes is shorter than its 4-byte header")
        cla, ins, p1, p2 = raw[:4]
        body = raw[4:]
        data, le = b"", 0
        if not body:
            pass
        elif len(body) == 1:  # case 2S
            le = body[0] or SHORT_MAX_LE
        elif body[0] != 0 or len(body) < 3:  # short: Lc data [Le]
            nc = body[0]
            if len(body) == 1 + nc:
                data = body[1:]
            elif len(body) == 2 + nc:
                data, le = body[1:-1], body[-1] or SHORT_MAX_LE
            else:
                raise ProtocolError(f"short APDU: Lc {nc} does not match {len(body) - 1} bytes after it")
        elif len(body) == 3:  # case 2E
            le = int.from_bytes(body[1:3], "big") or EXTENDED_MAX_LE
        else:
            nc = int.from_bytes(body[1:3], "big")
            if nc == 0:
                raise ProtocolError("extended APDU with Lc = 0")
            if len(body) == 3 + nc:
                data = body[3:]
            elif len(body) == 5 + nc:
                data, le = body[3:-2], int.from_bytes(body[-2:], "big") or EXTENDED_MAX_LE
            else:
                raise ProtocolError(f"extended APDU: Lc {nc} does not match {len(body) - 3} bytes after it")
        return cls(cla, ins, p1, p2, data, le)

    def __repr__(self) -> str:
        """Never shows a PIN or sensitive data, even in tracebacks and test failure reports."""
        if self.data and (self.sensitive or self.ins in SECRET_DATA_INS):
            data = f"<{len(self.data)} bytes redacted>"
        else:
            data = self.data.hex().upper() or "-"
        return (
            f"CommandApdu(cla={self.cla:02X}, ins={self.ins:02X}, p1={self.p1:02X}, p2={self.p2:02X}, "
            f"data={data}, le={self.le})"
        )


@dataclass(frozen=True)
class ResponseApdu:
    """Response data and status word."""

    data: bytes
    sw: int

    @property
    def sw1(self) -> int:
        return self.sw >> 8

    @property
    def sw2(self) -> int:
        return self.sw & 0xFF

    @property
    def ok(self) -> bool:
        return self.sw == SW.OK

    @property
    def bytes_available(self) -> int | None:
        """For 61xx, how many bytes GET RESPONSE may fetch (00 means 256); else None."""
        if self.sw1 == SW1.BYTES_AVAILABLE:
            return self.sw2 or SHORT_MAX_LE
        return None

    @property
    def correct_le(self) -> int | None:
        """For 6Cxx, the Le to re-issue the command with (00 means 256); else None."""
        if self.sw1 == SW1.WRONG_LE:
            return self.sw2 or SHORT_MAX_LE
        return None

    @classmethod
    def decode(cls, raw: bytes) -> ResponseApdu:
        if len(raw) < 2:
            raise ProtocolError(f"response of {len(raw)} bytes has no status word")
        return cls(bytes(raw[:-2]), int.from_bytes(raw[-2:], "big"))

    def encode(self) -> bytes:
        return self.data + self.sw.to_bytes(2, "big")

    def __repr__(self) -> str:
        return f"ResponseApdu({len(self.data)} bytes, {sw_name(self.sw)})"
