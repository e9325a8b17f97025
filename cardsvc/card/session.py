"""ISO 7816-4 file-system session: the base every application session builds on.

Later sessions (beneficiary card, officer card) subclass :class:`ApplicationSession`, set ``AID`` and add
domain verbs; they inherit select / read / update / challenge / PIN handling that already respects the
card's APDU limits and never logs a PIN.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import ClassVar

from cardsvc.card.apdu import SHORT_MAX_LE, CardLimits, CommandApdu
from cardsvc.card.atr import AtrInfo, limits_from_extended_length_info
from cardsvc.card.errors import ApduError, CardFileNotFoundError, ProtocolError, error_for_sw
from cardsvc.card.iso import SW, SW1, FileId, Ins, PinReference, SelectP1, SelectP2, Tag
from cardsvc.card.protocol import SmartCardProtocol
from cardsvc.card.transport import CardConnection
from cardsvc.tlv import Tlv, TlvError, tlv_dict

_MAX_EVEN_OFFSET = 0x7FFF  # READ/UPDATE BINARY B0/D6 carry the offset in 15 bits of P1P2
_MAX_FILE = 1 << 20
_DO53_OVERHEAD = 4


@dataclass(frozen=True)
class FileInfo:
    """What SELECT's FCP told us about a file."""

    file_id: int | None
    size: int | None
    descriptor: bytes
    fcp: bytes

    @classmethod
    def parse(cls, fcp: bytes, file_id: int | None = None) -> FileInfo:
        """Parse an FCP template (62 ...); an empty answer gives a FileInfo with unknown size."""
        if not fcp:
            return cls(file_id, None, b"", b"")
        try:
            outer = Tlv(fcp)
            fields = tlv_dict(outer.value) if outer.tag in (Tag.FCP, Tag.FCI) else {}
        except TlvError as exc:
            raise ProtocolError(f"SELECT returned a malformed FCP: {exc}") from exc
        size_raw = fields.get(Tag.FILE_SIZE)
        fid_raw = fields.get(Tag.FILE_ID)
        return cls(
            file_id=int.from_bytes(fid_raw, "big") if fid_raw else file_id,
            size=int.from_bytes(size_raw, "big") if size_raw else None,
            descriptor=fields.get(Tag.FILE_DESCRIPTOR, b""),
            fcp=bytes(fcp),
        )


@dataclass(frozen=True)
class PinStatus:
    """Result of a VERIFY status query (no data): verified now, tries left, or blocked."""

    verified: bool
    attempts_remaining: int | None
    blocked: bool


class Iso7816Session:
    """Select files, read and write transparent EFs, get challenges and verify PINs on one card."""

    def __init__(
        self,
        connection: CardConnection | SmartCardProtocol,
        *,
        limits: CardLimits | None = None,
        cla: int = 0x00,
    ) -> None:
        if isinstance(connection, SmartCardProtocol):
            self.protocol = connection
            if limits is not None:
                self.protocol.limits = limits
        else:
            self.protocol = SmartCardProtocol(connection, limits or _limits_from_atr(connection))
        self.cla = cla

    @property
    def limits(self) -> CardLimits:
        return self.protocol.limits

    def send_apdu(
        self, ins: int, p1: int, p2: int, data: bytes = b"", le: int = 0, *, sensitive: bool = False
    ) -> bytes:
        """``SmartCardProtocol.send_apdu`` with this session's CLA."""
        return self.protocol.send_apdu(self.cla, ins, p1, p2, data, le, sensitive=sensitive)

    # --- limits -------------------------------------------------------------------------------------
    def read_limits(self) -> CardLimits:
        """Narrow the limits with EF.ATR's extended length info (7F66) when the card has EF.ATR.

        Selects under the MF, so call it before selecting an application.
        """
        try:
            content = self.read_binary(FileId.EF_ATR, p1=SelectP1.FILE_ID)
        except CardFileNotFoundError:
            try:  # some cards answer GET DATA 7F66 instead of keeping EF.ATR
                content = self.send_apdu(Ins.GET_DATA, 0x7F, 0x66, le=SHORT_MAX_LE)
            except ApduError:
                return self.limits
        self.protocol.limits = limits_from_extended_length_info(self.limits, content)
        return self.limits

    # --- selection ----------------------------------------------------------------------------------
    def select_aid(self, aid: bytes) -> bytes:
        """Select an application by AID; return its FCI (may be empty)."""
        return self.send_apdu(Ins.SELECT, SelectP1.DF_NAME, SelectP2.FCI, aid, SHORT_MAX_LE)

    def select_file(self, file_id: int, *, p1: int = SelectP1.EF_UNDER_CURRENT_DF) -> FileInfo:
        """Select an EF (or DF) by its 2-byte id and return what its FCP says (size when given)."""
        fcp = self.send_apdu(Ins.SELECT, p1, SelectP2.FCP, file_id.to_bytes(2, "big"), SHORT_MAX_LE)
        return FileInfo.parse(fcp, file_id)

    # --- transparent files --------------------------------------------------------------------------
    def read_binary(
        self,
        file_id: int | None = None,
        *,
        offset: int = 0,
        length: int | None = None,
        p1: int = SelectP1.EF_UNDER_CURRENT_DF,
        sensitive: bool = False,
    ) -> bytes:
        """Read a transparent EF (the whole file by default) in as few APDUs as the card allows.

        With ``file_id`` the file is selected first and its FCP size bounds the read; without a size the
        read goes on until the card reports the end of the file.
        """
        size: int | None = None
        if file_id is not None:
            size = self.select_file(file_id, p1=p1).size
        if length is None and size is not None:
            length = max(0, size - offset)
        chunk = self.limits.max_response_data
        out = bytearray()
        while length is None or len(out) < length:
            want = chunk if length is None else min(chunk, length - len(out))
            pos = offset + len(out)
            data, end = self._read_chunk(pos, want, sensitive)
            out += data
            short_even_read = pos <= _MAX_EVEN_OFFSET and len(data) < want  # B0: fewer bytes = end of file
            if end or not data or (length is None and short_even_read):
                break
            if len(out) > _MAX_FILE:
                raise ProtocolError(f"file larger than {_MAX_FILE} bytes: refusing to read on")
        return bytes(out)

    def _read_chunk(self, pos: int, want: int, sensitive: bool) -> tuple[bytes, bool]:
        """One READ BINARY; returns (data, end_of_file_reached)."""
        if pos <= _MAX_EVEN_OFFSET:
            apdu = CommandApdu(self.cla, Ins.READ_BINARY, pos >> 8, pos & 0xFF, le=want, sensitive=sensitive)
        else:
            # The answer is wrapped in DO 53 (tag + up to 3 length bytes): ask for that much more.
            le = min(want + _DO53_OVERHEAD, self.limits.max_response_data)
            offset_do = Tlv(Tag.OFFSET_DATA, pos.to_bytes(3, "big"))
            apdu = CommandApdu(self.cla, Ins.READ_BINARY_ODD, 0, 0, offset_do, le, sensitive=sensitive)
        response = self.protocol.transmit(apdu)
        if response.sw not in (SW.OK, SW.END_OF_FILE_REACHED, SW.WRONG_P1P2):
            raise _error(response.sw, response.data, f"READ BINARY at offset {pos}")
        data = response.data
        if apdu.ins == Ins.READ_BINARY_ODD and data[:1] == bytes([Tag.DISCRETIONARY_DATA]):
            try:
                data = Tlv(data).value[:want]
            except TlvError as exc:
                raise ProtocolError(f"READ BINARY (B1) at offset {pos}: malformed DO 53: {exc}") from exc
        return data, response.sw != SW.OK

    def update_binary(
        self,
        data: bytes,
        *,
        file_id: int | None = None,
        offset: int = 0,
        p1: int = SelectP1.EF_UNDER_CURRENT_DF,
        sensitive: bool = False,
    ) -> None:
        """Write ``data`` at ``offset`` of a transparent EF, in as few APDUs as the card allows."""
        if file_id is not None:
            self.select_file(file_id, p1=p1)
        chunk = self.limits.max_command_data
        pos = 0
        while pos < len(data):
            at = offset + pos
            if at <= _MAX_EVEN_OFFSET:
                piece = data[pos : pos + min(chunk, _MAX_EVEN_OFFSET + 1 - at)]
                self.send_apdu(Ins.UPDATE_BINARY, at >> 8, at & 0xFF, piece, sensitive=sensitive)
            else:
                offset_do = Tlv(Tag.OFFSET_DATA, at.to_bytes(3, "big"))
                overhead = len(offset_do) + 4  # 53 tag + up to 3 length bytes
                piece = data[pos : pos + chunk - overhead]
                body = offset_do + Tlv(Tag.DISCRETIONARY_DATA, piece)
                self.send_apdu(Ins.UPDATE_BINARY_ODD, 0, 0, body, sensitive=sensitive)
            pos += len(piece)

    # --- security -----------------------------------------------------------------------------------
    def get_challenge(self, length: int = 8) -> bytes:
        """A fresh random challenge from the card (for authentication it will check)."""
        challenge = self.send_apdu(Ins.GET_CHALLENGE, 0, 0, le=length)
        if len(challenge) != length:
            raise ProtocolError(f"GET CHALLENGE returned {len(challenge)} bytes, {length} asked")
        return challenge

    def verify_pin(self, pin: bytes | str, reference: int = PinReference.SPECIFIC_1) -> None:
        """VERIFY; raises WrongPinError(attempts_remaining) or AuthBlockedError. The PIN is never logged."""
        pin_bytes = encode_pin(pin)
        if not pin_bytes:
            raise ValueError("empty PIN: use pin_status() to query the PIN state")
        self.send_apdu(Ins.VERIFY, 0, reference, pin_bytes)

    def pin_status(self, reference: int = PinReference.SPECIFIC_1) -> PinStatus:
        """VERIFY without data: is the PIN verified in this session, how many tries are left."""
        response = self.protocol.transmit(CommandApdu(self.cla, Ins.VERIFY, 0, reference))
        if response.sw == SW.OK:
            return PinStatus(True, None, False)
        if response.sw1 == SW1.WARNING_COUNTER and response.sw2 & 0xF0 == 0xC0:
            tries = response.sw2 & 0x0F
            return PinStatus(False, tries, tries == 0)
        if response.sw == SW.AUTH_METHOD_BLOCKED:
            return PinStatus(False, 0, True)
        raise _error(response.sw, response.data, "PIN status query")

    def change_pin(
        self, old: bytes | str, new: bytes | str, reference: int = PinReference.SPECIFIC_1
    ) -> None:
        """CHANGE REFERENCE DATA with old and new PIN concatenated (never logged)."""
        raw = [encode_pin(p) for p in (old, new)]
        self.send_apdu(Ins.CHANGE_REFERENCE_DATA, 0, reference, raw[0] + raw[1])

    def close(self) -> None:
        self.protocol.close()


def encode_pin(pin: bytes | str) -> bytes:
    """A PIN as the card compares it. A non-ASCII PIN is refused with a message that does not echo it
    (Python's own UnicodeEncodeError would quote the offending character and carry the whole PIN)."""
    if not isinstance(pin, str):
        return bytes(pin)
    if not pin.isascii():
        raise ValueError("a PIN must be ASCII characters (digits on these cards)")
    return pin.encode("ascii")


def _limits_from_atr(connection: CardConnection) -> CardLimits:
    """Limits the connection's ATR announces; short APDUs when there is no ATR or it cannot be parsed."""
    atr = getattr(connection, "atr", None)
    if not atr:
        return CardLimits.short()
    try:
        return AtrInfo.parse(atr).limits()
    except ProtocolError:
        return CardLimits.short()


def _error(sw: int, data: bytes, what: str) -> ApduError:
    return error_for_sw(sw, data, what)


class ApplicationSession(Iso7816Session):
    """A session bound to one card application: the constructor selects ``AID``.

    Subclasses set ``AID`` and add domain verbs (``read_profile``, ``debit`` ...). ``read_card_limits``
    reads EF.ATR first (before the application is selected) so later reads use the card's real limits.
    """

    AID: ClassVar[bytes] = b""

    def __init__(
        self,
        connection: CardConnection | SmartCardProtocol,
        *,
        limits: CardLimits | None = None,
        read_card_limits: bool = True,
        cla: int = 0x00,
    ) -> None:
        super().__init__(connection, limits=limits, cla=cla)
        if not self.AID:
            raise TypeError(f"{type(self).__name__} must set AID")
        if read_card_limits and limits is None:
            with contextlib.suppress(ApduError):  # no readable EF.ATR: keep the ATR's limits
                self.read_limits()
        self.fci = self.select_aid(self.AID)


__all__ = [
    "ApplicationSession",
    "FileInfo",
    "Iso7816Session",
    "PinStatus",
]
