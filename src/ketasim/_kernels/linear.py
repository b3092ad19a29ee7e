"""Exact propagation of linear compartmental models (numba).

For ``dx/dt = A x + r`` with a piecewise-constant input rate ``r`` (infusions and
zero-order absorption), the state after a step ``h`` is exactly
``x(t+h) = E(h) x(t) + G(h) r`` with ``E = expm(A h)`` and ``G = ∫0^h expm(A s) ds``,
both read off ``expm([[A, I], [0, 0]] h)`` (:func:`.expm.propagators`). Steps are
split at event times (boluses jump ``x``; rate changes step ``r``), so the solution is
exact to rounding at every output time: no tolerances to tune, and on a uniform output
grid every step reuses one cached ``(E, G)`` pair, so a step costs two small
matrix-vector products.

Status codes (``status[s]``): 0 ok, 4 non-finite rate matrix or input.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .expm import propagators

OK = 0
NONFINITE = 4

_NCACHE = 8  # distinct step lengths kept per subject (a uniform grid needs 1-3)
_EPS = 2.220446049250313e-16


@njit(cache=True, nogil=True)
def _find(cache_h, nused, h, t):
    # Output grids such as k*5/60 give step lengths that differ in the last bits
    # (t_k - t_{k-1} rounds at the scale of t). Treating those as one step costs a
    # time error of a few ulps of t, far below the 1e-9 accuracy target, and keeps
    # one expm per subject instead of one per step.
    tol = 1e-12 * h + 8.0 * _EPS * abs(t)
    for i in range(nused):
        if abs(cache_h[i] - h) <= tol:
            return i
    return -1


@njit(cache=True, nogil=True)
def subject_linear(A, ev_time, ev_cmt, ev_kind, ev_value, times, obs_cmt, obs_scale,
                   out_s):
    """Simulate one subject into ``out_s`` (K, T); returns a status code."""
    n = A.shape[0]
    T = times.shape[0]
    K = obs_cmt.shape[0]
    nev = ev_time.shape[0]
    for i in range(n):
        for j in range(n):
            if not np.isfinite(A[i, j]):
                out_s[:, :] = np.nan
                return NONFINITE
    cache_h = np.empty(_NCACHE)
    cache_E = np.empty((_NCACHE, n, n))
    cache_G = np.empty((_NCACHE, n, n))
    nused = 0
    nextslot = 0
    x = np.zeros(n)
    r = np.zeros(n)
    y = np.empty(n)
    t = 0.0
    e = 0
    for j in range(T):
        tj = times[j]
        while True:
            # next target: the next event if it is due by tj, else tj itself
            is_event = e < nev and ev_time[e] <= tj
            target = ev_time[e] if is_event else tj
            h = target - t
            if h > 0.0:
                slot = _find(cache_h, nused, h, t)
                if slot < 0:
                    slot = nextslot
                    propagators(A, h, cache_E[slot], cache_G[slot])
                    cache_h[slot] = h
                    nextslot = (nextslot + 1) % _NCACHE
                    if nused < _NCACHE:
                        nused += 1
                E = cache_E[slot]
                G = cache_G[slot]
                active = False
                for i in range(n):
                    if r[i] != 0.0:
                        active = True
                        break
                for i in range(n):
                    acc = 0.0
                    for k in range(n):
                        acc += E[i, k] * x[k]
                    if active:
                        for k in range(n):
                            acc += G[i, k] * r[k]
                    y[i] = acc
                for i in range(n):
                    x[i] = y[i]
                t = target
            if not is_event:
                break
            kind = ev_kind[e]
            if kind == 0:
                x[ev_cmt[e]] += ev_value[e]
            elif kind == 1:
                r[ev_cmt[e]] += ev_value[e]
            e += 1
        for k in range(K):
            out_s[k, j] = x[obs_cmt[k]] * obs_scale[k]
    for k in range(K):
        if not np.isfinite(out_s[k, T - 1]):
            return NONFINITE
    return OK


@njit(parallel=True, cache=True)
def population_linear(A, ev_time, ev_cmt, ev_kind, ev_value, times, obs_cmt,
                      obs_scale, out, status):
    """All subjects in parallel: ``A`` (S, n, n) 1/h; events (S, E) sorted per row;
    ``times`` (T,) h; ``obs_scale`` (S, K); writes ``out`` (S, K, T), ``status`` (S,)."""
    S = A.shape[0]
    for s in prange(S):
        status[s] = subject_linear(A[s], ev_time[s], ev_cmt[s], ev_kind[s],
                                   ev_value[s], times, obs_cmt, obs_scale[s], out[s])
