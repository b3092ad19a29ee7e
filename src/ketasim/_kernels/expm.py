"""Matrix exponential in numba (scipy's ``expm`` cannot be called from numba).

Scaling and squaring with Padé approximants of degree 3, 5, 7, 9 or 13 chosen by the
1-norm, as in Higham, "The scaling and squaring method for the matrix exponential
revisited", SIAM J Matrix Anal Appl 26(4):1179-1193 (2005), Algorithm 2.3 — the same
method as ``scipy.linalg.expm`` (without its norm-estimation refinements), so the two
agree to rounding on PK rate matrices. Small dense matrices only (n up to a few dozen):
plain loops beat BLAS calls at these sizes and need no LAPACK bindings.
"""

from __future__ import annotations

import numpy as np
from numba import njit

_THETA = (1.495585217958292e-2, 2.539398330063230e-1, 9.504178996162932e-1,
          2.097847961257068e0, 5.371920351148152e0)
_B3 = np.array([120.0, 60.0, 12.0, 1.0])
_B5 = np.array([30240.0, 15120.0, 3360.0, 420.0, 30.0, 1.0])
_B7 = np.array([17297280.0, 8648640.0, 1995840.0, 277200.0, 25200.0, 1512.0, 56.0,
                1.0])
_B9 = np.array([17643225600.0, 8821612800.0, 2075673600.0, 302702400.0, 30270240.0,
                2162160.0, 110880.0, 3960.0, 90.0, 1.0])
_B13 = np.array([64764752532480000.0, 32382376266240000.0, 7771770303897600.0,
                 1187353796428800.0, 129060195264000.0, 10559470521600.0,
                 670442572800.0, 33522128640.0, 1323241920.0, 40840800.0, 960960.0,
                 16380.0, 182.0, 1.0])


@njit(cache=True, nogil=True)
def _mm(A, B, C):
    n = A.shape[0]
    for i in range(n):
        for j in range(n):
            C[i, j] = 0.0
        for k in range(n):
            a = A[i, k]
            if a != 0.0:
                for j in range(n):
                    C[i, j] += a * B[k, j]


@njit(cache=True, nogil=True)
def _norm1(A):
    n = A.shape[0]
    best = 0.0
    for j in range(n):
        s = 0.0
        for i in range(n):
            s += abs(A[i, j])
        if s > best:
            best = s
    return best


@njit(cache=True, nogil=True)
def _solve(P, Q):
    """Overwrite Q with P^{-1} Q (LU with partial pivoting; P is destroyed)."""
    n = P.shape[0]
    for k in range(n):
        p = k
        big = abs(P[k, k])
        for i in range(k + 1, n):
            if abs(P[i, k]) > big:
                big = abs(P[i, k])
                p = i
        if p != k:
            for j in range(n):
                P[k, j], P[p, j] = P[p, j], P[k, j]
                Q[k, j], Q[p, j] = Q[p, j], Q[k, j]
        piv = P[k, k]
        for i in range(k + 1, n):
            f = P[i, k] / piv
            if f != 0.0:
                for j in range(k + 1, n):
                    P[i, j] -= f * P[k, j]
                for j in range(n):
                    Q[i, j] -= f * Q[k, j]
    for k in range(n - 1, -1, -1):
        for j in range(n):
            s = Q[k, j]
            for i in range(k + 1, n):
                s -= P[k, i] * Q[i, j]
            Q[k, j] = s / P[k, k]


@njit(cache=True, nogil=True)
def expm(A):
    """``exp(A)`` for a square float64 matrix; NaN matrix if ``A`` is not finite."""
    n = A.shape[0]
    out = np.empty((n, n))
    for i in range(n):
        for j in range(n):
            if not np.isfinite(A[i, j]):
                out[:, :] = np.nan
                return out
    nrm = _norm1(A)
    if nrm == 0.0:
        out[:, :] = 0.0
        for i in range(n):
            out[i, i] = 1.0
        return out
    A2 = np.empty((n, n))
    _mm(A, A, A2)
    U = np.empty((n, n))
    V = np.empty((n, n))
    T = np.empty((n, n))
    s = 0
    if nrm <= _THETA[3]:
        if nrm <= _THETA[0]:
            b = _B3
        elif nrm <= _THETA[1]:
            b = _B5
        elif nrm <= _THETA[2]:
            b = _B7
        else:
            b = _B9
        m = b.shape[0] - 1
        # U = A * sum b[odd] A^(2k); V = sum b[even] A^(2k)
        P = np.eye(n)  # A^(2k)
        U[:, :] = 0.0
        V[:, :] = 0.0
        for k in range(0, m // 2 + 1):
            if 2 * k + 1 <= m:
                U += b[2 * k + 1] * P
            V += b[2 * k] * P
            _mm(P, A2, T)
            P[:, :] = T
        _mm(A, U, T)
        U[:, :] = T
    else:
        s = max(0, int(np.ceil(np.log2(nrm / _THETA[4]))))
        scale = 2.0 ** (-s)
        As = A * scale
        A2 *= scale * scale
        A4 = np.empty((n, n))
        A6 = np.empty((n, n))
        _mm(A2, A2, A4)
        _mm(A4, A2, A6)
        b = _B13
        W = b[13] * A6 + b[11] * A4 + b[9] * A2
        _mm(A6, W, T)
        T += b[7] * A6 + b[5] * A4 + b[3] * A2
        for i in range(n):
            T[i, i] += b[1]
        _mm(As, T, U)
        W = b[12] * A6 + b[10] * A4 + b[8] * A2
        _mm(A6, W, V)
        V += b[6] * A6 + b[4] * A4 + b[2] * A2
        for i in range(n):
            V[i, i] += b[0]
    P = V - U
    Q = V + U
    _solve(P, Q)
    for _ in range(s):
        _mm(Q, Q, T)
        Q[:, :] = T
    return Q


@njit(cache=True, nogil=True)
def propagators(A, h, E, G):
    """Fill ``E = expm(A h)`` and ``G = ∫0^h expm(A s) ds`` (both (n, n)).

    Both are blocks of ``expm([[A, I], [0, 0]] h)``, so one call gives the exact
    step ``x(t+h) = E x(t) + G r`` for a constant input rate ``r``; no inverse of A
    is needed, so singular and nearly defective rate matrices are fine.
    """
    n = A.shape[0]
    if h == 0.0:
        E[:, :] = 0.0
        G[:, :] = 0.0
        for i in range(n):
            E[i, i] = 1.0
        return
    M = np.zeros((2 * n, 2 * n))
    for i in range(n):
        for j in range(n):
            M[i, j] = A[i, j] * h
        M[i, n + i] = h
    X = expm(M)
    for i in range(n):
        for j in range(n):
            E[i, j] = X[i, j]
            G[i, j] = X[i, n + j]
