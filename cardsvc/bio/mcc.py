"""Minutia Cylinder-Code (Cappelli, Ferrara, Maltoni, IEEE TPAMI 32(12), 2010): cylinders and LSS-R scoring.

Low-level layer under `cardsvc.bio.matcher` (which adds score calibration, card quantisation and search).
Each valid minutia gets a cylinder: a 16x16 spatial grid of radius 70 px around it, in the minutia's own
frame, times 6 angular sections; a cell's bit says whether neighbouring minutiae with that relative direction
lie near the cell. Cylinders are rotation- and translation-invariant, so two impressions compare without
alignment. The global score is LSS-R: the best-matching cylinder pairs, relaxed by the geometric consistency
of every pair with every other (this relaxation is what beats bozorth3 on FVC2002; plain LSS does not).

Speed: similarities of all cylinder pairs come from three small float32 matrix products over 0/1 vectors
(value AND value, value AND validity, validity AND validity), which equals the XOR + popcount formula of the
bit-packed MCC exactly; there is no Python loop per cylinder pair.

All geometry here is in a right-handed frame: x right, y UP (image y negated), angles counter-clockwise,
which matches the ISO angle convention of `cardsvc.bio.template` once y is negated.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.special import erf

from cardsvc.bio.errors import MatcherError
from cardsvc.bio.template import FingerTemplate

F32 = NDArray[np.float32]

TWO_PI = 2.0 * math.pi


@dataclass(frozen=True)
class MccParams:
    """Parameters of the cylinders and of LSS-R (values of BIOMETRICS.md, after the paper)."""

    radius: float = 70.0  # px: cylinder radius R
    spatial_cells: int = 16  # N_S
    angular_cells: int = 6  # N_D
    sigma_s: float = 28.0 / 3.0
    sigma_d: float = 2.0 * math.pi / 9.0
    mu_psi: float = 0.01  # a cell's bit is set when its contribution reaches mu_psi (sigmoid at 0.5)
    hull_margin: float = 40.0  # px: omega, hull enlargement (paper 50; 40 measured better on FVC2002 B)
    min_valid_cells: float = 0.75  # fraction of the disc's cells that must be valid
    min_neighbours: int = 2  # minutiae within R + 3 sigma_s for a cylinder to be valid
    min_matchable: float = 0.60  # fraction of disc cells valid in both cylinders to compare them
    max_direction_difference: float = math.pi / 2
    min_np: int = 3  # paper 4-12; 3-10 measured better on FVC2002 B (mindtct minutiae)
    max_np: int = 10
    mu_p: float = 20.0
    tau_p: float = 0.4
    relax_iterations: int = 5
    relax_weight: float = 0.5  # w_R
    mu_rho: tuple[float, float, float] = (5.0, math.pi / 12, math.pi / 12)
    tau_rho: tuple[float, float, float] = (-1.6, -30.0, -30.0)

    @property
    def cell_size(self) -> float:
        return 2.0 * self.radius / self.spatial_cells


@functools.lru_cache(maxsize=4)
def _disc_cells(params: MccParams) -> NDArray[np.float64]:
    """Centres (x, y) of the spatial cells inside the cylinder's disc, in the minutia's frame."""
    ns, ds = params.spatial_cells, params.cell_size
    ticks = (np.arange(ns) - (ns - 1) / 2.0) * ds
    gx, gy = np.meshgrid(ticks, ticks, indexing="xy")
    centres = np.stack([gx.ravel(), gy.ravel()], axis=1)
    return centres[np.hypot(centres[:, 0], centres[:, 1]) <= params.radius]


def _wrap(angle: NDArray[np.float64]) -> NDArray[np.float64]:
    """Angle difference normalised to [-pi, pi)."""
    return (angle + math.pi) % TWO_PI - math.pi


_DISC_DIRECTIONS = 24  # the margin disc as a 24-gon: within 1% of the true Minkowski sum


def _inside_enlarged_hull(points: NDArray[np.float64], sites: NDArray[np.float64], margin: float) -> NDArray:
    """Whether each point lies in the convex hull of `sites` grown by `margin` (Minkowski sum with a disc).

    The grown hull is the hull of every site moved by `margin` in 24 directions, tested with one product of
    the points against the hull's edge normals.
    """
    from scipy.spatial import ConvexHull, QhullError

    phi = np.arange(_DISC_DIRECTIONS) * (TWO_PI / _DISC_DIRECTIONS)
    ring = margin * np.stack([np.cos(phi), np.sin(phi)], axis=1)
    try:
        core = sites[ConvexHull(sites).vertices]
    except (QhullError, ValueError):  # fewer than 3 sites, or all on a line
        core = sites
    grown = (core[:, None, :] + ring[None, :, :]).reshape(-1, 2)
    hull = ConvexHull(grown)
    # hull.equations: rows (a, b, c) with a x + b y + c <= 0 inside
    eq = hull.equations
    return np.asarray((points @ eq[:, :2].T + eq[:, 2]).max(axis=1) <= 1e-9)


_blas_depth = 0
_blas_libs: list[Any] | None = None


def _blas_controllers() -> list[Any]:
    """The BLAS libraries loaded in this process (threadpoolctl), found once; [] without threadpoolctl."""
    global _blas_libs
    if _blas_libs is None:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:  # correct without it, only slower on multi-core machines
            _blas_libs = []
        else:
            _blas_libs = [c for c in ThreadpoolController().lib_controllers if c.user_api == "blas"]
    return _blas_libs


@contextlib.contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Run the enclosed matrix products on one BLAS thread, then restore the previous setting.

    The cylinder products are tiny (about 40 x 1248 x 40): OpenBLAS's thread hand-off costs more than it
    saves, five times more on a busy two-core machine. Entering costs a few microseconds (direct calls to
    the libraries' set_num_threads); nested uses cost nothing.
    """
    global _blas_depth
    if _blas_depth:
        _blas_depth += 1
        try:
            yield
        finally:
            _blas_depth -= 1
        return
    libs = _blas_controllers()
    previous = [lib.get_num_threads() for lib in libs]
    for lib in libs:
        lib.set_num_threads(1)
    _blas_depth += 1
    try:
        yield
    finally:
        _blas_depth -= 1
        for lib, n in zip(libs, previous, strict=True):
            lib.set_num_threads(n)


ENCODING_MAGIC = b"MCC1"


@dataclass(eq=False)
class EncodedTemplate:
    """The valid cylinders of one template, bit-packed, with their minutiae (y-up frame).

    `to_bytes()` / `from_bytes()` give a compact, versioned serialisation (it is biometric data: store it
    encrypted like the template it came from). The float32 unpacked views are built lazily for matching.
    """

    xy: NDArray[np.float32]  # (n, 2) positions of the minutiae whose cylinders are valid
    theta: NDArray[np.float32]  # (n,) directions, radians
    values: NDArray[np.uint8]  # (n, ceil(cells * N_D / 8)) packed cell bits
    validity: NDArray[np.uint8]  # (n, ceil(cells / 8)) packed spatial-cell validity
    n_minutiae: int  # minutiae in the template, valid cylinder or not
    _unpacked: tuple[F32, F32, F32, F32] | None = field(default=None, repr=False, compare=False)
    _geometry: tuple[F32, F32] | None = field(default=None, repr=False, compare=False)

    @property
    def count(self) -> int:
        return int(self.xy.shape[0])

    def unpacked(self, params: MccParams) -> tuple[F32, F32, F32, F32]:
        """(values, per-cell value counts, validity, [validity; counts] stacked) as float32 matrices."""
        if self._unpacked is None:
            ncell = _disc_cells(params).shape[0]
            nd = params.angular_cells
            vals = np.unpackbits(self.values, axis=1, count=ncell * nd).astype(np.float32)
            counts = vals.reshape(self.count, ncell, nd).sum(axis=2, dtype=np.float32)
            valid = np.unpackbits(self.validity, axis=1, count=ncell).astype(np.float32)
            self._unpacked = (vals, counts, valid, np.concatenate([valid, counts]))
        return self._unpacked

    def geometry(self) -> tuple[F32, F32]:
        """Pairwise (distance, direction difference, radial angle) of the minutiae as (3, n, n), and unit
        direction vectors (n, 2).

        LSS-R needs these for the selected pairs only; computing them once per template makes a
        comparison an indexing operation.
        """
        if self._geometry is None:
            xy = self.xy.astype(np.float64)
            th = self.theta.astype(np.float64)
            dx = xy[None, :, 0] - xy[:, None, 0]
            dy = xy[None, :, 1] - xy[:, None, 1]
            pair = np.stack(
                [np.hypot(dx, dy), _wrap(th[:, None] - th[None, :]), _wrap(th[:, None] - np.arctan2(dy, dx))],
                axis=0,
            ).astype(np.float32)
            unit = np.stack([np.cos(th), np.sin(th)], axis=1).astype(np.float32)
            self._geometry = (pair, unit)
        return self._geometry

    def detached(self) -> EncodedTemplate:
        """The same template without cached views (galleries keep only packed bits in memory)."""
        return EncodedTemplate(self.xy, self.theta, self.values, self.validity, self.n_minutiae)

    def __getstate__(self) -> dict[str, object]:
        state = dict(self.__dict__)
        state["_unpacked"] = None
        state["_geometry"] = None
        return state

    def to_bytes(self) -> bytes:
        n = self.count
        header = ENCODING_MAGIC + struct.pack(">HHHH", n, self.n_minutiae, self.values.shape[1],
                                              self.validity.shape[1])  # fmt: skip
        return (
            header
            + self.xy.astype(">f4").tobytes()
            + self.theta.astype(">f4").tobytes()
            + self.values.tobytes()
            + self.validity.tobytes()
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> EncodedTemplate:
        if data[:4] != ENCODING_MAGIC or len(data) < 12:
            raise MatcherError(f"not an encoded MCC template (magic {data[:4]!r}, want {ENCODING_MAGIC!r})")
        n, n_min, vbytes, mbytes = struct.unpack_from(">HHHH", data, 4)
        expected = 12 + n * (8 + 4 + vbytes + mbytes)
        if len(data) != expected:
            raise MatcherError(f"encoded MCC template of {len(data)} bytes, header implies {expected}")
        off = 12
        xy = np.frombuffer(data, ">f4", 2 * n, off).astype(np.float32).reshape(n, 2)
        off += 8 * n
        theta = np.frombuffer(data, ">f4", n, off).astype(np.float32)
        off += 4 * n
        values = np.frombuffer(data, np.uint8, n * vbytes, off).reshape(n, vbytes).copy()
        off += n * vbytes
        validity = np.frombuffer(data, np.uint8, n * mbytes, off).reshape(n, mbytes).copy()
        return cls(xy, theta, values, validity, n_min)


def template_arrays(template: FingerTemplate) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Minutiae positions in the y-up frame and directions in radians (ISO angle, counter-clockwise)."""
    if not template.minutiae:
        return np.zeros((0, 2)), np.zeros(0)
    xy = np.array([(m.x, -m.y) for m in template.minutiae], dtype=np.float64)
    theta = np.radians(np.array([m.angle for m in template.minutiae], dtype=np.float64)) % TWO_PI
    return xy, theta


def encode(template: FingerTemplate, params: MccParams = MccParams()) -> EncodedTemplate:
    """Build the valid cylinders of a template (vectorised over minutiae, cells and neighbours)."""
    xy, theta = template_arrays(template)
    n = xy.shape[0]
    cells = _disc_cells(params)
    ncell, nd = cells.shape[0], params.angular_cells
    vbytes, mbytes = (ncell * nd + 7) // 8, (ncell + 7) // 8
    if n == 0:
        return EncodedTemplate(
            np.zeros((0, 2), np.float32), np.zeros(0, np.float32), np.zeros((0, vbytes), np.uint8),
            np.zeros((0, mbytes), np.uint8), 0,
        )  # fmt: skip
    cos_t, sin_t = np.cos(theta), np.sin(theta)
    # cell centres in the image frame: minutia position + rotation by its direction of the local grid
    gx = xy[:, None, 0] + cos_t[:, None] * cells[None, :, 0] - sin_t[:, None] * cells[None, :, 1]
    gy = xy[:, None, 1] + sin_t[:, None] * cells[None, :, 0] + cos_t[:, None] * cells[None, :, 1]
    valid_cell = _inside_enlarged_hull(np.stack([gx.ravel(), gy.ravel()], axis=1), xy, params.hull_margin)
    valid_cell = valid_cell.reshape(n, ncell)
    # cylinder validity first (enough valid cells and neighbours): only kept cylinders are built
    sig = params.sigma_s
    dist = np.hypot(xy[:, None, 0] - xy[None, :, 0], xy[:, None, 1] - xy[None, :, 1])
    neighbours = (dist <= params.radius + 3 * sig).sum(axis=1) - 1
    keep = np.nonzero(
        (valid_cell.mean(axis=1) >= params.min_valid_cells) & (neighbours >= params.min_neighbours)
    )[0]
    k = keep.size
    # spatial contribution of each neighbour t to each cell of cylinder m: squared distances by one product
    centres = np.stack([gx[keep].ravel(), gy[keep].ravel()], axis=1).astype(np.float32)
    xy32 = xy.astype(np.float32)
    d2 = (centres**2).sum(axis=1)[:, None] + (xy32**2).sum(axis=1)[None, :] - 2.0 * (centres @ xy32.T)
    d2 = d2.reshape(k, ncell, n)
    far = d2 > (3 * sig) ** 2
    spatial = np.exp(d2 * np.float32(-1.0 / (2 * sig * sig)))
    spatial *= np.float32(1.0 / (sig * math.sqrt(TWO_PI)))
    spatial[far] = 0.0
    spatial[np.arange(k), :, keep] = 0.0  # a minutia is not its own neighbour
    # directional contribution: Gaussian of the relative direction integrated over each angular section
    dd = 2 * math.pi / nd
    sector = -math.pi + (np.arange(nd) + 0.5) * dd
    rel = _wrap(theta[keep, None] - theta[None, :])  # (m, t)
    alpha = _wrap(sector[None, None, :] - rel[:, :, None])  # (m, t, k)
    s = params.sigma_d * math.sqrt(2.0)
    directional = (0.5 * (erf((alpha + dd / 2) / s) - erf((alpha - dd / 2) / s))).astype(np.float32)
    contribution = np.matmul(spatial, directional)  # (m, cells, t) x (m, t, k)
    bits = (contribution >= params.mu_psi) & valid_cell[keep][:, :, None]
    return EncodedTemplate(
        xy=xy[keep].astype(np.float32),
        theta=theta[keep].astype(np.float32),
        values=np.packbits(bits.reshape(-1, ncell * nd), axis=1),
        validity=np.packbits(valid_cell[keep], axis=1),
        n_minutiae=n,
    )


def local_similarities(a: EncodedTemplate, b: EncodedTemplate, params: MccParams = MccParams()) -> F32:
    """Gamma: bit-MCC similarity 1 - sqrt(|ca^cb|) / (sqrt|ca| + sqrt|cb|) over commonly valid cells.

    |ca ^ cb| restricted to cells valid in both = |ca & vb| + |va & cb| - 2 |ca & cb|, each a 0/1 dot product.
    """
    va, ca, ma, _ = a.unpacked(params)
    vb, _, mb, mcb = b.unpacked(params)
    nb_ = vb.shape[0]
    both = va @ vb.T  # bits set in both (both cells are then valid)
    na = ca @ mb.T  # a's bits on cells valid in b
    common_nb = ma @ mcb.T  # [cells valid in both | b's bits on cells valid in a]
    common, nb = common_nb[:, :nb_], common_nb[:, nb_:]
    cosines = a.geometry()[1] @ b.geometry()[1].T
    min_common = params.min_matchable * ma.shape[1]
    cos_limit = math.cos(params.max_direction_difference) - 1e-6
    jit = _jit()
    if jit is not None:
        return np.asarray(jit.gamma_kernel(both, na, common_nb, cosines, min_common, cos_limit))
    nx = np.maximum(na + nb - 2.0 * both, 0.0)
    denom = np.sqrt(na) + np.sqrt(nb)
    empty = denom == 0  # no bit set on any commonly valid cell: nothing to compare, similarity 0
    denom[empty] = 1.0
    gamma = 1.0 - np.sqrt(nx) / denom
    # too few cells valid in both, or directions more than 90 degrees apart (cos < 0): no similarity
    gamma[empty | (common < min_common) | (cosines < cos_limit)] = 0.0
    return gamma


class _ParamArrays(dict[MccParams, NDArray[np.float64]]):
    """mu_rho / tau_rho as float64 arrays per parameter set, for the compiled kernel."""

    def __init__(self, field_name: str) -> None:
        super().__init__()
        self.field_name = field_name

    def __missing__(self, params: MccParams) -> NDArray[np.float64]:
        value = np.array(getattr(params, self.field_name), dtype=np.float64)
        self[params] = value
        return value


_RHO_MU = _ParamArrays("mu_rho")
_RHO_TAU = _ParamArrays("tau_rho")
_JIT_STATE: dict[str, Any] = {}


def _jit() -> Any:
    """The numba kernels (cardsvc.bio._mcc_jit) when numba is installed and CARDSVC_MCC_JIT is not 0."""
    if "module" not in _JIT_STATE:
        module: Any = None
        if os.environ.get("CARDSVC_MCC_JIT", "1") != "0":
            try:
                from cardsvc.bio import _mcc_jit as module
            except ImportError:  # numba absent: the numpy path gives the same scores, slower
                module = None
        _JIT_STATE["module"] = module
    return _JIT_STATE["module"]


def use_jit(enabled: bool) -> None:
    """Switch the numba kernels on or off for this process (tests compare both paths)."""
    _JIT_STATE.clear()
    if not enabled:
        _JIT_STATE["module"] = None


@functools.lru_cache(maxsize=4)
def _rho_affine(params: MccParams) -> tuple[F32, F32]:
    """(-tau, tau * mu) per compatibility term, shaped (3, 1, 1): the sigmoid exponent is d * a + b."""
    tau = np.array(params.tau_rho, dtype=np.float32).reshape(3, 1, 1)
    mu = np.array(params.mu_rho, dtype=np.float32).reshape(3, 1, 1)
    return -tau, tau * mu


def pairs_to_consider(na: int, nb: int, params: MccParams) -> int:
    """n_P: how many relaxed pairs make the global score, by a sigmoid of the smaller cylinder count."""
    z = 1.0 / (1.0 + math.exp(-params.tau_p * (min(na, nb) - params.mu_p)))
    return params.min_np + round(z * (params.max_np - params.min_np))


def lssr_score(
    a: EncodedTemplate, b: EncodedTemplate, params: MccParams = MccParams(), gamma: F32 | None = None
) -> float:
    """Global similarity in [0, 1]: Local Similarity Sort with Relaxation (LSS-R)."""
    if a.count == 0 or b.count == 0:
        return 0.0
    if gamma is None:
        gamma = local_similarities(a, b, params)
    n_p = pairs_to_consider(a.count, b.count, params)
    jit = _jit()
    if jit is not None:
        return float(
            jit.lssr_kernel(gamma, a.geometry()[0], b.geometry()[0], n_p, params.relax_weight,
                            params.relax_iterations, _RHO_MU[params], _RHO_TAU[params])
        )  # fmt: skip
    n_r = min(a.count, b.count)
    flat = gamma.ravel()
    if n_r < flat.size:
        top = np.argpartition(flat, flat.size - n_r)[flat.size - n_r :]
    else:
        top = np.arange(flat.size)
    top = top[flat[top] > 0]
    if top.size < 2:
        return 0.0  # a single pair has nothing to be consistent with
    ia, ib = np.divmod(top, gamma.shape[1])
    lam0 = flat[top]
    pa = a.geometry()[0][:, ia[:, None], ia[None, :]]  # (3, r, r): distance, direction diff, radial angle
    pb = b.geometry()[0][:, ib[:, None], ib[None, :]]
    d = np.abs(pa - pb)
    np.minimum(d[1:], np.float32(TWO_PI) - d[1:], out=d[1:])
    # rho = product of the three sigmoids Z(d; mu, tau) = 1 / (1 + exp(-tau (d - mu)))
    slope, offset = _rho_affine(params)
    z = np.exp(np.minimum(d * slope + offset, 25.0))
    z += 1.0
    rho = 1.0 / (z[0] * z[1] * z[2])
    # one relaxation step: lam <- w lam + (1 - w) / (n_R - 1) sum_k rho_tk lam_k, as one matrix
    w = params.relax_weight
    rho *= (1 - w) / (lam0.size - 1)
    np.fill_diagonal(rho, w)
    lam: NDArray[Any] = lam0
    for _ in range(params.relax_iterations):
        lam = rho @ lam
    efficiency = lam / lam0
    k = min(n_p, lam.size)
    best = np.argpartition(-efficiency, k - 1)[:k]
    return float(lam[best].sum() / n_p)


PREFILTER_DIMS = 64
PREFILTER_SEED = 2010


@functools.lru_cache(maxsize=4)
def _projection(params: MccParams) -> F32:
    """A fixed random projection of cylinder bits (Johnson-Lindenstrauss): same seed, same index."""
    dims = _disc_cells(params).shape[0] * params.angular_cells
    rng = np.random.default_rng(PREFILTER_SEED)
    return rng.standard_normal((dims, PREFILTER_DIMS)).astype(np.float32)


PREFILTER_DIRECTION_WEIGHT = 0.5  # adds 0.5 cos(direction difference) to the cylinder cosine


def prefilter_features(t: EncodedTemplate, params: MccParams = MccParams()) -> F32:
    """Per cylinder: a unit 64-d projection of its bits, then sqrt(w) (cos theta, sin theta).

    The dot product of two such rows is cos(cylinders) + w cos(direction difference): LSS in miniature,
    folded into one matrix product (measured on FVC2002 B: ranks the mate first as often as true LSS).
    """
    projection = _projection(params)
    values = np.unpackbits(t.values, axis=1, count=projection.shape[0]).astype(np.float32)
    x = values @ projection
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-6)
    th = t.theta.astype(np.float32)
    w = math.sqrt(PREFILTER_DIRECTION_WEIGHT)
    return np.concatenate([x, w * np.cos(th)[:, None], w * np.sin(th)[:, None]], axis=1).astype(np.float32)


PREFILTER_TOP = 10


def prefilter_scores(probe: F32, features: F32, offsets: NDArray[np.intp], counts: NDArray[np.intp]) -> F32:
    """Cheap similarity of a probe to every gallery template at once.

    `features` stacks the cylinders of all gallery templates; template i owns rows offsets[i] to
    offsets[i] + counts[i]. Each probe cylinder takes its best match within a template; the template's score
    is the mean of the best PREFILTER_TOP of those.
    """
    n = counts.shape[0]
    if probe.shape[0] == 0 or features.shape[0] == 0:
        return np.zeros(n, np.float32)
    sim = probe @ features.T  # (P, C)
    safe = np.minimum(offsets, features.shape[0] - 1)
    best = np.maximum.reduceat(sim, safe, axis=1)  # (P, N)
    top = min(PREFILTER_TOP, best.shape[0])
    part = np.partition(best, best.shape[0] - top, axis=0)[best.shape[0] - top :]
    scores = part.mean(axis=0)
    scores[counts == 0] = -np.inf
    return np.asarray(scores, dtype=np.float32)
