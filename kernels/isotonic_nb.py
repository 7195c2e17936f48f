"""Isotonic regression kernels (Numba): pooling of tied inputs and pool-adjacent-violators (PAVA).

    ux, uy, uw = pool_ties_nb(x, y, w, order)   x[order] ascending; (n,) float64 / int64 -> (m,), m <= n
    fitted     = pava_nb(uy, uw)            (m,) -> (m,) non-decreasing least-squares fit

Both are O(n) single passes over arrays sorted by the caller (`bot4jax.validation.calibration`
sorts with NumPy). PAVA solves

    min_f  sum_i w_i (y_i - f_i)^2   subject to  f_1 <= f_2 <= ... <= f_m

with a stack of blocks: each new point starts a block, and while the block below has a larger
mean than the top one the two merge (weighted mean, summed weight). Every block's fitted value is
the weighted mean of its points, so sum_i w_i f_i = sum_i w_i y_i. Weights must be > 0.
"""
from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def pool_ties_nb(x, y, w, order):
    """Visit the points in the order `order` (a permutation sorting x ascending, e.g. np.argsort(x))
    and merge runs of equal x: y becomes the w-weighted mean, w the sum. Reading through `order`
    here saves gathering three sorted copies first."""
    n = order.shape[0]
    ux = np.empty(n)
    uy = np.empty(n)
    uw = np.empty(n)
    m = 0
    i = 0
    while i < n:
        xi = x[order[i]]
        sw = 0.0
        swy = 0.0
        while i < n and x[order[i]] == xi:
            j = order[i]
            sw += w[j]
            swy += w[j] * y[j]
            i += 1
        ux[m] = xi
        uy[m] = swy / sw
        uw[m] = sw
        m += 1
    return ux[:m], uy[:m], uw[:m]


@njit(cache=True, nogil=True)
def pava_nb(y, w):
    """Non-decreasing weighted least-squares fit of y (in the given order); w > 0. Returns (m,)."""
    m = y.shape[0]
    # block k covers points start[k] .. start[k + 1] - 1 with weight bw[k] and mean bmean[k]
    start = np.empty(m + 1, dtype=np.int64)
    bw = np.empty(m)
    bmean = np.empty(m)
    k = -1
    for i in range(m):
        k += 1
        start[k] = i
        bw[k] = w[i]
        bmean[k] = y[i]
        while k > 0 and bmean[k - 1] > bmean[k]:
            wsum = bw[k - 1] + bw[k]
            # the weighted mean of the union, written as an update of the lower block's mean
            bmean[k - 1] += (bmean[k] - bmean[k - 1]) * (bw[k] / wsum)
            bw[k - 1] = wsum
            k -= 1
    start[k + 1] = m
    out = np.empty(m)
    for b in range(k + 1):
        for i in range(start[b], start[b + 1]):
            out[i] = bmean[b]
    return out
