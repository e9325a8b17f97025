"""The R30x module's behaviour, independent of the serial line: packets in, packets out.

`SensorDevice.handle(packet)` returns the packets the module would answer with. It owns the image buffer,
the two character buffers, the system parameters and the template library ("flash"), which it persists in
a state directory as JSON so that a restarted simulator keeps its enrolled fingers. The serial line, the
byte-rate model and the control socket live in `hardware_sims.sensor.simulator`.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import random
import struct
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hardware_sims.sensor import characteristics as chars
from hardware_sims.sensor.protocol import (
    PACKET_SIZES,
    Confirmation,
    Instruction,
    Packet,
    PacketType,
    SystemParameter,
    ack,
    split_data,
)

log = logging.getLogger(__name__)

DEFAULT_ADDRESS = 0xFFFFFFFF
CAPACITY = 1000  # R307: 1000 templates
SYSTEM_ID = 0x0000
STATE_FILE = "sensor.json"
IMAGE_WIDTH = 256
IMAGE_HEIGHT = 288


@dataclass
class SensorParameters:
    """What the module keeps in flash besides templates."""

    address: int = DEFAULT_ADDRESS
    password: int = 0
    security_level: int = 3
    packet_size_code: int = 2  # 128 bytes, the factory default
    baud_n: int = 6  # 6 x 9600 = 57,600 baud

    @property
    def packet_size(self) -> int:
        return PACKET_SIZES[self.packet_size_code]

    @property
    def baud(self) -> int:
        return self.baud_n * 9600


@dataclass
class SensorDevice:
    """One simulated module. Thread-safe: the serial loop and the control socket share it."""

    state_dir: Path | None = None
    rng: random.Random = field(default_factory=random.SystemRandom)
    params: SensorParameters = field(default_factory=SensorParameters)
    library: dict[int, bytes] = field(default_factory=dict)
    finger: np.ndarray | None = None  # what lies on the glass now
    image: np.ndarray | None = None  # the image buffer (last capture)
    buffers: dict[int, bytes] = field(default_factory=dict)  # CharBuffer 1 and 2, raw 512-byte files
    verified: bool = False
    _receiving: int | None = None  # char buffer being filled by host data packets
    _incoming: bytearray = field(default_factory=bytearray)
    _lock: threading.RLock = field(default_factory=threading.RLock)

    def __post_init__(self) -> None:
        if self.state_dir is not None:
            self.state_dir = Path(self.state_dir)
            self.state_dir.mkdir(parents=True, exist_ok=True)
            self._load()

    # ---- flash ---------------------------------------------------------------------------------------
    def _load(self) -> None:
        assert self.state_dir is not None
        path = self.state_dir / STATE_FILE
        if not path.exists():
            return
        state = json.loads(path.read_text())
        self.params = SensorParameters(**state["params"])
        self.library = {int(k): bytes.fromhex(v) for k, v in state["library"].items()}

    def _save(self) -> None:
        if self.state_dir is None:
            return
        state = {
            "params": vars(self.params),
            "library": {str(k): v.hex() for k, v in sorted(self.library.items())},
        }
        tmp = self.state_dir / (STATE_FILE + ".tmp")
        tmp.write_text(json.dumps(state, indent=1))
        os.replace(tmp, self.state_dir / STATE_FILE)

    # ---- the finger on the glass (control socket) -----------------------------------------------------
    def place(self, image: np.ndarray) -> None:
        if image.shape != (IMAGE_HEIGHT, IMAGE_WIDTH) or image.dtype != np.uint8:
            raise ValueError(
                f"sensor image must be uint8 {IMAGE_HEIGHT} high x {IMAGE_WIDTH} wide, "
                f"got {image.dtype} {image.shape}"
            )
        with self._lock:
            self.finger = image.copy()

    def lift(self) -> None:
        with self._lock:
            self.finger = None

    # ---- packets -------------------------------------------------------------------------------------
    def handle(self, packet: Packet) -> list[Packet]:
        """Answer one packet from the host; packets for another address are ignored (no answer)."""
        with self._lock:
            if packet.address != self.params.address:
                log.debug("ignoring packet for address %08X", packet.address)
                return []
            if packet.type in (PacketType.DATA, PacketType.END_DATA):
                return self._receive_data(packet)
            if packet.type is not PacketType.COMMAND or not packet.payload:
                return [ack(self.params.address, Confirmation.COMMUNICATION)]
            try:
                instruction = Instruction(packet.payload[0])
            except ValueError:
                return [ack(self.params.address, Confirmation.COMMUNICATION)]
            if self.params.password and not self.verified and instruction is not Instruction.VERIFY_PASSWORD:
                return [ack(self.params.address, Confirmation.MUST_VERIFY_PASSWORD)]
            args = packet.payload[1:]
            handler = getattr(self, f"_do_{instruction.name.lower()}", None)
            if handler is None:
                return [ack(self.params.address, Confirmation.COMMUNICATION)]
            try:
                result: list[Packet] = handler(args)
            except (struct.error, IndexError):
                return [ack(self.params.address, Confirmation.COMMUNICATION)]
            return result

    def _ok(self, data: bytes = b"") -> list[Packet]:
        return [ack(self.params.address, Confirmation.OK, data)]

    def _fail(self, code: Confirmation) -> list[Packet]:
        return [ack(self.params.address, code)]

    def _receive_data(self, packet: Packet) -> list[Packet]:
        if self._receiving is None:
            return []
        self._incoming += packet.payload
        if packet.type is PacketType.END_DATA:
            self.buffers[self._receiving] = bytes(self._incoming)
            self._receiving = None
            self._incoming = bytearray()
        return []  # the module does not acknowledge data packets

    @staticmethod
    def _buffer_id(args: bytes) -> int:
        if args[0] not in (1, 2):
            raise IndexError("char buffer must be 1 or 2")
        return int(args[0])

    def _parsed(self, buffer_id: int) -> chars.Characteristics | None:
        raw = self.buffers.get(buffer_id)
        if raw is None:
            return None
        try:
            return chars.Characteristics.parse(raw)
        except chars.CharacteristicsError:
            return None

    def _threshold(self) -> int:
        return chars.SECURITY_THRESHOLDS[self.params.security_level]

    # ---- instructions ----------------------------------------------------------------------------------
    def _do_verify_password(self, args: bytes) -> list[Packet]:
        (password,) = struct.unpack(">I", args[:4])
        # constant time: no timing oracle for the module password
        expected = struct.pack(">I", self.params.password)
        self.verified = hmac.compare_digest(struct.pack(">I", password), expected)
        return self._ok() if self.verified else self._fail(Confirmation.WRONG_PASSWORD)

    def _do_set_password(self, args: bytes) -> list[Packet]:
        (self.params.password,) = struct.unpack(">I", args[:4])
        self._save()
        return self._ok()

    def _do_set_address(self, args: bytes) -> list[Packet]:
        (new,) = struct.unpack(">I", args[:4])
        answer = self._ok()  # acknowledged from the old address, then the module moves
        self.params.address = new
        self._save()
        return answer

    def _do_set_system_parameter(self, args: bytes) -> list[Packet]:
        number, value = args[0], args[1]
        if number == SystemParameter.BAUD_RATE and 1 <= value <= 12:
            self.params.baud_n = value
        elif number == SystemParameter.SECURITY_LEVEL and 1 <= value <= 5:
            self.params.security_level = value
        elif number == SystemParameter.PACKET_SIZE and 0 <= value <= 3:
            self.params.packet_size_code = value
        else:
            return self._fail(Confirmation.INVALID_REGISTER)
        self._save()
        return self._ok()

    def _do_get_system_parameters(self, args: bytes) -> list[Packet]:
        p = self.params
        # status register: bit 0 busy, bit 1 finger matched, bit 2 password verified, bit 3 image buffer valid
        status = (0x04 if self.verified or not p.password else 0) | (0x08 if self.image is not None else 0)
        data = struct.pack(
            ">HHHHIHH", status, SYSTEM_ID, CAPACITY, p.security_level, p.address, p.packet_size_code, p.baud_n
        )
        return self._ok(data)

    def _do_template_count(self, args: bytes) -> list[Packet]:
        return self._ok(struct.pack(">H", len(self.library)))

    def _do_template_index(self, args: bytes) -> list[Packet]:
        page = args[0]
        if page > 3:
            return self._fail(Confirmation.INVALID_POSITION)
        table = bytearray(32)
        for pos in self.library:
            if page * 256 <= pos < (page + 1) * 256:
                offset = pos - page * 256
                table[offset // 8] |= 1 << (offset % 8)
        return self._ok(bytes(table))

    def _do_read_image(self, args: bytes) -> list[Packet]:
        if self.finger is None or not chars.finger_present(self.finger):
            return self._fail(Confirmation.NO_FINGER)
        self.image = self.finger.copy()
        return self._ok()

    def _do_upload_image(self, args: bytes) -> list[Packet]:
        if self.image is None:
            return self._fail(Confirmation.UPLOAD_IMAGE_FAILED)
        packed = pack_image(self.image)
        return self._ok() + split_data(self.params.address, packed, self.params.packet_size)

    def _do_download_image(self, args: bytes) -> list[Packet]:
        return self._fail(Confirmation.PACKET_RESPONSE_FAIL)  # host-to-sensor images: not simulated

    def _do_convert_image(self, args: bytes) -> list[Packet]:
        buffer_id = self._buffer_id(args)
        if self.image is None:
            return self._fail(Confirmation.INVALID_IMAGE)
        try:
            result = chars.convert_image(self.image)
        except chars.ConversionError as exc:
            log.info("convertImage: %s", exc)
            return self._fail(Confirmation(exc.code))
        self.buffers[buffer_id] = result.encode()
        return self._ok()

    def _do_compare(self, args: bytes) -> list[Packet]:
        a, b = self._parsed(1), self._parsed(2)
        score = chars.match_score(a, b) if a and b else 0
        if score < self._threshold():
            return [ack(self.params.address, Confirmation.NO_MATCH, struct.pack(">H", score))]
        return self._ok(struct.pack(">H", score))

    def _do_create_template(self, args: bytes) -> list[Packet]:
        a, b = self._parsed(1), self._parsed(2)
        if a is None or b is None or chars.match_score(a, b) < self._threshold():
            return self._fail(Confirmation.MERGE_FAILED)
        merged = chars.merge(a, b).encode()
        self.buffers[1] = self.buffers[2] = merged
        return self._ok()

    def _do_store_template(self, args: bytes) -> list[Packet]:
        buffer_id = self._buffer_id(args)
        (position,) = struct.unpack(">H", args[1:3])
        if position >= CAPACITY:
            return self._fail(Confirmation.INVALID_POSITION)
        raw = self.buffers.get(buffer_id)
        if raw is None:
            return self._fail(Confirmation.FLASH_ERROR)
        self.library[position] = raw
        self._save()
        return self._ok()

    def _do_load_template(self, args: bytes) -> list[Packet]:
        buffer_id = self._buffer_id(args)
        (position,) = struct.unpack(">H", args[1:3])
        if position >= CAPACITY:
            return self._fail(Confirmation.INVALID_POSITION)
        if position not in self.library:
            return self._fail(Confirmation.LOAD_FAILED)
        self.buffers[buffer_id] = self.library[position]
        return self._ok()

    def _do_delete_template(self, args: bytes) -> list[Packet]:
        position, count = struct.unpack(">HH", args[:4])
        if position >= CAPACITY or position + count > CAPACITY:
            return self._fail(Confirmation.INVALID_POSITION)
        for pos in range(position, position + count):
            self.library.pop(pos, None)
        self._save()
        return self._ok()

    def _do_clear_database(self, args: bytes) -> list[Packet]:
        self.library.clear()
        self._save()
        return self._ok()

    def _do_search(self, args: bytes) -> list[Packet]:
        buffer_id = self._buffer_id(args)
        start, count = struct.unpack(">HH", args[1:5])
        probe = self._parsed(buffer_id)
        best_pos, best_score = -1, 0
        if probe is not None:
            for pos in sorted(self.library):
                if not start <= pos < start + count:
                    continue
                try:
                    stored = chars.Characteristics.parse(self.library[pos])
                except chars.CharacteristicsError:
                    continue
                score = chars.match_score(probe, stored)
                if score > best_score:
                    best_pos, best_score = pos, score
        if best_pos < 0 or best_score < self._threshold():
            return self._fail(Confirmation.NOT_FOUND)
        return self._ok(struct.pack(">HH", best_pos, best_score))

    def _do_upload_characteristics(self, args: bytes) -> list[Packet]:
        raw = self.buffers.get(self._buffer_id(args))
        if raw is None:
            return self._fail(Confirmation.UPLOAD_CHARACTERISTICS_FAILED)
        return self._ok() + split_data(self.params.address, raw, self.params.packet_size)

    def _do_download_characteristics(self, args: bytes) -> list[Packet]:
        self._receiving = self._buffer_id(args)
        self._incoming = bytearray()
        return self._ok()

    def _do_generate_random(self, args: bytes) -> list[Packet]:
        return self._ok(struct.pack(">I", self.rng.getrandbits(32)))


def pack_image(image: np.ndarray) -> bytes:
    """8-bit grey image to the module's upload format: 4 bits a pixel, left pixel in the high nibble."""
    nibbles = (image >> 4).astype(np.uint8)
    return bytes((nibbles[:, 0::2] << 4) | nibbles[:, 1::2])


def unpack_image(data: bytes, width: int = IMAGE_WIDTH, height: int = IMAGE_HEIGHT) -> np.ndarray:
    """The inverse of `pack_image` (grey levels 0, 17, ... 255, as pyfingerprint renders them)."""
    if len(data) != width * height // 2:
        raise ValueError(f"image upload must be {width * height // 2} bytes, got {len(data)}")
    packed = np.frombuffer(data, dtype=np.uint8).reshape(height, width // 2)
    out = np.empty((height, width), dtype=np.uint8)
    out[:, 0::2] = (packed >> 4) * 17
    out[:, 1::2] = (packed & 0x0F) * 17
    return out
