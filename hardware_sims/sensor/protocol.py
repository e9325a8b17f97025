"""The ZhianTec ZFM / R30x serial packet format: the one place it is parsed and built.

Packet: 0xEF01 start code, 4-byte module address, 1-byte packet type, 2-byte length (payload + 2), payload,
2-byte checksum = (type + both length bytes + every payload byte) mod 65536, all big-endian. The host sends
command packets (01) and data packets (02, last one 08); the sensor answers with an acknowledgement (07)
whose first payload byte is a confirmation code, then, for uploads, data packets. See docs/sensor.md.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

START_CODE = 0xEF01
HEADER_LEN = 9  # start code (2) + address (4) + type (1) + length (2)
MAX_PAYLOAD = 256 + 2


class PacketType(enum.IntEnum):
    COMMAND = 0x01
    DATA = 0x02
    ACK = 0x07
    END_DATA = 0x08


class Instruction(enum.IntEnum):
    """Instruction codes (first payload byte of a command packet)."""

    READ_IMAGE = 0x01
    CONVERT_IMAGE = 0x02
    COMPARE = 0x03
    SEARCH = 0x04
    CREATE_TEMPLATE = 0x05
    STORE_TEMPLATE = 0x06
    LOAD_TEMPLATE = 0x07
    UPLOAD_CHARACTERISTICS = 0x08  # sensor -> host ("download" in pyfingerprint's words)
    DOWNLOAD_CHARACTERISTICS = 0x09  # host -> sensor ("upload" in pyfingerprint's words)
    UPLOAD_IMAGE = 0x0A  # sensor -> host
    DOWNLOAD_IMAGE = 0x0B  # host -> sensor
    DELETE_TEMPLATE = 0x0C
    CLEAR_DATABASE = 0x0D
    SET_SYSTEM_PARAMETER = 0x0E
    GET_SYSTEM_PARAMETERS = 0x0F
    SET_PASSWORD = 0x12
    VERIFY_PASSWORD = 0x13
    GENERATE_RANDOM = 0x14
    SET_ADDRESS = 0x15
    TEMPLATE_COUNT = 0x1D
    TEMPLATE_INDEX = 0x1F


class Confirmation(enum.IntEnum):
    """Confirmation codes (first payload byte of an acknowledgement)."""

    OK = 0x00
    COMMUNICATION = 0x01
    NO_FINGER = 0x02
    READ_IMAGE_FAILED = 0x03
    MESSY_IMAGE = 0x06
    FEW_FEATURES = 0x07
    NO_MATCH = 0x08
    NOT_FOUND = 0x09
    MERGE_FAILED = 0x0A
    INVALID_POSITION = 0x0B
    LOAD_FAILED = 0x0C
    UPLOAD_CHARACTERISTICS_FAILED = 0x0D
    PACKET_RESPONSE_FAIL = 0x0E
    UPLOAD_IMAGE_FAILED = 0x0F
    DELETE_FAILED = 0x10
    CLEAR_FAILED = 0x11
    WRONG_PASSWORD = 0x13
    INVALID_IMAGE = 0x15
    FLASH_ERROR = 0x18
    INVALID_REGISTER = 0x1A
    WRONG_ADDRESS = 0x20
    MUST_VERIFY_PASSWORD = 0x21


class SystemParameter(enum.IntEnum):
    """Parameter numbers of SET_SYSTEM_PARAMETER."""

    BAUD_RATE = 4  # value N: N x 9600 baud, 1-12
    SECURITY_LEVEL = 5  # 1-5
    PACKET_SIZE = 6  # 0-3: 32, 64, 128, 256 bytes


PACKET_SIZES = (32, 64, 128, 256)


class PacketError(ValueError):
    """Bytes on the line that are not a well-formed packet (bad start code, length or checksum)."""


@dataclass(frozen=True, slots=True)
class Packet:
    address: int
    type: PacketType
    payload: bytes

    def encode(self) -> bytes:
        length = len(self.payload) + 2
        if length > 0xFFFF:
            raise PacketError(f"payload of {len(self.payload)} bytes does not fit a packet")
        body = struct.pack(">BH", self.type, length) + self.payload
        checksum = sum(body) & 0xFFFF
        return struct.pack(">HI", START_CODE, self.address) + body + struct.pack(">H", checksum)


def ack(address: int, code: Confirmation, data: bytes = b"") -> Packet:
    """An acknowledgement packet: confirmation code then any returned values."""
    return Packet(address, PacketType.ACK, bytes([code]) + data)


class PacketReader:
    """Incremental parser: feed bytes as they arrive, take complete packets out."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[Packet]:
        self._buf += data
        packets: list[Packet] = []
        while True:
            start = self._buf.find(b"\xef\x01")
            if start < 0:
                # keep a lone trailing 0xEF: it may be the first half of a start code
                keep = 1 if self._buf.endswith(b"\xef") else 0
                del self._buf[: len(self._buf) - keep]
                return packets
            if start:
                del self._buf[:start]
            if len(self._buf) < HEADER_LEN:
                return packets
            address, ptype, length = struct.unpack(">IBH", self._buf[2:HEADER_LEN])
            if length < 2 or length > MAX_PAYLOAD + 2:
                del self._buf[:2]  # not a real start code: resynchronise
                continue
            end = HEADER_LEN + length
            if len(self._buf) < end:
                return packets
            frame = bytes(self._buf[:end])
            del self._buf[:end]
            body = frame[6 : end - 2]
            (checksum,) = struct.unpack(">H", frame[end - 2 : end])
            if sum(body) & 0xFFFF != checksum:
                continue  # a corrupted packet is dropped, as the module does
            try:
                kind = PacketType(ptype)
            except ValueError:
                continue
            packets.append(Packet(address, kind, frame[HEADER_LEN : end - 2]))


def split_data(address: int, data: bytes, packet_size: int) -> list[Packet]:
    """Cut a transfer into data packets of `packet_size` payload bytes, the last one an END_DATA packet."""
    chunks = [data[i : i + packet_size] for i in range(0, len(data), packet_size)] or [b""]
    return [
        Packet(address, PacketType.END_DATA if i == len(chunks) - 1 else PacketType.DATA, chunk)
        for i, chunk in enumerate(chunks)
    ]
