"""Master fingerprints: the finger's whole ridge pattern, grown by iterative Gabor filtering (SFinGe).

A noise seed image is filtered again and again with Gabor filters tuned, pixel by pixel, to the local ridge
orientation and frequency; after a handful of rounds the noise has organised itself into ridges that follow
the field, and the places where two ridge trains disagree become minutiae, just as in SFinGe. The filters
are applied in the frequency domain: the image is transformed once per round and each (orientation,
frequency) bank filter costs one inverse FFT; a pixel takes the blend of its two nearest orientation bins
and two nearest frequency bins. A master is about 0.25 s of numpy on one core and is cached.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from scipy import fft as sfft
from scipy import ndimage

from hardware_sims.fingers.orientation import (
    FingerClass,
    Singularities,
    orientation_field,
    perturb_field,
    pick_class,
    place_singularities,
)

MASTER_WIDTH = 320  # pixels at 500 dpi: wider and taller than the 256 x 288 sensor window so that
MASTER_HEIGHT = 352  # impressions can be moved and rotated over it
N_ORIENTATIONS = 12
PERIODS = (7.5, 9.5, 11.5)  # ridge periods (pixels) of the filter bank; 500 dpi fingers run 8-11 px
ROUNDS = 8


@dataclass(frozen=True, slots=True)
class MasterFinger:
    """One synthetic finger: its ridge pattern in [-1, 1] (ridges positive) and how it was drawn."""

    seed: int
    finger_class: FingerClass
    singularities: Singularities
    ridges: np.ndarray  # float32, MASTER_HEIGHT x MASTER_WIDTH
    mask: np.ndarray  # bool, where the finger's skin is
    orientation: np.ndarray  # float32 radians modulo pi


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Low-frequency noise with zero mean and unit standard deviation."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap")
    return (field - field.mean()) / (field.std() + 1e-9)


def frequency_map(rng: np.random.Generator, height: int, width: int, sing: Singularities) -> np.ndarray:
    """Local ridge period in pixels: wider below the core and in the tip, plus slow random drift."""
    ys = np.arange(height, dtype=np.float64)[:, None] / height
    base = rng.uniform(8.3, 9.6)
    period = base + 1.1 * (ys - 0.45) + 0.45 * _smooth_noise(rng, (height, width), 40.0)
    # ridges crowd slightly around singular points
    yy, xx = np.mgrid[0:height, 0:width]
    for px, py in (*sing.cores, *sing.deltas):
        r2 = (xx - px) ** 2 + (yy - py) ** 2
        period -= 0.6 * np.exp(-r2 / (2 * 30.0**2))
    return np.clip(period, PERIODS[0], PERIODS[-1])


def finger_mask(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """The fingertip's silhouette: a rounded top, straight-ish sides, open at the bottom."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    cx = width / 2
    half_w = width * rng.uniform(0.44, 0.49)
    top = height * rng.uniform(0.0, 0.04)
    cap = half_w * rng.uniform(1.0, 1.25)  # height of the elliptic cap
    inside_cap = ((xx - cx) / half_w) ** 2 + ((yy - (top + cap)) / cap) ** 2 <= 1.0
    body = (np.abs(xx - cx) <= half_w) & (yy >= top + cap)
    return inside_cap | body


@functools.lru_cache(maxsize=4)
def _bank(height: int, width: int) -> np.ndarray:
    """Frequency responses of the Gabor bank, shape (n_periods, n_orientations, H, W//2+1), float32."""
    fy = sfft.fftfreq(height)[:, None]
    fx = sfft.rfftfreq(width)[None, :]
    bank = np.empty((len(PERIODS), N_ORIENTATIONS, height, width // 2 + 1), dtype=np.float32)
    for i, period in enumerate(PERIODS):
        f0 = 1.0 / period
        sigma_f = 0.26 * f0  # ~5.5 px envelope; narrower or wider both made impostors look more alike
        for j in range(N_ORIENTATIONS):
            theta = np.pi * j / N_ORIENTATIONS
            nx, ny = -np.sin(theta), np.cos(theta)  # the filter oscillates across the ridge
            d1 = (fx - f0 * nx) ** 2 + (fy - f0 * ny) ** 2
            d2 = (fx + f0 * nx) ** 2 + (fy + f0 * ny) ** 2
            bank[i, j] = np.exp(-d1 / (2 * sigma_f**2)) + np.exp(-d2 / (2 * sigma_f**2))
    return bank


def _blend_weights(values: np.ndarray, grid: np.ndarray, periodic: bool) -> tuple[np.ndarray, ...]:
    """Indices and weights of the two grid points around each value (linear interpolation)."""
    n = len(grid)
    if periodic:
        pos = values / (np.pi / n)
        lo = np.floor(pos).astype(np.int64)
        w_hi = (pos - lo).astype(np.float32)
        return lo % n, (lo + 1) % n, w_hi
    pos = np.interp(values, grid, np.arange(n))
    lo = np.clip(np.floor(pos).astype(np.int64), 0, n - 2)
    w_hi = np.clip(pos - lo, 0.0, 1.0).astype(np.float32)
    return lo, lo + 1, w_hi


def grow_ridges(
    orientation: np.ndarray, period: np.ndarray, rng: np.random.Generator, rounds: int = ROUNDS
) -> np.ndarray:
    """Iterative, space-variant Gabor filtering of a noise seed into a ridge pattern in [-1, 1]."""
    height, width = orientation.shape
    bank = _bank(height, width)
    o_lo, o_hi, o_w = _blend_weights(np.mod(orientation, np.pi), np.arange(N_ORIENTATIONS), periodic=True)
    p_lo, p_hi, p_w = _blend_weights(period, np.array(PERIODS), periodic=False)
    terms: list[tuple[int, int, np.ndarray]] = []
    for pi in range(len(PERIODS)):
        w_p = np.where(p_lo == pi, 1.0 - p_w, 0.0) + np.where(p_hi == pi, p_w, 0.0)
        if not w_p.any():
            continue
        for oj in range(N_ORIENTATIONS):
            w_o = np.where(o_lo == oj, 1.0 - o_w, 0.0) + np.where(o_hi == oj, o_w, 0.0)
            weight = (w_p * w_o).astype(np.float32)
            if weight.max() > 1e-3:
                terms.append((pi, oj, weight))
    img = rng.standard_normal((height, width)).astype(np.float32)
    for _ in range(rounds):
        spectrum = sfft.rfft2(img)
        out = np.zeros((height, width), dtype=np.float32)
        for pi, oj, weight in terms:
            out += weight * sfft.irfft2(spectrum * bank[pi, oj], s=(height, width))
        scale = float(np.std(out)) + 1e-9
        img = np.tanh(2.0 * out / scale).astype(np.float32)
    return img


@functools.lru_cache(maxsize=256)
def master_finger(seed: int) -> MasterFinger:
    """The master fingerprint of finger `seed`: always the same for the same seed (cached)."""
    rng = np.random.default_rng([0x5F1, seed])
    cls = pick_class(rng)
    sing = place_singularities(cls, MASTER_WIDTH, MASTER_HEIGHT, rng)
    orientation = perturb_field(
        orientation_field(sing, MASTER_WIDTH, MASTER_HEIGHT, rng), np.random.default_rng([0x5F1, seed, 1])
    )
    period = frequency_map(rng, MASTER_HEIGHT, MASTER_WIDTH, sing)
    ridges = grow_ridges(orientation, period, rng)
    mask = finger_mask(rng, MASTER_HEIGHT, MASTER_WIDTH)
    ridges.setflags(write=False)
    mask.setflags(write=False)
    orient32 = orientation.astype(np.float32)
    orient32.setflags(write=False)
    return MasterFinger(seed, cls, sing, ridges, mask, orient32)
