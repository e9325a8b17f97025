"""Numba kernels for the element-wise tail of an MCC comparison (optional: `mcc` falls back to numpy).

The matrix products stay in BLAS; what numba replaces is the ~40 small numpy calls per comparison that
turn the products into local similarities and run LSS-R (selection, compatibility, relaxation). Same
arithmetic as the numpy path in `cardsvc.bio.mcc` (float64 here; the tests compare the two).
Compiled on first use and cached beside this module (`cache=True`).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

TWO_PI = 2.0 * math.pi


@njit(cache=True)
def gamma_kernel(both, na, common_nb, cosines, min_common, cos_limit):  # type: ignore[no-untyped-def]
    """Local similarities from the 0/1 dot products (see mcc.local_similarities)."""
    n_a, n_b = both.shape
    out = np.zeros((n_a, n_b), np.float32)
    for i in range(n_a):
        for j in range(n_b):
            if common_nb[i, j] < min_common or cosines[i, j] < cos_limit:
                continue
            a = na[i, j]
            b = common_nb[i, n_b + j]
            den = math.sqrt(a) + math.sqrt(b)
            if den <= 0.0:
                continue
            nx = a + b - 2.0 * both[i, j]
            if nx < 0.0:
                nx = 0.0
            out[i, j] = 1.0 - math.sqrt(nx) / den
    return out


@njit(cache=True)
def _sigmoid_reciprocal(d, mu, tau):  # type: ignore[no-untyped-def]
    x = -tau * (d - mu)
    if x > 25.0:
        x = 25.0
    return 1.0 + math.exp(x)


@njit(cache=True)
def _kth_largest(values, k):  # type: ignore[no-untyped-def]
    """The k-th largest value (1-based) by quickselect on a copy; small code, so a fast compile."""
    a = values.copy()
    lo, hi = 0, a.size - 1
    target = a.size - k  # index in ascending order
    while lo < hi:
        pivot = a[(lo + hi) // 2]
        i, j = lo, hi
        while i <= j:
            while a[i] < pivot:
                i += 1
            while a[j] > pivot:
                j -= 1
            if i <= j:
                a[i], a[j] = a[j], a[i]
                i += 1
                j -= 1
        if target <= j:
            hi = j
        elif target >= i:
            lo = i
        else:
            break
    return a[target]


@njit(cache=True)
def lssr_kernel(gamma, geo_a, geo_b, n_p, w, iterations, mu, tau):  # type: ignore[no-untyped-def]
    """LSS-R global score from the local similarity matrix and the pair geometry of both templates."""
    n_a, n_b = gamma.shape
    n_r = min(n_a, n_b)
    flat = gamma.ravel()
    size = flat.size
    threshold = _kth_largest(flat, n_r) if n_r < size else -1.0
    ia = np.empty(n_r, np.int64)
    ib = np.empty(n_r, np.int64)
    lam0 = np.empty(n_r, np.float64)
    r = 0
    for idx in range(size):  # strictly above the n_R-th value, then ties, positive only
        v = flat[idx]
        if v > threshold and v > 0.0 and r < n_r:
            ia[r] = idx // n_b
            ib[r] = idx % n_b
            lam0[r] = v
            r += 1
    for idx in range(size):
        if r >= n_r:
            break
        v = flat[idx]
        if v == threshold and v > 0.0:
            ia[r] = idx // n_b
            ib[r] = idx % n_b
            lam0[r] = v
            r += 1
    if r < 2:
        return 0.0
    scale = (1.0 - w) / (r - 1)
    rho = np.empty((r, r))
    for t in range(r):
        at, bt = ia[t], ib[t]
        for k in range(r):
            if t == k:
                rho[t, k] = w
                continue
            ak, bk = ia[k], ib[k]
            d0 = abs(geo_a[0, at, ak] - geo_b[0, bt, bk])
            d1 = abs(geo_a[1, at, ak] - geo_b[1, bt, bk])
            d1 = min(d1, TWO_PI - d1)
            d2 = abs(geo_a[2, at, ak] - geo_b[2, bt, bk])
            d2 = min(d2, TWO_PI - d2)
            z = (
                _sigmoid_reciprocal(d0, mu[0], tau[0])
                * _sigmoid_reciprocal(d1, mu[1], tau[1])
                * _sigmoid_reciprocal(d2, mu[2], tau[2])
            )
            rho[t, k] = scale / z
    lam = lam0[:r].copy()
    nxt = np.empty(r)
    for _ in range(iterations):
        for t in range(r):
            acc = 0.0
            for k in range(r):
                acc += rho[t, k] * lam[k]
            nxt[t] = acc
        lam[:] = nxt
    # the mean over n_P of the relaxed values of the k most efficient pairs (k passes: k <= 10)
    efficiency = lam / lam0[:r]
    taken = np.zeros(r, np.bool_)
    total = 0.0
    for _ in range(min(n_p, r)):
        best = -1
        for t in range(r):
            if not taken[t] and (best < 0 or efficiency[t] > efficiency[best]):
                best = t
        taken[best] = True
        total += lam[best]
    return total / n_p
