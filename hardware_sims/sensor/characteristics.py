"""The simulated sensor's "firmware": image to characteristics, its 512-byte layout, and its matcher.

A real R30x keeps its characteristics in a proprietary 512-byte file and scores matches on its own scale.
Ours is documented (docs/sensor.md) but just as sensor-private: NIST mindtct minutiae (nbis-py) packed as
ISO/IEC 19794-2 6-byte minutia entries behind a 32-byte header, matched with NIST bozorth3. The host must
not build on this layout: the station and POS take the image and extract ISO templates themselves.

Layout (big-endian):
    0   2  magic b"ZS"
    2   1  layout version (1)
    3   1  flags: bit 0 = merged template (createTemplate)
    4   2  image width      6   2  image height
    8   1  quality 0-100 (mean mindtct minutia reliability)
    9   1  minutia count n (0-80)
    10  2  sum of bytes 32-511 mod 65536
    12 20  reserved, zero
    32 6n  minutiae: type(2 bits) | x(14 bits); 0(2) | y(14); angle (360/256 deg); quality; zero-padded
"""

from __future__ import annotations

import functools
import io
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

SIZE = 512
HEADER_SIZE = 32
MAX_MINUTIAE = (SIZE - HEADER_SIZE) // 6  # 80
MAGIC = b"ZS"
VERSION = 1
FLAG_MERGED = 0x01
MIN_MINUTIAE = 12  # fewer than this: "too few feature points" (07)
MIN_CONTACT = 0.12  # share of the window that must show ridges, else "messy image"

#: bozorth3 score a match must reach at each security level (1 lowest ... 5 highest).
SECURITY_THRESHOLDS = {1: 35, 2: 45, 3: 55, 4: 70, 5: 90}


class CharacteristicsError(ValueError):
    """512 bytes that are not a characteristics file of this layout."""


class ConversionError(Exception):
    """The image cannot be turned into characteristics; `code` is the sensor's confirmation code."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code


@dataclass(frozen=True, slots=True)
class Characteristics:
    width: int
    height: int
    quality: int
    entries: bytes  # n x 6-byte ISO minutia entries
    merged: bool = False

    @property
    def count(self) -> int:
        return len(self.entries) // 6

    def encode(self) -> bytes:
        if len(self.entries) % 6 or self.count > MAX_MINUTIAE:
            raise CharacteristicsError(f"{len(self.entries)} bytes of minutiae do not fit the layout")
        body = self.entries.ljust(SIZE - HEADER_SIZE, b"\0")
        header = MAGIC + struct.pack(
            ">BBHHBBH",
            VERSION,
            FLAG_MERGED if self.merged else 0,
            self.width,
            self.height,
            self.quality,
            self.count,
            sum(body) & 0xFFFF,
        )
        return header.ljust(HEADER_SIZE, b"\0") + body

    @classmethod
    def parse(cls, data: bytes) -> Characteristics:
        if len(data) != SIZE:
            raise CharacteristicsError(f"characteristics must be {SIZE} bytes, got {len(data)}")
        if data[:2] != MAGIC or data[2] != VERSION:
            raise CharacteristicsError("not a characteristics file of this sensor (bad magic or version)")
        flags, width, height, quality, count, checksum = struct.unpack(">BHHBBH", data[3:12])
        body = data[HEADER_SIZE:]
        if sum(body) & 0xFFFF != checksum:
            raise CharacteristicsError("characteristics checksum mismatch (corrupted transfer?)")
        if count > MAX_MINUTIAE:
            raise CharacteristicsError(f"minutia count {count} exceeds {MAX_MINUTIAE}")
        return cls(width, height, quality, bytes(body[: 6 * count]), bool(flags & FLAG_MERGED))

    def iso_record(self) -> bytes:
        """The minutiae as the ISO-like record nbis-py reads back (its own writer's exact layout)."""
        n = self.count
        return (
            b"FMR\0 20\0"
            + struct.pack(">IHHHHH", 26 + 6 * n, 0, self.width, self.height, 0, 0)
            + bytes([0, 0, 0, n])
            + self.entries
        )


@functools.lru_cache(maxsize=2)
def _extractor(nfiq2: bool) -> Any:
    import nbis

    settings = nbis.NbisExtractorSettings(
        min_quality=0.0, get_center=False, check_fingerprint=False, compute_nfiq2=nfiq2, ppi=500.0
    )
    return nbis.new_nbis_extractor(settings)


def _contact_share(image: np.ndarray) -> float:
    """Share of 16 x 16 blocks with ridge-like contrast: a cheap "is there a finger" test."""
    h, w = (image.shape[0] // 16) * 16, (image.shape[1] // 16) * 16
    blocks = image[:h, :w].reshape(h // 16, 16, w // 16, 16).astype(np.float32)
    return float((blocks.std(axis=(1, 3)) > 18.0).mean())


def finger_present(image: np.ndarray) -> bool:
    """What the sensor's capture step checks: enough of the window shows ridges."""
    return _contact_share(image) >= MIN_CONTACT / 2


def convert_image(image: np.ndarray) -> Characteristics:
    """Image buffer to characteristics, raising ConversionError(06 or 07) as the module does.

    No NFIQ2 here: it would double the time of a step pyfingerprint gives 2 s to answer. The quality byte
    is the mean mindtct reliability of the minutiae kept (0-100).
    """
    if _contact_share(image) < MIN_CONTACT:
        raise ConversionError(0x06, "too little ridge area: messy image")
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", compress_level=1)
    try:
        result = _extractor(False).extract_minutiae(buf.getvalue())
    except Exception as exc:  # nbis raises its own error kinds on hopeless images
        raise ConversionError(0x06, f"extractor failed: {exc!r}") from exc
    record = result.to_iso_19794_2_2005()
    (n,) = struct.unpack(">B", record[25:26])
    entries = [record[26 + 6 * i : 32 + 6 * i] for i in range(n)]
    if len(entries) < MIN_MINUTIAE:
        raise ConversionError(0x07, f"{len(entries)} minutiae, fewer than {MIN_MINUTIAE}")
    if len(entries) > MAX_MINUTIAE:
        entries = sorted(entries, key=lambda e: e[5], reverse=True)[:MAX_MINUTIAE]
    reliability = [float(m.reliability()) for m in result.get()]
    quality = round(100 * sum(reliability) / len(reliability)) if reliability else 0
    height, width = image.shape
    return Characteristics(width, height, max(0, min(100, quality)), b"".join(entries))


def warm_up() -> None:
    """Load the extractor (first use costs about half a second) before the host starts its 2 s timers."""
    _extractor(False)


@functools.lru_cache(maxsize=4096)
def _loaded(record: bytes) -> Any:
    return _extractor(False).load_iso_19794_2_2005(record)


def match_score(a: Characteristics, b: Characteristics) -> int:
    """bozorth3 score of two characteristics files (0 for an empty one), capped to 16 bits."""
    if not a.count or not b.count:
        return 0
    return min(0xFFFF, int(_loaded(a.iso_record()).compare(_loaded(b.iso_record()))))


def merge(a: Characteristics, b: Characteristics) -> Characteristics:
    """createTemplate: keep the richer of the two captures as the finger's template, marked merged."""
    best = a if a.count >= b.count else b
    return Characteristics(best.width, best.height, max(a.quality, b.quality), best.entries, merged=True)
