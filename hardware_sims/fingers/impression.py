"""Impressions: what one touch of a master finger on a 500 dpi sensor looks like.

Per touch (SFinGe's acquisition model): the contact region (an irregular ellipse, smaller and off-centre for
a partial touch), a rigid translation and rotation, a non-linear plastic distortion that leaves the centre
of contact in place and drags the skin around it (Cappelli, Maio, Maltoni 2001), the pressure falling off
towards the rim, dry skin (thin, broken ridges) or wet skin (thick, merged ridges), smudge, background and
sensor noise. Everything is drawn from `numpy.random.default_rng([seed, k, ...])`, so impression (seed, k)
is always the same image.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from hardware_sims.fingers.master import MasterFinger, master_finger

SENSOR_WIDTH = 256  # R30x image: 256 pixels wide,
SENSOR_HEIGHT = 288  # 288 high, about 500 dpi


class SkinQuality(enum.StrEnum):
    """How the finger meets the sensor; the control socket and the CLI use these names."""

    GOOD = "good"
    DRY = "dry"
    WET = "wet"
    PARTIAL = "partial"
    SMUDGED = "smudged"


@dataclass(frozen=True, slots=True)
class TouchParameters:
    """The drawn geometry of one touch, returned with the image so tests can reason about it."""

    dx: float  # translation of the finger on the sensor, pixels
    dy: float
    rotation_deg: float
    distortion_deg: float  # rotation of the skin far from the contact centre, relative to the centre
    distortion_shift: tuple[float, float]
    contact_centre: tuple[float, float]
    contact_axes: tuple[float, float]


def _smooth(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="reflect")
    return (field - field.mean()) / (field.std() + 1e-9)


def draw_touch(rng: np.random.Generator, quality: SkinQuality, width: int, height: int) -> TouchParameters:
    """Random but plausible placement of the finger on the glass."""
    partial = quality is SkinQuality.PARTIAL
    shift = 45.0 if partial else 25.0
    cc = (width / 2 + rng.uniform(-15, 15), height / 2 + rng.uniform(-15, 15))
    axes = (rng.uniform(92, 125), rng.uniform(115, 150))
    if partial:
        axes = (rng.uniform(62, 80), rng.uniform(75, 95))
        cc = (cc[0] + rng.choice([-1, 1]) * rng.uniform(35, 60), cc[1] + rng.uniform(-50, 50))
    return TouchParameters(
        dx=float(rng.uniform(-shift, shift)),
        dy=float(rng.uniform(-shift, shift)),
        rotation_deg=float(rng.uniform(-20, 20)),
        distortion_deg=float(rng.uniform(-7, 7)),
        distortion_shift=(float(rng.uniform(-8, 8)), float(rng.uniform(-8, 8))),
        contact_centre=(float(cc[0]), float(cc[1])),
        contact_axes=(float(axes[0]), float(axes[1])),
    )


def _source_coordinates(
    touch: TouchParameters, master: MasterFinger, width: int, height: int
) -> tuple[np.ndarray, np.ndarray]:
    """For every sensor pixel, the master pixel it sees (plastic distortion, then the rigid motion)."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    ccx, ccy = touch.contact_centre
    # plastic distortion: identity inside r1, a small rigid motion of the skin beyond r2, smooth between
    rx, ry = xs - ccx, ys - ccy
    r = np.hypot(rx, ry)
    r1, r2 = 35.0, 130.0
    t = np.clip((r - r1) / (r2 - r1), 0.0, 1.0)
    strength = t * t * (3 - 2 * t)
    b = np.deg2rad(touch.distortion_deg)
    dxd = (np.cos(b) * rx - np.sin(b) * ry + touch.distortion_shift[0]) - rx
    dyd = (np.sin(b) * rx + np.cos(b) * ry + touch.distortion_shift[1]) - ry
    xs = xs + strength * dxd
    ys = ys + strength * dyd
    # rigid motion: rotate about the sensor centre and translate into the master frame
    a = np.deg2rad(touch.rotation_deg)
    ux, uy = xs - width / 2 - touch.dx, ys - height / 2 - touch.dy
    mx = np.cos(a) * ux - np.sin(a) * uy + master.ridges.shape[1] / 2
    my = np.sin(a) * ux + np.cos(a) * uy + master.ridges.shape[0] / 2
    return mx, my


def _contact(
    touch: TouchParameters, rng: np.random.Generator, width: int, height: int
) -> tuple[np.ndarray, np.ndarray]:
    """Contact mask and pressure (1 in the middle, falling to 0 at an irregular rim)."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    ax, ay = touch.contact_axes
    ccx, ccy = touch.contact_centre
    rho = np.sqrt(((xs - ccx) / ax) ** 2 + ((ys - ccy) / ay) ** 2)
    rho = rho + 0.06 * _smooth(rng, (height, width), 22.0)
    pressure = np.clip((1.0 - rho) / 0.25, 0.0, 1.0)
    return pressure > 0, pressure


def render(
    master: MasterFinger,
    touch: TouchParameters,
    quality: SkinQuality,
    rng: np.random.Generator,
    width: int = SENSOR_WIDTH,
    height: int = SENSOR_HEIGHT,
) -> np.ndarray:
    """Draw the sensor image (uint8, height x width, dark ridges on a light background)."""
    mx, my = _source_coordinates(touch, master, width, height)
    coords = np.stack([my, mx])
    ridges = ndimage.map_coordinates(master.ridges, coords, order=1, mode="constant", cval=-1.0)
    skin = ndimage.map_coordinates(master.mask.astype(np.float32), coords, order=1, mode="constant") > 0.5
    contact, pressure = _contact(touch, rng, width, height)
    contact &= skin
    # every touch differs a little in moisture and pressure, even for "good" skin
    skin_bias = {SkinQuality.DRY: 0.35, SkinQuality.WET: -0.45}.get(quality, 0.0) + rng.uniform(-0.15, 0.15)
    bias = skin_bias + 0.18 * _smooth(rng, (height, width), 20.0)
    # light pressure at the rim prints only the ridge crests
    ink = 1.0 / (1.0 + np.exp(-6.0 * (ridges - bias - 0.7 * (1.0 - pressure))))
    if quality is SkinQuality.DRY:
        breaks = _smooth(rng, (height, width), 2.0) > 0.6
        ink = np.where(breaks, ink * 0.25, ink)
    elif quality is SkinQuality.WET:
        blots = np.clip(_smooth(rng, (height, width), 4.0) - 1.2, 0.0, 1.0)
        ink = np.clip(ink + blots, 0.0, 1.0)
    ink = ink * contact * np.clip(pressure * 2.5, 0.0, 1.0)
    if quality is SkinQuality.SMUDGED:
        ink = ndimage.gaussian_filter(ink, (1.2, 2.6))
        ink = 0.55 * ink + 0.25 * np.clip(_smooth(rng, (height, width), 6.0), 0.0, 1.0) * contact
    else:
        ink = ndimage.gaussian_filter(ink, 0.6)
    background = rng.uniform(205, 240) + 8.0 * _smooth(rng, (height, width), 60.0)
    contrast = rng.uniform(150, 185)
    grey = background - contrast * ink + rng.normal(0.0, rng.uniform(4.0, 12.0), (height, width))
    return np.clip(np.rint(grey), 0, 255).astype(np.uint8)


def impression(
    seed: int,
    k: int = 0,
    quality: SkinQuality | str = SkinQuality.GOOD,
    width: int = SENSOR_WIDTH,
    height: int = SENSOR_HEIGHT,
) -> np.ndarray:
    """Impression k of finger `seed`, 8-bit grey (height x width); the same inputs give the same image."""
    return impression_with_touch(seed, k, quality, width, height)[0]


def impression_with_touch(
    seed: int,
    k: int = 0,
    quality: SkinQuality | str = SkinQuality.GOOD,
    width: int = SENSOR_WIDTH,
    height: int = SENSOR_HEIGHT,
) -> tuple[np.ndarray, TouchParameters]:
    """As `impression`, also returning the drawn touch geometry."""
    if seed < 0 or k < 0:
        raise ValueError(f"finger seed and impression number must be >= 0, got seed={seed} k={k}")
    skin = SkinQuality(quality)
    master = master_finger(seed)
    rng = np.random.default_rng([0x1A9, seed, k, list(SkinQuality).index(skin)])
    touch = draw_touch(rng, skin, width, height)
    return render(master, touch, skin, rng, width, height), touch
