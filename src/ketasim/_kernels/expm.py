"""Matrix exponential in numba (scipy's ``expm`` cannot be called from numba).

Method
------
Scaling and squaring with diagonal Padé approximants, exactly Algorithm 2.3 of

    N. J. Higham, "The scaling and squaring method for the matrix exponential
    revisited", SIAM J. Matrix Anal. Appl. 26(4):1179-1193 (2005).

The Padé degree ``m`` is the smallest of 3, 5, 7, 9 whose threshold ``theta_m`` bounds
the 1-norm of ``A``; beyond ``theta_9`` the degree is 13 and ``A`` is scaled by
``2**-s`` so that its norm is at most ``theta_13``. Below ``theta_m`` the backward
error of ``r_m`` (in exact arithmetic) is at most the unit roundoff ``2**-53``, so
truncation adds nothing to the rounding error. ``r_m(A) = (V - U)^{-1} (V + U)``
with ``U`` odd and ``V`` even polynomials in ``A``; the solve uses an LU factorisation
with partial pivoting written here, so the kernel needs no LAPACK bindings. ``r_m`` is
then squared ``s`` times.

Accuracy: the Padé step is accurate to a few ulps; each squaring can double the
relative error of eigenvalues near 1 of ``r_m(A / 2**s)`` (the slow modes of a rate
matrix), so the result is good to about ``4 * 2**s`` ulps: ``1e-13`` for ``||A||_1``
up to ~5e3, but ~2e-9 for stiff rate matrices with ``||A h||_1 = 3e7`` (``s = 23``;
rates 1e4 /h over h = 1e3 h). ``scipy.linalg.expm`` (Al-Mohy & Higham 2009, which can
take fewer squarings for very non-normal matrices) behaves alike on such matrices;
see ``tests/test_expm.py`` for the measured agreement.

All functions are ``@njit`` (``fastmath=False``: the Padé/LU error analysis assumes
IEEE arithmetic), keep no global mutable state and never raise, so they can be
called from other kernels, including inside ``prange`` loops. They are meant for the
small dense matrices of compartmental models (``n`` up to a few dozen), where plain
loops beat BLAS calls.
"""

from __future__ import annotations

import numba
import numpy as np

# Higham (2005): largest 1-norm of A for which the backward error bound of r_m(A) is
# the unit roundoff 2**-53.
THETA_3 = 1.495585217958292e-2
THETA_5 = 2.539398330063230e-1
THETA_7 = 9.504178996162932e-1
THETA_9 = 2.097847961257068e0
THETA_13 = 5.371920351148152e0

# Coefficients b_0..b_m of the Padé numerator p_m(x) = sum_j b_j x^j (denominator
# q_m(x) = p_m(-x)), scaled to integers as in Higham (2005) and scipy. Degrees 3, 5,
# 7 and 9 are concatenated into one immutable tuple (numba cannot pick between
# tuples of different lengths at run time); they start at offsets 0, 4, 10 and 18.
_B_LOW = (
    # m = 3
    120.0, 60.0, 12.0, 1.0,
    # m = 5
    30240.0, 15120.0, 3360.0, 420.0, 30.0, 1.0,
    # m = 7
    17297280.0, 8648640.0, 1995840.0, 277200.0, 25200.0, 1512.0, 56.0, 1.0,
    # m = 9
    17643225600.0, 8821612800.0, 2075673600.0, 302702400.0, 30270240.0,
    2162160.0, 110880.0, 3960.0, 90.0, 1.0,
)  # fmt: skip
_B13 = (
    64764752532480000.0, 32382376266240000.0, 7771770303897600.0,
    1187353796428800.0, 129060195264000.0, 10559470521600.0, 670442572800.0,
    33522128640.0, 1323241920.0, 40840800.0, 960960.0, 16380.0, 182.0, 1.0,
)  # fmt: skip

#: Number of (n, n) scratch matrices :func:`expm_into` needs.
EXPM_WORK = 6
#: Number of (2n, 2n) scratch matrices :func:`propagators_into` needs.
PROPAGATORS_WORK = EXPM_WORK + 1


@numba.njit(cache=True, fastmath=False, nogil=True)
def _matmul(A, B, C):
    """``C = A @ B`` for square matrices; ``C`` must not alias ``A`` or ``B``."""
    n = A.shape[0]
    # i-k-j order: the innermost loop runs along rows of B and C (contiguous, so it
    # vectorises). Zero entries of A are skipped: rate matrices and the augmented
    # matrix of `propagators` are sparse (the bottom half of its powers is zero).
    for i in range(n):
        for j in range(n):
            C[i, j] = 0.0
        for k in range(n):
            a = A[i, k]
            if a != 0.0:
                for j in range(n):
                    C[i, j] += a * B[k, j]


@numba.njit(cache=True, fastmath=False, nogil=True)
def _fill_nan(out):
    n = out.shape[0]
    for i in range(n):
        for j in range(n):
            out[i, j] = np.nan


@numba.njit(cache=True, fastmath=False, nogil=True)
def _lu_solve(P, Q):
    """Overwrite ``Q`` with ``P^{-1} Q``; ``P`` is destroyed. False if singular.

    Gaussian elimination with partial pivoting, the row swaps and multipliers applied
    to ``Q`` as they are made, so no pivot vector or separate L is stored. ``P`` is
    the Padé denominator ``q_m(A)``, whose condition number Higham (2005) bounds for
    ``||A||_1 <= theta_m``, so partial pivoting is ample.

    Dividing by the pivot (not multiplying by its reciprocal) is correctly rounded:
    the identity blocks of ``propagators`` for ``A = 0`` then come out exactly (a
    reciprocal's rounding, doubled by every squaring, cost up to ``2**s`` ulps), and
    the ``n**2`` divisions cost nothing at these sizes. A zero pivot can only come
    from overflow upstream; it is reported instead of divided by (numba's default
    error model would raise ZeroDivisionError, and kernels never raise).
    """
    n = P.shape[0]
    for k in range(n):
        p = k
        big = abs(P[k, k])
        for i in range(k + 1, n):
            v = abs(P[i, k])
            if v > big:
                big = v
                p = i
        if not big > 0.0:  # zero or NaN pivot column
            return False
        if p != k:
            for j in range(n):
                t = P[k, j]
                P[k, j] = P[p, j]
                P[p, j] = t
                t = Q[k, j]
                Q[k, j] = Q[p, j]
                Q[p, j] = t
        piv = P[k, k]
        for i in range(k + 1, n):
            f = P[i, k] / piv
            if f != 0.0:
                for j in range(k + 1, n):
                    P[i, j] -= f * P[k, j]
                for j in range(n):
                    Q[i, j] -= f * Q[k, j]
    # back substitution, row by row so the innermost loop runs along rows of Q
    for k in range(n - 1, -1, -1):
        for i in range(k + 1, n):
            f = P[k, i]
            if f != 0.0:
                for j in range(n):
                    Q[k, j] -= f * Q[i, j]
        piv = P[k, k]
        for j in range(n):
            Q[k, j] /= piv
    return True


@numba.njit(cache=True, fastmath=False, nogil=True)
def expm_into(A, out, work):
    """Matrix exponential ``out = exp(A)`` without allocating.

    Parameters
    ----------
    A : ndarray, float64, shape (n, n)
        Input matrix. Not modified.
    out : ndarray, float64, shape (n, n)
        Receives ``exp(A)``. May be ``A`` itself (``A`` is no longer read once
        ``out`` is written).
    work : ndarray, float64, shape (k, n, n) with ``k >= EXPM_WORK``
        Scratch space: ``work[0:EXPM_WORK]`` is overwritten and must not overlap ``A``
        or ``out``; any further entries are not touched.

    Returns
    -------
    ok : bool
        False, with ``out`` filled with NaN, if ``A`` has a non-finite entry, its
        1-norm overflows, or the Padé denominator is numerically singular (possible
        only after overflow). Never raises.

    Notes
    -----
    Algorithm 2.3 of Higham, "The scaling and squaring method for the matrix
    exponential revisited", SIAM J. Matrix Anal. Appl. 26(4):1179-1193 (2005): Padé
    degree ``m`` in {3, 5, 7, 9} if ``||A||_1 <= theta_m``, otherwise ``m = 13`` on
    ``A / 2**s`` with ``s = ceil(log2(||A||_1 / theta_13))``, followed by ``s``
    squarings. Diagonal matrices (including 1x1) take ``exp`` of the diagonal, which
    is exact to rounding (the ``s`` squarings would amplify the rounding error by up
    to ``2**s ~ ||A||_1 / theta_13``; scipy special-cases them the same way).
    """
    nrm, diagonal = _norm1(A)
    if not np.isfinite(nrm):  # a non-finite entry, or column sums that overflow
        _fill_nan(out)
        return False
    if diagonal:  # also covers n = 1 and the zero matrix (exp(0) = I exactly)
        _exp_diagonal(A, out)
        return True
    # U into work[0] and V into out, then r_m = (V - U)^{-1} (V + U), squared s times
    if nrm <= THETA_9:
        _pade_low(A, nrm, out, work)
        s = 0
    else:
        s = _pade_13(A, nrm, out, work)
    if not _pade_solve(work[0], out):
        _fill_nan(out)
        return False
    _square(out, work[4], s)
    return True


@numba.njit(cache=True, fastmath=False, nogil=True)
def _norm1(A):
    """(||A||_1, whether A is diagonal); the norm is NaN if an entry is not finite
    (inf if finite entries' column sums overflow)."""
    n = A.shape[0]
    nrm = 0.0
    diagonal = True
    for j in range(n):
        col = 0.0
        for i in range(n):
            a = A[i, j]
            if not np.isfinite(a):
                return np.nan, False
            col += abs(a)
            if a != 0.0 and i != j:
                diagonal = False
        if col > nrm:
            nrm = col
    return nrm, diagonal


@numba.njit(cache=True, fastmath=False, nogil=True)
def _exp_diagonal(A, out):
    """``out = exp(A)`` for a diagonal ``A``: exp of the diagonal."""
    n = A.shape[0]
    for i in range(n):
        d = np.exp(A[i, i])
        for j in range(n):
            out[i, j] = 0.0
        out[i, i] = d


@numba.njit(cache=True, fastmath=False, nogil=True)
def _pade_low(A, nrm, out, work):
    """Padé degree m in {3, 5, 7, 9} (the smallest whose theta_m bounds ``nrm`` <=
    theta_9): U into work[0], V into ``out`` (A is last read before ``out`` is
    written, so they may alias)."""
    n = A.shape[0]
    X = work[0]
    A2 = work[1]
    A4 = work[2]
    A6 = work[3]
    W1 = work[4]
    W2 = work[5]
    if nrm <= THETA_3:
        m = 3
        off = 0
    elif nrm <= THETA_5:
        m = 5
        off = 4
    elif nrm <= THETA_7:
        m = 7
        off = 10
    else:
        m = 9
        off = 18
    # Even powers A^(2k), k = 1..(m-1)/2, in work[1..4] (A^8 lands in W1).
    _matmul(A, A, A2)
    if m >= 5:
        _matmul(A2, A2, A4)
    if m >= 7:
        _matmul(A4, A2, A6)
    if m >= 9:
        _matmul(A4, A4, W1)
    # U = A (b_1 I + b_3 A^2 + ... + b_m A^(m-1)); accumulated in W2.
    for i in range(n):
        for j in range(n):
            W2[i, j] = 0.0
        W2[i, i] = _B_LOW[off + 1]
    for k in range(1, (m - 1) // 2 + 1):
        b = _B_LOW[off + 2 * k + 1]
        Pk = work[k]
        for i in range(n):
            for j in range(n):
                W2[i, j] += b * Pk[i, j]
    _matmul(A, W2, X)  # last read of A, so `out` may alias it from here on
    # V = b_0 I + b_2 A^2 + ... + b_(m-1) A^(m-1), straight into out.
    for i in range(n):
        for j in range(n):
            out[i, j] = 0.0
        out[i, i] = _B_LOW[off]
    for k in range(1, (m - 1) // 2 + 1):
        b = _B_LOW[off + 2 * k]
        Pk = work[k]
        for i in range(n):
            for j in range(n):
                out[i, j] += b * Pk[i, j]


@numba.njit(cache=True, fastmath=False, nogil=True)
def _pade_13(A, nrm, out, work):
    """Padé degree 13 on A / 2**s with s the smallest scaling that brings the norm
    to theta_13 or below: U into work[0], V into ``out`` (which may alias A).
    Returns s."""
    n = A.shape[0]
    X = work[0]
    A2 = work[1]
    A4 = work[2]
    A6 = work[3]
    W1 = work[4]
    W2 = work[5]
    # Scaling A by 2**-s is exact (a power of two). nrm is finite here, so
    # s <= 1022.
    s = int(np.ceil(np.log2(nrm / THETA_13)))
    if s < 0:
        s = 0
    scale = 2.0 ** (-s)
    # The scaled copy As lives in `out` until V overwrites it. This is the last
    # read of A (elementwise, so `out` may alias A).
    As = out
    for i in range(n):
        for j in range(n):
            As[i, j] = A[i, j] * scale
    _matmul(As, As, A2)
    _matmul(A2, A2, A4)
    _matmul(A4, A2, A6)
    b = _B13
    # U = As [A6 (b13 A6 + b11 A4 + b9 A2) + b7 A6 + b5 A4 + b3 A2 + b1 I]
    for i in range(n):
        for j in range(n):
            W1[i, j] = b[13] * A6[i, j] + b[11] * A4[i, j] + b[9] * A2[i, j]
    _matmul(A6, W1, W2)
    for i in range(n):
        for j in range(n):
            W2[i, j] += b[7] * A6[i, j] + b[5] * A4[i, j] + b[3] * A2[i, j]
        W2[i, i] += b[1]
    _matmul(As, W2, X)  # X = U
    # V = A6 (b12 A6 + b10 A4 + b8 A2) + b6 A6 + b4 A4 + b2 A2 + b0 I
    for i in range(n):
        for j in range(n):
            W2[i, j] = b[12] * A6[i, j] + b[10] * A4[i, j] + b[8] * A2[i, j]
    _matmul(A6, W2, out)  # As is no longer needed
    for i in range(n):
        for j in range(n):
            out[i, j] += b[6] * A6[i, j] + b[4] * A4[i, j] + b[2] * A2[i, j]
        out[i, i] += b[0]
    return s


@numba.njit(cache=True, fastmath=False, nogil=True)
def _pade_solve(X, out):
    """r_m = (V - U)^{-1} (V + U) into ``out``, from U in ``X`` and V in ``out``
    (X is destroyed). False if the denominator is singular."""
    n = X.shape[0]
    # X <- V - U (denominator), out <- V + U (numerator)
    for i in range(n):
        for j in range(n):
            u = X[i, j]
            v = out[i, j]
            X[i, j] = v - u
            out[i, j] = v + u
    return _lu_solve(X, out)


@numba.njit(cache=True, fastmath=False, nogil=True)
def _square(out, W1, s):
    """Undo the scaling: ``out <- out^(2**s)``, squaring back and forth between
    ``out`` and ``W1``."""
    n = out.shape[0]
    for k in range(s):
        if k % 2 == 0:
            _matmul(out, out, W1)
        else:
            _matmul(W1, W1, out)
    if s % 2 == 1:
        for i in range(n):
            for j in range(n):
                out[i, j] = W1[i, j]


@numba.njit(cache=True, fastmath=False, nogil=True)
def expm(A):
    """Matrix exponential of a square float64 matrix.

    Parameters
    ----------
    A : ndarray, float64, shape (n, n)

    Returns
    -------
    ndarray, float64, shape (n, n)
        ``exp(A)``; all NaN if ``A`` has a non-finite entry (never raises).

    Notes
    -----
    Scaling and squaring with Padé approximants of degree 3, 5, 7, 9 or 13, Algorithm
    2.3 of Higham, SIAM J. Matrix Anal. Appl. 26(4):1179-1193 (2005); see
    :func:`expm_into`, which this wraps with freshly allocated output and scratch.
    """
    n = A.shape[0]
    out = np.empty((n, n))
    work = np.empty((EXPM_WORK, n, n))
    expm_into(A, out, work)
    return out


@numba.njit(cache=True, fastmath=False, nogil=True)
def propagators_into(A, h, E, G, work):
    """Exact one-step propagators of ``dx/dt = A x + r`` without allocating.

    Parameters
    ----------
    A : ndarray, float64, shape (n, n)
        Rate matrix.
    h : float
        Step length, ``h >= 0``.
    E, G : ndarray, float64, shape (n, n)
        Receive ``E = exp(A h)`` and ``G = integral_0^h exp(A s) ds``.
    work : ndarray, float64, shape (k, 2n, 2n) with ``k >= PROPAGATORS_WORK``
        Scratch space.

    Returns
    -------
    ok : bool
        False, with ``E`` and ``G`` all NaN, if ``A`` or ``h`` is not finite (or the
        exponential overflows). Never raises.

    Notes
    -----
    ``exp([[A, I], [0, 0]] h) = [[E, G], [0, I]]`` (Van Loan, "Computing integrals
    involving the matrix exponential", IEEE Trans. Autom. Control 23(3):395-404,
    1978), so one ``expm`` of size ``2n`` gives both blocks. Unlike the closed form
    ``G = A^{-1} (E - I)`` this needs no inverse: it is accurate for singular ``A``
    (no elimination from a compartment) and suffers no cancellation when ``||A h||``
    is small.
    """
    n = A.shape[0]
    for i in range(n):
        for j in range(n):
            if not np.isfinite(A[i, j]):
                _fill_nan(E)
                _fill_nan(G)
                return False
    if h == 0.0:  # exp(0) = I and an empty integral, exactly
        for i in range(n):
            for j in range(n):
                E[i, j] = 0.0
                G[i, j] = 0.0
            E[i, i] = 1.0
        return True
    # M sits after the EXPM_WORK matrices expm_into uses (indexing work rather than
    # slicing it keeps every matrix a C-contiguous 2-D view) and is exponentiated in
    # place.
    M = work[EXPM_WORK]
    for i in range(2 * n):
        for j in range(2 * n):
            M[i, j] = 0.0
    for i in range(n):
        for j in range(n):
            M[i, j] = A[i, j] * h
        M[i, n + i] = h
    ok = expm_into(M, M, work)
    for i in range(n):
        for j in range(n):
            E[i, j] = M[i, j]
            G[i, j] = M[i, n + j]
    return ok


@numba.njit(cache=True, fastmath=False, nogil=True)
def propagators(A, h, E, G):
    """Fill ``E = exp(A h)`` and ``G = integral_0^h exp(A s) ds``.

    With these, ``x(t + h) = E x(t) + G r`` exactly for ``dx/dt = A x + r`` with a
    constant input rate ``r`` (infusions, zero-order absorption).

    Parameters
    ----------
    A : ndarray, float64, shape (n, n)
        Rate matrix (per unit time).
    h : float
        Step length, ``h >= 0``. ``h == 0`` gives ``E = I``, ``G = 0`` exactly.
    E, G : ndarray, float64, shape (n, n)
        Preallocated outputs, overwritten. All NaN if ``A`` or ``h`` is not finite.

    Notes
    -----
    ``E`` and ``G`` are the top-left and top-right blocks of
    ``exp([[A, I], [0, 0]] h)`` (Van Loan 1978), computed by :func:`expm_into`
    (Higham 2005 scaling and squaring). Allocates one scratch buffer of
    ``PROPAGATORS_WORK * (2n)**2`` floats per call; use :func:`propagators_into` to
    reuse one.
    """
    n = A.shape[0]
    work = np.empty((PROPAGATORS_WORK, 2 * n, 2 * n))
    propagators_into(A, h, E, G, work)


# --- many small matrices at once (the population kernels) --------------------------
#
# The population kernels need E(h) and G(h) for every subject of a block of B lanes
# with the same step h. Solving B Padé systems one by one costs ~4 µs per 5x5 rate
# matrix here, more than stepping 6 000 outputs of it. lane_propagators evaluates a
# Taylor polynomial instead (no solve, so the loops run across the lanes and
# vectorise) with scaling and squaring:
#
#   Y = A h / 2**s with ||Y||_1 <= 1,  phi(Y) = sum_{k=0}^{17} Y^k / (k+1)!  (Horner),
#   E = I + Y phi(Y),  G = (h / 2**s) phi(Y),  then s times  G <- G + E G,  E <- E E.
#
# Truncation: the first omitted terms are Y^19/19! (E) and Y^18/19! (h phi), below
# 1e-17 for ||Y||_1 <= 1, so the polynomial is exact to rounding and the squarings
# dominate the error, as for the Padé method; s = ceil(log2 ||A h||_1) is two or
# three more than Padé-13 takes, so the bound is ~4-8 * 2**s ulps (~1e-13 for
# ||A h||_1 ~ 100; tests/test_expm.py checks 8 * 2**s). A zero column of A (an AUC
# state, a state that feeds nothing) gives an exact unit column in E and h in G;
# A = 0 gives E = I and G = h I exactly. A lane with a non-finite entry or
# ||A h||_1 > 2**60 gets NaN (no squarings).
#
# Each lane has its own s; the squaring loop runs max(s) times and a lane takes the
# squarings of its last s iterations only, so a lane's arithmetic is the same in
# any block, at any B (results do not depend on how subjects are blocked).

_TAYLOR_DEGREE = 17  # of phi; E's polynomial has degree 18
_TAYLOR_THETA = 1.0
#: Number of (n, n, B) scratch arrays :func:`lane_propagators` needs.
LANE_WORK = 4


@numba.njit(cache=True, nogil=True, error_model="numpy", fastmath={"contract"})
def lane_mul_add(X, Y, Z, T):
    """T = Z + X Y per lane (Z None: T = X Y); (n, n, B) arrays, lanes innermost."""
    n = X.shape[0]
    B = X.shape[2]
    for i in range(n):
        for k in range(n):
            if Z is None:
                for b in range(B):
                    T[i, k, b] = 0.0
            else:
                for b in range(B):
                    T[i, k, b] = Z[i, k, b]
            for q in range(n):
                for b in range(B):
                    T[i, k, b] += X[i, q, b] * Y[q, k, b]


@numba.njit(cache=True, nogil=True, error_model="numpy", fastmath={"contract"})
def lane_propagators(A, h, E, G, work, s):
    """E = expm(A h) and G = ∫0^h expm(A u) du for each lane of ``A`` (n, n, B)
    into ``E``, ``G`` (n, n, B); ``work``: (LANE_WORK, n, n, B) scratch; ``s``:
    int64 (B,) scratch (the lanes' squaring counts). Non-finite lanes give
    non-finite results (the caller flags them)."""
    n = A.shape[0]
    B = A.shape[2]
    Y = work[0]
    F = work[1]
    T = work[2]
    U = work[3]
    smax = 0
    for b in range(B):
        norm = 0.0
        finite = True
        for k in range(n):
            col = 0.0
            for i in range(n):
                col += abs(A[i, k, b])
            finite = finite and col <= 1e308  # False for inf and NaN
            norm = max(norm, col)
        norm = norm * h if finite else np.nan
        sb = 0
        if norm <= 2.0**60:
            while norm > _TAYLOR_THETA:
                norm *= 0.5
                sb += 1
        else:
            sb = -1  # non-finite or absurd: NaN below
        s[b] = sb
        smax = max(smax, sb)
    for b in range(B):
        hs = h * 0.5 ** max(s[b], 0)  # exact: a power of two
        for i in range(n):
            for k in range(n):
                Y[i, k, b] = A[i, k, b] * hs if s[b] >= 0 else np.nan
                F[i, k, b] = 1.0 if i == k else 0.0
    for d in range(_TAYLOR_DEGREE + 1, 1, -1):  # F <- I + Y F / d
        lane_mul_add(Y, F, None, T)
        inv = 1.0 / d
        for i in range(n):
            for k in range(n):
                one = 1.0 if i == k else 0.0
                for b in range(B):
                    F[i, k, b] = one + T[i, k, b] * inv
    lane_mul_add(Y, F, None, T)
    for b in range(B):
        hs = h * 0.5 ** max(s[b], 0) if s[b] >= 0 else np.nan
        for i in range(n):
            for k in range(n):
                E[i, k, b] = (1.0 if i == k else 0.0) + T[i, k, b]
                G[i, k, b] = F[i, k, b] * hs
    for it in range(smax):
        lane_mul_add(E, E, None, T)
        lane_mul_add(E, G, None, U)
        first = smax - it  # lanes with s >= first square in this iteration
        for i in range(n):
            for k in range(n):
                for b in range(B):
                    if s[b] >= first:
                        E[i, k, b] = T[i, k, b]
                        G[i, k, b] = G[i, k, b] + U[i, k, b]
