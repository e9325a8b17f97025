"""Ridge orientation fields from singular points: the zero-pole model of Sherlock and Monro.

A core turns the ridge direction by +180 degrees around it, a delta by -180 degrees; the sum of half the
arguments of (z - core) minus half of (z - delta) gives a field with exactly those singularities, which is
how SFinGe (Cappelli, Maio, Maltoni) draws its five finger classes. Arches have no singular points and use
a closed-form arched flow instead. Angles are radians of the ridge TANGENT in array coordinates (x right,
y down), taken modulo pi.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np


class FingerClass(enum.IntEnum):
    """The Henry classes SFinGe draws, with their natural frequencies (Wilson et al., NIST)."""

    ARCH = 0
    TENTED_ARCH = 1
    LEFT_LOOP = 2
    RIGHT_LOOP = 3
    WHORL = 4


#: Natural class frequencies: arch 3.7%, tented arch 2.9%, left loop 33.8%, right loop 31.7%, whorl 27.9%.
CLASS_FREQUENCIES: dict[FingerClass, float] = {
    FingerClass.ARCH: 0.037,
    FingerClass.TENTED_ARCH: 0.029,
    FingerClass.LEFT_LOOP: 0.338,
    FingerClass.RIGHT_LOOP: 0.317,
    FingerClass.WHORL: 0.279,
}


@dataclass(frozen=True, slots=True)
class Singularities:
    """Core and delta positions in master-image pixels (x, y with y down)."""

    cores: tuple[tuple[float, float], ...]
    deltas: tuple[tuple[float, float], ...]


def pick_class(rng: np.random.Generator) -> FingerClass:
    """Draw a finger class with the natural frequencies."""
    classes = list(CLASS_FREQUENCIES)
    weights = np.array([CLASS_FREQUENCIES[c] for c in classes])
    return classes[int(rng.choice(len(classes), p=weights / weights.sum()))]


def place_singularities(cls: FingerClass, width: int, height: int, rng: np.random.Generator) -> Singularities:
    """Put cores and deltas where they sit on real fingers of that class, with some jitter."""
    # Where the pattern sits, and how far its delta lies from its core, vary a lot between real fingers;
    # narrow ranges here made different synthetic fingers look alike to the matcher (impostor scores far
    # above those of real fingers).
    cx = width / 2 + rng.uniform(-30, 30)
    cy = height * 0.45 + rng.uniform(-30, 30)
    if cls is FingerClass.ARCH:
        return Singularities((), ())
    if cls is FingerClass.TENTED_ARCH:
        gap = rng.uniform(30, 70)
        return Singularities(((cx, cy),), ((cx + rng.uniform(-10, 10), cy + gap),))
    if cls in (FingerClass.LEFT_LOOP, FingerClass.RIGHT_LOOP):
        side = 1.0 if cls is FingerClass.LEFT_LOOP else -1.0
        core = (cx - side * rng.uniform(0, 25), cy - rng.uniform(0, 20))
        delta = (cx + side * rng.uniform(50, 120), cy + rng.uniform(60, 130))
        return Singularities((core,), (delta,))
    # whorl: two cores stacked near the centre, a delta low on each side
    tilt = rng.uniform(-12, 12)
    sep = rng.uniform(10, 34)
    cores = ((cx + tilt, cy - sep / 2), (cx - tilt, cy + sep / 2))
    deltas = (
        (cx - rng.uniform(60, 115), cy + rng.uniform(65, 125)),
        (cx + rng.uniform(60, 115), cy + rng.uniform(65, 125)),
    )
    return Singularities(cores, deltas)


def orientation_field(
    sing: Singularities, width: int, height: int, rng: np.random.Generator | None = None
) -> np.ndarray:
    """Ridge tangent angle (radians, modulo pi) at every pixel of a height x width master."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    if not sing.cores and not sing.deltas:
        return _arch_field(xs, ys, width, height, rng)
    z = xs + 1j * ys
    theta = np.zeros_like(xs)
    for cx, cy in sing.cores:
        theta += np.angle(z - complex(cx, cy))
    for dx, dy in sing.deltas:
        theta -= np.angle(z - complex(dx, dy))
    return np.mod(0.5 * theta, np.pi)


def perturb_field(
    theta: np.ndarray, rng: np.random.Generator, amplitude: float = 0.3, sigma: float = 35.0
) -> np.ndarray:
    """Bend the model field by a smooth random angle (radians, standard deviation ``amplitude``, correlated
    over ``sigma`` pixels): the zero-pole model alone gives every finger of a class the same flow, which made
    impostor scores between synthetic fingers far higher than between real ones. A smooth addition to the
    angle keeps the singular points where they are."""
    from scipy import ndimage

    noise = ndimage.gaussian_filter(rng.standard_normal(theta.shape), sigma, mode="reflect")
    noise /= float(noise.std()) + 1e-9
    return np.mod(theta + amplitude * noise, np.pi)


def _arch_field(
    xs: np.ndarray, ys: np.ndarray, width: int, height: int, rng: np.random.Generator | None
) -> np.ndarray:
    """Plain arch: ridges rise in the middle, steepest at mid-height, flattening above and below."""
    amp = 2.0 if rng is None else rng.uniform(1.6, 2.6)
    yc = height * (0.5 if rng is None else rng.uniform(0.4, 0.6))
    u = (xs - width / 2) / (width / 3)
    slope = amp * u * np.exp(-(u**2)) * np.exp(-(((ys - yc) / (height / 2.5)) ** 2))
    # y grows downward: a ridge peaking in the middle has dy/dx > 0 right of the centre
    return np.mod(np.arctan(slope), np.pi)
