"""Per-window Cmax / Tmax over stored concentrations (numba, parallel over subjects).

Tie rule (documented in ketasim.metrics): Tmax is the first time the concentration
comes within a relative ``tie`` of the window maximum. One pass for the maximum and
one for the first time within the tolerance, both over contiguous rows.
"""

import numpy as np
from numba import njit, prange


@njit(parallel=True, cache=True)
def window_peaks(c, t, edges, starts, tie, cmax, tmax):
    """``c`` (S, K, T); ``edges`` (W+1,) grid indices; writes cmax, tmax (S, K, W)."""
    S, K, _ = c.shape
    W = edges.shape[0] - 1
    for s in prange(S):
        for k in range(K):
            for w in range(W):
                a = edges[w]
                b = edges[w + 1]
                if b <= a:
                    cmax[s, k, w] = np.nan
                    tmax[s, k, w] = np.nan
                    continue
                top = c[s, k, a]
                for j in range(a + 1, b):
                    if c[s, k, j] > top:
                        top = c[s, k, j]
                thr = top * (1.0 - tie)
                for j in range(a, b):
                    if c[s, k, j] >= thr:
                        tmax[s, k, w] = t[j] - starts[w]
                        break
                cmax[s, k, w] = top
