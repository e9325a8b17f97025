"""Geometric transforms of minutiae sets: rigid moves (tests of invariance) and impression-like noise.

Not a finger generator (hardware_sims makes images); these move and disturb an existing set of minutiae so
tests and benchmarks can check that the matcher ignores placement and tolerates small distortions.
"""

from __future__ import annotations

import math

import numpy as np

from cardsvc.bio.template import FingerTemplate, Minutia, MinutiaKind


def rigid_transform(
    template: FingerTemplate,
    *,
    rotation: float = 0.0,
    dx: float = 0.0,
    dy: float = 0.0,
    centre: tuple[float, float] | None = None,
    size: tuple[int, int] | None = None,
) -> FingerTemplate:
    """Rotate the finger by `rotation` degrees counter-clockwise (as seen on the image) about `centre`
    (default: the image centre), then shift by (dx, dy) pixels. Minutiae leaving the image are dropped."""
    width, height = size or (template.width, template.height)
    cx, cy = centre or (template.width / 2.0, template.height / 2.0)
    t = math.radians(rotation)
    c, s = math.cos(t), math.sin(t)
    moved = []
    for m in template.minutiae:
        # counter-clockwise on screen: in y-down pixel coordinates y' = -(x sin) + y cos
        rx, ry = m.x - cx, m.y - cy
        x = cx + c * rx + s * ry + dx
        y = cy - s * rx + c * ry + dy
        xi, yi = round(x), round(y)
        if 0 <= xi < width and 0 <= yi < height:
            moved.append(Minutia(xi, yi, (m.angle + rotation) % 360.0, m.kind, m.quality))
    return FingerTemplate(
        minutiae=tuple(moved), width=width, height=height, resolution_ppcm=template.resolution_ppcm,
        finger_position=template.finger_position, quality=template.quality,
        impression_type=template.impression_type,
    )  # fmt: skip


def jitter(
    template: FingerTemplate,
    rng: np.random.Generator,
    *,
    position_sd: float = 2.0,
    angle_sd: float = 5.0,
    drop: float = 0.1,
    spurious: float = 0.1,
) -> FingerTemplate:
    """Another 'impression': moved minutiae, some missed, some spurious ones added (seeded by `rng`)."""
    kept = []
    for m in template.minutiae:
        if rng.random() < drop:
            continue
        x = int(np.clip(round(m.x + rng.normal(0, position_sd)), 0, template.width - 1))
        y = int(np.clip(round(m.y + rng.normal(0, position_sd)), 0, template.height - 1))
        kept.append(Minutia(x, y, float((m.angle + rng.normal(0, angle_sd)) % 360.0), m.kind, m.quality))
    for _ in range(round(spurious * len(template.minutiae))):
        kept.append(
            Minutia(
                int(rng.integers(0, template.width)),
                int(rng.integers(0, template.height)),
                float(rng.uniform(0, 360)),
                MinutiaKind(int(rng.integers(1, 3))),
                10,
            )
        )
    return FingerTemplate(
        minutiae=tuple(kept), width=template.width, height=template.height,
        resolution_ppcm=template.resolution_ppcm, finger_position=template.finger_position,
        quality=template.quality, impression_type=template.impression_type,
    )  # fmt: skip


def random_template(
    rng: np.random.Generator, *, count: int = 40, width: int = 300, height: int = 400
) -> FingerTemplate:
    """Minutiae scattered in an elliptical finger area, at least 8 px apart (benchmarks without images)."""
    pts: list[Minutia] = []
    tries = 0
    while len(pts) < count and tries < count * 50:
        tries += 1
        u, v = rng.uniform(-1, 1, 2)
        if u * u + v * v > 1:
            continue
        x, y = int(width / 2 + u * width * 0.42), int(height / 2 + v * height * 0.42)
        if any((p.x - x) ** 2 + (p.y - y) ** 2 < 64 for p in pts):
            continue
        pts.append(Minutia(x, y, float(rng.uniform(0, 360)), MinutiaKind(int(rng.integers(1, 3))), 50))
    return FingerTemplate(minutiae=tuple(pts), width=width, height=height)
