"""ISO/IEC 19794-2:2005 finger minutiae: the record format and the compact card format, read and written here.

This module is the one home of both formats (documented in docs/biometrics.md). Decoding is strict: every
malformed input raises `TemplateFormatError` saying what was wrong and where. Integers are big-endian.

Record format ("FMR\\0" " 20\\0"): a 24-byte header (record length 4 bytes, capture device 2, image width and
height 2 each, x and y resolution 2 each in pixels per CENTIMETRE, number of views 1, reserved 1), then per
view a 4-byte header (finger position, view number << 4 | impression type, quality, minutia count), 6 bytes a
minutia (type << 14 | x; reserved << 14 | y; angle in 360/256-degree units; quality) and extended data
(2-byte total length, 0 when absent).

Compact card format: 3 bytes a minutia, x and y in 0.1 mm units, type << 6 | angle in 5.625-degree units.
A verify command carries it as the biometric data template `7F2E L { 81 L <3N bytes> }`.
"""

from __future__ import annotations

import bisect
import enum
import math
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cardsvc.bio.errors import TemplateFormatError
from cardsvc.bio.template import FingerTemplate, Minutia, MinutiaKind

MAGIC = b"FMR\x00"
VERSION_2005 = b" 20\x00"
RECORD_HEADER = struct.Struct(">4s4sIHHHHHBB")
VIEW_HEADER = struct.Struct(">BBBB")
MINUTIA = struct.Struct(">HHBB")
ANGLE_UNIT_RECORD = 360.0 / 256.0
ANGLE_UNIT_CARD = 360.0 / 64.0
MAX_COORDINATE = 0x3FFF
MAX_MINUTIAE_PER_VIEW = 255
MAX_FINGER_POSITION = 10
VALID_IMPRESSION_TYPES = frozenset({0, 1, 2, 3, 8})  # live/non-live, plain/rolled; 8 = swipe
CARD_UNITS_PER_CM = 100  # compact format: 0.1 mm units
CARD_MAX_UNIT = 255


class BitTag(enum.IntEnum):
    """Tags of the biometric data template used by verify commands (ISO/IEC 7816-11, 19794-2 annex)."""

    BIOMETRIC_DATA_TEMPLATE = 0x7F2E
    FINGER_MINUTIAE_DATA = 0x81


class CardSortOrder(enum.Enum):
    """Minutia orders a card may ask for in its biometric information template (7F60)."""

    NONE = "none"
    X_ASCENDING = "x"
    Y_ASCENDING = "y"


@dataclass(frozen=True, slots=True)
class IsoView:
    """One finger view of a record; `view_number` and `extended_data` are kept so records round-trip."""

    template: FingerTemplate
    view_number: int = 0
    extended_data: bytes = b""


@dataclass(frozen=True, slots=True)
class IsoRecord:
    """A whole ISO/IEC 19794-2:2005 record: header fields and its views."""

    views: tuple[IsoView, ...]
    width: int
    height: int
    x_resolution: int = 197  # pixels per centimetre
    y_resolution: int = 197
    capture_device: int = 0

    @classmethod
    def from_template(cls, template: FingerTemplate, *, capture_device: int = 0) -> IsoRecord:
        return cls(
            views=(IsoView(template),),
            width=template.width,
            height=template.height,
            x_resolution=template.resolution_ppcm,
            y_resolution=template.resolution_ppcm,
            capture_device=capture_device,
        )

    @classmethod
    def parse(cls, data: bytes) -> IsoRecord:
        """Decode a record, strictly (see module docstring); raises TemplateFormatError."""
        data = bytes(data)
        if len(data) < RECORD_HEADER.size:
            raise TemplateFormatError(
                f"truncated record: {len(data)} bytes, the header alone needs {RECORD_HEADER.size}"
            )
        magic, version, length, device, width, height, xres, yres, n_views, reserved = (
            RECORD_HEADER.unpack_from(data)
        )
        if magic != MAGIC:
            raise TemplateFormatError(f"wrong magic {magic!r}: not a finger minutiae record (want {MAGIC!r})")
        if version != VERSION_2005:
            raise TemplateFormatError(f"unsupported version {version!r} (want {VERSION_2005!r}, ISO 2005)")
        if length != len(data):
            hint = " (an ANSI INCITS 378 record has a 2-byte length here)" if length > len(data) else ""
            raise TemplateFormatError(
                f"length mismatch: header says {length} bytes, record has {len(data)}{hint}"
            )
        if width == 0 or height == 0:
            raise TemplateFormatError(f"image size {width}x{height} has a zero side")
        if xres == 0 or yres == 0:
            raise TemplateFormatError(f"resolution {xres}x{yres} pixels/cm has a zero (not conformant)")
        if n_views == 0:
            raise TemplateFormatError("record holds no finger view")
        if reserved:
            raise TemplateFormatError(f"the header's reserved byte is {reserved:#04x}, not 0 (damaged?)")
        offset = RECORD_HEADER.size
        views = []
        for index in range(n_views):
            view, offset = _parse_view(data, offset, index, width, height, xres)
            views.append(view)
        if offset != len(data):
            raise TemplateFormatError(f"{len(data) - offset} unexplained bytes after the last view")
        return cls(tuple(views), width, height, xres, yres, device)

    def encode(self) -> bytes:
        """Build the record; raises TemplateFormatError for values the format cannot carry."""
        _check_range("image width", self.width, 1, 0xFFFF)
        _check_range("image height", self.height, 1, 0xFFFF)
        _check_range("x resolution", self.x_resolution, 1, 0xFFFF)
        _check_range("y resolution", self.y_resolution, 1, 0xFFFF)
        _check_range("capture device", self.capture_device, 0, 0xFFFF)
        if not 1 <= len(self.views) <= 255:
            raise TemplateFormatError(f"a record holds 1-255 views, got {len(self.views)}")
        body = b"".join(_encode_view(v, self.width, self.height) for v in self.views)
        length = RECORD_HEADER.size + len(body)
        header = RECORD_HEADER.pack(
            MAGIC, VERSION_2005, length, self.capture_device, self.width, self.height,
            self.x_resolution, self.y_resolution, len(self.views), 0,
        )  # fmt: skip
        return header + body


def _check_range(what: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise TemplateFormatError(f"{what} {value} is outside {low}-{high}")


def _parse_view(
    data: bytes, offset: int, index: int, width: int, height: int, ppcm: int
) -> tuple[IsoView, int]:
    if len(data) < offset + VIEW_HEADER.size:
        raise TemplateFormatError(f"truncated record: view {index} header missing at byte {offset}")
    position, view_impression, quality, count = VIEW_HEADER.unpack_from(data, offset)
    if position > MAX_FINGER_POSITION:
        raise TemplateFormatError(f"view {index}: bad finger position {position} (ISO allows 0-10)")
    impression = view_impression & 0x0F
    if impression not in VALID_IMPRESSION_TYPES:
        raise TemplateFormatError(f"view {index}: bad impression type {impression}")
    if quality > 100:
        raise TemplateFormatError(f"view {index}: finger quality {quality} is above 100")
    offset += VIEW_HEADER.size
    end = offset + count * MINUTIA.size
    if end + 2 > len(data):
        raise TemplateFormatError(
            f"view {index}: {count} minutiae need {count * MINUTIA.size + 2} bytes from byte {offset},"
            f" only {len(data) - offset} remain (truncated record or minutia count overflow)"
        )
    minutiae = []
    for i in range(count):
        tx, ry, angle, mq = MINUTIA.unpack_from(data, offset + i * MINUTIA.size)
        kind_code, x = tx >> 14, tx & MAX_COORDINATE
        reserved, y = ry >> 14, ry & MAX_COORDINATE
        if kind_code == 3:
            raise TemplateFormatError(f"view {index} minutia {i}: reserved minutia type 11b")
        if reserved:
            raise TemplateFormatError(f"view {index} minutia {i}: reserved bits above y are set")
        if x >= width or y >= height:
            raise TemplateFormatError(
                f"view {index} minutia {i}: ({x}, {y}) lies outside the {width}x{height} image"
            )
        if mq > 100:
            raise TemplateFormatError(f"view {index} minutia {i}: quality {mq} is above 100")
        minutiae.append(Minutia(x, y, angle * ANGLE_UNIT_RECORD, MinutiaKind(kind_code), mq))
    # the extended data length counts the bytes of the blocks that follow it (0: none)
    (ext_length,) = struct.unpack_from(">H", data, end)
    ext_start = end + 2
    if ext_start + ext_length > len(data):
        raise TemplateFormatError(
            f"view {index}: extended data of {ext_length} bytes is truncated"
            f" ({len(data) - ext_start} bytes remain)"
        )
    extended = data[ext_start : ext_start + ext_length]
    next_offset = ext_start + ext_length
    template = FingerTemplate(
        minutiae=tuple(minutiae),
        width=width,
        height=height,
        resolution_ppcm=ppcm,
        finger_position=position,
        quality=quality,
        impression_type=impression,
    )
    return IsoView(template, view_impression >> 4, extended), next_offset


def _encode_view(view: IsoView, width: int, height: int) -> bytes:
    t = view.template
    _check_range("finger position", t.finger_position, 0, MAX_FINGER_POSITION)
    _check_range("view number", view.view_number, 0, 15)
    _check_range("finger quality", t.quality, 0, 100)
    if t.impression_type not in VALID_IMPRESSION_TYPES:
        raise TemplateFormatError(f"bad impression type {t.impression_type}")
    if len(t.minutiae) > MAX_MINUTIAE_PER_VIEW:
        raise TemplateFormatError(f"{len(t.minutiae)} minutiae do not fit a view (at most 255)")
    if len(view.extended_data) > 0xFFFF:
        raise TemplateFormatError("extended data longer than 65535 bytes")
    parts = [VIEW_HEADER.pack(t.finger_position, view.view_number << 4 | t.impression_type,
                              t.quality, len(t.minutiae))]  # fmt: skip
    for i, m in enumerate(t.minutiae):
        if not (0 <= m.x < width and 0 <= m.y < height):
            raise TemplateFormatError(
                f"minutia {i} at ({m.x}, {m.y}) lies outside the {width}x{height} image"
            )
        _check_range(f"minutia {i} quality", m.quality, 0, 100)
        angle = round((m.angle % 360.0) / ANGLE_UNIT_RECORD) % 256
        parts.append(MINUTIA.pack(int(m.kind) << 14 | m.x, m.y, angle, m.quality))
    parts.append(struct.pack(">H", len(view.extended_data)) + view.extended_data)
    return b"".join(parts)


def decode_template(data: bytes) -> FingerTemplate:
    """The first finger view of a record (what a card or a vendor SDK hands over)."""
    return IsoRecord.parse(data).views[0].template


def encode_template(template: FingerTemplate) -> bytes:
    """A one-view record of `template`."""
    return IsoRecord.from_template(template).encode()


# ---------------------------------------------------------------------------------------------------------
# Compact card format


def _px_per_unit(ppcm: int) -> float:
    if ppcm <= 0:
        raise TemplateFormatError(f"template resolution {ppcm} pixels/cm must be positive")
    return ppcm / CARD_UNITS_PER_CM


def _card_window(coords: list[float]) -> float:
    """Offset (in card units) of the 25.5 mm window holding the most of `coords`; 0 when all fit."""
    if not coords or (round(min(coords)) >= 0 and round(max(coords)) <= CARD_MAX_UNIT):
        return 0.0
    ordered = sorted(coords)
    centre = (ordered[0] + ordered[-1]) / 2
    best: tuple[int, float, float] | None = None
    for i, start in enumerate(ordered):
        j = bisect.bisect_right(ordered, start + CARD_MAX_UNIT)
        # the window [start, start + 255] covers ordered[i:j]; centre it on what it covers
        offset = (ordered[i] + ordered[j - 1]) / 2 - CARD_MAX_UNIT / 2
        key = (j - i, -abs(offset + CARD_MAX_UNIT / 2 - centre), offset)
        if best is None or key[:2] > best[:2]:
            best = key
    assert best is not None
    return best[2]


def encode_compact(
    template: FingerTemplate,
    *,
    max_minutiae: int | None = None,
    sort: CardSortOrder = CardSortOrder.NONE,
) -> bytes:
    """Encode minutiae in the compact card format (3 bytes each).

    A card's grid covers 25.5 mm; when the minutiae spread further (a tall 560-pixel image), the whole set
    is shifted so that the grid covers as many minutiae as possible (ties: the most central window) and
    those still outside are dropped (the matcher is translation-invariant, the shift costs nothing).
    With `max_minutiae`, the best-quality minutiae are kept (the card's 7F60 announces its maximum).
    """
    scale = _px_per_unit(template.resolution_ppcm)
    us = [m.x / scale for m in template.minutiae]
    vs = [m.y / scale for m in template.minutiae]
    shift = [_card_window(us), _card_window(vs)]
    kept = [
        (round(u - shift[0]), round(v - shift[1]), m)
        for u, v, m in zip(us, vs, template.minutiae, strict=True)
    ]
    kept = [p for p in kept if 0 <= p[0] <= CARD_MAX_UNIT and 0 <= p[1] <= CARD_MAX_UNIT]
    if max_minutiae is not None:
        if max_minutiae < 0:
            raise TemplateFormatError(f"max_minutiae {max_minutiae} is negative")
        order = sorted(range(len(kept)), key=lambda i: -kept[i][2].quality)[:max_minutiae]
        kept = [kept[i] for i in sorted(order)]
    if sort is CardSortOrder.X_ASCENDING:
        kept.sort(key=lambda p: (p[0], p[1]))
    elif sort is CardSortOrder.Y_ASCENDING:
        kept.sort(key=lambda p: (p[1], p[0]))
    out = bytearray()
    for u, v, m in kept:
        angle = round((m.angle % 360.0) / ANGLE_UNIT_CARD) % 64
        out += bytes((u, v, int(m.kind) << 6 | angle))
    return bytes(out)


def decode_compact(data: bytes, *, resolution_ppcm: int = 197, finger_position: int = 0) -> FingerTemplate:
    """Decode compact-card minutiae into a template in pixels at `resolution_ppcm` (the matcher's unit)."""
    data = bytes(data)
    if len(data) % 3:
        raise TemplateFormatError(f"compact minutiae are 3 bytes each, got {len(data)} bytes")
    scale = _px_per_unit(resolution_ppcm)
    minutiae = []
    for i in range(0, len(data), 3):
        u, v, ta = data[i], data[i + 1], data[i + 2]
        kind_code = ta >> 6
        if kind_code == 3:
            raise TemplateFormatError(f"compact minutia {i // 3}: reserved minutia type 11b")
        minutiae.append(
            Minutia(round(u * scale), round(v * scale), (ta & 0x3F) * ANGLE_UNIT_CARD, MinutiaKind(kind_code))
        )
    side = math.ceil((CARD_MAX_UNIT + 1) * scale)
    return FingerTemplate(
        minutiae=tuple(minutiae), width=side, height=side, resolution_ppcm=resolution_ppcm,
        finger_position=finger_position,
    )  # fmt: skip


def quantise_for_card(template: FingerTemplate, *, max_minutiae: int | None = None) -> FingerTemplate:
    """What a card would hold of `template`, back in pixels: measure accuracy on THIS, on both sides."""
    t = decode_compact(
        encode_compact(template, max_minutiae=max_minutiae),
        resolution_ppcm=template.resolution_ppcm,
        finger_position=template.finger_position,
    )
    return FingerTemplate(
        minutiae=t.minutiae, width=t.width, height=t.height, resolution_ppcm=t.resolution_ppcm,
        finger_position=t.finger_position, quality=template.quality,
        impression_type=template.impression_type, extra={"card_quantised": True},
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------------------
# BER-TLV wrapping of the compact minutiae for verify commands


def _ber_length(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    if n <= 0xFF:
        return bytes((0x81, n))
    if n <= 0xFFFF:
        return bytes((0x82, n >> 8, n & 0xFF))
    raise TemplateFormatError(f"value of {n} bytes is too long for a verify template")


def _read_ber_length(data: bytes, offset: int) -> tuple[int, int]:
    if offset >= len(data):
        raise TemplateFormatError("biometric data template truncated before a length")
    first = data[offset]
    if first < 0x80:
        return first, offset + 1
    count = first & 0x7F
    if count not in (1, 2) or offset + 1 + count > len(data):
        raise TemplateFormatError(f"bad or truncated BER length at byte {offset}")
    return int.from_bytes(data[offset + 1 : offset + 1 + count], "big"), offset + 1 + count


def wrap_verify_template(compact: bytes) -> bytes:
    """`7F2E L { 81 L <compact minutiae> }`, the data field of a biometric VERIFY command."""
    if len(compact) % 3:
        raise TemplateFormatError(f"compact minutiae are 3 bytes each, got {len(compact)} bytes")
    inner = bytes((BitTag.FINGER_MINUTIAE_DATA,)) + _ber_length(len(compact)) + bytes(compact)
    return BitTag.BIOMETRIC_DATA_TEMPLATE.to_bytes(2, "big") + _ber_length(len(inner)) + inner


def unwrap_verify_template(data: bytes) -> bytes:
    """The compact minutiae inside `7F2E { 81 ... }`; raises TemplateFormatError on anything else."""
    data = bytes(data)
    if data[:2] != BitTag.BIOMETRIC_DATA_TEMPLATE.to_bytes(2, "big"):
        raise TemplateFormatError(f"expected tag 7F2E, got {data[:2].hex().upper() or 'nothing'}")
    length, offset = _read_ber_length(data, 2)
    if offset + length != len(data):
        raise TemplateFormatError(f"7F2E length {length} does not match the {len(data) - offset} bytes given")
    if offset >= len(data):
        raise TemplateFormatError("7F2E is empty: no finger minutiae data object (81) inside")
    if data[offset] != BitTag.FINGER_MINUTIAE_DATA:
        raise TemplateFormatError(f"expected tag 81 inside 7F2E, got {data[offset]:02X}")
    inner_length, inner = _read_ber_length(data, offset + 1)
    if inner + inner_length != len(data):
        raise TemplateFormatError(
            f"81 length {inner_length} does not match the {len(data) - inner} bytes given"
        )
    compact = data[inner:]
    if len(compact) % 3:
        raise TemplateFormatError(f"compact minutiae are 3 bytes each, got {len(compact)} bytes")
    return compact


def minutiae_fitting_short_apdu(overhead: int = 0) -> int:
    """How many compact minutiae fit one short VERIFY APDU (255 data bytes) after `overhead` bytes."""
    best = 0
    for n in range(0, 86):
        if len(wrap_verify_template(bytes(3 * n))) + overhead <= 255:
            best = n
    return best


def describe(templates: Iterable[FingerTemplate] | Sequence[FingerTemplate]) -> list[dict[str, object]]:
    """Plain dicts of templates, for `cardsvc bio iso-dump --json` (no logging: templates are sensitive)."""
    return [
        {
            "finger_position": t.finger_position,
            "impression_type": t.impression_type,
            "quality": t.quality,
            "width": t.width,
            "height": t.height,
            "resolution_ppcm": t.resolution_ppcm,
            "minutiae": [
                {
                    "x": m.x,
                    "y": m.y,
                    "angle": round(m.angle, 3),
                    "kind": m.kind.name.lower(),
                    "quality": m.quality,
                }
                for m in t.minutiae
            ],
        }
        for t in templates
    ]
