"""The in-memory fingerprint template that every biometric module shares.

Coordinates are pixels in the capture image with the origin at the top left and y pointing DOWN; angles
are degrees counter-clockwise from the x axis in that same frame (the ISO/IEC 19794-2 convention). Codecs
(ISO record, compact card format, NBIS .xyt) convert to and from this one representation.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class MinutiaKind(enum.IntEnum):
    """ISO/IEC 19794-2 minutia type codes."""

    OTHER = 0
    ENDING = 1
    BIFURCATION = 2


@dataclass(frozen=True, slots=True)
class Minutia:
    x: int
    y: int
    angle: float  # degrees, [0, 360), counter-clockwise with y down (ISO convention)
    kind: MinutiaKind = MinutiaKind.ENDING
    quality: int = 0  # 0-100, 0 = not reported


@dataclass(frozen=True, slots=True)
class FingerTemplate:
    """One finger's minutiae with the capture geometry needed to compare and encode them."""

    minutiae: tuple[Minutia, ...]
    width: int = 0
    height: int = 0
    resolution_ppcm: int = 197  # pixels per centimetre; 500 ppi = 197
    finger_position: int = 0  # ISO finger position code, 0 = unknown, 1 = right thumb ... 10 = left little
    quality: int = 0  # 0-100 sample quality (NFIQ2 where known)
    impression_type: int = 0  # 0 = live-scan plain
    extra: dict[str, object] = field(default_factory=dict, compare=False, hash=False)

    def __repr__(self) -> str:
        """Geometry and counts only: a template is biometric data and must not reach logs or tracebacks."""
        return (
            f"FingerTemplate(<{len(self.minutiae)} minutiae>, {self.width}x{self.height}, "
            f"{self.resolution_ppcm} ppcm, finger={self.finger_position}, quality={self.quality})"
        )
