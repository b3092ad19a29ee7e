"""Per-window Cmax / Tmax over stored concentrations (numba, parallel over subjects).

Tie rule (documented in ketasim.metrics, shared with the streaming metrics-only
kernel): walking forward in time, Tmax moves only when the concentration exceeds the
running maximum by more than a relative ``tie``; Cmax is the exact maximum.
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
                tm = t[a]
                for j in range(a + 1, b):
                    v = c[s, k, j]
                    if v > top * (1.0 + tie):
                        tm = t[j]
                    if v > top:
                        top = v
                tmax[s, k, w] = tm - starts[w]
                cmax[s, k, w] = top
